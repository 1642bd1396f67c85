"""Writing and reading a store's files: atomically, and checked against the checksums the manifest records.

Every model and index file is written under a new name through a temporary sibling and a rename, so a reader never
sees half a file, and the manifest, written last, switches to the new files. The manifest records each file's size
and SHA-256 (:class:`StoredFile`); reading a file checks both, so a damaged or truncated file is refused by name
instead of failing deep inside numpy or FAISS.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.caches import cached_file, digest, prune
from annot.errors import StoreError

if TYPE_CHECKING:
    import faiss


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # files as open() would create them (mkstemp's are private to the owner)


TEMPORARY = ".{name}.*.tmp"  # the temporary sibling of ``name`` that atomic_write renames into place
MARKER_DAYS = 30  # a mapped file's checksum marker is kept this long (a file still in use is checked again after)


class ChangedMeanwhile(OSError):
    """The file to be replaced changed after it was read (``atomic_write``'s ``unchanged`` said so): not replaced."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], mode: int | None = None,
                 unchanged: Callable[[], bool] | None = None) -> None:
    """Write a file through a temporary sibling and rename it into place, so readers never see half a file.
    ``mode``: the new file's permission bits (default: as ``open`` would create it); ``unchanged``: asked just
    before the rename, whether the file is still as its writer read it (else :class:`ChangedMeanwhile`, the file
    left as the other program wrote it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE if mode is None else mode)
        if unchanged is not None and not unchanged():
            raise ChangedMeanwhile(f"{path}: changed by another program meanwhile")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """A file of the store as the manifest records it: its path relative to the store, size and SHA-256. Stores of
    format version 1 recorded neither; their files are checked for presence only."""

    path: str
    size: int | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredFile:
        return cls(str(data["path"]), None if data.get("size") is None else int(data["size"]), data.get("sha256"))


def write_bytes(root: Path, relative: str, payload: bytes) -> StoredFile:
    """Write ``payload`` as the store file ``relative``, atomically; returns its record for the manifest."""
    atomic_write(root / relative, lambda fh: fh.write(payload))
    return StoredFile(relative, len(payload), hashlib.sha256(payload).hexdigest())


def save_arrays(root: Path, relative: str, arrays: Mapping[str, NDArray[Any]]) -> StoredFile:
    """Named arrays as one ``.npz`` store file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # the stubs read a key as allow_pickle
    return write_bytes(root, relative, buffer.getvalue())


def save_array(root: Path, relative: str, array: NDArray[Any]) -> StoredFile:
    """One array as a ``.npy`` store file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return write_bytes(root, relative, buffer.getvalue())


def read_bytes(root: Path, file: StoredFile, what: str = "file") -> bytes:
    """The bytes of a store file, checked against its size and checksum where the manifest has them."""
    path = root / file.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: missing ({what} named by the manifest)") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable {what} ({exc.strerror or exc})") from exc
    if file.size is not None and len(data) != file.size:
        raise StoreError(f"{path}: damaged {what} ({len(data):,} bytes, the manifest recorded {file.size:,})")
    if file.sha256 is not None and hashlib.sha256(data).hexdigest() != file.sha256:
        raise StoreError(f"{path}: damaged {what} (its checksum differs from the manifest's)")
    return data


def read_arrays(root: Path, file: StoredFile, what: str = "model file") -> dict[str, NDArray[Any]]:
    """The arrays of an ``.npz`` store file."""
    data = read_bytes(root, file, what)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise StoreError(f"{root / file.path}: damaged {what} ({_first_line(exc)})") from exc


def read_array(root: Path, file: StoredFile, what: str = "array file") -> NDArray[Any]:
    """The array of a ``.npy`` store file."""
    data = read_bytes(root, file, what)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{root / file.path}: damaged {what} ({_first_line(exc)})") from exc


def save_index(root: Path, relative: str, index: faiss.Index) -> StoredFile:
    """A FAISS index as a store file."""
    import faiss

    return write_bytes(root, relative, faiss.serialize_index(index).tobytes())


def _check_mapped(root: Path, file: StoredFile, what: str) -> Path:
    """A store file to be memory-mapped: present, of its recorded size and checksum. The checksum is read in blocks
    once for a file as it is on disk (its inode, size and modification time): a marker in the user's cache
    (:func:`annot.caches.cached_file`) says it matched, so later opens, in this process or another, do not read a
    million-photo index again."""
    path = root / file.path
    try:
        stat = path.stat()
        if file.size is not None and stat.st_size != file.size:
            raise StoreError(f"{path}: damaged {what} ({stat.st_size:,} bytes, the manifest recorded {file.size:,})")
        if file.sha256 is not None:
            seen = digest([str(path.resolve()), str(stat.st_ino), str(stat.st_mtime_ns), str(stat.st_size),
                           file.sha256])
            cached_file(f"verified-{seen}", lambda marker: _verify(path, file.sha256 or "", what, marker))
    except FileNotFoundError:
        raise StoreError(f"{path}: missing ({what} named by the manifest)") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable {what} ({exc.strerror or exc})") from exc
    return path


def _verify(path: Path, sha256: str, what: str, marker: Path) -> None:
    """Read ``path``'s checksum; an error unless it is ``sha256``, else write the (empty) ``marker`` (and remove the
    markers made more than :data:`MARKER_DAYS` ago, of files since replaced)."""
    with open(path, "rb") as fh:
        if hashlib.file_digest(fh, "sha256").hexdigest() != sha256:
            raise StoreError(f"{path}: damaged {what} (its checksum differs from the manifest's)")
    marker.write_bytes(b"")
    prune("verified-", MARKER_DAYS)


def map_array(root: Path, file: StoredFile, what: str = "array file") -> NDArray[Any]:
    """The array of a ``.npy`` store file, memory-mapped (read-only, shared between processes)."""
    path = _check_mapped(root, file, what)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{path}: damaged {what} ({_first_line(exc)})") from exc


def read_index(root: Path, file: StoredFile, what: str = "index", *, mapped: bool = False) -> faiss.Index:
    """A FAISS index store file. ``mapped``: memory-mapped where FAISS can (an IVF index's lists), for a reader:
    loaded at once and shared between processes; its size and checksum are checked first, reading it in blocks."""
    import faiss

    if not mapped:
        data = read_bytes(root, file, what)
        try:
            return faiss.deserialize_index(np.frombuffer(data, np.uint8))
        except RuntimeError as exc:
            raise StoreError(f"{root / file.path}: damaged {what} (FAISS cannot read it)") from exc
    path = _check_mapped(root, file, what)
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    except RuntimeError as exc:
        raise StoreError(f"{path}: damaged {what} (FAISS cannot read it)") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
