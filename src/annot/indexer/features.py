"""The per-encoder feature cache of a store: resumable, chunked extraction.

``features/<encoder key>/`` holds parts ``part-NNNNN.npy`` (float32 rows, or float16 to halve the disk and memory
of large corpora) with ``part-NNNNN.ids.npy`` (int64 image ids). Parts are read memory-mapped, so no reader needs
the whole cache in memory. A part's ids file is written last, so a part counts only once it is complete: an interrupted extraction
loses at most the part it was writing, and the next run extracts only the images no complete part holds.
A row of NaN marks an image that could not be decoded; ``failures.jsonl`` says why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from annot.errors import CorpusError
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


class FeatureCache:
    """Cached features of one encoder in one store."""

    def __init__(self, folder: Path, dim: int, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"feature dtype must be float32 or float16, got {dtype!r}")
        self.folder = Path(folder)
        self.dim = dim
        self.dtype = np.dtype(dtype)

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
        path = self.folder / "failures.jsonl"
        found: dict[int, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    found[int(record["id"])] = str(record["error"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
        return found

    def load(self, image_ids: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Features for ``image_ids`` in that order (NaN rows for images that failed to decode)."""
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
            raise CorpusError(f"{self.folder}: no cached features for image ids {missing}")
        return out

    def extract(
        self,
        items: Sequence[tuple[int, Path]],
        encoder: ImageEncoder,
        *,
        batch_size: int = 32,
        part_size: int = 1024,
        progress: ProgressFn | None = None,
    ) -> ExtractionReport:
        """Extract features of the (id, path) items not yet cached, one part of ``part_size`` images at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = set(self.cached_ids().tolist())
        todo = [(i, p) for i, p in items if i not in done]
        cached = len(items) - len(todo)
        if progress and cached:
            progress(cached)
        failed: dict[int, str] = {}
        next_part = len(self._parts())
        for start in range(0, len(todo), part_size):
            chunk = todo[start : start + part_size]
            x = np.empty((len(chunk), self.dim), np.float32)
            row = 0
            for batch in iter_batches([p for _, p in chunk], encoder, batch_size):
                features = encoder.encode(batch.pixels)
                for j, ok in enumerate(batch.ok):
                    if not ok:
                        features[j] = np.nan
                        image_id, path = chunk[row + j]
                        failed[image_id] = f"{path}: {batch.errors[j]}"
                x[row : row + len(features)] = features
                row += len(features)
                if progress:
                    progress(len(features))
            self._write_part(next_part, x, np.array([i for i, _ in chunk], np.int64), failed)
            next_part += 1
        return ExtractionReport(len(todo), cached, failed)

    def _write_part(self, number: int, x: NDArray[np.float32], ids: NDArray[np.int64], failed: dict[int, str]) -> None:
        stem = self.folder / f"part-{number:05d}"
        new_failures = [i for i in ids.tolist() if i in failed]
        if new_failures:
            with open(self.folder / "failures.jsonl", "a", encoding="utf-8") as fh:
                for i in new_failures:
                    fh.write(json.dumps({"id": i, "error": failed[i]}) + "\n")
        atomic_write(stem.with_suffix(".npy"), lambda fh: np.save(fh, x.astype(self.dtype, copy=False)))
        atomic_write(stem.with_name(stem.name + ".ids.npy"), lambda fh: np.save(fh, ids))  # commits the part
