"""Importing a corpus into a store's database: images (hash, size, split), tags and image_tags, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from annot.errors import CorpusError
from annot.features.images import probe_image
from annot.indexer.corpus import Corpus
from annot.schema import image_tags, images, tags
from annot.schema.database import insert_rows, next_id
from annot.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportReport:
    """What an import did. ``items`` pairs each readable image's id with its path, in corpus order."""

    items: list[tuple[int, Path]]
    added: int
    unreadable: dict[str, str]


def tag_ids(store: Store, words: list[str] | tuple[str, ...], *, create: bool) -> dict[str, int]:
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


def import_corpus(
    store: Store,
    corpus: Corpus,
    split: str,
    *,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Add the corpus's images and tags to the store (already present paths keep their ids).

    An image that cannot be opened is skipped and reported, or with ``strict`` is an error naming it.
    Nothing is written unless the whole import succeeds.
    """
    with store.db.connect() as conn:
        existing = {p: (i, s) for i, p, s in conn.execute(select(images.c.id, images.c.path, images.c.split))}

    unreadable: dict[str, str] = {}
    probed: dict[Path, tuple[str, int, int]] = {}
    for entry in corpus.entries:
        if str(entry.path) not in existing:
            try:
                info = probe_image(entry.path)
                probed[entry.path] = (info.sha256, info.width, info.height)
            except FileNotFoundError:
                unreadable[str(entry.path)] = "no such file"
            except (OSError, ValueError) as exc:
                unreadable[str(entry.path)] = f"not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            if strict and str(entry.path) in unreadable:
                raise CorpusError(f"{corpus.source}:{entry.line}: {entry.path}: {unreadable[str(entry.path)]}")
        if progress:
            progress(1)

    word_ids = tag_ids(store, sorted({t for e in corpus.entries for t in e.tags}), create=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    items: list[tuple[int, Path]] = []
    with store.db.begin() as conn:
        start = next_id(conn, images)
        new_rows: list[dict[str, Any]] = []
        tag_rows: list[dict[str, int]] = []
        moved: list[int] = []
        for entry in corpus.entries:
            key = str(entry.path)
            if key in unreadable:
                continue
            if key in existing:
                image_id, old_split = existing[key]
                if old_split != split:
                    moved.append(image_id)
            else:
                image_id = start + len(new_rows)
                digest, width, height = probed[entry.path]
                new_rows.append(
                    {"id": image_id, "path": key, "sha256": digest, "width": width, "height": height,
                     "split": split, "added_at": now}
                )
            items.append((image_id, entry.path))
            tag_rows.extend({"image_id": image_id, "tag_id": word_ids[t]} for t in entry.tags)
        insert_rows(conn, images, new_rows)
        if moved:
            conn.execute(update(images).where(images.c.id.in_(moved)).values(split=split))
        ids = [i for i, _ in items]
        for lo in range(0, len(ids), 5000):
            conn.execute(image_tags.delete().where(image_tags.c.image_id.in_(ids[lo : lo + 5000])))
        insert_rows(conn, image_tags, tag_rows)
    if unreadable:
        log.warning("%s: skipped %d unreadable images", corpus.source, len(unreadable))
    return ImportReport(items, len(new_rows), unreadable)
