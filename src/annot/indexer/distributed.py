"""``annot index --ray ADDRESS``: feature extraction and the statistics pass as Ray tasks over shards of the corpus.

Ray is the distributed engine (no home-made cluster code): the driver connects to a running cluster, sends the
encoder once (``ray.put``), submits one extraction task per shard of image paths, and writes each shard's features
into the store as a cache part as soon as it comes back, so an interrupted run keeps every finished shard. The
statistics pass sends each chunk of features with its tags to a task that returns its ``CCAStatistics``; the driver
sums them (the statistics are mergeable, so the order does not matter). Image paths must be readable by the workers
(a shared file system); the store lives with the driver.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.features.cache import encode_paths
from annot.features.encoders import ImageEncoder
from annot.fitting.fit import chunk_statistics
from annot.projection.cca import CCAStatistics

SHARD = 1024  # images per extraction task (one cache part)


def connect(address: str) -> Any:
    """Join a running Ray cluster (``ray start --head``); a clear error when there is none."""
    import ray

    if ray.is_initialized():
        return ray
    if address != "auto":  # Ray retries a missing cluster for minutes: check that something listens first
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
        except (OSError, ValueError) as exc:
            raise AnnotError(f"--ray {address}: cannot join a Ray cluster there ({exc})") from exc
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise AnnotError(f"--ray {address}: cannot join a Ray cluster there ({str(exc).strip().splitlines()[0]})") from exc
    return ray


def _encode_shard(encoder: ImageEncoder, paths: list[str], batch_size: int, upright: bool
                  ) -> tuple[NDArray[np.float32], dict[int, str]]:
    """One shard's features on a worker (decoding in the task itself: the worker is the parallelism)."""
    return encode_paths(encoder, [Path(p) for p in paths], batch_size, workers=0, upright=upright)


def extract_with_ray(
    ray: Any, cache: Any, items: Sequence[tuple[int, Path]], encoder: ImageEncoder, batch_size: int,
    progress: Callable[[int], None] | None = None, force: set[int] | None = None,
) -> tuple[int, int, dict[int, str]]:
    """Extract the features the cache lacks (and those of ``force``) as Ray tasks; returns (extracted, cached,
    failures by image id)."""
    done = set(cache.cached_ids().tolist()) - (force or set())
    todo = [(i, p) for i, p in items if i not in done]
    if progress and len(items) > len(todo):
        progress(len(items) - len(todo))
    task = ray.remote(_encode_shard)
    encoder_ref = ray.put(encoder)
    shards = [todo[lo : lo + SHARD] for lo in range(0, len(todo), SHARD)]
    pending = {task.remote(encoder_ref, [str(p) for _, p in shard], batch_size, cache.upright): shard
               for shard in shards}
    failed: dict[int, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        x, errors = ray.get(ready[0])
        shard_failed = {shard[j][0]: f"{shard[j][1]}: {why}" for j, why in errors.items()}
        failed.update(shard_failed)
        cache.write_part(x, np.array([i for i, _ in shard], np.int64), shard_failed)
        if progress:
            progress(len(shard))
    return len(todo), len(items) - len(todo), failed


def statistics_with_ray(
    ray: Any, chunks: Callable[[], Iterator[tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]]],
    E: NDArray[np.float32], has_vector: NDArray[np.bool_], text: str, normalization: str,
) -> tuple[CCAStatistics | None, int, int]:
    """The statistics pass as one Ray task per chunk, merged on the driver: same result as ``streamed_statistics``."""
    task = ray.remote(chunk_statistics)
    E_ref, has_ref = ray.put(E), ray.put(has_vector)
    refs = [task.remote(X, labels, E_ref, has_ref, text, normalization) for _, X, labels in chunks()]
    total: CCAStatistics | None = None
    used = untagged = 0
    for stats, keep in ray.get(refs):  # in chunk order, so the sums equal the local pass's
        used += int(keep.sum())
        untagged += int((~keep).sum())
        if stats is not None:
            total = stats if total is None else total + stats
    return total, used, untagged
