"""Correcting tags (``annot correct``): confirm or reject a tag of a photo, or add one it lacks; ``clear`` forgets
the corrections of a library photo's tag (its prediction shows again: the undo of a click).

A correction is kept in the ``corrections`` table (``annot sql "select * from corrections"``) and wins over what the
model predicts: every later ``annot annotate`` scores the photo again, but ``annot search``, ``annot export`` and the
server show its confirmed and added tags as sure and never its rejected ones.

A corrected photo of the library joins the training corpus with the tags someone vouched for (confirmed or added,
less rejected; the tags nobody looked at are not taken as truth), as ``annot add`` puts images there: into the image
index and the CCA statistics with the fitted projection, no refit, so its neighbours' tags improve at once. A
correction of a training image changes that image's tags the same way. A kernel-CCA store is fitted on its images and
cannot take new ones without indexing again: there the corrections are kept and shown, and join the training corpus
at the next ``annot index`` of a corpus exported with ``annot export --training``.

``add`` takes any word or phrase (folded as corpus tags are, at most ``MAX_WORD_CHARS`` characters): a word the
store has never seen gets a tag id and becomes a word of the vocabulary (a new label column of the indexed images,
:func:`annot.indexer.grow.sync_training`), so look-alike photos receive it through CCA-KNN's votes without a refit;
the projection's text side learns it at ``annot refit``.

All corrections of one call are checked before anything is written (an unknown photo or tag stops them all), then
written in one transaction; the training index follows, and a rerun of any ``correct`` finishes a killed one.

A correction that repeats what the photo's tag already is (the last correction of that tag had the same action) is
not a new event: it is counted as ``unchanged`` and not recorded again. So running a batch twice records it once,
and a batch that was killed is resumed exactly once: the writer's working copy of the database keeps what the killed
run wrote, and the rerun finds those corrections recorded and finishes the rest (the training index, publishing).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select

from annot.errors import AnnotError, CorpusError, NotFound
from annot.indexer.corpus import normalize_tag
from annot.indexer.grow import sync_training
from annot.indexer.importer import TRAIN
from annot.inputs import read_text
from annot.progress import Progress
from annot.schema import corrections, image_tags, images, photo_files, tags
from annot.schema.database import delete_rows, insert_rows, next_id, update_rows
from annot.settings import ProjectionKind, SettingsError
from annot.store import StoreDir

ACTIONS = ("confirm", "reject", "add", "clear")
VOUCHING = ("confirm", "add")  # the actions that make a tag sure
MAX_WORD_CHARS = 100  # a tag added by a correction (a word or phrase) is at most this long, once folded
CORRECTIONS_LIMIT = 64 << 20  # a corrections file over 64 MiB is not one (about a million corrections)


@dataclass(frozen=True)
class Correction:
    """One correction: a photo (its store id, or its path) and a tag to confirm, reject or add."""

    photo: int | str
    tag: str
    action: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise SettingsError("correction.action", f"must be one of {', '.join(ACTIONS)}, got {self.action!r}")


@dataclass
class CorrectReport:
    recorded: int = 0  # new corrections
    unchanged: int = 0  # corrections that repeated what was already recorded (not recorded again)
    photos: int = 0
    joined_training: int = 0  # photos whose vouched tags entered (or changed in) the training index
    left_training: int = 0  # photos left with no vouched tag, out of the training index
    kept_only: bool = False  # a kernel-CCA store: corrections kept, the training index unchanged
    indexed: int = 0
    new_words: list[str] = field(default_factory=list)  # words new to the store's vocabulary

    def to_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "unchanged": self.unchanged, "photos": self.photos,
                "joined_training": self.joined_training, "left_training": self.left_training,
                "kept_only": self.kept_only, "indexed": self.indexed, "new_words": self.new_words}


def read_corrections(path: Path) -> list[Correction]:
    """Corrections from a JSON Lines file: ``{"image": PATH or "id": N, "tag": T, "action": A}`` or
    ``{"image": PATH, "confirm": [...], "reject": [...], "add": [...]}`` per line."""
    lines = read_text(path, "corrections", CORRECTIONS_LIMIT).splitlines()
    out: list[Correction] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise CorpusError(f"{path}:{number}: a correction is a JSON object")
        photo = item.get("id", item.get("image"))
        if isinstance(photo, bool) or not isinstance(photo, int | str) or photo == "":
            raise CorpusError(f'{path}:{number}: name the photo with "image" (its path) or "id" (its store id)')
        if isinstance(photo, str) and "id" not in item:
            photo = str((path.parent / photo).resolve()) if not Path(photo).is_absolute() else photo
        try:
            if "action" in item:
                out.append(Correction(photo, str(item.get("tag", "")), str(item["action"])))
            for action in ACTIONS:
                found = item.get(action, [])
                for tag in [found] if isinstance(found, str) else found:
                    out.append(Correction(photo, str(tag), action))
        except AnnotError as exc:
            raise CorpusError(f"{path}:{number}: {exc}") from None
        if not any(a in item for a in ("action", *ACTIONS)):
            raise CorpusError(f'{path}:{number}: say what to do: "action" with "tag", or "confirm" / "reject" / '
                              '"add" with tags')
    if not out:
        raise CorpusError(f"{path}: no corrections in it")
    return out


def _resolve(conn: Connection, items: Sequence[Correction], store: Path) -> list[tuple[int, int, str]]:
    """(image id, tag id, action) of each correction, or an error naming the first unknown photo or tag."""
    vocabulary = dict(conn.execute(select(tags.c.word, tags.c.id)).all())
    by_path: dict[str, int] = {}
    paths = [c.photo for c in items if isinstance(c.photo, str)]
    for lo in range(0, len(paths), 5000):
        by_path.update(conn.execute(  # a duplicate's path stands for the photo it repeats
            select(images.c.path, func.coalesce(photo_files.c.same_as, images.c.id))
            .select_from(images.outerjoin(photo_files, photo_files.c.image_id == images.c.id))
            .where(images.c.path.in_(paths[lo : lo + 5000]))).all())
    ids = [c.photo for c in items if isinstance(c.photo, int)]
    known_ids = {int(i) for (i,) in conn.execute(select(images.c.id).where(images.c.id.in_(ids)))} if ids else set()
    resolved = []
    for c in items:
        if isinstance(c.photo, int):
            if c.photo not in known_ids:
                raise NotFound(f"photo id {c.photo}: not a photo of {store}; nothing corrected")
            image_id = c.photo
        else:
            found = by_path.get(c.photo)
            if found is None:
                raise NotFound(f"{c.photo}: not a photo of {store} (annotate it first); nothing corrected")
            image_id = found
        word = normalize_tag(c.tag)
        if word not in vocabulary:
            if c.action != "add":
                advice = "" if c.action == "clear" else "; add it instead"
                raise AnnotError(f"{c.tag!r}: not a word of the store's vocabulary ({len(vocabulary):,} words), so "
                                 f"no photo has it to {c.action}{advice}; nothing corrected")
            vocabulary[word] = _new_word(conn, word, c.tag)
        resolved.append((int(image_id), int(vocabulary[word]), c.action))
    return resolved


def _new_word(conn: Connection, word: str, given: str) -> int:
    """A tag id for a word new to the store (``--add``): checked, then created."""
    if not word:
        raise AnnotError(f"{given!r}: an empty tag; nothing corrected")
    if len(word) > MAX_WORD_CHARS:
        raise AnnotError(f"{given[:40]!r}...: a tag of {len(word)} characters (at most {MAX_WORD_CHARS}); "
                         "nothing corrected")
    if any(unicodedata.category(ch) == "Cc" for ch in word):
        raise AnnotError(f"{given!r}: a tag with control characters; nothing corrected")
    tag_id = next_id(conn, tags)
    insert_rows(conn, tags, [{"id": tag_id, "word": word}])
    return tag_id


def new_events(conn: Connection, resolved: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The corrections that change something, in order: each one whose action differs from the last recorded (or
    earlier in ``resolved``) action on the same photo and tag."""
    photos = sorted({i for i, _, _ in resolved})
    last: dict[tuple[int, int], str] = {}
    for lo in range(0, len(photos), 5000):
        for image_id, tag_id, action in conn.execute(
                select(corrections.c.image_id, corrections.c.tag_id, corrections.c.action)
                .where(corrections.c.image_id.in_(photos[lo : lo + 5000])).order_by(corrections.c.id)):
            last[(int(image_id), int(tag_id))] = str(action)
    out = []
    for image_id, tag_id, action in resolved:
        if action == "clear" and last.get((image_id, tag_id), "clear") == "clear":
            continue  # nothing to forget
        if last.get((image_id, tag_id)) != action:
            out.append((image_id, tag_id, action))
            last[(image_id, tag_id)] = action
    return out


def vouched(conn: Connection, image_ids: Sequence[int]) -> dict[int, set[int]]:
    """The tags someone vouched for on each library photo: confirmed or added, less rejected (the last word wins)."""
    out: dict[int, dict[int, bool]] = {int(i): {} for i in image_ids}
    for image_id, tag_id, action in conn.execute(
            select(corrections.c.image_id, corrections.c.tag_id, corrections.c.action)
            .where(corrections.c.image_id.in_(list(out))).order_by(corrections.c.id)):
        out[int(image_id)][int(tag_id)] = action in VOUCHING
    return {i: {t for t, keep in found.items() if keep} for i, found in out.items()}


def record_corrections(store_root: Path, items: Iterable[Correction], *, source: str = "cli", wait: bool | float = False,
                       progress: Progress | None = None) -> CorrectReport:
    """Check and keep corrections, then bring the training index in step with them."""
    items = list(items)
    if not items:
        raise AnnotError("no corrections given: --confirm, --reject or --add a tag, or --from a JSON Lines file")
    store = StoreDir.open(Path(store_root), write=True, wait=wait)
    try:
        report = write_corrections(store, items, source=source)
        sync_corrected(store, report, progress)
        store.publish()
        return report
    finally:
        store.close()


def write_corrections(store: StoreDir, items: Sequence[Correction], *, source: str) -> CorrectReport:
    """Check corrections and write them into a writer's database in one transaction (all or none): the training
    index does not follow yet (:func:`sync_corrected`)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.db.begin() as conn:
        checked = _resolve(conn, items, store.root)
        resolved = new_events(conn, checked)
        photo_ids = sorted({i for i, _, _ in checked})
        library = {int(i) for (i,) in conn.execute(select(photo_files.c.image_id)
                                                   .where(photo_files.c.image_id.in_(photo_ids)))}
        split = dict(conn.execute(select(images.c.id, images.c.split).where(images.c.id.in_(photo_ids))).all())
        cleared = next((i for i, _, a in checked if a == "clear" and i not in library), None)
        if cleared is not None:
            raise AnnotError(f"photo id {cleared}: a training image's tags are its own: confirm or reject them "
                             "(clear forgets corrections of library photos); nothing corrected")
        start = next_id(conn, corrections)
        insert_rows(conn, corrections, [{"id": start + n, "image_id": i, "tag_id": t, "action": a,
                                         "created_at": now, "source": source}
                                        for n, (i, t, a) in enumerate(resolved)])
        for image_id, tag_id, action in resolved:  # a training image's own tags change as corrected
            if image_id in library or split.get(image_id) != TRAIN:
                continue
            delete_rows(conn, image_tags, image_tags.c.image_id == image_id, image_tags.c.tag_id == tag_id)
            if action != "reject":
                insert_rows(conn, image_tags, [{"image_id": image_id, "tag_id": tag_id}])
        kept = vouched(conn, sorted(library))  # a library photo's tags as training truth: its vouched ones
        if kept:
            delete_rows(conn, image_tags, image_tags.c.image_id.in_(list(kept)), keys=list(kept))
            insert_rows(conn, image_tags, [{"image_id": i, "tag_id": t} for i, found in kept.items()
                                           for t in sorted(found)])
            joining = [i for i, found in kept.items() if found]
            if joining:
                update_rows(conn, images, [images.c.id.in_(joining)], {"split": TRAIN}, keys=joining)
    known = set(store.manifest().vocabulary.tag_ids)
    return CorrectReport(recorded=len(resolved), unchanged=len(checked) - len(resolved), photos=len(photo_ids),
                         left_training=sum(1 for found in kept.values() if not found),
                         joined_training=sum(1 for found in kept.values() if found),
                         new_words=sorted({normalize_tag(c.tag) for c, (_, t, _) in zip(items, checked, strict=True)
                                           if t not in known}))


def sync_corrected(store: StoreDir, report: CorrectReport | None = None, progress: Progress | None = None) -> None:
    """Bring the training index in step with every correction written (a killed writer's too): corrected training
    images join, change or leave it (a kernel-CCA store keeps its corrections only)."""
    report = report or CorrectReport()
    if store.manifest().settings.projection.kind is not ProjectionKind.LINEAR:
        report.kept_only = True
        return
    grown = sync_training(store, _corrected_training(store), progress)
    report.new_words = sorted(set(report.new_words) | set(grown.grown))
    report.joined_training = grown.added + grown.retagged  # as the index counts them
    report.indexed = grown.ntotal


def _corrected_training(store: StoreDir) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Every training image with a correction: the ones whose index rows may lag their tags (a killed run)."""
    with store.db.connect() as conn:
        ids = conn.execute(select(corrections.c.image_id).distinct().join(images, images.c.id == corrections.c.image_id)
                           .where(images.c.split == TRAIN)).scalars().all()
    return np.asarray(sorted(int(i) for i in ids), np.int64)


__all__ = ["ACTIONS", "CorrectReport", "Correction", "read_corrections", "record_corrections", "sync_corrected",
           "vouched", "write_corrections"]
