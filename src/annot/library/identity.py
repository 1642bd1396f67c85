"""A photo is its content: moved, renamed and duplicated files keep one identity in the library.

Before a run of ``annot annotate`` writes anything, every photo new to the store (a path it has not recorded) is
hashed and looked up by content among the library's photos:

- **moved or renamed**: the content is a library photo whose recorded path is gone (or marked missing). The photo
  keeps its id, and so its tags, its corrections, its cached features and its place in the training index; only its
  path and file facts change. It is not read again.
- **duplicate**: the content is a library photo still present at its own path. The new path is linked to it (state
  ``duplicate``, ``photo_files.same_as``): not scored or indexed again, found through the photo it repeats, its
  sidecar exported with that photo's tags, and a correction made at either path is the photo's.

What stays is a changed file (same path, new content): it is scored again and keeps its corrections, whose tags the
store still knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from annot.features.images import UnreadableImage, content_hash
from annot.library.scan import Known, Scan, Todo
from annot.schema import images, photo_files
from annot.schema.writes import insert_rows, next_id, update_rows
from annot.store import StoreDir

DUPLICATE = "duplicate"  # the photo_files.state of a path whose content is another library photo


@dataclass
class Identity:
    """What the look-up found: moved photos (old path: new path) and duplicates (new path: the path it repeats)."""

    moved: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[Todo, Path]] = field(default_factory=list)  # new copies of this run's new photos: linked later


def _by_content(known: dict[str, Known]) -> dict[str, tuple[str, Known]]:
    """The library's photos (not their duplicates) by content hash."""
    out: dict[str, tuple[str, Known]] = {}
    for path, k in known.items():
        if k.state in ("annotated", "missing") and k.sha256:
            out.setdefault(k.sha256, (path, k))
    return out


def follow_identity(store: StoreDir, scan: Scan, known: dict[str, Known]) -> Identity:
    """Take moved photos and duplicates out of ``scan.todo`` and record them (``known`` follows); the other new
    photos keep their content hash, so they are not hashed again. A second new copy of a new photo is linked once
    the first is annotated (:func:`link_copies`)."""
    found = Identity()
    if not any(str(t.path) not in known for t in scan.todo):
        return found
    library = _by_content(known)
    vanished = {p for p, _ in scan.vanished}
    gone_copies: dict[str, list[tuple[str, Known]]] = {}  # duplicates gone from their paths, by content
    for p, k in scan.vanished:
        if k.state == DUPLICATE:
            gone_copies.setdefault(k.sha256, []).append((p, k))
    todo: list[Todo] = []
    moves: list[tuple[str, Todo, Known]] = []
    links: list[tuple[Todo, str, Known]] = []
    fresh: dict[str, Path] = {}  # the content of each new photo of this run: its first path
    for t in scan.todo:
        if str(t.path) in known:
            todo.append(t)
            continue
        try:
            digest = content_hash(t.path)
        except (OSError, UnreadableImage) as exc:
            scan.errors[str(t.path)] = str(exc)
            continue
        match = library.get(digest)
        if match is None and digest in fresh:
            found.copies.append((t, fresh[digest]))
        elif match is None:
            fresh[digest] = t.path
            todo.append(replace(t, digest=digest))
        elif match[1].state == "missing" or match[0] in vanished or not Path(match[0]).exists():
            moves.append((match[0], t, match[1]))
            library[digest] = (str(t.path), replace(match[1], state="annotated"))  # a second copy: a duplicate
        elif gone_copies.get(digest):  # a duplicate that moved too
            old_path, old = gone_copies[digest].pop()
            moves.append((old_path, t, old))
        else:
            links.append((t, match[0], match[1]))
    scan.todo = todo
    _record(store, moves, links, known)
    scan.vanished = [(p, k) for p, k in scan.vanished if p not in {m[0] for m in moves}]
    found.moved = {old_path: str(t.path) for old_path, t, _ in moves}
    found.duplicates = {str(t.path): old_path for t, old_path, _ in links}
    return found


def link_copies(store: StoreDir, found: Identity, known: dict[str, Known], errors: dict[str, str]) -> None:
    """The new copies of photos that were new in the same run, linked to them now that they are annotated (or, where
    the first copy could not be read, listed with it)."""
    links = []
    for t, first in found.copies:
        k = known.get(str(first))
        if k is not None and k.state == "annotated":
            links.append((t, str(first), k))
            found.duplicates[str(t.path)] = str(first)
        else:
            errors[str(t.path)] = errors.get(str(first), "could not be annotated") + f" (a copy of {first})"
    _record(store, [], links, known)
    found.copies = []


def _record(store: StoreDir, moves: list[tuple[str, Todo, Known]], links: list[tuple[Todo, str, Known]],
            known: dict[str, Known]) -> None:
    if not moves and not links:
        return
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.db.begin() as conn:
        for old_path, t, old in moves:  # model None: re-scored (from its cached features) and put back in the index
            state = DUPLICATE if old.state == DUPLICATE else "annotated"
            update_rows(conn, images, [images.c.id == old.image_id], {"path": str(t.path)}, keys=[old.image_id])
            update_rows(conn, photo_files, [photo_files.c.image_id == old.image_id],
                        {**t.facts.row(), "state": state, "error": None, "model": None}, keys=[old.image_id])
            known[str(t.path)] = replace(old, facts=t.facts, state=state, model=None)
            known.pop(old_path, None)
        start = next_id(conn, images)
        rows, files = [], []
        for n, (t, _, old) in enumerate(links):
            image_id = start + n
            rows.append({"id": image_id, "path": str(t.path), "sha256": old.sha256, "width": 0, "height": 0,
                         "split": "collection", "added_at": now})
            files.append({"image_id": image_id, **t.facts.row(), "state": DUPLICATE, "error": None,
                          "annotated_at": now, "model": None, "same_as": old.image_id})
            known[str(t.path)] = Known(image_id, "collection", old.sha256, t.facts, DUPLICATE, None)
        insert_rows(conn, images, rows)
        insert_rows(conn, photo_files, files)


__all__ = ["DUPLICATE", "Identity", "follow_identity", "link_copies"]
