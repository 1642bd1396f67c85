"""A store: one self-describing directory holding the metadata database, cached features, models and indexes.

```
STORE/
  manifest.json   format version and every setting used to build it (written last, atomically)
  annot.duckdb    metadata: images, tags, image_tags, runs, predictions, word_metrics
  features/       cached image features per encoder
  models/         fitted projections
  indexes/        FAISS indexes
```
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
from numpy.typing import NDArray

from annot.errors import StoreError
from annot.schema import Database

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "annot.duckdb"


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through a temporary sibling and rename it into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, arrays: Mapping[str, NDArray[Any]]) -> None:
    """Write named arrays as one ``.npz`` file, atomically."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]  # stubs read a key as allow_pickle


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Store:
    """An annot store directory. Use :meth:`create` or :meth:`open`; ``db`` is opened lazily."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self._db: Database | None = None

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path) -> Store:
        """Open a store for writing, creating the directory if needed (an existing store is reused)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a directory")
        if root.is_dir() and any(root.iterdir()) and not (root / DATABASE).exists():
            raise StoreError(f"{root}: directory is not empty and is not an annot store")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        if (root / MANIFEST).exists():
            store.manifest()  # validates the format version
        return store

    @classmethod
    def open(cls, root: Path, *, read_only: bool = False) -> Store:
        """Open a complete store (one with a manifest); a clear error when there is none."""
        root = Path(root)
        if not root.is_dir():
            raise StoreError(f"{root}: no such store (run `annot index` first)")
        if not (root / MANIFEST).is_file():
            raise StoreError(f"{root}: not a complete store (no {MANIFEST}; run `annot index` to finish it)")
        store = cls(root, read_only=read_only)
        store.manifest()
        return store

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(f"duckdb:///{self.root / DATABASE}", read_only=self.read_only)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

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

    # -- manifest --------------------------------------------------------------------------------------------
    def has_manifest(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StoreError(f"{path}: missing") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: unreadable manifest ({exc})") from exc
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise StoreError(f"{path}: store format version {version}, this annot reads version {FORMAT_VERSION}")
        return data

    def manifest_sha(self) -> str:
        return sha256_file(self.root / MANIFEST)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest = {"format_version": FORMAT_VERSION, **manifest}
        payload = json.dumps(manifest, indent=2, sort_keys=True).encode()
        atomic_write(self.root / MANIFEST, lambda fh: fh.write(payload))

    def remove_unreferenced(self, referenced: set[str]) -> None:
        """Delete model and index files that the manifest no longer names (after it was replaced)."""
        for folder in (self.models_dir, self.indexes_dir):
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and str(file.relative_to(self.root)) not in referenced:
                    file.unlink(missing_ok=True)
