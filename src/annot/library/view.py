"""What the library shows of its photos: each photo's tags (its corrections applied), one photo's record, the
vocabulary with counts (:class:`annot.library.photoview.PhotoView` holds the same read once into arrays, for
search).

A training image shows its own tags (sure). A library photo shows its predicted tags ranked by confidence, with its
corrections applied: the last correction of a tag wins; a rejected tag is gone, a confirmed or added one is sure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from annot.errors import NotFound
from annot.library.photoview import PhotoTag
from annot.model import StoreModel
from annot.schema import corrections, image_tags, images, photo_annotations, photo_files, tags
from annot.store import StoreDir


@dataclass(frozen=True)
class Photo:
    """One photo of the store as the library shows it: a library photo or a training image, its tags surest first."""

    id: int
    path: str
    width: int
    height: int
    kind: str  # library or training
    split: str
    state: str | None  # a library photo's: annotated, unreadable, missing
    tags: tuple[PhotoTag, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "width": self.width, "height": self.height, "kind": self.kind,
                "split": self.split, "state": self.state, "tags": [t.to_dict() for t in self.tags]}


@dataclass(frozen=True)
class WordCount:
    """A vocabulary word with its training images and the library photos it is predicted on."""

    tag: str
    training_images: int
    library_photos: int

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "training_images": self.training_images, "library_photos": self.library_photos}


def library_ids(conn: Any, db: Any, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` are photos of the library (``annot annotate``), the others being training images."""
    if not db.has_table("photo_files"):
        return set()
    return {int(i) for (i,) in conn.execute(select(photo_files.c.image_id).where(photo_files.c.image_id.in_(list(ids))))}


def photo_tags(store: StoreDir, ids: Sequence[int], *, words: Mapping[int, str] | None = None,
               library: set[int] | None = None, history: Sequence[tuple[int, int, str]] | None = None,
               ) -> dict[int, list[PhotoTag]]:
    """Each photo's tags as the library shows them: a training image's own tags; a library photo's predicted tags
    with its corrections applied (the last correction of a tag wins: reject removes it, confirm and add make it
    sure), surest first. What a caller already knows is not read again: ``words`` (tag id: word), ``library`` (which
    of ``ids`` are library photos), ``history`` (every correction of them, in order)."""
    ids = [int(i) for i in ids]
    out: dict[int, list[PhotoTag]] = defaultdict(list)
    if not ids:
        return out
    db = store.db
    with db.connect() as conn:
        word = dict(words) if words is not None else dict(conn.execute(select(tags.c.id, tags.c.word)).all())
        photos = library if library is not None else library_ids(conn, db, ids)
        training = [i for i in ids if i not in photos]
        if training:
            for i, t in conn.execute(select(image_tags.c.image_id, image_tags.c.tag_id)
                                     .where(image_tags.c.image_id.in_(training))):
                out[int(i)].append(PhotoTag(word[t], 1.0, "training"))
        chosen = [i for i in ids if i in photos]
        if not chosen:
            return out
        predicted: dict[int, dict[int, tuple[float | None, str]]] = defaultdict(dict)
        for i, t, c in conn.execute(select(photo_annotations.c.image_id, photo_annotations.c.tag_id, photo_annotations.c.confidence)
                                    .where(photo_annotations.c.image_id.in_(chosen)).order_by(photo_annotations.c.rank)):
            predicted[int(i)][int(t)] = (c, "predicted")
        if history is None:
            history = history_of(conn, chosen)
    made = {i: dict(found) for i, found in predicted.items()}  # what clear brings back
    wanted = set(chosen)
    for i, t, action in history:
        if i not in wanted:
            continue
        if action == "clear" and t in made.get(i, {}):
            predicted[i][t] = made[i][t]
        elif action in ("reject", "clear"):
            predicted[i].pop(t, None)
        else:
            predicted[i][t] = (1.0, "confirmed" if action == "confirm" else "added")
    for i, found in predicted.items():
        out[i] = sorted((PhotoTag(word[t], c, s) for t, (c, s) in found.items()),
                        key=lambda p: -(p.confidence if p.confidence is not None else 0.0))
    return out


def history_of(conn: Connection, photos: Sequence[int]) -> list[tuple[int, int, str]]:
    """Every correction of these photos, (image, tag, action) in the order they were made."""
    rows: list[tuple[int, int, int, str]] = []
    for lo in range(0, len(photos), 5000):
        rows += [(int(n), int(i), int(t), str(a)) for n, i, t, a in conn.execute(
            select(corrections.c.id, corrections.c.image_id, corrections.c.tag_id, corrections.c.action)
            .where(corrections.c.image_id.in_(list(photos[lo : lo + 5000]))))]
    return [(i, t, a) for _, i, t, a in sorted(rows)]


def find_photo(model: StoreModel, path: Path) -> int:
    """The id of the image stored at ``path`` (as given, or resolved)."""
    with model.store.db.connect() as conn:
        for candidate in dict.fromkeys([str(path), str(Path(path).resolve())]):
            found = conn.execute(select(images.c.id).where(images.c.path == candidate)).scalar()
            if found is not None:
                return int(found)
    raise NotFound(f"{path}: not a photo of {model.store.root}")


def find_content(model: StoreModel, sha256: str) -> tuple[int, str] | None:
    """The library photo whose file has these bytes (its SHA-256): its id and path, or None."""
    if not model.store.db.has_table("photo_files"):
        return None
    with model.store.db.connect() as conn:
        found = conn.execute(select(images.c.id, images.c.path).join(photo_files, photo_files.c.image_id == images.c.id)
                             .where(images.c.sha256 == sha256, photo_files.c.state == "annotated")
                             .order_by(images.c.id).limit(1)).first()
    return None if found is None else (int(found[0]), str(found[1]))


def photo_record(model: StoreModel, image_id: int) -> Photo:
    """One photo by id, as the server and ``annot search --json`` describe it."""
    db = model.store.db
    with db.connect() as conn:
        row = conn.execute(select(images.c.path, images.c.split, images.c.width, images.c.height)
                           .where(images.c.id == int(image_id))).first()
        if row is None:
            raise NotFound(f"photo id {image_id}: not a photo of {model.store.root}")
        state = None
        if db.has_table("photo_files"):
            state = conn.execute(select(photo_files.c.state).where(photo_files.c.image_id == int(image_id))).scalar()
    shown = photo_tags(model.store, [int(image_id)]).get(int(image_id), [])
    return Photo(int(image_id), str(row.path), int(row.width), int(row.height),
                 "training" if state is None else "library", str(row.split), state, tuple(shown))


def vocabulary_counts(model: StoreModel) -> list[WordCount]:
    """The store's vocabulary: each word with its training images and the library photos it is shown on."""
    db = model.store.db
    with db.connect() as conn:
        training: dict[int, int] = dict(conn.execute(
            select(image_tags.c.tag_id, func.count()).join(images, images.c.id == image_tags.c.image_id)
            .where(images.c.split == "train").group_by(image_tags.c.tag_id)).tuples().all())
        library: dict[int, int] = {}
        if db.has_table("annotations"):
            library = dict(conn.execute(
                select(photo_annotations.c.tag_id, func.count()).join(photo_files, photo_files.c.image_id ==
                                                                photo_annotations.c.image_id)
                .where(photo_files.c.state == "annotated").group_by(photo_annotations.c.tag_id)).tuples().all())
    return [WordCount(word, int(training.get(t, 0)), int(library.get(t, 0)))
            for word, t in zip(model.vocabulary, model.tag_ids, strict=True)]


def library_counts(store: StoreDir) -> dict[str, int]:
    """Photos of the library by state, and how many of them joined the training corpus (corrected)."""
    if not store.db.has_table("photo_files"):
        return {}
    with store.db.connect() as conn:
        rows = conn.execute(select(photo_files.c.state, images.c.split).join(images, images.c.id == photo_files.c.image_id))
        counts: dict[str, int] = {"annotated": 0, "unreadable": 0, "missing": 0, "in_training": 0}
        for state, split in rows:
            counts[state] = counts.get(state, 0) + 1
            counts["in_training"] += split != "collection"  # corrected photos that joined the training corpus
    return counts
