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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from annot.errors import StoreError
from annot.schema import Database
from annot.store.dbfiles import (
    FOLDER,
    LEGACY,
    LEGACY_RECORD,
    DatabaseRecord,
    WriterFiles,
    reader_layers,
    remove_unnamed,
)
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
DATABASE = LEGACY  # the database of a store written before layers (see annot.store.dbfiles)
WORKING_DATABASE = "annot.next.duckdb"
CHANGE_WAIT = 60.0  # seconds a change waits for another writer's (a writer holding the store for a whole run: longer)
_OWN = {MANIFEST, DATABASE, WORKING_DATABASE, f"{DATABASE}.wal", f"{WORKING_DATABASE}.wal", ".lock", "features",
        "models", "indexes", FOLDER}  # what a store holds, also one whose first build was killed (no manifest yet)


def _own(path: Path) -> bool:
    return path.name in _OWN or (path.name.startswith(".") and path.name.endswith(".tmp"))  # an atomic write's


class StoreDir:
    """An annot store directory. Open it with :meth:`create` (to build into) or :meth:`open`; a writable one holds
    the store's writer lock until :meth:`close`. ``db`` is opened on first use."""

    def __init__(self, root: Path, *, writable: bool = False, hold: bool = True) -> None:
        self.root = Path(root)
        self.writable = writable
        self.hold = hold  # a writer holds the lock from open to close; else only inside change()
        self._changes = 0  # change() blocks entered and not left
        self._wait: bool | float = False  # how long opening waited for the lock (change() waits as long, at least)
        self._lock = WriterLock(self.root) if writable else None
        self._db: Database | None = None
        self._manifest: Manifest | None = None
        self._files: WriterFiles | None = None  # a writer's database files, once its database is opened

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, wait: bool | float = False) -> StoreDir:
        """Open a store for building, creating the directory if needed (an existing store is reused)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a directory")
        if root.is_dir() and not all(_own(p) for p in root.iterdir()) and not (root / MANIFEST).exists():
            raise StoreError(f"{root}: directory is not empty and is not an annot store")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, writable=True)
        store._acquire(wait)
        try:
            if store.has_manifest():
                store.manifest()  # a readable manifest, or a clear error before anything is written
                base = store.database_record().base
                if base is None or not (root / base.path).is_file() and not (root / WORKING_DATABASE).is_file():
                    missing = root / (DATABASE if base is None else base.path)
                    raise StoreError(f"{missing}: missing (the store's database); restore it or index into a new store")
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(cls, root: Path, *, write: bool = False, wait: bool | float = False, hold: bool = True,
             brief: bool = False) -> StoreDir:
        """Open a complete store (one with a manifest and every file it names); a clear error naming what is
        missing or damaged. With ``write``, take the writer lock (``wait``: until the current writer ends); with
        ``hold`` false only to see that no writer holds it (or until it ends), and again for each :meth:`change`;
        ``brief``: the writer holds it for a moment (a burst of corrections: others wait for it)."""
        root = Path(root)
        if not root.exists():
            raise StoreError(f"{root}: no such store (run `annot index` first)")
        if not root.is_dir():
            raise StoreError(f"{root}: not a store (a file, not a directory)")
        if not (root / MANIFEST).is_file():
            raise StoreError(f"{root}: not a complete store (no {MANIFEST}; run `annot index` to finish it)")
        store = cls(root, writable=write, hold=hold)
        store._wait = wait
        try:
            if write:
                store._acquire(wait, brief=brief)
                if not hold:
                    store._lock.release()  # type: ignore[union-attr]
            store.check_files()
        except BaseException:
            store.close()
            raise
        return store

    def _acquire(self, wait: bool | float, *, brief: bool = False) -> None:
        assert self._lock is not None
        self._lock.acquire(wait, brief=brief)

    def check_files(self) -> None:
        """Every file the manifest names is present with its recorded size, and the database exists."""
        manifest = self.manifest()
        legacy = manifest.database is None and not (self.writable and (self.root / WORKING_DATABASE).is_file())
        if legacy and not (self.root / DATABASE).is_file():
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
    def database_record(self) -> DatabaseRecord:
        """The database files the manifest names (a store written before layers: its ``annot.duckdb``)."""
        if self._files is not None:
            return self._files.record
        record = self.manifest().database if self.has_manifest() else None
        if record is not None:
            return record
        return LEGACY_RECORD if (self.root / DATABASE).is_file() else DatabaseRecord(None)

    @contextmanager
    def change(self, wait: bool | float | None = None) -> Iterator[None]:
        """A change of the store by a writer that does not hold the lock throughout (``hold`` false): the lock is
        taken (waiting for another writer's change, ``wait`` seconds at most), the manifest read again, and what
        the block wrote published and the lock released when it ends, so that other writers (the server's
        corrections) take turns with a long run; ``wait`` by default ``CHANGE_WAIT`` seconds, or as long as it takes
        for a writer opened with ``wait`` true. For a writer that holds the lock, nothing more than the block."""
        if self.hold or self._changes:
            self._changes += 1
            try:
                yield
            finally:
                self._changes -= 1
            return
        self._require_writer()
        if self._db is not None:  # a reader's, opened between changes
            self._db.close()
            self._db = None
        self._acquire(wait if wait is not None else (True if self._wait is True else CHANGE_WAIT), brief=True)
        self._changes = 1
        try:
            self._manifest = None  # another writer may have switched it since
            self._files = None
            yield
            self.publish()
        finally:
            self._changes = 0
            try:
                if self._db is not None:  # a change that failed: what it committed is for the next writer
                    self._db.close()
                    self._db = None
                self._files = None
            finally:
                self._lock.release()  # type: ignore[union-attr]

    def _require_writer(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.root}: opened for reading only")

    @property
    def locked(self) -> bool:
        """Whether this writer holds the store's lock now."""
        return self._lock is not None and self._lock.held

    @property
    def db(self) -> Database:
        if self._db is None:
            if self.locked:
                self._require_writable()
                if self._files is None:
                    self._files = WriterFiles(self.root, self.database_record())
                self._db = Database(self._files.open())
            else:
                layers = reader_layers(self.root, self.database_record())
                if layers.base is None and not layers.segments:
                    raise StoreError(f"{self.root / DATABASE}: missing (the store's database)")
                self._db = Database(layers.base, read_only=True) if not layers.segments and layers.base else \
                    Database(layers)
        return self._db

    def _publish_database(self, named: bool = False) -> bool:
        """Close the writer's working segment and publish it (merged or folded as the policy says); whether there
        was a change. Without a manifest to name it (a first build not yet finished: not ``named``) the working
        segment stays for the next writer."""
        if not self.locked or self._db is None:
            return False
        changed = self._db.changed()
        self._db.checkpoint()
        self._db.close()
        self._db = None
        assert self._files is not None
        if not changed:
            self._files.discard()
            return False
        if not (named or self.has_manifest()):
            return False
        self._files.publish()
        return True

    def publish(self) -> None:
        """Make the writer's changes to the database what readers see: its working segment becomes a segment the
        manifest names."""
        if self._publish_database():
            self._switch(self.manifest())

    def close(self) -> None:
        """Publish a writer's changes, release the lock; close a reader's database."""
        try:
            if self.writable and self._lock is not None and self._lock.held:
                self.publish()
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
        self._publish_database(named=True)
        self._switch(manifest)

    def _switch(self, manifest: Manifest) -> None:
        """Write ``manifest`` (naming the writer's database files) as the store's; the one it replaces is kept one
        generation as the previous."""
        if self._files is not None:
            manifest = manifest.touched(database=self._files.record)
        current = self.root / MANIFEST
        if current.is_file():  # kept one generation: a reader that just read it still finds its files
            atomic_write(self.root / PREVIOUS_MANIFEST, lambda fh: _copy_into(current, fh))
        atomic_write(current, lambda fh: fh.write(dumps(manifest)))
        self._manifest = manifest
        if self._files is not None and self._db is None:
            self._files.settled()

    def remove_unreferenced(self) -> None:
        """Delete model and index files neither the manifest nor the one before it names (after it was replaced:
        a reader that loaded the previous manifest a moment before the switch can still open what it names)."""
        manifests = [self.manifest()]
        previous = self.root / PREVIOUS_MANIFEST
        if previous.is_file():
            try:
                manifests.append(Manifest.from_json(json.loads(previous.read_text(encoding="utf-8")), previous))
            except (OSError, ValueError, StoreError):
                log.warning("%s: unreadable; the files only it named are removed", previous)
        referenced = {f.path for m in manifests for _, f in m.files()}
        if any(m.database is None or (m.database.base and m.database.base.path == DATABASE) for m in manifests):
            referenced.add(DATABASE)
        remove_unnamed(self.root, referenced)
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
        if not self.locked:
            raise StoreError(f"{self.root}: opened for reading only" if not self.writable else
                             f"{self.root}: changed outside StoreDir.change()")


def _copy_into(source: Path, fh: Any) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1 << 20)


def remove_stale_scratch(folder: Path, pattern: str) -> None:
    """Delete scratch files a killed writer left (only a writer, holding the lock, calls this)."""
    for stale in folder.glob(pattern):
        stale.unlink(missing_ok=True)


__all__ = ["DATABASE", "MANIFEST", "StoreDir", "remove_stale_scratch"]
