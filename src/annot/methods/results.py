"""What annotating an image gives back, typed: the image's tags with their scores, confidence and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Vote:
    """A training image that voted for a tag: its id, path, correlation distance and weight exp(−(D − D_min)/τ)."""

    image_id: int
    path: str
    distance: float
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "path": self.path, "distance": round(self.distance, 6),
                "weight": round(self.weight, 6)}


@dataclass(frozen=True)
class TagScore:
    """One tag of an image: the method's score, the calibrated probability that the tag is right (``confidence``,
    None where the store has no calibration), and the training images that voted (with ``explain``)."""

    tag: str
    score: float
    confidence: float | None = None
    evidence: tuple[Vote, ...] = ()

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = {"tag": self.tag, "score": round(self.score, 6)}
        if self.confidence is not None:
            item["confidence"] = round(self.confidence, 4)
        if explain:
            item["evidence"] = [v.to_dict() for v in self.evidence]
        return item


@dataclass(frozen=True)
class Annotation:
    """An image's tags, best first."""

    image: str
    tags: tuple[TagScore, ...]
    features: Any = field(default=None, compare=False, repr=False)  # the image's features, where the caller kept them

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        return {"image": self.image, "tags": [t.to_dict(explain) for t in self.tags]}
