"""What every photo shows, as one relation read from the database, whatever the loaded model: a training image's
own tags (sure), a library photo's predicted tags with its corrections applied (the last correction of a tag wins:
reject removes it, confirm and add make it sure, clear brings the prediction back), by photo and surest first; and
which of the library's photos are annotated.

A layered database's base never changes, so its relation is written once, by the writer that folds the base
(:func:`write_view`, two ``.npy`` files the manifest names beside the base), and a reader maps them and reads again
only the photos the segments above the base touched (:func:`touched_photos`, :func:`patched`): loading the library
after a change reads what changed since the last fold, not the library.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.schema.database import Database, fetch_columns
from annot.schema.layered import touched

TAGS = np.dtype([("image_id", "<i8"), ("tag_id", "<i8"), ("confidence", "<f4"), ("source", "i1")])
FILES = np.dtype([("image_id", "<i8"), ("annotated", "?")])
SOURCES = ("predicted", "confirmed", "added", "training")
SURE_STEPS = (1 << 24) - 1  # confidence in 2^24 steps: one integer sort key with the photo's id
PHOTO_TABLES = ("images", "image_tags", "photo_files", "annotations")  # grouped by photo id


@dataclass(frozen=True)
class Shown:
    tags: NDArray[Any]  # TAGS rows, by photo id and surest first
    files: NDArray[Any]  # FILES rows: the library's photos, by id

    @classmethod
    def empty(cls) -> Shown:
        return cls(np.zeros(0, TAGS), np.zeros(0, FILES))


def sort_key(tags: NDArray[Any]) -> NDArray[np.int64]:
    """By photo, surest first, as one integer (a stable sort of it takes a tenth of a lexsort's time)."""
    sureness = ((1.0 - np.clip(tags["confidence"].astype(np.float64), 0.0, 1.0)) * SURE_STEPS).astype(np.int64)
    return np.asarray(tags["image_id"], np.int64) * (SURE_STEPS + 1) + sureness


def member(ids: NDArray[Any], size: int) -> NDArray[np.bool_]:
    """A lookup table over ids 0..size-1: True for ``ids`` (a bulk ``isin`` without sorting)."""
    table = np.zeros(size, bool)
    table[np.asarray(ids, np.int64)] = True
    return table


def _rows(image_ids: Any, tag_ids: Any, confidence: Any, source: Any) -> NDArray[Any]:
    out = np.zeros(len(image_ids), TAGS)
    out["image_id"], out["tag_id"], out["confidence"], out["source"] = image_ids, tag_ids, confidence, source
    return out


def _corrected(shown: dict[str, NDArray[Any]], mine: NDArray[np.bool_], fixed: dict[str, NDArray[Any]],
               wanted: NDArray[np.bool_]) -> NDArray[Any]:
    """The tags of the corrected library photos (``mine``: their annotation rows; ``wanted``: which photos): their
    predicted ones with their corrections applied in order."""
    tags: dict[int, dict[int, tuple[float, int]]] = defaultdict(dict)
    confidence = np.nan_to_num(np.asarray(shown["confidence"], np.float64)[mine], nan=0.5)  # NaN: no calibration
    for i, t, c in zip(np.asarray(shown["image_id"])[mine].tolist(), np.asarray(shown["tag_id"])[mine].tolist(),
                       confidence.tolist(), strict=True):
        tags[int(i)][int(t)] = (float(c), 0)
    made = {i: dict(found) for i, found in tags.items()}  # what clear brings back
    for i, t, action in zip(fixed["image_id"].tolist(), fixed["tag_id"].tolist(), fixed["action"].tolist(),
                            strict=True):
        if not wanted[int(i)]:  # a training image's corrections are its own tags already
            continue
        if action == "clear" and int(t) in made.get(int(i), {}):
            tags[int(i)][int(t)] = made[int(i)][int(t)]
        elif action in ("reject", "clear"):
            tags[int(i)].pop(int(t), None)
        else:
            tags[int(i)][int(t)] = (1.0, SOURCES.index("confirmed" if action == "confirm" else "added"))
    flat = [(i, t, c, s) for i, found in tags.items() for t, (c, s) in found.items()]
    if not flat:
        return np.zeros(0, TAGS)
    i, t, c, s = (np.array(column) for column in zip(*flat, strict=True))
    return _rows(i, t, c, s)


def read_shown(raw: Any, catalog: str = "", keys: str | None = None, library: bool = True) -> Shown:
    """The relation as the database holds it (its tables in ``catalog``, default the DuckDB connection ``raw``'s
    own), of every photo or of the photos whose ids the relation ``keys`` (a column ``k``) names; ``library``:
    whether the database has the library's tables."""
    c = f"{catalog}." if catalog else ""

    def where(column: str, joined: bool = False) -> str:
        if keys is None:
            return ""
        return f"{' AND' if joined else ' WHERE'} {column} IN (SELECT k FROM {keys})"

    own = fetch_columns(raw, f"SELECT t.image_id, t.tag_id FROM {c}image_tags t JOIN {c}images i ON i.id = t.image_id "
                             f"WHERE i.split = 'train'{where('t.image_id', True)}")
    own_ids = np.asarray(own["image_id"], np.int64)
    if not library:
        return Shown(_sorted(_rows(own_ids, own["tag_id"], 1.0, 3)), np.zeros(0, FILES))
    files = fetch_columns(raw, f"SELECT image_id, state = 'annotated' AS annotated FROM {c}photo_files"
                               f"{where('image_id')} ORDER BY image_id")
    shown = fetch_columns(raw, f"SELECT image_id, tag_id, confidence FROM {c}annotations{where('image_id')}")
    fixed = fetch_columns(raw, f"SELECT image_id, tag_id, action FROM {c}corrections{where('image_id')} ORDER BY id")
    photo_ids, shown_ids = np.asarray(files["image_id"], np.int64), np.asarray(shown["image_id"], np.int64)
    fixed_ids = np.asarray(fixed["image_id"], np.int64)
    size = 1 + int(max(photo_ids.max(initial=0), own_ids.max(initial=0), shown_ids.max(initial=0),
                       fixed_ids.max(initial=0)))
    is_photo = member(photo_ids, size)
    keep = ~is_photo[own_ids]
    wanted = member(fixed_ids, size) & is_photo  # corrected library photos
    mine = wanted[shown_ids]
    confidence = np.nan_to_num(np.asarray(shown["confidence"], np.float32), nan=0.5)
    parts = [_rows(own_ids[keep], np.asarray(own["tag_id"])[keep], 1.0, 3),
             _rows(shown_ids[~mine], np.asarray(shown["tag_id"])[~mine], confidence[~mine], 0),
             _corrected(shown, mine, fixed, wanted)]
    out = np.zeros(len(photo_ids), FILES)
    out["image_id"], out["annotated"] = photo_ids, np.asarray(files["annotated"], bool)
    return Shown(_sorted(np.concatenate(parts)), out)


def _sorted(tags: NDArray[Any]) -> NDArray[Any]:
    return tags[np.argsort(sort_key(tags), kind="stable")]


# -- written at a fold, patched by the segments ----------------------------------------------------------------------
def write_view(base: Path, tags_path: Path, files_path: Path) -> None:
    """The relation of a base database file (a fold's new base) into two ``.npy`` files."""
    db = Database(base, read_only=True)
    try:
        with db.raw() as raw:
            shown = read_shown(raw, library=db.has_table("photo_files"))
    finally:
        db.close()
    for path, array in ((tags_path, shown.tags), (files_path, shown.files)):
        with open(path, "wb") as fh:
            np.save(fh, array)


def touched_photos(raw: Any, catalogs: list[str]) -> NDArray[np.int64]:
    """The ids of the photos whose rows the layers ``catalogs`` (the segments above the base) wrote, read on the
    DuckDB connection ``raw``."""
    present = {(str(c), str(t)) for c, t in raw.execute(
        "SELECT database_name, table_name FROM duckdb_tables()").fetchall()}
    parts = []
    for catalog in catalogs:
        for table in PHOTO_TABLES:
            if (catalog, touched(table)) in present:
                parts.append(f'SELECT k FROM {catalog}."{touched(table)}"')
        if (catalog, touched("corrections")) in present:  # grouped by their own id: the photos they correct
            parts.append(f"SELECT image_id FROM corrections WHERE id IN "
                         f'(SELECT k FROM {catalog}."{touched("corrections")}")')
    if not parts:
        return np.zeros(0, np.int64)
    found = fetch_columns(raw, f"SELECT DISTINCT k FROM ({' UNION ALL '.join(parts)}) AS t(k) WHERE k IS NOT NULL")
    return np.sort(np.asarray(found["k"], np.int64))


def patched(base: Shown, changed: NDArray[np.int64], fresh: Shown) -> Shown:
    """``base`` with the photos ``changed`` as ``fresh`` has them (in order, without sorting the whole)."""
    size = 1 + int(max(changed.max(initial=0), base.tags["image_id"].max(initial=0),
                       base.files["image_id"].max(initial=0)))
    gone = member(changed, size)
    tags = base.tags[~gone[base.tags["image_id"]]]
    tags = np.insert(tags, np.searchsorted(sort_key(tags), sort_key(fresh.tags), side="right"), fresh.tags)
    files = base.files[~gone[base.files["image_id"]]]
    files = np.insert(files, np.searchsorted(files["image_id"], fresh.files["image_id"]), fresh.files)
    return Shown(tags, files)


__all__ = ["FILES", "SOURCES", "TAGS", "Shown", "member", "patched", "read_shown", "sort_key", "touched_photos",
           "write_view"]
