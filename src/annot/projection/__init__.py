"""Projections into the shared image-text space: scikit-learn style estimators over numpy and scipy only."""

from annot.projection.cca import CCAStatistics, LinearCCA
from annot.projection.kcca import KernelCCA
from annot.projection.registry import PROJECTIONS, build_projection, load_projection

__all__ = ["PROJECTIONS", "CCAStatistics", "KernelCCA", "LinearCCA", "build_projection", "load_projection"]
