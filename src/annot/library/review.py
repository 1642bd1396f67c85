"""The review queue (``annot review``, ``GET /v1/review``): the library's photos whose tags a person should look at
first, so that each correction teaches the store the most.

A photo's **uncertainty** is the summed binary entropy of its shown tags' calibrated confidences (a tag at 50% is
unsure, one at 2% or 98% is not); its **density** is its mean correlation with its ``NEIGHBOURS`` nearest library
photos in the shared space (a correction of a photo with many look-alikes reaches many photos at once, since the
corrected photo joins the training index and votes for them). The queue ranks photos nobody has corrected yet by
uncertainty × density (information density, Settles & Craven 2008), among the ``CANDIDATES`` most uncertain. Each
item names the tags to look at, least sure first. Accepting or rejecting a tag is a correction
(:func:`annot.library.corrections.record_corrections`); a corrected photo leaves the queue.

Without a confidence calibration (a store indexed with another method) every tag counts as unsure and the queue
orders by density alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from annot.library.photoview import PhotoTag
from annot.library.vectors import read_library
from annot.library.view import photo_tags
from annot.model import StoreModel
from annot.schema import corrections, images, photo_annotations, photo_files
from annot.settings import SettingsError

NEIGHBOURS = 10  # library photos whose correlation makes a photo's density
CANDIDATES = 2_000  # the most uncertain photos whose density is measured
EPS = 1e-6
ORDERS = ("dense", "uncertain", "rare")  # what ranks the queue (see the module's description)


@dataclass(frozen=True)
class ReviewItem:
    """A photo to review: its id and path, why it is asked (uncertainty, density, their product ``priority``), its
    tags as shown, and the tags to look at (least sure first)."""

    id: int
    path: str
    priority: float
    uncertainty: float
    density: float
    tags: tuple[PhotoTag, ...]
    ask: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "priority": round(self.priority, 5),
                "uncertainty": round(self.uncertainty, 5), "density": round(self.density, 5),
                "tags": [t.to_dict() for t in self.tags], "ask": list(self.ask)}


def _uncertain(model: StoreModel, limit: int, rarity: bool) -> list[tuple[int, float]]:
    """The ``limit`` most uncertain annotated, uncorrected library photos: (id, summed tag entropy, each tag's
    weighted by its rarity with ``rarity``), most uncertain first."""
    corrected = select(corrections.c.image_id).distinct()
    query = (select(photo_annotations.c.image_id, photo_annotations.c.tag_id, photo_annotations.c.confidence)
             .join(photo_files, photo_files.c.image_id == photo_annotations.c.image_id)
             .where(photo_files.c.state == "annotated", photo_annotations.c.image_id.not_in(corrected)))
    with model.store.db.connect() as conn:
        rows = np.array([(i, t, np.nan if c is None else c) for i, t, c in conn.execute(query)], np.float64)
    if not len(rows):
        return []
    c = np.clip(np.nan_to_num(rows[:, 2], nan=0.5), EPS, 1 - EPS)
    entropy = -(c * np.log(c) + (1 - c) * np.log(1 - c))
    if rarity:
        entropy *= _rarity(model, rows[:, 1].astype(np.int64))
    ids, slot = np.unique(rows[:, 0].astype(np.int64), return_inverse=True)
    u = np.bincount(slot, weights=entropy, minlength=len(ids))
    order = np.lexsort((ids, -u))[:limit]
    return [(int(ids[j]), float(u[j])) for j in order]


def _rarity(model: StoreModel, tag_ids: NDArray[np.int64]) -> NDArray[np.float64]:
    """Each tag's weight: the square root of the median word's training images over its own (a word the training
    index holds on few images counts more; words it lacks count as the rarest), within [1/4, 4]."""
    frequency = dict(zip(model.tag_ids, model.frequency.tolist(), strict=True))
    median = float(np.median(model.frequency)) if len(model.frequency) else 1.0
    counts = np.array([max(frequency.get(int(t), 0), 1) for t in tag_ids], np.float64)
    return np.clip(np.sqrt(max(median, 1.0) / counts), 0.25, 4.0)


def _density(model: StoreModel, ids: list[int]) -> dict[int, float]:
    """Each photo's mean correlation (clipped at 0) with its nearest library photos in the shared space."""
    record = model.manifest.collection
    if record is None or not ids:
        return {i: 1.0 for i in ids}
    index = read_library(model.store, record, model.index.d)
    if index is None or index.ntotal < 2:
        return {i: 1.0 for i in ids}
    try:
        rows = index.vectors_of(np.asarray(ids, np.int64))
    except RuntimeError:  # photos not in the index (a killed run): no density known
        return {i: 1.0 for i in ids}
    k = min(NEIGHBOURS + 1, int(index.ntotal))
    similarity, found = index.search(rows, k)
    out = {}
    for i, s, f in zip(ids, similarity, found, strict=True):
        others = s[(f != i) & (f >= 0)][:NEIGHBOURS]
        out[i] = float(np.clip(others, 0.0, 1.0).mean()) if len(others) else 0.0
    return out


def review_queue(model: StoreModel, n: int = 20, *, order: str = "dense", candidates: int = CANDIDATES
                 ) -> list[ReviewItem]:
    """The ``n`` photos to review first (see the module's description); ``order`` is one of :data:`ORDERS`."""
    if order not in ORDERS:
        raise SettingsError("review.order", f"must be one of {', '.join(ORDERS)}, got {order!r}")
    uncertain = _uncertain(model, max(candidates, n), rarity=order == "rare")
    if not uncertain:
        return []
    density = _density(model, [i for i, _ in uncertain]) if order == "dense" else {i: 1.0 for i, _ in uncertain}
    ranked = sorted(uncertain, key=lambda item: (-item[1] * density[item[0]], item[0]))[:n]
    chosen = [i for i, _ in ranked]
    shown = photo_tags(model.store, chosen)
    with model.store.db.connect() as conn:
        paths = dict(conn.execute(select(images.c.id, images.c.path).where(images.c.id.in_(chosen))).all())
    out = []
    for image_id, u in ranked:
        found = tuple(shown.get(image_id, []))
        ask = tuple(t.tag for t in sorted(found, key=lambda t: abs((t.confidence if t.confidence is not None
                                                                    else 0.5) - 0.5)))
        out.append(ReviewItem(image_id, str(paths.get(image_id, "")), u * density[image_id], u, density[image_id],
                              found, ask))
    return out


__all__ = ["CANDIDATES", "NEIGHBOURS", "ORDERS", "ReviewItem", "review_queue"]
