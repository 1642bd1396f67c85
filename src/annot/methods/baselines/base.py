"""What every baseline shares: its training data, visual distances, hyperparameter choice on training data.

The baselines (paper Table 1) work on the store's own image features, the encoder output after the store's
normalisation (unit rows), not in the CCA space: that is how the paper re-ran them on CNN features.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.progress import NoProgress, Progress
from annot.retrieval.scoring import Scored, top_words

QUIET = NoProgress()
VALIDATION_QUERIES = 1500  # training images used as held-out queries when choosing hyperparameters
Arrays = dict[str, NDArray[Any]]


@dataclass(frozen=True)
class TrainingData:
    """The indexed training images: normalised features X (n × p) and their 0/1 tags (n × V)."""

    X: NDArray[np.float32]
    labels: NDArray[np.bool_]

    @property
    def frequency(self) -> NDArray[np.int64]:
        return self.labels.sum(axis=0).astype(np.int64)


def l1_distances(A: NDArray[np.float32], B: NDArray[np.float32]) -> NDArray[np.float32]:
    """Manhattan distances (len(A) × len(B)), in blocks to bound memory."""
    import torch

    b = torch.from_numpy(np.ascontiguousarray(B, np.float32))
    out = np.empty((len(A), len(B)), np.float32)
    step = max(1, (1 << 26) // max(1, len(B) * 8))
    for lo in range(0, len(A), step):
        a = torch.from_numpy(np.ascontiguousarray(A[lo : lo + step], np.float32))
        out[lo : lo + step] = torch.cdist(a, b, p=1).numpy()
    return out


def sq_l2_distances(A: NDArray[np.float32], B: NDArray[np.float32]) -> NDArray[np.float32]:
    """Squared Euclidean distances (len(A) × len(B)) by one matrix product, clipped at 0."""
    A = np.asarray(A, np.float32)
    B = np.asarray(B, np.float32)
    D = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(D, 0.0)


def base_distances(A: NDArray[np.float32], B: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    """The base distances of JEC, 2PKNN and TagProp on CNN features: L1 and squared L2 (JEC's pair for colour
    and texture histograms, here on one feature vector)."""
    return [l1_distances(A, B), sq_l2_distances(A, B)]


def distance_scales(X: NDArray[np.float32], seed: int = 0, pairs: int = 2000) -> NDArray[np.float64]:
    """Mean of each base distance over random training pairs: JEC's scaling, so that every base distance
    contributes equally (JEC scales by an upper bound; the mean is the robust version of that)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(X), size=min(pairs, len(X)))
    b = rng.integers(0, len(X), size=len(a))
    delta = X[a] - X[b]
    means = np.array([np.abs(delta).sum(1).mean(), (delta * delta).sum(1).mean()], np.float64)
    return np.maximum(means, 1e-12)


def combined_distance(A: NDArray[np.float32], B: NDArray[np.float32], scales: NDArray[np.float64]) -> NDArray[np.float32]:
    """JEC's equal contribution: the mean of the scaled base distances."""
    parts = base_distances(A, B)
    total = np.zeros((len(A), len(B)), np.float32)
    for d, s in zip(parts, scales, strict=True):
        total += d / np.float32(s)
    return total / np.float32(len(parts))


def validation_rows(n: int, seed: int = 0, size: int = VALIDATION_QUERIES) -> NDArray[np.int64]:
    """Training rows held out as queries (each against all other training images) to choose hyperparameters."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, size), replace=False)).astype(np.int64)


def exclude_self(D: NDArray[np.float32], rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """Mark each validation query's own training row as not retrievable (leave-one-out)."""
    D = D.copy()
    D[np.arange(len(rows)), rows] = np.inf
    return D


def f1_of(words: Sequence[NDArray[np.int64]], truth: NDArray[np.bool_]) -> tuple[float, int]:
    """F1 and N+ of ranked words against 0/1 truth, by the evaluation protocol."""
    s = summarize(per_word_metrics(truth, predictions_matrix(list(words), truth.shape[1])), n_images=len(truth))
    return s.f1, s.n_plus


def choose(
    candidates: Iterable[dict[str, Any]], evaluate: Callable[[dict[str, Any]], tuple[float, int]]
) -> tuple[dict[str, Any], float, int]:
    """The candidate with the best (F1, N+) on held-out training queries; the first wins ties."""
    best: tuple[dict[str, Any], float, int] | None = None
    for c in candidates:
        f1, n_plus = evaluate(c)
        if best is None or (f1, n_plus) > (best[1], best[2]):
            best = (c, f1, n_plus)
    if best is None:
        raise ValueError("no candidates")
    return best


class Baseline(ABC):
    """An annotation method over a store's training images and features.

    ``fit`` chooses hyperparameters on the training data (held-out training queries, never the test split) and
    learns what the method learns; ``params``/``arrays`` are what the store keeps, ``restore`` puts them back.
    ``trained`` methods learn something that takes time, so ``annot fit`` must store it before they annotate; the
    others fit in a moment when asked to annotate.
    """

    name: ClassVar[str]
    trained: ClassVar[bool] = False
    min_images: ClassVar[int] = 2  # training images with tags that the method needs at the least

    def __init__(self, data: TrainingData) -> None:
        tagged = int(data.labels.any(axis=1).sum()) if data.labels.size else 0
        if tagged < self.min_images:
            raise AnnotError(f"{self.name} needs at least {self.min_images} tagged training images; the store has {tagged}")
        self.data = data
        self.hyper: dict[str, Any] = {}
        self.validation: dict[str, float] = {}

    @abstractmethod
    def fit(self, progress: Progress = QUIET) -> None: ...

    @abstractmethod
    def annotate(self, Xq: NDArray[np.float32], n_tags: int) -> tuple[list[Scored], NDArray[np.float32] | None]:
        """Ranked words per query, and each query's distances to the training rows (for evidence) where the
        method has them."""

    def params(self) -> dict[str, Any]:
        return {**self.hyper, **{f"validation_{k}": v for k, v in self.validation.items()}}

    def arrays(self) -> Arrays:
        return {}

    def restore(self, params: dict[str, Any], arrays: Arrays) -> None:
        self.hyper = {k: v for k, v in params.items() if not k.startswith("validation_")}
        self.validation = {k.removeprefix("validation_"): float(v) for k, v in params.items() if k.startswith("validation_")}

    def carriers(self, D: NDArray[np.float32], top: int = 10) -> Callable[[int, int], NDArray[np.int64]]:
        """``voters_of`` for the relevance models: the ``top`` training images nearest to the query that carry w."""
        labels = self.data.labels

        def voters_of(q: int, w: int) -> NDArray[np.int64]:
            rows = np.flatnonzero(labels[:, w])
            return rows[np.argsort(D[q, rows], kind="stable")[:top]].astype(np.int64)

        return voters_of

    def ranked(self, scores: NDArray[np.float64], n_tags: int, D: NDArray[np.float32] | None = None,
               voters_of: Callable[[int, int], NDArray[np.int64]] | None = None) -> list[Scored]:
        """Top words of each row of ``scores``; ``voters_of(query, word)`` names the training rows behind a word."""
        out = []
        frequency = self.data.frequency
        n = len(self.data.X)
        for q in range(len(scores)):
            words = top_words(scores[q], frequency, n_tags)
            voters = [voters_of(q, int(w)) if voters_of else np.zeros(0, np.int64) for w in words]
            weights = np.zeros(n) if D is None else np.exp(-(D[q] - D[q].min()).astype(np.float64))
            out.append(Scored(words, scores[q, words], voters, weights))
        return out


def batches(n: int, width: int) -> Iterable[slice]:
    """Query blocks sized so that a (block × width) float32 matrix stays near 256 MB."""
    step = max(1, (1 << 26) // max(1, width))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))
