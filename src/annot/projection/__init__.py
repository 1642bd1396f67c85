"""Projections into the shared image-text space: scikit-learn style estimators over numpy and scipy only."""

from annot.projection.cca import CCAStatistics, LinearCCA
from annot.projection.kcca import KernelCCA
from annot.projection.registry import Projection, build_projection, linear_cca, load_projection
from annot.projection.space import correlation_rows, space_rows

__all__ = ["CCAStatistics", "KernelCCA", "LinearCCA", "Projection", "build_projection", "correlation_rows",
           "linear_cca", "load_projection", "space_rows"]
