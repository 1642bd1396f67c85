"""What a run of ``annot annotate`` must do, decided before anything is written: the photos given (files, folders
walked, lists read), each sorted by its file facts against what the store recorded (new, changed, unchanged,
touched, unreadable, a training image), and the photos that vanished from the walked folders. No database here:
what the store recorded comes in as ``known`` (path: :class:`Known`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select

from annot.errors import CorpusError
from annot.features.images import UnreadableImage, content_hash
from annot.inputs import LISTS, read_text
from annot.library.query import IMAGE_SUFFIXES, image_files
from annot.progress import Progress
from annot.schema import images, photo_files
from annot.store import StoreDir

TRAINING_SPLITS = ("train", "removed")  # images of these splits keep their own tags (an evaluated image may join)


class FileFacts(NamedTuple):
    """What a file's status says of it without reading it: a photo whose facts are all unchanged is not read."""

    size: int
    mtime_ns: int
    inode: int | None
    ctime_ns: int | None

    @classmethod
    def of(cls, status: os.stat_result) -> FileFacts:
        return cls(status.st_size, status.st_mtime_ns, status.st_ino, status.st_ctime_ns)

    def row(self) -> dict[str, int | None]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "inode": self.inode, "ctime_ns": self.ctime_ns}


NO_FACTS = FileFacts(0, 0, None, None)


@dataclass(frozen=True)
class Known:
    image_id: int
    split: str
    sha256: str
    facts: FileFacts | None
    state: str | None
    model: str | None


def photo_paths(inputs: Sequence[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """The photos to annotate (absolute, in order, each once), the folders walked and the lists read (a vanished
    photo is one that was under them and is no longer)."""
    paths: dict[Path, None] = {}
    folders, lists = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            folders.append(item.resolve())
            found = list(image_files(item))
            if not found:
                raise CorpusError(f"{item}: folder holds no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.update((_absolute(p), None) for p in found)
        elif item.is_file() and item.suffix.lower() in LISTS:
            lists.append(item.resolve())
            lines = read_text(item, "list of photos").splitlines()
            base = item.resolve().parent
            paths.update((_absolute(base / line.strip()), None) for line in lines if line.strip())
        elif item.exists() or item.is_symlink():
            paths[_absolute(item)] = None
        else:
            raise CorpusError(f"{item}: no such file or folder")
    return list(paths), folders, lists


def _absolute(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: kept as given, and it fails to read
        return Path(os.path.abspath(path))


@dataclass(frozen=True)
class Todo:
    """A photo to annotate: its file facts, the content hash the scan computed (None when it read nothing: a new
    photo, or one another model annotated), and whether its content differs from what was recorded."""

    path: Path
    facts: FileFacts
    digest: str | None = None
    changed: bool = False


@dataclass
class Scan:
    """The plan of a run, made before anything is written: the photos to annotate, the unchanged ones whose file
    facts moved (``touched``: only their facts are written), the photos of the walked folders and lists that are
    gone (``vanished``), and the files that cannot be read."""

    todo: list[Todo] = field(default_factory=list)
    touched: list[tuple[int, FileFacts]] = field(default_factory=list)
    vanished: list[tuple[str, Known]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    unchanged: int = 0
    training: int = 0


def scan_photos(paths: Sequence[Path], known: dict[str, Known], progress: Progress,
                folders: Sequence[Path] = (), lists: Sequence[Path] = ()) -> Scan:
    """Sort the given photos by what a run must do with them, reading as little as it can (no database: ``known``
    is what the store recorded of each path).

    A photo is unchanged when its size, modification time, inode and change time are what was recorded: nothing is
    read. When only the inode or change time moved (the file was replaced, restored, or its time set back with
    ``touch -r``), its content is hashed, so a different photo with the same size and time is never taken for the
    old one; the hash travels with the photo, so a changed photo is read and hashed once."""
    scan = Scan()
    with progress.task("looking at the photos", len(paths)) as advance:
        for path in paths:
            advance(1)
            try:
                facts = FileFacts.of(path.stat())
            except (OSError, RuntimeError) as exc:
                scan.errors[str(path)] = f"cannot read the file ({getattr(exc, 'strerror', None) or exc})"
                continue
            _sort(scan, path, facts, known.get(str(path)))
    scan.vanished = vanished(known, {str(p) for p in paths}, folders, lists)
    return scan


def _sort(scan: Scan, path: Path, facts: FileFacts, seen: Known | None) -> None:
    if seen is not None and seen.state is None and seen.split in TRAINING_SPLITS:  # a training image
        scan.training += 1
    elif seen is None:
        scan.todo.append(Todo(path, facts))
    elif seen.facts == facts and seen.state == "unreadable":
        scan.errors[str(path)] = "unreadable before, and unchanged since"
    elif seen.facts == facts and seen.state in ("annotated", "duplicate"):
        scan.unchanged += 1  # another state of the model may have scored it: re-scored from its cached features
    else:  # an evaluated image, a photo that is back, or one whose file facts moved: same content?
        try:
            digest = content_hash(path)
        except (OSError, UnreadableImage) as exc:
            scan.errors[str(path)] = str(exc)
            return
        if digest == seen.sha256 and seen.state in ("annotated", "duplicate"):
            scan.touched.append((seen.image_id, facts))
            scan.unchanged += 1
        else:
            scan.todo.append(Todo(path, facts, digest, digest != seen.sha256))


def vanished(known: dict[str, Known], seen: set[str], folders: Sequence[Path],
             lists: Sequence[Path]) -> list[tuple[str, Known]]:
    """Annotated photos under the walked folders that were not found there, or named by a read list, and that are
    no longer on disk."""
    roots = [str(f) + os.sep for f in folders]
    gone = [(p, k) for p, k in known.items() if k.state in ("annotated", "duplicate") and p not in seen
            and any(p.startswith(r) for r in roots) and not Path(p).exists()]
    if lists:  # a list names its photos: one no longer on disk is gone too
        gone += [(p, k) for p, k in known.items() if k.state in ("annotated", "duplicate") and p in seen
                 and not Path(p).exists() and (p, k) not in gone]
    return sorted(gone, key=lambda item: item[0])


FEW = 64  # a run of at most this many named files (a kept upload) reads only their rows and their contents


def recorded(store: StoreDir, few: Sequence[Path] | None = None) -> dict[str, Known]:
    """What the store recorded of its images by path: all of them, or (``few``) those at these paths or with these
    files' contents (what the scan and the look-up of moved and duplicated photos need of them)."""
    with store.db.connect() as conn:
        query = (select(images.c.path, images.c.id, images.c.split, images.c.sha256, photo_files.c.size,
                        photo_files.c.mtime_ns, photo_files.c.inode, photo_files.c.ctime_ns, photo_files.c.state,
                        photo_files.c.model)
                 .select_from(images.outerjoin(photo_files, photo_files.c.image_id == images.c.id)))
        if few is not None:
            digests = []
            for path in few:
                try:
                    digests.append(content_hash(path))
                except (OSError, UnreadableImage):
                    continue  # the scan says why
            query = query.where(images.c.path.in_([str(p) for p in few]) | images.c.sha256.in_(digests))
        return {p: Known(int(i), s, h, None if z is None else FileFacts(z, m, ino, ct), st, mo)
                for p, i, s, h, z, m, ino, ct, st, mo in conn.execute(query)}



@dataclass
class AnnotateReport:
    """What a run did; ``unreadable`` and ``missing`` name the files."""

    seen: int = 0
    annotated: int = 0
    reannotated: int = 0  # changed files, or annotated by another model
    unchanged: int = 0
    training: int = 0  # files that are training images of the store (they keep their own tags)
    unreadable: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    total: int = 0  # photos in the library after the run
    moved: dict[str, str] = field(default_factory=dict)  # old path: new path (same content, same photo)
    duplicates: dict[str, str] = field(default_factory=dict)  # new path: the library photo's path it repeats
    rescored: int = 0  # photos scored again from their cached features (the model changed, or --retag)
    retagged: int = 0  # of those, photos whose tags changed
    rescore_seconds: float = 0.0
    stale_left: int = 0  # photos still scored by another state of the model (a bounded re-scoring leaves them)

    def to_dict(self) -> dict[str, Any]:
        rate = (self.annotated + self.reannotated) / self.seconds if self.seconds else 0.0
        return {"seen": self.seen, "annotated": self.annotated, "reannotated": self.reannotated,
                "unchanged": self.unchanged, "training_images": self.training, "unreadable": self.unreadable,
                "missing": self.missing, "moved": self.moved, "duplicates": self.duplicates,
                "rescored": self.rescored, "tags_changed": self.retagged, "stale_left": self.stale_left,
                "photos": self.total,
                "seconds": round(self.seconds, 1), "photos_per_second": round(rate, 1),
                "rescored_per_second": round(self.rescored / self.rescore_seconds, 1) if self.rescore_seconds else 0.0}


__all__ = [
    "FEW",
    "LISTS",
    "NO_FACTS",
    "TRAINING_SPLITS",
    "AnnotateReport",
    "FileFacts",
    "Known",
    "Scan",
    "Todo",
    "photo_paths",
    "recorded",
    "scan_photos",
    "vanished",
]
