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
from annot.library.view import history_of
from annot.progress import Progress
from annot.schema import corrections, image_tags, images, photo_files, tags
from annot.schema.writes import delete_rows, insert_rows, next_id, update_rows
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


@dataclass
class Memo:
    """What a writer holding the store through a burst of corrections reads once (nobody else writes meanwhile):
    the vocabulary (word: tag id) and the next correction id; forgotten when a write fails."""

    vocabulary: dict[str, int] | None = None
    next_correction: int | None = None

    def forget(self) -> None:
        self.vocabulary = self.next_correction = None


@dataclass(frozen=True)
class Written:
    """What a write of corrections touched: the corrected photos, which of them are library photos, and every
    correction of them (image, tag, action) in order, the new ones included."""

    photos: list[int]
    library: set[int]
    history: list[tuple[int, int, str]]


def _photos(conn: Connection, items: Sequence[Correction], store: Path) -> tuple[list[int], dict[int, tuple[str, bool]]]:
    """Each correction's photo id (a duplicate's path stands for the photo it repeats) and, by photo, its split and
    whether it is a library photo; an error naming the first unknown photo."""
    by_path: dict[str, int] = {}
    paths = [c.photo for c in items if isinstance(c.photo, str)]
    for lo in range(0, len(paths), 5000):
        by_path.update(conn.execute(
            select(images.c.path, func.coalesce(photo_files.c.same_as, images.c.id))
            .select_from(images.outerjoin(photo_files, photo_files.c.image_id == images.c.id))
            .where(images.c.path.in_(paths[lo : lo + 5000]))).all())
    wanted = sorted({c.photo for c in items if isinstance(c.photo, int)} | set(by_path.values()))
    facts: dict[int, tuple[str, bool]] = {}
    for lo in range(0, len(wanted), 5000):  # two look-ups by key (a join reads the library's photo_files whole)
        part = wanted[lo : lo + 5000]
        library = {int(i) for (i,) in conn.execute(select(photo_files.c.image_id).where(photo_files.c.image_id.in_(part)))}
        facts.update((int(i), (str(split), int(i) in library)) for i, split in conn.execute(
            select(images.c.id, images.c.split).where(images.c.id.in_(part))))
    ids = []
    for c in items:
        image_id = c.photo if isinstance(c.photo, int) else by_path.get(c.photo)
        if image_id is None:
            raise NotFound(f"{c.photo}: not a photo of {store} (annotate it first); nothing corrected")
        if image_id not in facts:
            raise NotFound(f"photo id {c.photo}: not a photo of {store}; nothing corrected")
        ids.append(int(image_id))
    return ids, facts


def _tag_ids(conn: Connection, items: Sequence[Correction], vocabulary: dict[str, int]) -> list[int]:
    """Each correction's tag id, a word new to the store created for ``add`` (``vocabulary`` grows with it); an error
    naming the first tag no photo can have."""
    out = []
    for c in items:
        word = normalize_tag(c.tag)
        if word not in vocabulary:
            if c.action != "add":
                advice = "" if c.action == "clear" else "; add it instead"
                raise AnnotError(f"{c.tag!r}: not a word of the store's vocabulary ({len(vocabulary):,} words), so "
                                 f"no photo has it to {c.action}{advice}; nothing corrected")
            vocabulary[word] = _new_word(conn, word, c.tag)
        out.append(int(vocabulary[word]))
    return out


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


def new_events(history: Sequence[tuple[int, int, str]], checked: Sequence[tuple[int, int, str]]
               ) -> list[tuple[int, int, str]]:
    """The corrections that change something, in order: each one whose action differs from the last recorded (or
    earlier in ``checked``) action on the same photo and tag."""
    last = {(i, t): a for i, t, a in history}
    out = []
    for image_id, tag_id, action in checked:
        if action == "clear" and last.get((image_id, tag_id), "clear") == "clear":
            continue  # nothing to forget
        if last.get((image_id, tag_id)) != action:
            out.append((image_id, tag_id, action))
            last[(image_id, tag_id)] = action
    return out


def vouched(history: Sequence[tuple[int, int, str]], image_ids: Iterable[int]) -> dict[int, set[int]]:
    """The tags someone vouched for on each of these library photos: confirmed or added, less rejected (the last
    word wins)."""
    out: dict[int, dict[int, bool]] = {int(i): {} for i in image_ids}
    for image_id, tag_id, action in history:
        if image_id in out:
            out[image_id][tag_id] = action in VOUCHING
    return {i: {t for t, keep in found.items() if keep} for i, found in out.items()}


def record_corrections(store_root: Path, items: Iterable[Correction], *, source: str = "cli", wait: bool | float = False,
                       progress: Progress | None = None) -> CorrectReport:
    """Check and keep corrections, then bring the training index in step with them."""
    items = list(items)
    if not items:
        raise AnnotError("no corrections given: --confirm, --reject or --add a tag, or --from a JSON Lines file")
    store = StoreDir.open(Path(store_root), write=True, wait=wait)
    try:
        report, _ = write_corrections(store, items, source=source)
        sync_corrected(store, report, progress)
        store.publish()
        return report
    finally:
        store.close()


def write_corrections(store: StoreDir, items: Sequence[Correction], *, source: str, memo: Memo | None = None
                      ) -> tuple[CorrectReport, Written]:
    """Check corrections and write them into a writer's database in one transaction (all or none): the training
    index does not follow yet (:func:`sync_corrected`). ``memo``: what a writer kept open reads once."""
    memo = memo if memo is not None else Memo()
    try:
        with store.db.begin() as conn:
            return _write(conn, store, items, source, memo)
    except BaseException:
        memo.forget()  # a failed write may have taken ids or words it did not keep
        raise


def _write(conn: Connection, store: StoreDir, items: Sequence[Correction], source: str, memo: Memo
           ) -> tuple[CorrectReport, Written]:
    if memo.vocabulary is None:
        memo.vocabulary = {str(w): int(i) for w, i in conn.execute(select(tags.c.word, tags.c.id))}
    photo_of, facts = _photos(conn, items, store.root)
    tag_of = _tag_ids(conn, items, memo.vocabulary)
    checked = [(i, t, c.action) for i, t, c in zip(photo_of, tag_of, items, strict=True)]
    photo_ids = sorted(set(photo_of))
    library = {i for i in photo_ids if facts[i][1]}
    cleared = next((i for i, _, a in checked if a == "clear" and i not in library), None)
    if cleared is not None:
        raise AnnotError(f"photo id {cleared}: a training image's tags are its own: confirm or reject them "
                         "(clear forgets corrections of library photos); nothing corrected")
    history = history_of(conn, photo_ids)
    resolved = new_events(history, checked)
    start = memo.next_correction if memo.next_correction is not None else next_id(conn, corrections)
    now = datetime.now(UTC).replace(tzinfo=None)
    insert_rows(conn, corrections, [{"id": start + n, "image_id": i, "tag_id": t, "action": a, "created_at": now,
                                     "source": source} for n, (i, t, a) in enumerate(resolved)], new=True)
    memo.next_correction = start + len(resolved)
    for image_id, tag_id, action in resolved:  # a training image's own tags change as corrected
        if image_id in library or facts[image_id][0] != TRAIN:
            continue
        delete_rows(conn, image_tags, image_tags.c.image_id == image_id, image_tags.c.tag_id == tag_id)
        if action != "reject":
            insert_rows(conn, image_tags, [{"image_id": image_id, "tag_id": tag_id}])
    history += resolved
    kept = vouched(history, sorted(library))  # a library photo's tags as training truth: its vouched ones
    if kept:
        delete_rows(conn, image_tags, image_tags.c.image_id.in_(list(kept)), keys=list(kept))
        insert_rows(conn, image_tags, [{"image_id": i, "tag_id": t} for i, found in kept.items() for t in sorted(found)])
        joining = [i for i, found in kept.items() if found and facts[i][0] != TRAIN]
        if joining:
            update_rows(conn, images, [images.c.id.in_(joining)], {"split": TRAIN}, keys=joining)
    known = set(store.manifest().vocabulary.tag_ids)
    report = CorrectReport(recorded=len(resolved), unchanged=len(checked) - len(resolved), photos=len(photo_ids),
                           left_training=sum(1 for found in kept.values() if not found),
                           joined_training=sum(1 for found in kept.values() if found),
                           new_words=sorted({normalize_tag(c.tag) for c, t in zip(items, tag_of, strict=True)
                                             if t not in known}))
    return report, Written(photo_ids, library, history)


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


__all__ = ["ACTIONS", "CorrectReport", "Correction", "Memo", "Written", "read_corrections",
           "record_corrections", "sync_corrected", "vouched", "write_corrections"]
