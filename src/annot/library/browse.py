"""Browsing the library (``Store.browse``, ``GET /v1/photos``): the annotated photos page by page, newest first or
in another order, narrowed to a folder, a month or year, a tag or the photos not reviewed yet, with the counts of
each (``Store.facets``).

A photo's date is when it was taken (EXIF, the camera's clock, as written) where its file says, else its file's
modification time (UTC). Its folder is the one that holds it. A tag narrows to the photos
that show it as search counts evidence: a predicted tag at or above the store's calibrated cut, or one the person
confirmed or added. Orders: ``newest`` and ``oldest`` (by date), ``name`` (by path), and ``confidence``: with a tag,
the photos surest of it first; without one, the photos whose surest tag is least sure first (those to look at).
"Not reviewed" is a photo without any correction.

The arrays (ids, folders, dates, reviewed) are read once per loaded model, as the search's photo view is, and a
page's paths and tags are read for its photos only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from annot.errors import AnnotError
from annot.features.images import exif_facts
from annot.library.photoview import PhotoTag
from annot.library.search import Searcher
from annot.library.view import photo_tags
from annot.schema import images
from annot.schema.database import fetch_columns
from annot.settings import SettingsError

ORDERS = ("newest", "oldest", "name", "confidence")
MAX_PAGE = 200  # photos in one page
MAX_FOLDERS = 1000  # folders the counts name (the fullest): an answer's size stays bounded
FOLDER = "regexp_replace(i.path, '/[^/]*$', '')"  # the folder that holds a photo
LIBRARY_SQL = f"""
SELECT f.image_id, dense_rank() OVER (ORDER BY {FOLDER}) - 1 AS folder,
       coalesce(epoch(f.taken_at)::BIGINT, f.mtime_ns // 1000000000) AS seconds,
       rank() OVER (ORDER BY i.path) AS by_name,
       f.image_id IN (SELECT image_id FROM (
           SELECT image_id, action, row_number() OVER (PARTITION BY image_id, tag_id ORDER BY id DESC) AS latest
           FROM corrections) WHERE latest = 1 AND action <> 'clear') AS reviewed
FROM photo_files f JOIN images i ON i.id = f.image_id
WHERE f.state = 'annotated'
ORDER BY f.image_id
"""
FOLDERS_SQL = f"""
SELECT DISTINCT {FOLDER} AS folder FROM photo_files f JOIN images i ON i.id = f.image_id
WHERE f.state = 'annotated' ORDER BY folder
"""


@dataclass(frozen=True)
class BrowsedPhoto:
    """A photo of a page: its id, path, folder, date (ISO: when it was taken by the camera's clock, else its
    file's time in UTC) and tags as shown (surest first)."""

    id: int
    path: str
    folder: str
    date: str
    reviewed: bool
    tags: tuple[PhotoTag, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "folder": self.folder, "date": self.date, "reviewed": self.reviewed,
                "tags": [t.to_dict() for t in self.tags]}


@dataclass(frozen=True)
class Page:
    """One page of the library: how many photos match in all, where the page starts, and its photos."""

    total: int
    offset: int
    photos: list[BrowsedPhoto]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "photos": [p.to_dict() for p in self.photos]}


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Browser:
    """The library's photos in arrays, for pages and counts."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        model = searcher.model
        db = model.store.db
        columns: dict[str, NDArray[Any]] = {}
        folders: NDArray[Any] = np.zeros(0, object)
        if db.has_table("photo_files"):
            with db.raw() as raw:
                columns = fetch_columns(raw, LIBRARY_SQL)
                folders = fetch_columns(raw, FOLDERS_SQL)["folder"]
        self.ids = np.asarray(columns.get("image_id", np.zeros(0)), np.int64)
        self.folders = np.asarray([str(f) for f in folders], str) if len(folders) else np.zeros(0, str)
        self.folder_of = np.asarray(columns.get("folder", np.zeros(0)), np.int64)  # positions in ``folders``
        self.seconds = np.asarray(columns.get("seconds", np.zeros(0)), np.int64)
        self.by_name = np.asarray(columns.get("by_name", np.zeros(0)), np.int64)
        self.reviewed = np.asarray(columns.get("reviewed", np.zeros(0)), bool)
        month = self.seconds.astype("datetime64[s]").astype("datetime64[M]")  # in numpy: a million in milliseconds
        found, self.month_of = np.unique(month, return_inverse=True)
        self.months = found.astype(str).astype("<U7")
        self.rows = searcher.view.rows(self.ids)  # rows of the photo view (-1: not in it)

    def __len__(self) -> int:
        return len(self.ids)

    def _tag_confidence(self, tag: str) -> NDArray[np.float64]:
        """Each photo's confidence for ``tag`` as evidence (NaN where it is not shown or under the cut)."""
        searcher = self.searcher
        words = searcher.query_words([tag])
        out = np.full(len(self.ids), np.nan)
        if not words or words[0] not in searcher.view.vocabulary:
            return out
        rows, confidence = searcher.view.with_word(searcher.view.vocabulary.index(words[0]))
        cut = searcher.evidence_cut()
        if cut is not None:
            rows, confidence = rows[confidence >= cut], confidence[confidence >= cut]
        by_row = np.full(len(searcher.view), np.nan)
        by_row[rows] = confidence
        inside = self.rows >= 0
        out[inside] = by_row[self.rows[inside]]
        return out

    def _surest(self) -> NDArray[np.float64]:
        view = self.searcher.view
        ptr = view.ptr
        out = np.zeros(len(self.ids))
        inside = (self.rows >= 0) & (ptr[np.maximum(self.rows, 0) + 1] > ptr[np.maximum(self.rows, 0)])
        out[inside] = view.confidence[ptr[self.rows[inside]]]  # tags are surest first
        return out

    def _selected(self, folder: str | None, date: str | None, tag: str | None, unreviewed: bool
                  ) -> tuple[NDArray[np.bool_], NDArray[np.float64] | None]:
        keep = np.ones(len(self.ids), bool)
        if folder is not None:
            folder = folder.rstrip("/") or "/"
            inside = np.array([f == folder or f.startswith(folder + "/") for f in self.folders], bool)
            keep &= inside[self.folder_of] if len(self.folders) else keep
        if date is not None:
            inside = np.array([m.startswith(date) for m in self.months], bool)
            keep &= inside[self.month_of] if len(self.months) else keep
        confidence = None
        if tag is not None:
            confidence = self._tag_confidence(tag)
            keep &= ~np.isnan(confidence)
        if unreviewed:
            keep &= ~self.reviewed
        return keep, confidence

    def page(self, *, folder: str | None = None, date: str | None = None, tag: str | None = None,
             unreviewed: bool = False, order: str = "newest", offset: int = 0, limit: int = 60) -> Page:
        """One page of the photos that match, in ``order``."""
        if order not in ORDERS:
            raise SettingsError("browse.order", f"must be one of {', '.join(ORDERS)}, got {order!r}")
        if not 1 <= limit <= MAX_PAGE:
            raise AnnotError(f"a page holds 1 to {MAX_PAGE} photos, not {limit}")
        if offset < 0:
            raise AnnotError(f"a page starts at 0 or later, not {offset}")
        keep, confidence = self._selected(folder, date, tag, unreviewed)
        where = np.flatnonzero(keep)
        if order in ("newest", "oldest"):
            key = self.seconds[where] * (-1 if order == "newest" else 1)
            ranked = where[np.lexsort((-self.ids[where] if order == "newest" else self.ids[where], key))]
        elif order == "name":
            ranked = where[np.argsort(self.by_name[where], kind="stable")]
        elif confidence is not None:
            ranked = where[np.argsort(-confidence[where], kind="stable")]
        else:
            ranked = where[np.argsort(self._surest()[where], kind="stable")]
        chosen = ranked[offset : offset + limit]
        return Page(len(where), offset, self._photos(chosen))

    def _photos(self, chosen: NDArray[np.int64]) -> list[BrowsedPhoto]:
        ids = [int(i) for i in self.ids[chosen]]
        if not ids:
            return []
        with self.searcher.model.store.db.connect() as conn:
            paths = {int(i): str(p) for i, p in conn.execute(select(images.c.id, images.c.path)
                                                             .where(images.c.id.in_(ids)))}
        shown = photo_tags(self.searcher.model.store, ids)
        return [BrowsedPhoto(i, paths.get(i, ""), str(self.folders[self.folder_of[c]]), _iso(int(self.seconds[c]))[:19],
                             bool(self.reviewed[c]), tuple(shown.get(i, [])))
                for i, c in zip(ids, chosen.tolist(), strict=True)]

    def facets(self, *, tags: int = 200, folders: int = MAX_FOLDERS) -> dict[str, Any]:
        """Counts of the whole library: by folder (the ``folders`` fullest, by name; ``folders_total`` says how many
        hold photos), by month, by tag (the ``tags`` most shown), not reviewed."""
        counts = np.bincount(self.folder_of, minlength=len(self.folders)) if len(self.ids) else np.zeros(0, int)
        fullest = np.sort(np.argsort(-counts, kind="stable")[:folders])
        months = np.bincount(self.month_of, minlength=len(self.months)) if len(self.ids) else np.zeros(0, int)
        view = self.searcher.view
        inside = self.rows[self.rows >= 0]
        counted = np.zeros(len(view.vocabulary), np.int64)
        if len(inside):
            cut = self.searcher.evidence_cut()
            member = np.zeros(len(view), bool)
            member[inside] = True
            tagged = member[view.rows_of_tags] & ((view.confidence >= cut) | (view.source > 0) if cut is not None
                                                   else True)
            counted = np.bincount(view.words[tagged], minlength=len(view.vocabulary))
        top = np.argsort(-counted, kind="stable")[:tags]
        return {"photos": len(self.ids), "not_reviewed": int((~self.reviewed).sum()),
                "folders": [{"folder": str(self.folders[j]), "count": int(counts[j])} for j in fullest],
                "folders_total": len(self.folders),
                "months": [{"month": str(m), "count": int(n)} for m, n in zip(self.months, months, strict=True)],
                "tags": [{"tag": view.vocabulary[j], "count": int(counted[j])} for j in top if counted[j] > 0]}


def file_details(path: Path) -> dict[str, Any]:
    """What the viewer shows of a photo's file: its size in bytes, its modification time (ISO, UTC), when it was
    taken (EXIF, the camera's clock) and the camera; None for what it lacks or cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return {"bytes": None, "modified": None, "taken": None, "camera": None}
    taken, camera = exif_facts(path)
    return {"bytes": status.st_size, "modified": _iso(int(status.st_mtime)),
            "taken": None if taken is None else taken.isoformat(), "camera": camera}


__all__ = ["MAX_PAGE", "ORDERS", "BrowsedPhoto", "Browser", "Page", "file_details"]
