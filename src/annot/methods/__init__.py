"""Annotation methods behind one interface (:mod:`annot.methods.base`): CCA-KNN and tag transfer in the CCA space,
the paper's baselines, and CNN-R. Each reads the store's loaded model (:class:`annot.model.StoreModel`, the layer
above, which builds them through the registry). Importing this package registers every built-in method."""

from annot.methods import cca_knn as _cca_knn  # noqa: F401  (registers cca-knn, nn)
from annot.methods.base import AnnotationMethod, FitReport, Prediction, method_class, method_names, register_method
from annot.methods.baselines import stored as _baselines  # noqa: F401  (registers the baselines)
from annot.methods.cnnr import method as _cnnr  # noqa: F401  (registers cnn-r and the cnnr: encoder)
from annot.methods.results import Annotation, TagScore, Vote

__all__ = [
    "Annotation",
    "AnnotationMethod",
    "FitReport",
    "Prediction",
    "TagScore",
    "Vote",
    "method_class",
    "method_names",
    "register_method",
]
