"""Read queries shared by indexing, annotation and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from annot.schema.database import Database
from annot.schema.tables import image_tags, images, tags


def label_matrix(db: Database, image_ids: Sequence[int], tag_ids: Sequence[int]) -> NDArray[np.bool_]:
    """A (len(image_ids) × len(tag_ids)) 0/1 matrix: does image i carry tag t. Other tags are ignored."""
    row = {int(i): r for r, i in enumerate(image_ids)}
    col = {int(t): c for c, t in enumerate(tag_ids)}
    labels = np.zeros((len(row), len(col)), bool)
    ids = list(row)
    with db.connect() as conn:
        for lo in range(0, len(ids), 20000):
            query = select(image_tags.c.image_id, image_tags.c.tag_id).where(
                image_tags.c.image_id.in_(ids[lo : lo + 20000])
            )
            for image_id, tag_id in conn.execute(query):
                c = col.get(tag_id)
                if c is not None:
                    labels[row[image_id], c] = True
    return labels


def image_paths(db: Database, image_ids: Sequence[int]) -> dict[int, str]:
    ids = [int(i) for i in image_ids]
    found: dict[int, str] = {}
    with db.connect() as conn:
        for lo in range(0, len(ids), 20000):
            query = select(images.c.id, images.c.path).where(images.c.id.in_(ids[lo : lo + 20000]))
            found.update({int(i): p for i, p in conn.execute(query)})
    return found


def words_by_id(db: Database) -> dict[int, str]:
    with db.connect() as conn:
        return {int(i): w for i, w in conn.execute(select(tags.c.id, tags.c.word))}


def count_rows(db: Database) -> dict[str, int]:
    from sqlalchemy import func

    out: dict[str, int] = {}
    with db.connect() as conn:
        for table in (images, tags, image_tags):
            out[table.name] = int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
        for split, n in conn.execute(select(images.c.split, func.count()).group_by(images.c.split)):
            out[f"images.{split}"] = int(n)
    return out
