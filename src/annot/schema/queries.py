"""Read queries shared by indexing, annotation, evaluation and search, in annot's own SQL (no SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.schema.database import Database, fetch_columns, key_relation

SMALL = 2000  # ids given to DuckDB as parameters up to this many; a registered relation past it


def _by_ids(db: Database, sql: str, image_ids: Sequence[int] | NDArray[np.int64],
            parameters: Sequence[Any] = ()) -> dict[str, NDArray[Any]]:
    """``sql`` over ``image_ids`` as numpy columns: the SQL says ``IN {ids}`` where the ids go (a list of parameters
    for a few, a relation registered with DuckDB for many), and ``?`` for ``parameters`` after it."""
    ids = np.asarray(image_ids, np.int64)
    with db.raw() as raw:
        if len(ids) <= SMALL:
            return fetch_columns(raw, sql.format(ids=f"({', '.join('?' * len(ids))})"), [*ids.tolist(), *parameters])
        with key_relation(raw, ids) as keys:
            return fetch_columns(raw, sql.format(ids=f"(SELECT k FROM {keys})"), parameters)


def label_matrix(db: Database, image_ids: Sequence[int], tag_ids: Sequence[int]) -> NDArray[np.bool_]:
    """A (len(image_ids) × len(tag_ids)) 0/1 matrix: does image i carry tag t. Other tags are ignored."""
    ids, tags = np.asarray(image_ids, np.int64), np.asarray(tag_ids, np.int64)
    labels = np.zeros((len(ids), len(tags)), bool)
    if not len(ids) or not len(tags):
        return labels
    found = _by_ids(db, "SELECT image_id, tag_id FROM image_tags WHERE image_id IN {ids}", ids)
    image, tag = np.asarray(found["image_id"], np.int64), np.asarray(found["tag_id"], np.int64)
    row_of = np.full(int(ids.max()) + 1, -1, np.int64)  # lookup tables: an id's row, a tag's column
    row_of[ids] = np.arange(len(ids))
    column_of = np.full(max(int(tags.max()), int(tag.max(initial=0))) + 1, -1, np.int64)
    column_of[tags] = np.arange(len(tags))
    column = column_of[tag]
    labels[row_of[image][column >= 0], column[column >= 0]] = True
    return labels


def image_paths(db: Database, image_ids: Sequence[int]) -> dict[int, str]:
    """The path of each of ``image_ids`` the database holds."""
    if not len(image_ids):
        return {}
    found = _by_ids(db, "SELECT id, path FROM images WHERE id IN {ids}", image_ids)
    return {int(i): str(p) for i, p in zip(found["id"].tolist(), found["path"].tolist(), strict=True)}


def paths_under(db: Database, image_ids: Sequence[int], prefix: str) -> set[int]:
    """Which of ``image_ids`` have a path that starts with ``prefix`` (as written: no pattern)."""
    if not len(image_ids):
        return set()
    found = _by_ids(db, "SELECT id FROM images WHERE id IN {ids} AND starts_with(path, ?)", image_ids, [prefix])
    return {int(i) for i in found["id"].tolist()}


def words_by_id(db: Database) -> dict[int, str]:
    return {int(i): str(w) for i, w in db.rows("SELECT id, word FROM tags")}


def count_rows(db: Database) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in ("images", "tags", "image_tags"):
        out[table] = int(db.rows(f"SELECT count(*) FROM {table}")[0][0])
    for split, n in db.rows("SELECT split, count(*) FROM images GROUP BY split"):
        out[f"images.{split}"] = int(n)
    return out
