"""The files of a store's metadata database: a base and a few segments, each written once and named by the manifest.

```
STORE/db/base-TAG.duckdb     the base: every table as of the last fold
STORE/db/seg-TAG.duckdb      a segment: the groups of rows one change wrote (see annot.schema.layered)
STORE/db/WORKING             the name of a writer's working segment, until the manifest names it
STORE/db/shown-TAG.npy       what every photo of the base shows, and which library photos are annotated, as arrays
STORE/db/files-TAG.npy       (written by the fold that made the base: see annot.schema.shown)
```

A writer writes into its working segment only; publishing closes it and names it in the manifest, so a publish
costs what it changed, not what the store holds. When there are more than ``MAX_SEGMENTS`` segments the newest are
merged into one, as many as are together at least as large as the next older one (:func:`to_merge`: a small change
merges small segments, not the large one an earlier merge made); when the segments together pass a quarter of the
base (or ``FOLD_BYTES``, whichever is larger) they are folded into a new base, and the base's photo view is written
beside it, so readers read few layers and folding costs stay a fixed share of the writes. A writer that is killed leaves its working segment; the next writer continues from
it (what the killed one wrote, and the image ids its cached features belong to, are kept). Stores written before
layers keep their ``annot.duckdb`` as the base until the first fold.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from annot.errors import StoreError
from annot.schema import Database
from annot.schema.layered import Layers, empty_segment_size, fold_into_base, merge_segments
from annot.schema.shown import write_view
from annot.store.files import StoredFile, atomic_write, sha256_file

log = logging.getLogger(__name__)

LEGACY = "annot.duckdb"  # the database of a store written before layers (its base until the first fold)
LEGACY_WORKING = "annot.next.duckdb"  # the working copy a killed writer of such a store left: a whole database
FOLDER = "db"
MARKER = "WORKING"  # names the working segment until the manifest names it (a killed writer's is continued)
MAX_SEGMENTS = 4  # each segment is a part of every view a reader binds
FOLD_BYTES = 16 << 20  # segments under this many bytes together are not folded into a small base


@dataclass(frozen=True)
class DatabaseRecord:
    """The database files a manifest names: the base (None: none yet) and the segments, oldest first."""

    base: StoredFile | None
    segments: tuple[StoredFile, ...] = ()
    view: tuple[StoredFile, StoredFile] | None = None  # the base's photo view (tags, files), where its fold wrote one

    def files(self) -> list[StoredFile]:
        return ([self.base] if self.base is not None else []) + list(self.segments)

    def to_dict(self) -> dict[str, object]:
        return {"base": None if self.base is None else self.base.to_dict(),
                "segments": [s.to_dict() for s in self.segments],
                **({"view": [f.to_dict() for f in self.view]} if self.view is not None else {})}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DatabaseRecord:
        base = data.get("base")
        segments = data.get("segments") or []
        view = data.get("view")
        assert isinstance(segments, list)
        return cls(None if not isinstance(base, dict) else StoredFile.from_dict(base),
                   tuple(StoredFile.from_dict(s) for s in segments),
                   (StoredFile.from_dict(view[0]), StoredFile.from_dict(view[1]))
                   if isinstance(view, list) and len(view) == 2 else None)


LEGACY_RECORD = DatabaseRecord(StoredFile(LEGACY))


def wants_fold(segments: int, base: int) -> bool:
    """Whether segments of ``segments`` bytes together are folded into a base of ``base`` bytes."""
    return segments > max(FOLD_BYTES, base // 4)


def to_merge(sizes: list[int]) -> int:
    """How many of the newest segments (``sizes`` oldest first) to merge into one: the newest two, and each older
    one no larger than those together; so a byte is merged again only when the segments after it have caught up
    with it (some log₂ times before a fold), and merging costs in proportion to what changed since."""
    k = 2
    while k < len(sizes) and sizes[-k - 1] <= sum(sizes[-k:]):
        k += 1
    return min(k, len(sizes))


def _tag() -> str:
    return f"{time.time_ns():x}"


def _record(root: Path, relative: str) -> StoredFile:
    path = root / relative
    return StoredFile(relative, path.stat().st_size, sha256_file(path))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reader_layers(root: Path, record: DatabaseRecord) -> Layers:
    """The layers a reader opens, as the manifest names them."""
    base = None if record.base is None else root / record.base.path
    if base is not None and not base.is_file():
        raise StoreError(f"{base}: missing (the store's database); the store cannot be used without it: restore it, "
                         "or index the corpus into a new store")
    return Layers(base, tuple(root / s.path for s in record.segments))


def _empty_database(path: Path) -> None:
    Database(path).close()  # the schema, at the current version


class WriterFiles:
    """A writer's view of the database files: the layers it reads and its working segment; :meth:`publish` turns
    the working segment into a segment (merging or folding as the policy says) and returns the new record."""

    def __init__(self, root: Path, record: DatabaseRecord) -> None:
        self.root = root
        self.folder = root / FOLDER
        self.record = record
        self.working: Path | None = None
        self._legacy_log_folded = False  # an older annot's annot.duckdb.wal is folded in once per writer

    def open(self) -> Layers:
        """The layers to write on: the manifest's, with the working segment a killed writer left or a new one."""
        self.folder.mkdir(exist_ok=True)
        legacy_working = self.root / LEGACY_WORKING
        if legacy_working.is_file():  # an older annot's killed writer: its copy holds everything it wrote
            log.info("%s: continuing from the database copy a previous writer left", self.root)
            adopted = f"{FOLDER}/base-{_tag()}.duckdb"
            Database(legacy_working).close()  # migrated, and its log folded in
            os.replace(legacy_working, self.root / adopted)
            self.record = DatabaseRecord(_record(self.root, adopted), ())
        base = self.record.base
        if not self._legacy_log_folded and base is not None and base.path == LEGACY and (self.root / f"{LEGACY}.wal").is_file():
            Database(self.root / LEGACY).close()  # an older annot's log, folded in
        self._legacy_log_folded = True
        marker = self.folder / MARKER
        named = {f.path for f in self.record.files()}
        left = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
        if left and (self.folder / left).is_file() and f"{FOLDER}/{left}" not in named:
            log.info("%s: continuing from the database segment a previous writer left", self.root)
            self.working = self.folder / left
        else:
            self.working = self.folder / f"seg-{_tag()}.duckdb"
            atomic_write(marker, lambda fh: fh.write(self.working.name.encode()))  # type: ignore[union-attr]
        return Layers(None if self.record.base is None else self.root / self.record.base.path,
                      tuple(self.root / s.path for s in self.record.segments), self.working)

    def _place(self, scratch: Path, kind: str, suffix: str = ".duckdb") -> StoredFile:
        relative = f"{FOLDER}/{kind}-{_tag()}{suffix}"
        with open(scratch, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(scratch, self.root / relative)
        _fsync_dir(self.folder)
        return _record(self.root, relative)

    def publish(self) -> DatabaseRecord:
        """The working segment (closed by the caller) as the newest segment, merged or folded as the policy says.
        It keeps its name and stays the working one (to be continued after a kill) until :meth:`settled`."""
        assert self.working is not None
        wal = self.working.with_name(self.working.name + ".wal")
        if wal.is_file():
            raise StoreError(f"{wal}: the database did not checkpoint; nothing was published")
        with open(self.working, "rb+") as fh:
            os.fsync(fh.fileno())
        segment = _record(self.root, f"{FOLDER}/{self.working.name}")
        record = replace(self.record, segments=(*self.record.segments, segment))
        segments = [self.root / s.path for s in record.segments]
        size = sum(s.size or 0 for s in record.segments)
        base_size = 0 if record.base is None else (record.base.size or (self.root / record.base.path).stat().st_size)
        if record.base is None or wants_fold(size, base_size):
            scratch = self.folder / f".base-{_tag()}.tmp"
            fold_into_base(None if record.base is None else self.root / record.base.path, segments, scratch,
                           _empty_database)
            view = self._view(scratch)
            record = DatabaseRecord(self._place(scratch, "base"), (), view)
        elif len(segments) > MAX_SEGMENTS:
            empty = empty_segment_size()  # what a segment holds beyond its empty tables
            k = to_merge([max(0, (s.size or 0) - empty) for s in record.segments])
            scratch = self.folder / f".seg-{_tag()}.tmp"
            merge_segments(segments[-k:], scratch)
            record = replace(record, segments=(*record.segments[:-k], self._place(scratch, "seg")))
        self.record = record
        return record

    def _view(self, base: Path) -> tuple[StoredFile, StoredFile]:
        """The photo view of a fold's new base (``base``, not yet placed), placed."""
        tags, files = self.folder / f".shown-{_tag()}.tmp", self.folder / f".files-{_tag()}.tmp"
        try:
            write_view(base, tags, files)
            return self._place(tags, "shown", ".npy"), self._place(files, "files", ".npy")
        finally:
            tags.unlink(missing_ok=True)
            files.unlink(missing_ok=True)

    def settled(self) -> None:
        """The manifest names what :meth:`publish` made: the working segment is no longer one."""
        (self.folder / MARKER).unlink(missing_ok=True)
        self.working = None

    def discard(self) -> None:
        """Drop a working segment that holds no change."""
        if self.working is not None:
            self.working.unlink(missing_ok=True)
            self.working.with_name(self.working.name + ".wal").unlink(missing_ok=True)
            self.settled()


def remove_unnamed(root: Path, named: set[str]) -> None:
    """Delete database files no manifest names any longer (and scratch a killed fold left)."""
    folder = root / FOLDER
    marker = folder / MARKER
    working = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    if folder.is_dir():
        for path in folder.iterdir():
            relative = f"{FOLDER}/{path.name}"
            if working and path.name in (working, f"{working}.wal"):
                continue
            if relative not in named and (path.suffix in (".duckdb", ".npy") or path.name.endswith(".tmp")
                                          or path.name.endswith(".wal") or path.name.endswith(".copying")):
                path.unlink(missing_ok=True)
    if LEGACY not in named and (root / FOLDER).is_dir():
        (root / LEGACY).unlink(missing_ok=True)
        (root / f"{LEGACY}.wal").unlink(missing_ok=True)


__all__ = ["FOLDER", "LEGACY", "LEGACY_RECORD", "DatabaseRecord", "WriterFiles", "reader_layers", "remove_unnamed"]
