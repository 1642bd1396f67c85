"""Tag scoring from a query's neighbours in the shared space: pure numpy, one function per method.

Inputs are the neighbours of one query, nearest first: ``distances`` (m,) correlation distances and ``labels``
(m × V) 0/1 tags of those neighbours. Outputs are scores over the V vocabulary words.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def cca_knn_scores(
    distances: NDArray[np.float32], labels: NDArray[np.bool_], k: int, temperature: float
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    """CCA-KNN (paper §3.4.1, Eq. 5).

    The training images form one group per tag (as in 2PKNN). From each group the ``k`` images nearest to the query
    are chosen; together they are the semantic neighbours Z_k. A word w scores P(I|w) = Σ_k exp(−D(T, Z_k)/τ) 1_k(w),
    where 1_k(w) says whether neighbour k carries w. The paper's Eq. 5 is τ = 1; τ is a tuned temperature that
    sharpens the distance weighting (correlation distances lie in [0, 2], so τ = 1 weights all neighbours alike).

    Returns the word scores (V,), which neighbours were chosen (m,), and each neighbour's weight (m,).
    """
    rank_in_group = np.cumsum(labels, axis=0, dtype=np.int32)
    chosen = (labels & (rank_in_group <= k)).any(axis=1)
    weights = np.exp(-(distances.astype(np.float64) - float(distances[0])) / temperature)  # shifted: same ranking
    scores = (weights * chosen) @ labels
    return scores, chosen, weights


def nn_transfer(labels: NDArray[np.bool_], frequency: NDArray[np.int64], n_tags: int) -> list[tuple[int, int]]:
    """Annotation by transfer (paper §3.4.1): the nearest neighbour's tags, ranked by training frequency, then the
    next neighbour's, until ``n_tags`` words. Returns (word, neighbour position) pairs in order."""
    chosen: list[tuple[int, int]] = []
    seen: set[int] = set()
    for position in range(labels.shape[0]):
        words = np.flatnonzero(labels[position])
        for word in words[np.argsort(-frequency[words], kind="stable")]:
            if int(word) not in seen:
                seen.add(int(word))
                chosen.append((int(word), position))
                if len(chosen) == n_tags:
                    return chosen
    return chosen


def top_words(scores: NDArray[np.float64], frequency: NDArray[np.int64], n_tags: int) -> NDArray[np.int64]:
    """The ``n_tags`` best-scoring words with a positive score; ties go to the more frequent training word."""
    order = np.lexsort((-frequency, -scores))
    order = order[scores[order] > 0]
    return order[:n_tags].astype(np.int64)
