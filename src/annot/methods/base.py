"""One interface for every annotation method, and one registry of them by name.

A method reads a loaded store (:class:`annot.model.StoreModel`) and turns image features into ranked words
(:class:`Prediction`). ``cca-knn`` and ``nn`` (:mod:`annot.methods.cca_knn`) work in the shared space that
``annot index`` fits; the baselines (:mod:`annot.methods.baselines`) on the store's image features, fitted by
``annot fit``; ``cnn-r`` (:mod:`annot.methods.cnnr`) through its own network, trained by ``annot train-cnnr``.
Adding a method is one module: a subclass of :class:`AnnotationMethod` decorated with :func:`register_method`, imported
by ``annot.methods``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.progress import Progress
from annot.retrieval.scoring import Scored
from annot.settings import ScoringSettings, SettingsError

if TYPE_CHECKING:
    from annot.features.encoders import ImageEncoder
    from annot.model import StoreModel


@dataclass(frozen=True)
class Prediction:
    """Ranked vocabulary positions for one image, their scores, and for each word the training images that voted:
    (image id, distance, weight), nearest first."""

    words: NDArray[np.int64]
    scores: NDArray[np.float64]
    votes: list[list[tuple[int, float, float]]]
    confidence: NDArray[np.float64] | None = None  # the calibrated probability that each word is right


def prediction(s: Scored, candidate_ids: NDArray[np.int64], d: NDArray[np.float32]) -> Prediction:
    """A scorer's result (``annot.retrieval.scoring.Scored``) with each word's voters as (image id, distance,
    weight), nearest first."""
    votes = [[(int(candidate_ids[c]), float(d[c]), float(s.weights[c])) for c in v[np.argsort(d[v], kind="stable")]]
             for v in s.voters]
    return Prediction(s.words, s.scores, votes)


@dataclass(frozen=True)
class FitReport:
    method: str
    params: dict[str, Any]
    seconds: float
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "fit_seconds": round(self.seconds, 3), "file": self.file}


class AnnotationMethod(ABC):
    """An annotation method over a loaded store. ``trained`` methods learn something that takes time, so they must
    be fitted (and kept in the store) before they annotate; the others are ready when the store is."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for help texts
    trained: ClassVar[bool] = False

    def __init__(self, model: StoreModel) -> None:
        self.model = model

    @classmethod
    def open(cls, model: StoreModel) -> AnnotationMethod:
        """The method ready to annotate with ``model``: restored from the store where it was fitted."""
        return cls(model)

    @classmethod
    def fit(cls, model: StoreModel, progress: Progress | None = None) -> FitReport:
        """Fit the method on the store's training images and keep it in the store."""
        raise AnnotError(f"{cls.name} is fitted when the store is indexed (annot index); nothing to fit")

    def encoder(self) -> ImageEncoder:
        """The image encoder whose features ``predict`` reads: the store's, unless the method has its own."""
        return self.model.encoder()

    @abstractmethod
    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings) -> list[Prediction]:
        """Ranked words for each row of X (features from :meth:`encoder`)."""

    def params(self, scoring: ScoringSettings) -> dict[str, Any]:
        """The settings an evaluation run records for this method."""
        return scoring.to_dict()


M = TypeVar("M", bound=type[AnnotationMethod])
_METHODS: dict[str, type[AnnotationMethod]] = {}


def register_method(cls: M) -> M:
    """Make a method available by its ``name`` (to ``--method`` too)."""
    _METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return list(_METHODS)


def method_class(name: str) -> type[AnnotationMethod]:
    if name not in _METHODS:
        raise SettingsError("scoring.method", f"must be one of {', '.join(_METHODS)}, got {name!r}")
    return _METHODS[name]
