"""Choosing hyperparameters by k-fold cross-validation on the training split only.

Each fold fits the projection on the other folds and annotates its held-out images with the same scoring code as
``annot query`` (:func:`annot.retrieval.scoring.score_neighbours`), scored with the same per-word metrics as
``annot eval``. Candidates that share a projection share its fit, so a grid over K and the temperature is cheap.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from annot.evaluation.metrics import per_word_metrics, predictions_matrix, summarize
from annot.features.text import normalize_features, text_view, usable_rows
from annot.progress import NoProgress, Progress
from annot.projection import KernelCCA, LinearCCA
from annot.projection.kcca import chi2_input, chi2_kernel, default_gamma
from annot.retrieval.indexes import correlation_rows
from annot.retrieval.scoring import score_queries


@dataclass(frozen=True)
class Candidate:
    text: str = "w2v+bv"
    normalization: str = "power"
    reg: float = 0.3
    n_components: int | None = None
    method: str = "cca-knn"
    k: int = 4
    temperature: float = 0.05
    frequency_power: float = 0.0
    projection: str = "linear-cca"

    @property
    def projection_key(self) -> tuple[str, str, float, int | None, str]:
        return (self.text, self.normalization, self.reg, self.n_components, self.projection)


@dataclass(frozen=True)
class CVResult:
    candidate: Candidate
    f1: float
    precision: float
    recall: float
    n_plus: float
    fold_f1: tuple[float, ...]


def grid(**values: Sequence[object]) -> list[Candidate]:
    """Every combination of the given Candidate fields: ``grid(reg=[0.1, 0.3], k=[2, 4])``."""
    names = list(values)
    return [Candidate(**dict(zip(names, combo, strict=True))) for combo in itertools.product(*values.values())]  # type: ignore[arg-type]


def _full_kernel(X: NDArray[np.float32]) -> tuple[NDArray[np.float64], float, NDArray[np.float64]]:
    """The χ² kernel among all training images, computed once and sliced by every fold."""
    Xk = chi2_input(X, "split")
    gamma = default_gamma(Xk)
    return Xk, gamma, chi2_kernel(Xk, Xk, gamma)


def cross_validate(
    X: NDArray[np.float32],
    labels: NDArray[np.bool_],
    E: NDArray[np.float32],
    has_vector: NDArray[np.bool_],
    candidates: Sequence[Candidate],
    *,
    folds: int = 5,
    seed: int = 0,
    n_tags: int = 5,
    progress: Progress | None = None,
) -> list[CVResult]:
    """Mean held-out P / R / F1 / N+ of each candidate over ``folds`` folds of the training images, best F1 first."""
    progress = progress or NoProgress()
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(X)), folds)
    by_projection: dict[tuple[str, str, float, int | None, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_projection[c.projection_key].append(c)
    fold_scores: dict[Candidate, list[tuple[float, float, float, int]]] = defaultdict(list)
    kernels: dict[str, tuple[NDArray[np.float64], float, NDArray[np.float64]]] = {}
    with progress.task("cross-validating", folds * len(by_projection)) as advance:
        for f in range(folds):
            held = parts[f]
            fit = np.concatenate([parts[g] for g in range(folds) if g != f])
            for (text, normalization, reg, n_components, projection), group in by_projection.items():
                Xn = normalize_features(X, normalization)
                keep = fit[usable_rows(labels[fit], has_vector, text)]
                Y = text_view(labels[keep], E, has_vector, text)
                if projection == "kcca":
                    if normalization not in kernels:
                        kernels[normalization] = _full_kernel(Xn)
                    Xk, gamma, K = kernels[normalization]
                    model = KernelCCA(n_components, reg, reg, n_landmarks=None, negative="split")
                    model.fit_kernels(Xk[keep], gamma, K[np.ix_(keep, keep)], [K[np.ix_(keep, keep)]], Y)
                    U = correlation_rows(model.cca_.transform(K[np.ix_(keep, keep)] @ model.map_))
                    T = correlation_rows(model.cca_.transform(K[np.ix_(held, keep)] @ model.map_))
                else:
                    cca = LinearCCA(n_components, reg, reg).fit(Xn[keep], Y)
                    U = correlation_rows(cca.transform(Xn[keep]))
                    T = correlation_rows(cca.transform(Xn[held]))
                D = (1.0 - T @ U.T).astype(np.float32)
                frequency = labels[keep].sum(axis=0).astype(np.int64)
                for c in group:
                    scored = score_queries(
                        c.method, D, labels[keep], frequency, n_tags, c.k, c.temperature, c.frequency_power
                    )
                    predicted = [s.words for s in scored]
                    metrics = per_word_metrics(labels[held], predictions_matrix(predicted, labels.shape[1]))
                    s = summarize(metrics, len(held))
                    fold_scores[c].append((s.f1, s.precision, s.recall, s.n_plus))
                advance(1)
    results = []
    for candidate, scores in fold_scores.items():
        a = np.array(scores, np.float64)
        results.append(CVResult(candidate, float(a[:, 0].mean()), float(a[:, 1].mean()), float(a[:, 2].mean()),
                                float(a[:, 3].mean()), tuple(float(v) for v in a[:, 0])))
    return sorted(results, key=lambda r: -r.f1)
