"""Importing a corpus into a store's database: images (hash, size, split), tags and image_tags, in one transaction.

An image already in the store keeps its id (so its cached features stay its own); its tags become the corpus's
(``retagged`` says whose changed) and its split the one imported. A file whose content is byte for byte that of
another image (in the store or earlier in the corpus) is imported and reported (``duplicates``): a copy of a test
image among the training images would leak its tags into an evaluation, which ``annot eval`` refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from annot.errors import CorpusError
from annot.features.images import UnreadableImage, probe_image
from annot.indexer.corpus import Corpus
from annot.schema import image_tags, images, tags
from annot.schema.writes import delete_rows, insert_rows, next_id, update_rows
from annot.store import StoreDir

log = logging.getLogger(__name__)

TRAIN = "train"


@dataclass(frozen=True)
class ImportReport:
    """What an import did. ``items`` pairs each readable image's id with its path, in corpus order."""

    items: list[tuple[int, Path]]
    added: int
    unreadable: dict[str, str]
    duplicates: dict[str, str] = field(default_factory=dict)  # path -> "path (split)" of the image with its content
    retagged: list[int] = field(default_factory=list)  # ids of images already in the store whose tags changed


def tag_ids(store: StoreDir, words: list[str] | tuple[str, ...], *, create: bool) -> dict[str, int]:
    """Ids of ``words`` in the tags table, creating missing ones when ``create``."""
    with store.db.begin() as conn:
        known = {w: i for i, w in conn.execute(select(tags.c.id, tags.c.word))}
        missing = [w for w in words if w not in known]
        if missing and create:
            start = next_id(conn, tags)
            new = {w: start + k for k, w in enumerate(missing)}
            insert_rows(conn, tags, ({"id": i, "word": w} for w, i in new.items()))
            known.update(new)
    return {w: known[w] for w in words if w in known}


def probe(path: Path) -> tuple[str, int, int] | str:
    """(sha256, width, height) of an image file, or why it cannot be read."""
    try:
        info = probe_image(path)
    except FileNotFoundError:
        return "no such file"
    except UnreadableImage as exc:
        return str(exc)
    return info.sha256, info.width, info.height


def _probe_new(corpus: Corpus, existing: dict[str, tuple[int, str, str]], split: str, strict: bool,
               progress: Callable[[int], None] | None,
               ) -> tuple[dict[str, str], dict[Path, tuple[str, int, int]], dict[str, str]]:
    """The corpus's images new to the store, read: why each unreadable one is, each readable one's (hash, width,
    height), and those whose content another image of the store (or of the corpus) has."""
    by_content = {h: (p, s) for p, (_i, s, h) in existing.items()}
    unreadable: dict[str, str] = {}
    probed: dict[Path, tuple[str, int, int]] = {}
    duplicates: dict[str, str] = {}
    for entry in corpus.entries:
        key = str(entry.path)
        if key not in existing:
            found = probe(entry.path)
            if isinstance(found, str):
                unreadable[key] = found
                if strict:
                    raise CorpusError(f"{corpus.source}:{entry.line}: {entry.path}: {found}")
            else:
                probed[entry.path] = found
                twin = by_content.get(found[0])
                if twin is not None:
                    duplicates[key] = f"{twin[0]} ({twin[1]})"
                else:
                    by_content[found[0]] = (key, split)
        if progress:
            progress(1)
    return unreadable, probed, duplicates


def import_corpus(
    store: StoreDir,
    corpus: Corpus,
    split: str,
    *,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Add the corpus's images and tags to the store (already present paths keep their ids).

    An image that cannot be opened is skipped and reported, or with ``strict`` is an error naming it.
    Nothing is written unless the whole import succeeds. The images are read before the rows are written in one
    change of the store (a writer taking turns holds the store for that change only).
    """
    with store.db.connect() as conn:
        existing = _existing(conn)
    unreadable, probed, duplicates = _probe_new(corpus, existing, split, strict, progress)
    with store.change():
        return _write_import(store, corpus, split, unreadable, probed, duplicates)


def _existing(conn: Any) -> dict[str, tuple[int, str, str]]:
    return {p: (i, s, h) for i, p, s, h in conn.execute(select(images.c.id, images.c.path, images.c.split,
                                                               images.c.sha256))}


def _write_import(store: StoreDir, corpus: Corpus, split: str, unreadable: dict[str, str],
                  probed: dict[Path, tuple[str, int, int]], duplicates: dict[str, str]) -> ImportReport:
    """The rows of an import whose images were read: the store's images as they are now (another writer may have
    changed them since they were read), the corpus's new ones added."""
    word_ids = tag_ids(store, sorted({t for e in corpus.entries for t in e.tags}), create=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    items: list[tuple[int, Path]] = []
    with store.db.begin() as conn:
        existing = _existing(conn)
        start = next_id(conn, images)
        new_rows: list[dict[str, Any]] = []
        tag_rows: list[dict[str, int]] = []
        moved: list[int] = []
        kept: list[int] = []
        for entry in corpus.entries:
            key = str(entry.path)
            if key in unreadable:
                continue
            if key in existing:
                image_id, old_split, _ = existing[key]
                kept.append(image_id)
                if old_split != split:
                    moved.append(image_id)
            elif entry.path not in probed:  # known when read, gone since (another writer removed it)
                unreadable[key] = "removed from the store while it was imported; import it again"
                continue
            else:
                image_id = start + len(new_rows)
                digest, width, height = probed[entry.path]
                new_rows.append({"id": image_id, "path": key, "sha256": digest, "width": width, "height": height,
                                 "split": split, "added_at": now})
            items.append((image_id, entry.path))
            tag_rows.extend({"image_id": image_id, "tag_id": word_ids[t]} for t in entry.tags)
        old_tags: dict[int, set[int]] = {}
        for lo in range(0, len(kept), 5000):
            for image_id, tag_id in conn.execute(select(image_tags.c.image_id, image_tags.c.tag_id)
                                                 .where(image_tags.c.image_id.in_(kept[lo : lo + 5000]))):
                old_tags.setdefault(int(image_id), set()).add(int(tag_id))
        new_tags: dict[int, set[int]] = {}
        for row in tag_rows:
            new_tags.setdefault(row["image_id"], set()).add(row["tag_id"])
        retagged = [i for i in kept if old_tags.get(i, set()) != new_tags.get(i, set())]
        insert_rows(conn, images, new_rows)
        if moved:
            update_rows(conn, images, [images.c.id.in_(moved)], {"split": split})
        ids = [i for i, _ in items]
        for lo in range(0, len(ids), 5000):
            delete_rows(conn, image_tags, image_tags.c.image_id.in_(ids[lo : lo + 5000]))
        insert_rows(conn, image_tags, tag_rows)
    if unreadable:
        log.warning("%s: skipped %d unreadable images", corpus.source, len(unreadable))
    return ImportReport(items, len(new_rows), unreadable, duplicates, retagged)
