"""Out-of-core passes over a store's training images: features chunk by chunk from the memory-mapped cache, tags
from the database, never the whole corpus in memory.

Pass 1 accumulates the CCA sufficient statistics (``CCAStatistics``: n, Σx, Σy, XᵀX, XᵀY, YᵀY in float64); pass 2
projects each chunk into the shared space and writes its correlation rows to a memory-mapped file, from which the
FAISS index is trained (on a sample) and filled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.features.text import normalize_features, text_view, usable_rows
from annot.indexer.features import FeatureCache
from annot.projection.cca import CCAStatistics
from annot.projection.registry import Projection, space_rows
from annot.schema.queries import label_matrix
from annot.store import Store

CHUNK_ROWS = 16_384  # rows per chunk: about 0.5 GB of working memory at 1,280 features


def training_chunks(
    store: Store, cache: FeatureCache, image_ids: NDArray[np.int64], tag_ids: list[int], chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]:
    """(ids, features, tags) of ``image_ids`` in cache order, ``chunk_rows`` at a time."""
    wanted = np.sort(np.asarray(image_ids, np.int64))
    ids_buffer: list[NDArray[np.int64]] = []
    x_buffer: list[NDArray[np.float32]] = []
    buffered = 0

    def flush() -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]:
        ids = np.concatenate(ids_buffer)
        X = np.concatenate(x_buffer)
        ids_buffer.clear()
        x_buffer.clear()
        return ids, X, label_matrix(store.db, ids.tolist(), tag_ids)

    for ids, x in cache.iter_parts():
        rows = np.flatnonzero(np.isin(ids, wanted))
        for lo in range(0, len(rows), chunk_rows):
            sel = rows[lo : lo + chunk_rows]
            ids_buffer.append(ids[sel])
            x_buffer.append(np.asarray(x[sel], np.float32))
            buffered += len(sel)
            if buffered >= chunk_rows:
                yield flush()
                buffered = 0
    if ids_buffer:
        yield flush()


def chunk_statistics(
    X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_],
    text: str, normalization: str,
) -> tuple[CCAStatistics | None, NDArray[np.bool_]]:
    """One chunk's sufficient statistics over its usable images (None when it has none), and which rows those are."""
    keep = usable_rows(labels, has_vector, text)
    if not keep.any():
        return None, keep
    return CCAStatistics.of(normalize_features(X[keep], normalization), text_view(labels[keep], E, has_vector, text)), keep


def streamed_statistics(
    chunks: Callable[[], Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]],
    E: NDArray[np.float32], has_vector: NDArray[np.bool_], text: str, normalization: str,
) -> tuple[CCAStatistics | None, int, int]:
    """Pass 1: the sufficient statistics of the usable images; and how many were used and left out (untagged)."""
    stats: CCAStatistics | None = None
    used = untagged = 0
    for _, X, labels in chunks():
        chunk, keep = chunk_statistics(X, labels, E, has_vector, text, normalization)
        untagged += int((~keep).sum())
        used += int(keep.sum())
        if chunk is not None:
            stats = chunk if stats is None else stats + chunk
    return stats, used, untagged


def chunk_rows(
    projection: Projection, X: NDArray[np.float32], labels: NDArray[np.bool_], E: NDArray[np.float32],
    has_vector: NDArray[np.bool_], text: str, normalization: str, space: str,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """One chunk's usable images as rows of the shared space (``space``: see :func:`space_rows`), and which rows of
    the chunk those are."""
    keep = usable_rows(labels, has_vector, text)
    U = projection.transform(normalize_features(X[keep], normalization))
    return space_rows(U, lambda: projection.transform_y(text_view(labels[keep], E, has_vector, text)), space), keep


def project_to_file(
    chunks: Callable[[], Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]],
    projection: Projection, E: NDArray[np.float32], has_vector: NDArray[np.bool_], text: str, normalization: str,
    space: str, n: int, k: int, path: Path, advance: Callable[[int], None] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Pass 2: the usable images' rows in the shared space (``space``: see :func:`space_rows`), in an (n × k) .npy
    file read back memory-mapped, and their ids."""
    ids_out = np.empty(n, np.int64)
    at = 0
    with open(path, "wb") as fh:  # plain appends: written pages do not stay in this process's memory
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n, k)})
        for ids, X, labels in chunks():
            rows, keep = chunk_rows(projection, X, labels, E, has_vector, text, normalization, space)
            fh.write(np.ascontiguousarray(rows, "<f4").tobytes())
            ids_out[at : at + len(rows)] = ids[keep]
            at += len(rows)
            if advance:
                advance(len(ids))
    if at != n:
        raise ValueError(f"{path}: projected {at} rows, expected {n}")
    return np.load(path, mmap_mode="r"), ids_out
