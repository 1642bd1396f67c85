"""Annotation methods behind one interface (:mod:`annot.methods.base`), the store's loaded model they read
(:mod:`annot.methods.model`), the one fitting path (:mod:`annot.methods.fit`) and cross-validation
(:mod:`annot.methods.cv`). Importing this package registers every built-in method."""

from annot.methods import cca_knn as _cca_knn  # noqa: F401  (registers cca-knn, nn)
from annot.methods.base import AnnotationMethod, FitReport, Prediction, method_class, method_names, register_method
from annot.methods.baselines import stored as _baselines  # noqa: F401  (registers the baselines)
from annot.methods.cnnr import method as _cnnr  # noqa: F401  (registers cnn-r and the cnnr: encoder)
from annot.methods.model import StoreModel
from annot.methods.results import Annotation, TagScore, Vote

__all__ = [
    "Annotation",
    "AnnotationMethod",
    "FitReport",
    "Prediction",
    "StoreModel",
    "TagScore",
    "Vote",
    "method_class",
    "method_names",
    "register_method",
]
