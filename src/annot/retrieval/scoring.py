"""Tag scoring from queries' neighbours in the shared space: pure numpy, one function per method.

Inputs are ``D`` (nq × m), the correlation distances from each query to m candidate training images (``inf`` where
a candidate was not retrieved for that query), and ``labels`` (m × V), the candidates' 0/1 tags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from scipy import sparse

# how CCA-KNN ranks a query's words: Eq. 5's score, or it standardised per word against the word's usual score on
# the training images (leave-one-out) or on images the projection was fitted without (``held_out_standards``)
SCORES = ("eq5", "standardized", "standardized-held-out")
STANDARDIZED = SCORES[1:]


@dataclass(frozen=True)
class Scored:
    """One query's ranked words, their scores, per word the candidate positions that voted, and the voters' weights."""

    words: NDArray[np.int64]
    scores: NDArray[np.float64]
    voters: list[NDArray[np.int64]]
    weights: NDArray[np.float64]


def semantic_neighbours(D: NDArray[np.float32], labels: NDArray[np.bool_], k: int) -> NDArray[np.bool_]:
    """Which candidates are among the ``k`` nearest of some tag group (the first pass of 2PKNN and CCA-KNN).

    Works per tag over all queries at once: the cost is nq × (number of (image, tag) pairs), not nq × m × V.
    """
    nq = D.shape[0]
    chosen = np.zeros(D.shape, bool)
    queries = np.arange(nq)[:, None]
    k = int(k)
    for w in range(labels.shape[1]):
        members = np.flatnonzero(labels[:, w])
        if len(members) == 0:
            continue
        if len(members) <= k:
            chosen[:, members] = True
            continue
        nearest = np.argpartition(D[:, members], k - 1, axis=1)[:, :k]
        chosen[queries, members[nearest]] = True
    return chosen & np.isfinite(D)


def cca_knn_scores(
    D: NDArray[np.float32],
    labels: NDArray[np.bool_],
    k: int,
    temperature: float,
    frequency: NDArray[np.int64] | None = None,
    frequency_power: float = 0.0,
    chosen: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """CCA-KNN (paper §3.4.1, Eq. 5).

    The training images form one group per tag (as in 2PKNN). From each group the ``k`` images nearest to the query
    are chosen; together they are the semantic neighbours Z_k. A word w scores P(I|w) = Σ_k exp(−D(T, Z_k)/τ) 1_k(w),
    where 1_k(w) says whether neighbour k carries w. The paper's Eq. 5 is τ = 1; correlation distances lie in
    [0, 2], so there every neighbour weighs about the same, and a smaller τ (tuned by cross-validation) lets the
    nearest count more. Weights are computed relative to each query's nearest distance (a constant factor per
    query, so the ranking is unchanged) to avoid underflow at small τ.

    With ``frequency_power`` α > 0 each word's score is divided by n_w^α, its training frequency to the power α.
    A frequent word is carried by many semantic neighbours chosen for other words, so Eq. 5 favours it; α = 0 is
    the paper's Eq. 5 and α = 1 divides by the group size (a per-group average). α is chosen by cross-validation.

    ``chosen``, the semantic neighbours of an earlier call with the same ``D``, ``labels`` and ``k``, saves finding
    them again when only τ or α differ. Returns word scores (nq × V), which candidates were chosen (nq × m), and
    candidate weights (nq × m).
    """
    chosen = semantic_neighbours(D, labels, k) if chosen is None else chosen
    nearest = np.min(np.where(np.isfinite(D), D, np.inf), axis=1, keepdims=True)
    weights = np.exp(-(D.astype(np.float64) - nearest) / temperature)
    weights[~np.isfinite(D)] = 0.0
    scores = (weights * chosen) @ labels.astype(np.float64)
    if frequency_power:
        n_w = labels.sum(axis=0) if frequency is None else frequency
        scores /= np.maximum(np.asarray(n_w, np.float64), 1.0) ** frequency_power
    return scores, chosen, weights


def cca_knn_pooled(
    D: NDArray[np.float32],
    rows: NDArray[np.int64],
    labels: sparse.csr_matrix,
    k: int,
    temperature: float,
    frequency: NDArray[np.int64],
    frequency_power: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """CCA-KNN (Eq. 5) when each query has its own candidate pool, for large corpora: ``D`` (nq × L) holds each
    query's candidate distances in ascending order (inf for missing), ``rows`` (nq × L) the candidates' rows of the
    sparse 0/1 tag matrix ``labels``.

    Works on the (candidate, tag) pairs only: pairs are grouped by (query, tag) in candidate order, and the first ``k``
    of each group are its semantic neighbours. Equal to ``cca_knn_scores`` on the same pool (up to ties in distance).
    """
    nq, L = D.shape
    V = labels.shape[1]
    finite = np.isfinite(D)
    picked = labels[np.where(finite, rows, 0).ravel()]
    keep = np.repeat(finite.ravel(), np.diff(picked.indptr))  # missing candidates carry no tags
    position = np.repeat(np.arange(nq * L), np.diff(picked.indptr))[keep]  # q * L + l of each pair
    key = (position // L) * V + picked.indices[keep]  # q * V + tag
    if nq * V <= np.iinfo(np.uint16).max:
        key = key.astype(np.uint16)  # a stable sort of 16-bit keys is a radix sort: several times faster
    order = np.argsort(key, kind="stable")  # grouped by (query, tag), nearest candidate first within a group
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) else np.zeros(0, np.int64)
    rank = np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    chosen = np.zeros(nq * L, bool)
    chosen[position[order][rank < int(k)]] = True
    chosen = chosen.reshape(nq, L)
    nearest = np.where(finite[:, :1], D[:, :1], 0.0)
    weights = np.exp(-(D.astype(np.float64) - nearest) / temperature)
    weights[~finite] = 0.0
    votes = np.bincount(key.astype(np.int64), weights=(weights * chosen).ravel()[position], minlength=nq * V)
    scores: NDArray[np.float64] = votes.astype(np.float64, copy=False).reshape(nq, V)
    if frequency_power:
        scores /= np.maximum(np.asarray(frequency, np.float64), 1.0) ** frequency_power
    return scores, chosen, weights


def pooled_tagger(labels: sparse.csr_matrix, frequency: NDArray[np.int64], k: int,
                  temperature: float, frequency_power: float, n_tags: int = 5,
                  batch: int = 64) -> Callable[[NDArray[np.float32], NDArray[np.int64]], NDArray[np.int64]]:
    """A function from candidate pools (distances ascending, label rows; rows < 0 are missing) to each query's
    ``n_tags`` CCA-KNN words (−1 where fewer): what an approximate index's search setting is tuned to agree on."""

    def tags(D: NDArray[np.float32], rows: NDArray[np.int64]) -> NDArray[np.int64]:
        out = np.full((len(D), n_tags), -1, np.int64)
        for lo in range(0, len(D), batch):
            d, r = np.where(rows[lo : lo + batch] >= 0, D[lo : lo + batch], np.inf), rows[lo : lo + batch]
            scores, _, _ = cca_knn_pooled(d.astype(np.float32), np.maximum(r, 0), labels, k, temperature, frequency,
                                          frequency_power)
            for q, row in enumerate(scores):
                words = top_words(row, frequency, n_tags)
                out[lo + q, : len(words)] = words
        return out

    return tags


def nn_transfer(order: NDArray[np.int64], labels: NDArray[np.bool_], frequency: NDArray[np.int64], n_tags: int) -> list[tuple[int, int]]:
    """Annotation by transfer (paper §3.4.1): the nearest neighbour's tags, ranked by training frequency, then the
    next neighbour's, until ``n_tags`` words. ``order`` lists candidates nearest first. Returns (word, candidate)."""
    chosen: list[tuple[int, int]] = []
    seen: set[int] = set()
    for candidate in order:
        words = np.flatnonzero(labels[candidate])
        for word in words[np.argsort(-frequency[words], kind="stable")]:
            if int(word) not in seen:
                seen.add(int(word))
                chosen.append((int(word), int(candidate)))
                if len(chosen) == n_tags:
                    return chosen
    return chosen


def _query_normalised(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each query's scores over its largest: what ``word_standards`` measures and ``standardize`` compares."""
    return scores / np.maximum(scores.max(axis=1, keepdims=True), 1e-300)


def word_standards(loo_scores: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each word's mean and spread (standard deviation, at least 1e-6) of its query-normalised CCA-KNN score (the
    score over the query's largest) on training images, each scored without itself among the candidates: what a
    word usually scores, against which ``standardize`` measures a query's score."""
    s = _query_normalised(loo_scores)
    return s.mean(axis=0), np.maximum(s.std(axis=0), 1e-6)


def held_out_standards(parts: Sequence[tuple[NDArray[np.int64], NDArray[np.float64]]],
                       leave: NDArray[np.int64] | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each word's mean and spread of its query-normalised CCA-KNN score over held-out images: ``parts`` are
    (training rows, Eq. 5 scores) of hold-outs, each scored by a projection fitted without them; rows in ``leave``
    are left out (the hold-out being cross-validated, whose images the other parts may share).

    Leave-one-out standards (``word_standards``) score training images in a space fitted on those very images, where
    they lie closer to their tags than any new image will: annotated leave-one-out in their own KCCA space, Corel-5k's
    training images reach a mean-word F1 of 83-84 %, held-out ones 47-50 % (BENCHMARKS.md). Held-out standards
    measure a word's usual score on images like the ones it will be asked about."""
    pooled = [_query_normalised(s)[~np.isin(rows, leave)] if leave is not None else _query_normalised(s)
              for rows, s in parts]
    s = np.concatenate(pooled)
    if not len(s):
        raise ValueError("held-out standards need at least one held-out image")
    return s.mean(axis=0), np.maximum(s.std(axis=0), 1e-6)


def standardize(scores: NDArray[np.float64], standards: tuple[NDArray[np.float64], NDArray[np.float64]]) -> NDArray[np.float64]:
    """Standardised CCA-KNN scores: z_w = (s_w / max s − μ_w) / σ_w, with μ_w and σ_w from ``word_standards``: how
    unusually high a word scores for this query, in its own spreads. A frequent word is carried by many neighbours
    of every query, so its raw score is high everywhere and its z only when the query is really like its images; a
    rare word's raw score is low everywhere, and its z rises when its few images are the query's nearest. Words
    without a score (no candidate carries them) are −inf."""
    mean, spread = standards
    z = (_query_normalised(scores) - mean) / spread
    return np.where(scores > 0, z, -np.inf)


def ranking(scores: NDArray[np.float64], standards: tuple[NDArray[np.float64], NDArray[np.float64]] | None
            ) -> tuple[NDArray[np.float64], float]:
    """The scores CCA-KNN ranks words by, and the ``top_words`` floor they must pass: Eq. 5's scores above 0, or
    with ``standards`` the standardised scores above −inf."""
    return (scores, 0.0) if standards is None else (standardize(scores, standards), -np.inf)


def top_words(scores: NDArray[np.float64], frequency: NDArray[np.int64], n_tags: int, floor: float = 0.0) -> NDArray[np.int64]:
    """The ``n_tags`` best-scoring words scoring above ``floor`` (a positive score by default; −inf for
    standardised scores, which may be negative); ties go to the more frequent training word."""
    order = np.lexsort((-frequency, -scores))
    order = order[scores[order] > floor]
    return order[:n_tags].astype(np.int64)


def score_queries(
    method: str,
    D: NDArray[np.float32],
    labels: NDArray[np.bool_],
    frequency: NDArray[np.int64],
    n_tags: int,
    k: int,
    temperature: float,
    frequency_power: float = 0.0,
    standards: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> list[Scored]:
    """Ranked words for each query with ``method``: the one entry point for annotation, evaluation and tuning. With
    ``standards`` (``word_standards``), CCA-KNN ranks words by their standardised scores (``standardize``)."""
    out: list[Scored] = []
    if method == "nn":
        finite = np.isfinite(D)
        for q in range(D.shape[0]):
            order = np.flatnonzero(finite[q])
            order = order[np.argsort(D[q, order], kind="stable")]
            pairs = nn_transfer(order, labels, frequency, n_tags)
            words = np.array([w for w, _ in pairs], np.int64)
            scores = np.array([1.0 - float(D[q, c]) for _, c in pairs], np.float64)
            out.append(Scored(words, scores, [np.array([c], np.int64) for _, c in pairs], finite[q].astype(np.float64)))
        return out
    if method == "cca-knn":
        scores, chosen, weights = cca_knn_scores(D, labels, k, temperature, frequency, frequency_power)
        scores, floor = ranking(scores, standards)
        for q in range(D.shape[0]):
            words = top_words(scores[q], frequency, n_tags, floor)
            voters = [np.flatnonzero(chosen[q] & labels[:, w]) for w in words]
            out.append(Scored(words, scores[q, words], voters, weights[q]))
        return out
    raise ValueError(f"unknown method {method!r}")
