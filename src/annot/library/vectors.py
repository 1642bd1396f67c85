"""The photo library's index of vectors in the shared space, chosen by its size.

Up to ``EXACT_UP_TO`` photos it is exact (``Flat``). Above, it is rebuilt at a commit as ``IVF{nlist},SQ8``: √n-scaled
inverted lists over 8-bit scalar-quantised rows (a quarter of the memory of full vectors, and read four times as
fast), and rebuilt again when the library has grown ``REBUILD_GROWTH`` times past the size it was trained on. Its
``nprobe`` is the smallest power of two at which ``QUERIES`` library photos, searched approximately, find
``RECALL_TARGET`` of the ``RECALL_K`` photos an exact search finds (recall@20 against exact search); what was
measured is recorded with it. Photos are added to and removed from it as from the exact one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.retrieval.indexes import index_ids

EXACT_UP_TO = 50_000
REBUILD_GROWTH = 4  # an IVF index is trained again once the library is this many times the size it was trained on
RECALL_K = 20
RECALL_TARGET = 0.95
QUERIES = 1_000
TRAIN_PER_LIST = 40  # k-means wants at least 39 points a list


@dataclass(frozen=True)
class LibraryIndexInfo:
    """What a library index is: its FAISS factory, its search setting, how many photos it was trained on, and the
    recall@20 it measured against exact search at that setting (with the settings tried)."""

    factory: str = "Flat"
    search: dict[str, int] = field(default_factory=dict)
    trained_on: int = 0
    recall: float | None = None
    tried: tuple[tuple[int, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"factory": self.factory, "search": dict(self.search), "trained_on": self.trained_on,
                "recall_at_20": self.recall, "tried": [list(t) for t in self.tried]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LibraryIndexInfo:
        if not d:
            return cls()
        return cls(str(d.get("factory", "Flat")), {str(k): int(v) for k, v in (d.get("search") or {}).items()},
                   int(d.get("trained_on", 0)), d.get("recall_at_20"),
                   tuple((int(a), float(b)) for a, b in d.get("tried") or ()))


def exact_index(d: int) -> Any:
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(d))


def needs_rebuild(info: LibraryIndexInfo, n: int) -> bool:
    """Whether a library of ``n`` photos wants its index built anew: an exact one grown past ``EXACT_UP_TO``, or an
    approximate one grown ``REBUILD_GROWTH`` times past what it was trained on."""
    if info.factory == "Flat":
        return n > EXACT_UP_TO
    return n > REBUILD_GROWTH * max(info.trained_on, 1)


def _ivf(index: Any) -> Any:
    import faiss

    inner = faiss.downcast_index(index)
    return inner if isinstance(inner, faiss.IndexIVF) else None


def all_vectors(index: Any) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every vector of a library index (decoded, for a quantised one) and its id."""
    import faiss

    ivf = _ivf(index)
    if ivf is None:  # an exact index under an id map
        inner = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
        return np.asarray(inner.reconstruct_n(0, inner.ntotal), np.float32), index_ids(index)
    lists = ivf.invlists
    ids = np.concatenate([faiss.rev_swig_ptr(lists.get_ids(j), lists.list_size(j)).copy()
                          for j in range(ivf.nlist) if lists.list_size(j)] or [np.zeros(0, np.int64)])
    return vectors_of(index, ids.astype(np.int64)), ids.astype(np.int64)


def vectors_of(index: Any, ids: NDArray[np.int64]) -> NDArray[np.float32]:
    """The vectors of some ids of a library index (decoded, for a quantised one); RuntimeError for an id it
    lacks."""
    if not len(ids):
        return np.zeros((0, index.d), np.float32)
    return np.asarray(index.reconstruct_batch(np.ascontiguousarray(ids, np.int64)), np.float32)


def remove(index: Any, ids: NDArray[np.int64]) -> int:
    """Take photos out of a library index; how many it held. (An IVF index that reads vectors back by id removes
    through an array selector only.)"""
    import faiss

    ids = np.ascontiguousarray(ids, np.int64)
    if not len(ids):
        return 0
    if _ivf(index) is None:
        return int(index.remove_ids(faiss.IDSelectorBatch(ids)))
    return int(index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))


def set_library_search(index: Any, info: LibraryIndexInfo) -> None:
    import faiss

    if "nprobe" in info.search:
        faiss.extract_index_ivf(index).nprobe = int(info.search["nprobe"])


def build_library_index(rows: NDArray[np.float32], ids: NDArray[np.int64], seed: int = 0) -> tuple[Any, LibraryIndexInfo]:
    """The index for a library of these rows (correlation rows) and ids: exact up to ``EXACT_UP_TO``, else IVF-SQ8
    with its ``nprobe`` tuned to recall@20 ≥ ``RECALL_TARGET`` against exact search."""
    import faiss

    n, d = rows.shape
    if n <= EXACT_UP_TO:
        index = exact_index(d)
        index.add_with_ids(np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(ids, np.int64))
        return index, LibraryIndexInfo(trained_on=n)
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    factory = f"IVF{nlist},SQ8"
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)  # IVF keeps the photos' ids itself
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # so that a photo's vector can be read back by its id
    rng = np.random.default_rng(seed)
    sample = rows[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))]
    index.train(np.ascontiguousarray(sample, np.float32))
    for lo in range(0, n, 65_536):
        index.add_with_ids(np.ascontiguousarray(rows[lo : lo + 65_536], np.float32),
                           np.ascontiguousarray(ids[lo : lo + 65_536], np.int64))
    queries = rows[np.sort(rng.choice(n, size=min(n, QUERIES), replace=False))]
    exact = faiss.IndexFlatIP(d)
    exact.add(np.ascontiguousarray(rows, np.float32))
    _, truth = exact.search(np.ascontiguousarray(queries, np.float32), RECALL_K)
    truth_ids = ids[truth]
    tried: list[tuple[int, float]] = []
    ivf = faiss.extract_index_ivf(index)
    nprobe = 1
    while True:
        ivf.nprobe = nprobe
        _, found = index.search(np.ascontiguousarray(queries, np.float32), RECALL_K)
        recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / RECALL_K
                                for f, t in zip(found, truth_ids, strict=True)]))
        tried.append((nprobe, round(recall, 4)))
        if recall >= RECALL_TARGET or nprobe >= nlist:
            break
        nprobe *= 2
    return index, LibraryIndexInfo(factory, {"nprobe": nprobe}, n, round(recall, 4), tuple(tried))


__all__ = ["EXACT_UP_TO", "LibraryIndexInfo", "all_vectors", "build_library_index", "exact_index", "needs_rebuild",
           "remove", "set_library_search", "vectors_of"]
