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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.progress import Progress
from annot.retrieval.scoring import Scored
from annot.settings import ScoringSettings, SettingsError

if TYPE_CHECKING:
    from annot.features.encoders import ImageEncoder
    from annot.model import StoreModel


Vote = tuple[int, float, float]  # a voting training image: (image id, distance, weight)


@dataclass(frozen=True)
class Prediction:
    """Ranked vocabulary positions for one image, their scores, and for each word the training images that voted:
    (image id, distance, weight), nearest first."""

    words: NDArray[np.int64]
    scores: NDArray[np.float64]
    votes: Sequence[list[Vote]]
    confidence: NDArray[np.float64] | None = None  # the calibrated probability that each word is right


class _Votes(Sequence[list[Vote]]):
    """Each word's voters, made into tuples only when read (annotating a library reads none of them): holds just the
    voting candidates' ids, distances and weights."""

    def __init__(self, s: Scored, candidate_ids: NDArray[np.int64], d: NDArray[np.float32]) -> None:
        used = np.unique(np.concatenate(s.voters)) if s.voters else np.zeros(0, np.int64)
        self._voters = [np.searchsorted(used, v) for v in s.voters]
        self._ids, self._d, self._w = candidate_ids[used], np.asarray(d[used]), np.asarray(s.weights[used])

    def __len__(self) -> int:
        return len(self._voters)

    @overload
    def __getitem__(self, i: int) -> list[Vote]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[Vote]]: ...

    def __getitem__(self, i: int | slice) -> list[Vote] | list[list[Vote]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        v = self._voters[i]
        order = v[np.argsort(self._d[v], kind="stable")]
        return [(int(self._ids[c]), float(self._d[c]), float(self._w[c])) for c in order]


def prediction(s: Scored, candidate_ids: NDArray[np.int64], d: NDArray[np.float32]) -> Prediction:
    """A scorer's result (``annot.retrieval.scoring.Scored``) with each word's voters as (image id, distance,
    weight), nearest first."""
    return Prediction(s.words, s.scores, _Votes(s, candidate_ids, d))


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
    def predict(self, X: NDArray[np.floating], scoring: ScoringSettings, exclude: NDArray[np.int64] | None = None,
                ) -> list[Prediction]:
        """Ranked words for each row of X (features from :meth:`encoder`). ``exclude``: for each row, a training
        image id that must not vote for it (the row's own image, where it is a training image; −1 for none); methods
        that do not vote by training images ignore it."""

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
