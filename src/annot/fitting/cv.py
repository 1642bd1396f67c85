"""Cross-validation of annotation settings on the training images only.

Each fold fits the projection on its fitting images (:class:`annot.fitting.fit.FoldFitter`, the fitting path
``annot index`` uses) and annotates its held-out images with the scoring functions ``annot query`` uses
(:func:`annot.retrieval.scoring.score_queries`), scored with the per-word metrics ``annot eval`` uses. A candidate is
a whole :class:`annot.settings.BuildSettings`; candidates that share a projection share its fit, so a grid over K,
the temperature and α is cheap. Splits are :mod:`annot.fitting.splits`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.fitting.fit import FoldFit, FoldFitter
from annot.fitting.splits import cv_splits
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.progress import NoProgress, Progress
from annot.projection import correlation_rows, space_rows
from annot.retrieval.ann import pool_depth
from annot.retrieval.scoring import (
    Scored,
    cca_knn_scores,
    held_out_standards,
    score_queries,
    semantic_neighbours,
    standardize,
    top_words,
    word_standards,
)
from annot.settings import BuildSettings, ProjectionSettings, Score, Space, TextView

DENSE_MEMORY = 4 << 30  # bytes a fold's dense (held-out × fitting) distances may take
Standards = tuple[NDArray[np.float64], NDArray[np.float64]]


@dataclass(frozen=True)
class CVResult:
    """A candidate's mean F1, P, R and N+ over the folds, and each fold's F1 and N+."""

    candidate: BuildSettings
    f1: float
    precision: float
    recall: float
    n_plus: float
    fold_f1: tuple[float, ...]
    fold_n_plus: tuple[float, ...] = ()


def within_pool(D: NDArray[np.float32], depth: int) -> NDArray[np.float32]:
    """Distances with everything beyond each query's ``depth`` nearest set to inf (``depth`` ≥ width: all)."""
    if not depth or depth >= D.shape[1]:
        return D
    out = np.full_like(D, np.inf)
    nearest = np.argpartition(D, depth - 1, axis=1)[:, :depth]
    np.put_along_axis(out, nearest, np.take_along_axis(D, nearest, 1), axis=1)
    return out


def _pool(n_fit: int, candidate: BuildSettings) -> int:
    """The candidate pool a store of ``n_fit`` images would search (exact Flat below 50,000 images)."""
    return pool_depth(n_fit, candidate.scoring.k, candidate.scoring.depth, exact=n_fit <= 50_000)


def _fold_standards(candidates: Sequence[BuildSettings], fold: FoldFit, labels: NDArray[np.bool_],
                    frequency: NDArray[np.int64]) -> dict[BuildSettings, Standards]:
    """Each leave-one-out standardised candidate's word standards on a fold's fitting images, as a store computes
    them (every fitting image a query over the others, its own row left out). Candidates that differ only in τ or α
    share the semantic neighbours."""
    out: dict[BuildSettings, Standards] = {}
    if not candidates:
        return out
    queries = correlation_rows(fold.U)
    pools: dict[tuple[str, int], NDArray[np.float32]] = {}
    neighbours: dict[tuple[str, int, int], NDArray[np.bool_]] = {}
    for c in candidates:
        space, depth, k = c.projection.space.value, _pool(len(labels), c), c.scoring.k
        if (space, depth) not in pools:
            F = (1.0 - queries @ space_rows(fold.U, fold.V, space).T).astype(np.float32)
            np.fill_diagonal(F, np.inf)
            pools[space, depth] = within_pool(F, depth)
        F = pools[space, depth]
        if (space, depth, k) not in neighbours:
            neighbours[space, depth, k] = semantic_neighbours(F, labels, k)
        scores = cca_knn_scores(F, labels, k, c.scoring.temperature, frequency, c.scoring.frequency_power,
                                chosen=neighbours[space, depth, k])[0]
        out[c] = word_standards(scores)
    return out


def cross_validate(
    X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_],
    candidates: Sequence[BuildSettings], *, folds: int = 5, design: str = "random", holdout: float = 0.1,
    seed: int = 0, progress: Progress | None = None,
    collect: dict[BuildSettings, list[tuple[NDArray[np.int64], NDArray[np.float64]]]] | None = None,
    predictions: dict[BuildSettings, list[tuple[NDArray[np.int64], list[Scored]]]] | None = None,
) -> list[CVResult]:
    """Mean F1 / P / R / N+ of each candidate over ``folds`` splits of the training images (``design`` and
    ``holdout`` as :func:`annot.fitting.splits.cv_splits`), best F1 first.

    A ``standardized-held-out`` candidate is scored after every fold has been fitted: each fold's held-out images
    are standardised against the other folds' held-out scores (without the images this fold holds). ``collect``
    receives those candidates' (held-out rows, Eq. 5 scores) per fold. ``predictions`` receives, for each candidate it holds
    as a key, every fold's held-out rows and their ranked words (what calibrating confidence learns from)."""
    progress = progress or NoProgress()
    if not candidates:
        raise AnnotError("cross-validation needs at least one candidate")
    splits = cv_splits(labels, folds, design, holdout, seed)
    by_fit: dict[tuple[TextView, ProjectionSettings], list[BuildSettings]] = defaultdict(list)
    for c in candidates:
        by_fit[c.text.view, c.projection.replace(space=Space.IMAGE)].append(c)
    fitter = FoldFitter(X, labels, E, has_vector)
    fold_scores: dict[BuildSettings, list[tuple[float, float, float, int]]] = defaultdict(list)
    pending: dict[BuildSettings, list[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]]] = defaultdict(list)
    with progress.task("cross-validating", len(splits) * len(by_fit)) as advance:
        for held, fit in splits:
            if 4 * len(held) * len(fit) > DENSE_MEMORY:
                raise AnnotError(f"cross-validation of {len(fit):,} fitting images against {len(held):,} held-out ones "
                                 f"needs {4 * len(held) * len(fit) / 2**30:.1f} GB of distances; use fewer images")
            for (view, projection), group in by_fit.items():
                fold = fitter.fit(fit, held, view, projection)
                keep = fold.keep
                fit_labels = labels[keep]
                frequency = fit_labels.sum(axis=0).astype(np.int64)
                D = {space: (1.0 - fold.T @ space_rows(fold.U, fold.V, space).T).astype(np.float32)
                     for space in {c.projection.space.value for c in group}}
                pooled = {(s, d): within_pool(D[s], d) for s, d in {(c.projection.space.value, _pool(len(keep), c))
                                                                     for c in group}}
                loo = [c for c in group if c.scoring.method == "cca-knn" and c.scoring.score is Score.STANDARDIZED]
                standards = _fold_standards(loo, fold, fit_labels, frequency)
                for c in group:
                    s = c.scoring
                    candidates_D = pooled[c.projection.space.value, _pool(len(keep), c)]
                    if s.method == "cca-knn" and s.score is Score.HELD_OUT:
                        raw = cca_knn_scores(candidates_D, fit_labels, s.k, s.temperature, frequency,
                                             s.frequency_power)[0]
                        pending[c].append((held, raw, frequency))
                        continue
                    scored = score_queries(s.method, candidates_D, fit_labels, frequency, s.n_tags, s.k,
                                           s.temperature, s.frequency_power, standards.get(c))
                    if predictions is not None and c in predictions:
                        predictions[c].append((held, scored))
                    metrics = per_word_metrics(labels[held], predictions_matrix([r.words for r in scored],
                                                                                labels.shape[1]))
                    summary = summarize(metrics, len(held))
                    fold_scores[c].append((summary.f1, summary.precision, summary.recall, summary.n_plus))
                advance(1)
    for c, parts in pending.items():
        folds_scored = [_held_out_fold(parts, f, labels, c.scoring.n_tags) for f in range(len(parts))]
        fold_scores[c] = [numbers for numbers, _ in folds_scored]
        if predictions is not None and c in predictions:
            predictions[c].extend((parts[f][0], scored) for f, (_, scored) in enumerate(folds_scored))
        if collect is not None:
            collect[c] = [(held, raw) for held, raw, _frequency in parts]
    results = []
    for candidate, scores in fold_scores.items():
        a = np.array(scores, np.float64)
        results.append(CVResult(candidate, float(a[:, 0].mean()), float(a[:, 1].mean()), float(a[:, 2].mean()),
                                float(a[:, 3].mean()), tuple(float(v) for v in a[:, 0]),
                                tuple(float(v) for v in a[:, 3])))
    return sorted(results, key=lambda r: -r.f1)


def _held_out_fold(parts: Sequence[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]], fold: int,
                   labels: NDArray[np.bool_], n_tags: int) -> tuple[tuple[float, float, float, int], list[Scored]]:
    """F1, P, R and N+ of fold ``fold``'s held-out images ranked by their scores standardised against the other
    folds' held-out scores, leaving out the images this fold holds; and the ranked words."""
    held, raw, frequency = parts[fold]
    others = [(rows, scores) for g, (rows, scores, _f) in enumerate(parts) if g != fold]
    z = standardize(raw, held_out_standards(others, held))
    predicted = [top_words(row, frequency, n_tags, -np.inf) for row in z]
    s = summarize(per_word_metrics(labels[held], predictions_matrix(predicted, labels.shape[1])), len(held))
    scored = [Scored(words, z[q, words], [], np.zeros(0)) for q, words in enumerate(predicted)]
    return (s.f1, s.precision, s.recall, s.n_plus), scored


HELD_OUT_FOLDS, HELD_OUT_SIZE = 5, 1 / 9  # cover hold-outs of a ninth each, as Corel-5k's test split (499 of 4,500)


def held_out_scores(X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
                    has_vector: NDArray[np.bool_], settings: BuildSettings, progress: Progress | None = None) -> Standards:
    """Held-out standards (:func:`annot.retrieval.scoring.held_out_standards`) for ``settings`` over the training
    images (X, labels): the projection fitted again without each of ``HELD_OUT_FOLDS`` cover hold-outs, each
    hold-out's images scored with Eq. 5 from the others, the scores pooled over the hold-outs."""
    candidate = settings.replace(scoring=settings.scoring.replace(method="cca-knn", score=Score.HELD_OUT))
    collect: dict[BuildSettings, list[tuple[NDArray[np.int64], NDArray[np.float64]]]] = {}
    cross_validate(X, labels, E, has_vector, [candidate], folds=HELD_OUT_FOLDS, design="cover",
                   holdout=HELD_OUT_SIZE, progress=progress, collect=collect)
    return held_out_standards(collect[candidate])
