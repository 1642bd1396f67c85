"""A store: one self-describing directory holding the metadata database, cached features, models and indexes.

```
STORE/
  manifest.json      format version, settings, and every model file with its size and checksum (written last)
  manifest.previous.json  the manifest before the last switch: the files it names are kept one generation longer
  annot.duckdb       metadata: images, tags, image_tags, runs, predictions, word_metrics (the published copy)
  features/          cached image features per encoder
  models/            fitted projections, statistics, baselines, CNN-R
  indexes/           FAISS indexes and their id maps
  .lock              the writer lock (``annot.store.lock``)
```

Readers and writers never share a file. DuckDB lets one process write a database file only while no other process
has it open, so a writer works on a private copy of the database (``annot.next.duckdb``) and publishes it by an
atomic rename over ``annot.duckdb`` before it switches the manifest, and again when it ends. Readers open the
published database read-only and the files the manifest names, which writers never change in place: a reader sees
the store as it was before a writer's change or after it, never half of it, and never waits (a switch keeps the
files of the manifest it replaced, so a reader that read that one a moment earlier still finds them). One writer at a time
holds the store's lock. A writer that is killed leaves its private copy behind; the next writer continues from it,
so what the killed one imported (and the image ids its cached features belong to) is kept.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from annot.errors import StoreError
from annot.schema import Database
from annot.store.files import (
    StoredFile,
    atomic_write,
    read_array,
    read_arrays,
    read_bytes,
    read_index,
    sha256_file,
    write_bytes,
)
from annot.store.files import save_array as _save_array
from annot.store.files import save_arrays as _save_arrays
from annot.store.files import save_index as _save_index
from annot.store.lock import WriterLock
from annot.store.manifest import Manifest, dumps

if TYPE_CHECKING:
    import faiss
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PREVIOUS_MANIFEST = "manifest.previous.json"  # the manifest before the last switch (its files are kept)
DATABASE = "annot.duckdb"
WORKING_DATABASE = "annot.next.duckdb"
_OWN = {MANIFEST, DATABASE, WORKING_DATABASE, f"{DATABASE}.wal", f"{WORKING_DATABASE}.wal", ".lock", "features",
        "models", "indexes"}  # what a store holds, also one whose first build was killed (no manifest yet)


def _own(path: Path) -> bool:
    return path.name in _OWN or (path.name.startswith(".") and path.name.endswith(".tmp"))  # an atomic write's


class StoreDir:
    """An annot store directory. Open it with :meth:`create` (to build into) or :meth:`open`; a writable one holds
    the store's writer lock until :meth:`close`. ``db`` is opened on first use."""

    def __init__(self, root: Path, *, writable: bool = False) -> None:
        self.root = Path(root)
        self.writable = writable
        self._lock = WriterLock(self.root) if writable else None
        self._db: Database | None = None
        self._manifest: Manifest | None = None
        self._dirty = False  # the working database has changes not yet published

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, wait: bool = False) -> StoreDir:
        """Open a store for building, creating the directory if needed (an existing store is reused)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a directory")
        if root.is_dir() and not all(_own(p) for p in root.iterdir()) and not (root / MANIFEST).exists():
            raise StoreError(f"{root}: directory is not empty and is not an annot store")
        if (root / MANIFEST).is_file() and not (root / DATABASE).is_file() and not (root / WORKING_DATABASE).is_file():
            raise StoreError(f"{root / DATABASE}: missing (the store's database); restore it or index into a new store")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, writable=True)
        store._acquire(wait)
        if store.has_manifest():
            store.manifest()  # a readable manifest, or a clear error before anything is written
        return store

    @classmethod
    def open(cls, root: Path, *, write: bool = False, wait: bool = False) -> StoreDir:
        """Open a complete store (one with a manifest and every file it names); a clear error naming what is
        missing or damaged. With ``write``, take the writer lock (``wait``: until the current writer ends)."""
        root = Path(root)
        if not root.exists():
            raise StoreError(f"{root}: no such store (run `annot index` first)")
        if not root.is_dir():
            raise StoreError(f"{root}: not a store (a file, not a directory)")
        if not (root / MANIFEST).is_file():
            raise StoreError(f"{root}: not a complete store (no {MANIFEST}; run `annot index` to finish it)")
        store = cls(root, writable=write)
        try:
            if write:
                store._acquire(wait)
            store.check_files()
        except BaseException:
            store.close()
            raise
        return store

    def _acquire(self, wait: bool) -> None:
        assert self._lock is not None
        self._lock.acquire(wait)

    def check_files(self) -> None:
        """Every file the manifest names is present with its recorded size, and the database exists."""
        manifest = self.manifest()
        database = self.root / (WORKING_DATABASE if self.writable and (self.root / WORKING_DATABASE).is_file()
                                else DATABASE)
        if not database.is_file():
            raise StoreError(f"{self.root / DATABASE}: missing (the store's database); the store cannot be used "
                             "without it: restore it, or index the corpus into a new store")
        for what, file in manifest.files():
            path = self.root / file.path
            if not path.is_file():
                raise StoreError(f"{path}: missing ({what} named by the manifest); the store is damaged: index it again")
            if file.size is not None and path.stat().st_size != file.size:
                raise StoreError(f"{path}: damaged {what} ({path.stat().st_size:,} bytes, the manifest recorded "
                                 f"{file.size:,}); the store is damaged: index it again")

    # -- the database ------------------------------------------------------------------------------------------
    @property
    def db(self) -> Database:
        if self._db is None:
            if self.writable:
                self._db = Database(self._working_database(), read_only=False)
                self._dirty = True
            else:
                path = self.root / DATABASE
                if not path.is_file():
                    raise StoreError(f"{path}: missing (the store's database)")
                self._db = Database(path, read_only=True)
        return self._db

    def _working_database(self) -> Path:
        """The writer's private copy of the database: continued if a killed writer left one, else copied from the
        published one (or new, for a new store)."""
        work, published = self.root / WORKING_DATABASE, self.root / DATABASE
        if work.is_file():
            log.info("%s: continuing from the database copy a previous writer left", self.root)
        elif published.is_file():
            if (self.root / f"{DATABASE}.wal").is_file():  # written by an annot before copies: fold its log in
                Database(published, read_only=False).close()
            shutil.copyfile(published, work)
        return work

    def publish(self) -> None:
        """Make the writer's database what readers see: closed (so it is checkpointed), copied, renamed into place."""
        if not self.writable or self._db is None or not self._dirty:
            return
        self._db.checkpoint()
        self._db.close()
        self._db = None
        work = self.root / WORKING_DATABASE
        wal = self.root / f"{WORKING_DATABASE}.wal"
        if wal.is_file():  # DuckDB checkpoints on close; a log left over means it could not
            raise StoreError(f"{wal}: the database did not checkpoint; nothing was published")
        atomic_write(self.root / DATABASE, lambda fh: _copy_into(work, fh))
        self._dirty = False

    def close(self) -> None:
        """Publish a writer's changes, drop its working copy, release the lock; close a reader's database."""
        try:
            if self.writable and self._lock is not None and self._lock.held:
                self.publish()
                if self._db is None:
                    (self.root / WORKING_DATABASE).unlink(missing_ok=True)
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- layout ----------------------------------------------------------------------------------------------
    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    def path(self, relative: str) -> Path:
        return self.root / relative

    # -- the manifest ------------------------------------------------------------------------------------------
    def has_manifest(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def manifest(self) -> Manifest:
        """The store's manifest (read once; a writer's own writes replace it)."""
        if self._manifest is None:
            path = self.root / MANIFEST
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise StoreError(f"{path}: missing") from exc
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StoreError(f"{path}: unreadable manifest ({exc})") from exc
            self._manifest = Manifest.from_json(data, path)
        return self._manifest

    def manifest_sha(self) -> str:
        return sha256_file(self.root / MANIFEST)

    def write_manifest(self, manifest: Manifest) -> None:
        """Switch the store to ``manifest``: the database is published first, so that readers who see the new
        manifest also see the images and tags it refers to."""
        self._require_writable()
        self.publish()
        current = self.root / MANIFEST
        if current.is_file():  # kept one generation: a reader that just read it still finds its files
            atomic_write(self.root / PREVIOUS_MANIFEST, lambda fh: _copy_into(current, fh))
        atomic_write(current, lambda fh: fh.write(dumps(manifest)))
        self._manifest = manifest

    def remove_unreferenced(self) -> None:
        """Delete model and index files neither the manifest nor the one before it names (after it was replaced:
        a reader that loaded the previous manifest a moment before the switch can still open what it names)."""
        referenced = {f.path for _, f in self.manifest().files()}
        previous = self.root / PREVIOUS_MANIFEST
        if previous.is_file():
            try:
                older = Manifest.from_json(json.loads(previous.read_text(encoding="utf-8")), previous)
                referenced |= {f.path for _, f in older.files()}
            except (OSError, ValueError, StoreError):
                log.warning("%s: unreadable; the files only it named are removed", previous)
        for folder in (self.models_dir, self.indexes_dir):
            if not folder.is_dir():
                continue
            for file in folder.rglob("*"):
                relative = str(file.relative_to(self.root))
                if file.is_file() and relative not in referenced and not relative.startswith("models/cnnr/checkpoint"):
                    file.unlink(missing_ok=True)

    # -- model files -----------------------------------------------------------------------------------------
    def save_arrays(self, relative: str, arrays: Mapping[str, NDArray[Any]]) -> StoredFile:
        self._require_writable()
        return _save_arrays(self.root, relative, arrays)

    def save_array(self, relative: str, array: NDArray[Any]) -> StoredFile:
        self._require_writable()
        return _save_array(self.root, relative, array)

    def save_index(self, relative: str, index: faiss.Index) -> StoredFile:
        self._require_writable()
        return _save_index(self.root, relative, index)

    def save_bytes(self, relative: str, payload: bytes) -> StoredFile:
        self._require_writable()
        return write_bytes(self.root, relative, payload)

    def read_arrays(self, file: StoredFile, what: str = "model file") -> dict[str, NDArray[Any]]:
        return read_arrays(self.root, file, what)

    def read_array(self, file: StoredFile, what: str = "array file") -> np.ndarray[Any, Any]:
        return read_array(self.root, file, what)

    def read_index(self, file: StoredFile, what: str = "index") -> faiss.Index:
        """A FAISS index the manifest names: memory-mapped for a reader (shared between processes, loaded at once),
        read into memory for a writer (which changes it)."""
        return read_index(self.root, file, what, mapped=not self.writable)

    def read_bytes(self, file: StoredFile, what: str = "file") -> bytes:
        return read_bytes(self.root, file, what)

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.root}: opened for reading only")


def _copy_into(source: Path, fh: Any) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1 << 20)


def remove_stale_scratch(folder: Path, pattern: str) -> None:
    """Delete scratch files a killed writer left (only a writer, holding the lock, calls this)."""
    for stale in folder.glob(pattern):
        stale.unlink(missing_ok=True)


__all__ = ["DATABASE", "MANIFEST", "StoreDir", "remove_stale_scratch"]
