"""The image index by corpus size: exact (``Flat``) for small corpora, approximate FAISS indexes for large ones.

The index is chosen from the number of images, their dimension and a memory budget, or given as an ``index_factory``
string. Every approximate index is checked at build time: ``RECALL_QUERIES`` indexed vectors are searched (their own
entry left out) exactly and approximately, the search setting (``nprobe`` for IVF, ``efSearch`` for HNSW) is raised
until recall@10 reaches ``RECALL_TARGET``, and the setting and the recall it reached go into the manifest.
All vectors are correlation rows (centred, unit length), so inner product = 1 − correlation distance.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

EXACT_UP_TO = 50_000
RECALL_K = 10
RECALL_TARGET = 0.95
RECALL_QUERIES = 1000
ADD_CHUNK = 65_536
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_bytes(text: str) -> int:
    """``4GB``, ``512M``, ``1.5G`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMG]?B?)\s*", text.upper())
    if not match:
        raise AnnotError(f"--memory-budget: cannot read {text!r} (examples: 4GB, 512MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def choose_factory(n: int, d: int, memory_budget: int) -> str:
    """``Flat`` up to ``EXACT_UP_TO`` images; above, IVF with √n-scaled lists, storing full vectors (``Flat``) when
    they fit in half the budget, else product-quantised codes (``PQ``) sized to fit."""
    if n <= EXACT_UP_TO:
        return "Flat"
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    if n * (4 * d + 8) <= memory_budget // 2:
        return f"IVF{nlist},Flat"
    for m in (64, 48, 32, 24, 16, 12, 8, 4):
        if d % m == 0 and n * (m + 8) <= memory_budget // 2:
            return f"IVF{nlist},PQ{m}"
    raise AnnotError(f"{n:,} images of dimension {d} do not fit a {memory_budget / 2**30:.1f} GB memory budget")


def train_sample_size(factory: str, n: int) -> int:
    """Vectors to train an index on: 40 per IVF list (k-means wants at least 39), at least 50,000, at most n."""
    match = re.search(r"IVF(\d+)", factory)
    return min(n, max(50_000, 40 * int(match.group(1)) if match else 0))


@dataclass
class IndexInfo:
    factory: str
    search: dict[str, int]
    recall_at_10: float | None

    def manifest(self) -> dict[str, Any]:
        return {"factory": self.factory, "search": self.search, "recall_at_10": self.recall_at_10}


Rows = Callable[[], Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]]


def build_ann(factory: str, d: int, rows: Rows, sample: NDArray[np.float32], advance: Callable[[int], None] | None = None) -> faiss.Index:
    """An inner-product index from ``factory``, trained on ``sample`` if it needs training, filled from ``rows()``
    (chunks of correlation rows with their ids)."""
    import faiss

    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise AnnotError(f"--index {factory!r}: not a FAISS index_factory string for dimension {d} ({str(exc).strip().splitlines()[-1]})") from exc
    if not _takes_ids(index):
        index = faiss.IndexIDMap2(index)
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, np.float32))
    for vectors, ids in rows():
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
        if advance:
            advance(len(ids))
    return index


def _takes_ids(index: faiss.Index) -> bool:
    import faiss

    return faiss.try_extract_index_ivf(index) is not None


def on_gpu(index: faiss.Index) -> faiss.Index:
    """The index on every visible GPU when FAISS was built with GPU support (faiss-gpu), else as it is."""
    import faiss

    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as exc:  # an index type the GPU cloner does not handle: search on the CPU
        log.warning("keeping the index on the CPU: %s", str(exc).strip().splitlines()[-1])
        return index


def set_search(index: faiss.Index, search: dict[str, int]) -> None:
    """Apply stored search settings (``nprobe``, ``efSearch``) to a loaded index."""
    import faiss

    if "nprobe" in search and (ivf := faiss.try_extract_index_ivf(index)) is not None:
        ivf.nprobe = int(search["nprobe"])
    if "efSearch" in search:
        inner = faiss.downcast_index(index.index if hasattr(index, "index") else index)
        if hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = int(search["efSearch"])


def exact_neighbours(rows: Rows, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    """The ids of the k largest inner products of each query over all rows, by a chunked exact scan."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for chunk, chunk_ids in rows():
        for lo in range(0, len(chunk_ids), 8192):
            vectors, ids = np.asarray(chunk[lo : lo + 8192]), chunk_ids[lo : lo + 8192]
            s = queries @ vectors.T
            best_s = np.concatenate([best_s, s], axis=1)
            best_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
            if best_s.shape[1] > k:
                top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall_at(index: faiss.Index, queries: NDArray[np.float32], query_ids: NDArray[np.int64], exact: NDArray[np.int64], k: int) -> float:
    """Share of each query's k exact neighbours (its own entry left out) that the index returns in its top k."""
    _, found = index.search(queries, k + 1)
    hits = 0
    for q in range(len(queries)):
        truth = [i for i in exact[q] if i != query_ids[q]][:k]
        got = {int(i) for i in found[q] if i != query_ids[q]}
        hits += sum(1 for i in truth if int(i) in got)
    return hits / max(1, k * len(queries))


def tune_search(index: faiss.Index, factory: str, rows: Rows, queries: NDArray[np.float32], query_ids: NDArray[np.int64]) -> IndexInfo:
    """The smallest search setting that reaches ``RECALL_TARGET`` recall@10 (or the largest tried), with its recall."""
    import faiss

    if factory == "Flat":
        return IndexInfo(factory, {}, None)
    exact = exact_neighbours(rows, queries, RECALL_K + 1)
    if faiss.try_extract_index_ivf(index) is not None:
        name, values = "nprobe", [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if v <= faiss.extract_index_ivf(index).nlist]
    elif "HNSW" in factory:
        name, values = "efSearch", [16, 32, 64, 128, 256, 512]
    else:
        return IndexInfo(factory, {}, round(recall_at(index, queries, query_ids, exact, RECALL_K), 4))
    recall = 0.0
    for value in values:
        set_search(index, {name: value})
        recall = recall_at(index, queries, query_ids, exact, RECALL_K)
        if recall >= RECALL_TARGET:
            break
    return IndexInfo(factory, {name: value}, round(recall, 4))
