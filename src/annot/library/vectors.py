"""The photo library's index of vectors in the shared space, chosen by its size.

Up to ``EXACT_UP_TO`` photos it is exact (``Flat``). Above, it is built as ``IVF{nlist},SQ8``: √n-scaled
inverted lists over 8-bit scalar-quantised rows (a quarter of the memory of full vectors, and read four times as
fast), and rebuilt again when the library has grown ``REBUILD_GROWTH`` times past the size it was trained on. Its
``nprobe`` is the smallest power of two at which ``QUERIES`` library photos, searched approximately, find
``RECALL_TARGET`` of the ``RECALL_K`` photos an exact search finds (recall@20 against exact search); what was
measured is recorded with it.

A commit does not write that main index again: it writes a layer, the rows it added or replaced and the photos it
removed (:class:`Layer`), and the manifest names the main index and its layers. Readers search the main index
(without the photos a layer replaced or removed) and the layers' rows together (:class:`LibraryVectors`). Past
``MAX_LAYERS`` layers they are merged into one; once they hold a quarter of the main index's photos (or
``LAYER_ROWS``, whichever is more) the main index is built anew from every photo's vector, so a commit costs what it
changed and the rebuilds a fixed share of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.retrieval.indexes import index_ids
from annot.store.files import read_index

if TYPE_CHECKING:
    from annot.store import StoreDir
    from annot.store.manifest import CollectionRecord

EXACT_UP_TO = 50_000
REBUILD_GROWTH = 4  # an IVF index is trained again once the library is this many times the size it was trained on
RECALL_K = 20
RECALL_TARGET = 0.95
QUERIES = 1_000
TRAIN_PER_LIST = 40  # k-means wants at least 39 points a list
MAX_LAYERS = 8
LAYER_ROWS = 20_000


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


@dataclass(frozen=True)
class Layer:
    """One commit's change to the library's vectors: rows added or replaced (``ids``, ``rows``) and ids removed."""

    ids: NDArray[np.int64]
    rows: NDArray[np.float32]
    removed: NDArray[np.int64]

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        return {"ids": self.ids, "rows": self.rows, "removed": self.removed}

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]], d: int) -> Layer:
        ids = np.asarray(arrays["ids"], np.int64)
        rows = np.asarray(arrays["rows"], np.float32).reshape(len(ids), d)
        return cls(ids, rows, np.asarray(arrays["removed"], np.int64))


def merge_layers(layers: Sequence[Layer], d: int) -> Layer:
    """Layers as one: each id's newest row, and what they removed that no later one put back."""
    ids, rows = np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    removed = np.zeros(0, np.int64)
    for layer in layers:
        gone = np.union1d(layer.ids, layer.removed)
        keep = ~np.isin(ids, gone)
        ids, rows = np.concatenate([ids[keep], layer.ids]), np.vstack([rows[keep], layer.rows])
        removed = np.union1d(removed[~np.isin(removed, layer.ids)], layer.removed)
    return Layer(ids, rows, removed)


class LibraryVectors:
    """The library's vectors as a commit left them: the main index without the photos its layers replaced or
    removed, and the layers' rows in an exact index, searched together (duck-typed as a FAISS index: ``d``,
    ``ntotal``, ``search``)."""

    def __init__(self, d: int, main: Any = None, main_ids: NDArray[np.int64] | None = None,
                 layers: Sequence[Layer] = (), info: LibraryIndexInfo | None = None) -> None:
        import faiss

        self.d = d
        self.main = main
        self.main_ids = np.zeros(0, np.int64) if main_ids is None else np.asarray(main_ids, np.int64)
        self.info = info or LibraryIndexInfo()
        self.layers = tuple(layers)
        merged = merge_layers(self.layers, d)
        replaced = np.union1d(merged.ids, merged.removed)  # few: looked up in the main ids, not the other way
        self.hidden = replaced[np.isin(replaced, self.main_ids)]
        self.recent = exact_index(d)
        if len(merged.ids):
            self.recent.add_with_ids(np.ascontiguousarray(merged.rows), merged.ids)
        self.recent_ids = merged.ids
        self._params: Any = None
        if main is not None:
            set_library_search(main, self.info)
            if len(self.hidden):
                self._selector = faiss.IDSelectorBatch(len(self.hidden), faiss.swig_ptr(self.hidden))
                self._not = faiss.IDSelectorNot(self._selector)
                ivf = _ivf(main)
                self._params = faiss.SearchParametersIVF() if ivf is not None else faiss.SearchParameters()
                self._params.sel = self._not
                if ivf is not None:
                    self._params.nprobe = int(ivf.nprobe)

    @property
    def ntotal(self) -> int:
        return len(self.main_ids) - len(self.hidden) + len(self.recent_ids)

    def ids(self) -> NDArray[np.int64]:
        """Every photo's id, the main index's first."""
        return np.concatenate([self.main_ids[~np.isin(self.main_ids, self.hidden)], self.recent_ids])

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` nearest photos of each query (inner product, best first; -1 where fewer)."""
        queries = np.ascontiguousarray(queries, np.float32)
        parts = []
        if self.main is not None and len(self.main_ids) > len(self.hidden):
            parts.append(self.main.search(queries, k, params=self._params) if self._params is not None
                         else self.main.search(queries, k))
        if len(self.recent_ids):
            parts.append(self.recent.search(queries, min(k, len(self.recent_ids))))
        if not parts:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if len(parts) == 1:
            return parts[0]
        scores = np.hstack([p[0] for p in parts])
        ids = np.hstack([p[1] for p in parts])
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def vectors_of(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """The vectors of some photos; RuntimeError for one the library lacks."""
        ids = np.asarray(ids, np.int64)
        out = np.zeros((len(ids), self.d), np.float32)
        recent = np.isin(ids, self.recent_ids)
        if recent.any():
            out[recent] = vectors_of(self.recent, ids[recent])
        if (~recent).any():
            rest = ids[~recent]
            if self.main is None or np.isin(rest, self.hidden).any():
                raise RuntimeError("a photo the library index does not hold")
            out[~recent] = vectors_of(self.main, rest)
        return out

    def all_vectors(self) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Every photo's vector and id (decoded, from a quantised main index)."""
        parts_rows, parts_ids = [], []
        if self.main is not None:
            rows, ids = all_vectors(self.main)
            keep = ~np.isin(ids, self.hidden)
            parts_rows.append(rows[keep])
            parts_ids.append(ids[keep])
        parts_rows.append(np.asarray(self.recent.index.reconstruct_n(0, self.recent.ntotal), np.float32)
                          if len(self.recent_ids) else np.zeros((0, self.d), np.float32))
        parts_ids.append(self.recent_ids)
        return np.vstack(parts_rows), np.concatenate(parts_ids)

    def layer_rows(self) -> int:
        return sum(len(layer.ids) + len(layer.removed) for layer in self.layers)

    def wants_rebuild(self, pending: int = 0) -> bool:
        """Whether the next commit should build the main index anew: none yet, grown past what its kind serves,
        or layers holding a quarter of it."""
        n = self.ntotal + pending
        if self.main is None:
            return True
        return needs_rebuild(self.info, n) or self.layer_rows() + pending > max(LAYER_ROWS, len(self.main_ids) // 4)


def read_library(store: StoreDir, record: CollectionRecord, d: int) -> LibraryVectors | None:
    """The library's vectors as the manifest names them (the main index memory-mapped for a reader); None when
    they were made in a space of another size (a store indexed again since)."""
    from annot.errors import StoreError

    index = read_index(store.root, record.file, "photo library index", mapped=True)  # shared, never changed in place
    if index.d != d:
        return None
    ids = np.asarray(store.read_array(record.ids, "photo library ids"), np.int64)
    if len(ids) != index.ntotal:
        raise StoreError(f"{store.path(record.ids.path)}: damaged photo library ids ({len(ids)} ids for "
                         f"{index.ntotal} vectors)")
    layers = [Layer.from_arrays(store.read_arrays(f, "photo library layer"), d) for f in record.layers]
    return LibraryVectors(d, index, ids, layers, LibraryIndexInfo.from_dict(dict(record.tuning)))


__all__ = [
    "EXACT_UP_TO",
    "MAX_LAYERS",
    "Layer",
    "LibraryIndexInfo",
    "LibraryVectors",
    "all_vectors",
    "build_library_index",
    "exact_index",
    "merge_layers",
    "needs_rebuild",
    "read_library",
    "remove",
    "set_library_search",
    "vectors_of",
]
