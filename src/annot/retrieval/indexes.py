"""FAISS indexes over the shared space, searched by correlation distance (paper §3.4.1).

The correlation distance of the paper is D(a, b) = 1 − corr(a, b), with each vector centred by its own mean
(as ``scipy.spatial.distance.correlation``). Centring each row and scaling it to unit length
(:func:`annot.projection.correlation_rows`) turns it into an inner product, so a FAISS inner-product index answers
it exactly: D = 1 − ⟨â, b̂⟩.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from annot.projection.space import correlation_rows

if TYPE_CHECKING:
    import faiss


def build_flat_index(V: NDArray[np.floating], ids: NDArray[np.int64]) -> faiss.IndexIDMap2:
    """An exact inner-product index over correlation-normalised rows, with the given int64 ids."""
    import faiss

    rows = correlation_rows(V)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(rows.shape[1]))
    index.add_with_ids(rows, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def index_ids(index: faiss.Index) -> NDArray[np.int64]:
    import faiss

    id_map = faiss.downcast_index(index).id_map  # type: ignore[attr-defined]  # an IndexIDMap2, through SWIG
    return faiss.vector_to_array(id_map).astype(np.int64)


def search_correlation(index: faiss.Index, T: NDArray[np.floating], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k nearest ids of each row of T, nearest first, with correlation distances D = 1 − corr."""
    k = min(k, index.ntotal)
    similarity, ids = index.search(correlation_rows(T), k)
    return (1.0 - similarity).astype(np.float32), ids
