"""The per-encoder feature cache of a store: resumable, chunked extraction.

``features/<encoder key>/`` holds parts ``part-TIME-PID.npy`` (float32 rows, or float16 to halve the disk and memory
of large corpora) with ``part-TIME-PID.ids.npy`` (int64 image ids). Parts are read memory-mapped, so no reader needs
the whole cache in memory. A part's ids file is written last, so a part counts only once it is complete: an interrupted extraction
loses at most the part it was writing, and the next run extracts only the images no complete part holds.
A row of NaN marks an image that could not be decoded; ``failures.jsonl`` says why.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import StoreError
from annot.features.encoders import ImageEncoder
from annot.features.images import iter_batches
from annot.store import atomic_write

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ExtractionReport:
    extracted: int
    cached: int
    failed: dict[int, str]


def encode_paths(
    encoder: ImageEncoder, paths: Sequence[Path], batch_size: int = 32, workers: int | None = None,
    progress: ProgressFn | None = None, upright: bool = True,
) -> tuple[NDArray[np.float32], dict[int, str]]:
    """Features of image files in order (NaN rows for files that do not decode) and, by position, why not."""
    x = np.empty((len(paths), encoder.dim), np.float32)
    errors: dict[int, str] = {}
    row = 0
    for batch in iter_batches(list(paths), encoder, batch_size, workers, upright):
        features = encoder.encode_sized(batch.sized)
        for j, ok in enumerate(batch.ok):
            if not ok:
                features[j] = np.nan
                errors[row + j] = batch.errors[j]
        x[row : row + len(features)] = features
        row += len(features)
        if progress:
            progress(len(features))
    return x, errors


class FeatureCache:
    """Cached features of one encoder in one store; ``upright`` says how its images are decoded (the cache's key
    records it: ``annot.features.images.feature_key``)."""

    def __init__(self, folder: Path, dim: int, dtype: str = "float32", upright: bool = True) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"feature dtype must be float32 or float16, got {dtype!r}")
        self.folder = Path(folder)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.upright = upright

    def _parts(self) -> list[tuple[Path, Path]]:
        if not self.folder.is_dir():
            return []
        pairs = []
        for ids_file in sorted(self.folder.glob("part-*.ids.npy")):
            x_file = ids_file.with_name(ids_file.name.replace(".ids.npy", ".npy"))
            if x_file.is_file():
                pairs.append((x_file, ids_file))
        return pairs

    def iter_parts(self) -> Iterator[tuple[NDArray[np.int64], NDArray[np.floating]]]:
        """Each complete part's ids and its rows, memory-mapped (float32 or float16 as stored)."""
        for x_file, ids_file in self._parts():
            yield np.load(ids_file), np.load(x_file, mmap_mode="r")

    def cached_ids(self) -> NDArray[np.int64]:
        ids = [np.load(ids_file) for _, ids_file in self._parts()]
        return np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def failures(self) -> dict[int, str]:
        """Why images could not be decoded, by id; an image extracted again later (``force``) is no longer one."""
        path = self.folder / "failures.jsonl"
        found: dict[int, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    if record.get("error") is None:
                        found.pop(int(record["id"]), None)
                    else:
                        found[int(record["id"])] = str(record["error"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a line cut short by a crash
        return found

    def load(self, image_ids: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Features for ``image_ids`` in that order (NaN rows for images that failed to decode); where an image was
        extracted again (its file changed), the latest part's row."""
        wanted = np.asarray(image_ids, np.int64)
        out = np.full((len(wanted), self.dim), np.nan, np.float32)
        found = np.zeros(len(wanted), bool)
        if len(wanted) == 0:
            return out
        order = np.argsort(wanted, kind="stable")
        sorted_ids = wanted[order]
        for ids, x in self.iter_parts():
            pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
            hit = sorted_ids[pos] == ids
            if not hit.any():
                continue
            targets = order[pos[hit]]
            out[targets] = x[np.flatnonzero(hit)]
            found[targets] = True
        if not found.all():
            missing = wanted[~found][:5].tolist()
            raise StoreError(f"{self.folder}: no cached features for image ids {missing}")
        return out

    def extract(
        self,
        items: Sequence[tuple[int, Path]],
        encoder: ImageEncoder,
        *,
        batch_size: int = 32,
        part_size: int = 1024,
        progress: ProgressFn | None = None,
        force: set[int] | None = None,
    ) -> ExtractionReport:
        """Extract features of the (id, path) items not yet cached (and of those in ``force``, whose files changed),
        one part of ``part_size`` images at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = set(self.cached_ids().tolist()) - (force or set())
        todo = [(i, p) for i, p in items if i not in done]
        cached = len(items) - len(todo)
        if progress and cached:
            progress(cached)
        failed: dict[int, str] = {}
        for start in range(0, len(todo), part_size):
            chunk = todo[start : start + part_size]
            x, errors = encode_paths(encoder, [p for _, p in chunk], batch_size, progress=progress, upright=self.upright)
            chunk_failed = {chunk[j][0]: f"{chunk[j][1]}: {why}" for j, why in errors.items()}
            failed.update(chunk_failed)
            self.write_part(x, np.array([i for i, _ in chunk], np.int64), chunk_failed)
        return ExtractionReport(len(todo), cached, failed)

    def write_part(self, x: NDArray[np.float32], ids: NDArray[np.int64], failed: dict[int, str]) -> None:
        """Add one part (rows ``x`` of images ``ids``; ``failed``: why some could not be decoded). The ids file is
        written last: it commits the part."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # named by the time and the process: two writers (a run and the server's kept uploads) never pick the same
        # name, and names sort in the order parts were written (a later part's row of an image wins)
        stem = self.folder / f"part-{time.time_ns():016x}-{os.getpid()}"
        known = self.failures()
        self._log_failures([{"id": i, "error": failed[i]} for i in ids.tolist() if i in failed])  # before the part
        atomic_write(stem.with_suffix(".npy"), lambda fh: np.save(fh, x.astype(self.dtype, copy=False)))
        atomic_write(stem.with_name(stem.name + ".ids.npy"), lambda fh: np.save(fh, ids))  # commits the part
        # images that failed before and decode now (extracted again): cleared only once their rows are committed
        self._log_failures([{"id": i, "error": None} for i in ids.tolist() if i in known and i not in failed])

    def _log_failures(self, lines: list[dict[str, object]]) -> None:
        if lines:
            with open(self.folder / "failures.jsonl", "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(line) + "\n" for line in lines)
