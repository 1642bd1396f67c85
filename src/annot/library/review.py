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
from sqlalchemy import func, select

from annot.library.view import PhotoTag, photo_tags
from annot.model import StoreModel
from annot.schema import corrections, images, photo_annotations, photo_files

NEIGHBOURS = 10  # library photos whose correlation makes a photo's density
CANDIDATES = 2_000  # the most uncertain photos whose density is measured
EPS = 1e-6


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


def _uncertain(model: StoreModel, limit: int) -> list[tuple[int, float]]:
    """The ``limit`` most uncertain annotated, uncorrected library photos: (id, summed tag entropy), in SQL."""
    c = func.least(func.greatest(func.coalesce(photo_annotations.c.confidence, 0.5), EPS), 1 - EPS)
    entropy = func.sum(-(c * func.ln(c) + (1 - c) * func.ln(1 - c)))
    corrected = select(corrections.c.image_id).distinct()
    query = (select(photo_annotations.c.image_id, entropy.label("u"))
             .join(photo_files, photo_files.c.image_id == photo_annotations.c.image_id)
             .where(photo_files.c.state == "annotated", photo_annotations.c.image_id.not_in(corrected))
             .group_by(photo_annotations.c.image_id).order_by(entropy.desc(), photo_annotations.c.image_id)
             .limit(limit))
    with model.store.db.connect() as conn:
        return [(int(i), float(u)) for i, u in conn.execute(query)]


def _density(model: StoreModel, ids: list[int]) -> dict[int, float]:
    """Each photo's mean correlation (clipped at 0) with its nearest library photos in the shared space."""
    record = model.manifest.collection
    if record is None or not ids:
        return {i: 1.0 for i in ids}
    index = model.store.read_index(record.file, "photo library index")
    if index.d != model.index.d or index.ntotal < 2:
        return {i: 1.0 for i in ids}
    try:
        rows = np.asarray(index.reconstruct_batch(np.asarray(ids, np.int64)), np.float32)
    except RuntimeError:  # photos not in the index (a killed run): no density known
        return {i: 1.0 for i in ids}
    k = min(NEIGHBOURS + 1, int(index.ntotal))
    similarity, found = index.search(rows, k)
    out = {}
    for i, s, f in zip(ids, similarity, found, strict=True):
        others = s[(f != i) & (f >= 0)][:NEIGHBOURS]
        out[i] = float(np.clip(others, 0.0, 1.0).mean()) if len(others) else 0.0
    return out


def review_queue(model: StoreModel, n: int = 20, *, candidates: int = CANDIDATES) -> list[ReviewItem]:
    """The ``n`` photos to review first (see the module's description)."""
    uncertain = _uncertain(model, max(candidates, n))
    if not uncertain:
        return []
    density = _density(model, [i for i, _ in uncertain])
    ranked = sorted(uncertain, key=lambda item: (-item[1] * density[item[0]], item[0]))[:n]
    chosen = [i for i, _ in ranked]
    shown = photo_tags(model, chosen)
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


__all__ = ["CANDIDATES", "NEIGHBOURS", "ReviewItem", "review_queue"]
