"""The image index by corpus size: exact (``Flat``) for small corpora, approximate FAISS indexes for large ones.

The index is chosen from the number of images, their dimension and a memory budget, or given as an ``index_factory``
string. Every approximate index is checked at build time: ``RECALL_QUERIES`` indexed vectors are searched (their own
entry left out) exactly and approximately over the annotation's candidate pool, and the search setting (``nprobe`` for
IVF, ``efSearch`` for HNSW) is raised until the *tags* that CCA-KNN gives from the approximate pool agree with those
from the exact pool on ``AGREEMENT_TARGET`` of the words (``--tag-agreement``). Recall@10 says little about that:
CCA-KNN reads the K nearest images of every tag group in a pool of thousands. Recall over the whole pool is too
strict the other way (the far end of the pool barely votes). Where the pools' neighbourhoods are spread over many
lists, agreeing tags can take a wide search; ``--tag-agreement 0`` puts speed first and tunes to recall@10 ≥
``RECALL_TARGET`` instead, as does a bare index without tags. The setting, the agreement, recall@10 and recall over
the pool go into the manifest.
All vectors are correlation rows (centred, unit length), so inner product = 1 − correlation distance.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.settings import SettingsError

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

EXACT_UP_TO = 50_000
EXACT_NEIGHBOURS = 20_000  # up to this many images an exact index answers each query from every image
POOL_MIN, POOL_PER_K = 2000, 50  # otherwise the candidate pool is max(2,000, 50 K) nearest images
RECALL_K = 10
RECALL_TARGET = 0.95
AGREEMENT_TARGET = 0.9  # share of the exact pool's tags that the approximate pool's tags must keep
RECALL_QUERIES = 1000
ADD_CHUNK = 65_536


def choose_factory(n: int, d: int, memory_budget: int) -> str:
    """``Flat`` up to ``EXACT_UP_TO`` images; above, IVF with √n-scaled lists, storing full vectors (``Flat``) when
    they fit in half the budget, else product-quantised codes (``PQ``, m bytes a vector) sized to fit. PQ needs m to
    divide the dimension; where it does not (W2V+BV gives 50 + 260 = 310), a learned rotation (``OPQ``) maps the
    vectors to the next multiple of m first."""
    if n <= EXACT_UP_TO:
        return "Flat"
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    if n * (4 * d + 8) <= memory_budget // 2:
        return f"IVF{nlist},Flat"
    for m in (64, 48, 32, 24, 16, 12, 8, 4):
        if n * (m + 8) <= memory_budget // 2:
            return f"IVF{nlist},PQ{m}" if d % m == 0 else f"OPQ{m}_{m * math.ceil(d / m)},IVF{nlist},PQ{m}"
    raise AnnotError(f"{n:,} images of dimension {d} do not fit a {memory_budget / 2**30:.1f} GB memory budget")


def train_sample_size(factory: str, n: int) -> int:
    """Vectors to train an index on: 40 per IVF list (k-means wants at least 39), at least 50,000, at most n."""
    match = re.search(r"IVF(\d+)", factory)
    return min(n, max(50_000, 40 * int(match.group(1)) if match else 0))


def pool_depth(n: int, k: int, depth: int = 0, exact: bool = True) -> int:
    """How many nearest training images each query's tags are scored from: ``depth`` when given; else all ``n`` for
    an exact index up to ``EXACT_NEIGHBOURS`` images; else max(``POOL_MIN``, ``POOL_PER_K`` K), at most n."""
    if depth:
        return min(depth, n)
    if exact and n <= EXACT_NEIGHBOURS:
        return n
    return min(n, max(POOL_MIN, POOL_PER_K * k))


@dataclass
class IndexInfo:
    factory: str
    search: dict[str, int]
    recall_at_10: float | None
    recall_at_depth: float | None = None
    depth: int | None = None
    tag_agreement: float | None = None
    tried: list[tuple[int, float]] = field(default_factory=list)  # (setting, agreement or recall@10) in the order tried

    def tuning(self) -> dict[str, Any]:
        """What choosing the search setting measured, as the manifest records it."""
        return {"recall_at_10": self.recall_at_10, "recall_at_depth": self.recall_at_depth, "recall_depth": self.depth,
                "tag_agreement": self.tag_agreement, "tried": [[v, a] for v, a in self.tried]}


Tagger = Callable[[NDArray[np.float32], NDArray[np.int64]], NDArray[np.int64]]  # pools (distances, ids) -> top tags


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


def check_factory(factory: str, d: int) -> None:
    """Refuse an index_factory string FAISS cannot build for dimension ``d``, before any work is done."""
    import faiss

    if factory in ("auto", "Flat"):
        return
    try:
        faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise SettingsError("index.kind", f"must be auto or a FAISS index_factory string that builds for the "
                            f"{d}-dimensional shared space; FAISS refuses {factory!r} "
                            f"({str(exc).strip().splitlines()[-1]})") from None


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
    return exact_search(rows, queries, k)[1]


def exact_search(rows: Rows, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k largest inner products of each query over all rows and their ids, largest first (a chunked scan)."""
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
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def recall_at(index: faiss.Index, queries: NDArray[np.float32], query_ids: NDArray[np.int64], exact: NDArray[np.int64], k: int) -> float:
    """Share of each query's k exact neighbours (its own entry left out) that the index returns in its top k."""
    _, found = index.search(queries, k + 1)
    hits = 0
    for q in range(len(queries)):
        truth = exact[q][exact[q] != query_ids[q]][:k]
        hits += int(np.isin(truth, found[q][found[q] != query_ids[q]][:k]).sum())
    return hits / max(1, k * len(queries))


def search_values(index: faiss.Index, factory: str, depth: int) -> tuple[str, list[int]] | None:
    """The search setting of an approximate index and the values to try, cheapest first (None: it has none)."""
    import faiss

    if (ivf := faiss.try_extract_index_ivf(index)) is not None:
        return "nprobe", [v for v in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if v < ivf.nlist] + [ivf.nlist]
    if "HNSW" in factory:  # FAISS searches with max(efSearch, k): below the depth a setting changes nothing
        return "efSearch", sorted({max(v, depth) for v in (16, 32, 64, 128, 256, 512)} | {2 * depth, 4 * depth})
    return None


def tag_agreement(a: NDArray[np.int64], b: NDArray[np.int64]) -> float:
    """Mean share of each row's words in ``a`` (−1: none) that its row in ``b`` also has."""
    kept = [np.isin(x[x >= 0], y).sum() for x, y in zip(a, b, strict=True)]
    return float(np.sum(kept) / max(1, int((a >= 0).sum())))


def _pool_tags(tagger: Tagger, similarity: NDArray[np.float32], ids: NDArray[np.int64], query_ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Tags from each query's pool with the query's own entry (and anything missing) taken out."""
    ids = np.where(ids == query_ids[:, None], -1, ids)
    return tagger(np.where(ids >= 0, 1.0 - similarity, np.inf).astype(np.float32), ids)


def tune_search(index: faiss.Index, factory: str, rows: Rows, queries: NDArray[np.float32], query_ids: NDArray[np.int64],
                depth: int = RECALL_K, tagger: Tagger | None = None, agreement: float = AGREEMENT_TARGET) -> IndexInfo:
    """The smallest search setting whose pools of ``depth`` candidates give the exact pools' tags (``tagger``) on
    ``agreement`` of the words; without a tagger, or with ``agreement`` 0 (speed first), the smallest that reaches
    ``RECALL_TARGET`` recall@10 (else the largest setting tried). Reports the agreement (when measured), recall over
    the pool and recall@10 at the chosen setting."""
    if factory == "Flat":
        return IndexInfo(factory, {}, None)
    depth = max(RECALL_K, min(depth, index.ntotal - 1))
    similarity, exact = exact_search(rows, queries, depth + 1)
    by_tags = tagger is not None and agreement > 0
    exact_tags = _pool_tags(tagger, similarity, exact, query_ids) if by_tags else None  # type: ignore[arg-type]
    tried = search_values(index, factory, depth)
    setting: dict[str, int] = {}
    reached: float | None = None
    curve: list[tuple[int, float]] = []

    def measure() -> float:
        nonlocal reached
        if exact_tags is None:
            return recall_at(index, queries, query_ids, exact, RECALL_K)
        found_s, found = index.search(queries, depth + 1)
        reached = tag_agreement(exact_tags, _pool_tags(tagger, found_s, found, query_ids))  # type: ignore[arg-type]
        return reached

    name, values = tried or ("", [])
    for value in values:
        setting = {name: value}
        set_search(index, setting)
        measured = measure()
        curve.append((value, round(measured, 4)))
        if measured >= (agreement if by_tags else RECALL_TARGET):
            break
    if tried is None and by_tags:
        measure()
    return IndexInfo(factory, setting, round(recall_at(index, queries, query_ids, exact, RECALL_K), 4),
                     round(recall_at(index, queries, query_ids, exact, depth), 4), depth,
                     None if reached is None else round(reached, 4), curve)
