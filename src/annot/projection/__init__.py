"""Projections into the shared image-text space: scikit-learn style estimators over numpy and scipy only."""

from annot.projection.cca import CCAStatistics, LinearCCA

__all__ = ["CCAStatistics", "LinearCCA"]
