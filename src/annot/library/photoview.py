"""Every searchable photo with the tags it shows, in arrays (:class:`PhotoView`): read once per loaded model from
the photo view a fold wrote beside the base (mapped) with the photos the segments above it touched read again, in
annot's own SQL (:mod:`annot.schema.shown`; no SQLAlchemy on a search's path).

What a photo shows: a training image its own tags (sure); a library photo its predicted tags ranked by confidence,
with its corrections applied (the last correction of a tag wins; a rejected tag is gone, a confirmed or added one is
sure). :mod:`annot.library.view` reads the same for a few photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.model import StoreModel
from annot.schema.database import key_relation
from annot.schema.shown import SOURCES, Shown, member, patched, read_shown, touched_photos
from annot.store import StoreDir
from annot.store.files import map_array


@dataclass(frozen=True)
class PhotoTag:
    tag: str
    confidence: float | None
    source: str  # predicted, confirmed, added, training

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "confidence": None if self.confidence is None else round(self.confidence, 4),
                "source": self.source}


def shown_now(store: StoreDir) -> Shown:
    """What every photo shows as the store reads now (:mod:`annot.schema.shown`): the base's from the files its fold
    wrote, with the photos the segments above it touched read again; a base without them (folded by an older annot)
    is read whole."""
    record = store.database_record()
    db = store.db
    if record.view is None or record.base is None:
        with db.raw() as raw:
            return read_shown(raw, library=db.has_table("photo_files"))
    base = Shown(*(map_array(store.root, f, "photo view") for f in record.view))
    above = [name for name, _, _ in db.layers.named() if name != "b"] if db.layers is not None else []
    if not above:
        return base
    with db.raw() as raw:
        changed = touched_photos(raw, above)
        if not len(changed):
            return base
        with key_relation(raw, changed) as keys:
            fresh = read_shown(raw, keys=keys, library=db.has_table("photo_files"))
    return patched(base, changed, fresh)


class PhotoView:
    """Every searchable photo with its shown tags, read from the database once per loaded model, in arrays: the
    training images of the index and the library's annotated photos (not the missing or unreadable ones).

    ``ids`` sorted; ``library[i]`` whether ``ids[i]`` is a library photo; its tags are ``words[ptr[i]:ptr[i+1]]``
    (vocabulary positions) with ``confidence`` and ``source`` (an index into :data:`SOURCES`), surest first.
    """

    def __init__(self, model: StoreModel) -> None:
        shown = shown_now(model.store)
        self.vocabulary = list(model.vocabulary)
        photo_ids = np.asarray(shown.files["image_id"], np.int64)
        training = np.asarray(model.ids, np.int64)
        tags = shown.tags
        size = 1 + int(max(photo_ids.max(initial=0), training.max(initial=0), tags["image_id"].max(initial=0)))
        training = training[~member(photo_ids, size)[training]]  # the indexed training images, not library photos
        library = photo_ids[np.asarray(shown.files["annotated"], bool)]
        self.ids = np.sort(np.concatenate([training, library]))  # apart: training images are not photos
        self.library = member(library, size)[self.ids]
        position = np.full(max(max(model.tag_ids, default=0), int(tags["tag_id"].max(initial=0))) + 1, -1, np.int64)
        position[np.asarray(model.tag_ids, np.int64)] = np.arange(len(model.tag_ids))
        photo = np.asarray(tags["image_id"], np.int64)
        word = position[np.asarray(tags["tag_id"], np.int64)]
        keep = member(self.ids, size)[photo] & (word >= 0)  # searchable photos' tags that are vocabulary words
        # already by photo and surest first (the relation's order), and the rows are the photos' ids in order
        row_of = np.full(size, -1, np.int64)
        row_of[self.ids] = np.arange(len(self.ids))
        rows_of = row_of[photo[keep]]
        self.ptr = np.concatenate([[0], np.cumsum(np.bincount(rows_of, minlength=len(self.ids)))]).astype(np.int64)
        self.words = word[keep].astype(np.int32)
        self.confidence = np.asarray(tags["confidence"][keep], np.float32)
        self.source = np.asarray(tags["source"][keep], np.int8)
        self._rows_of_tags = rows_of
        self._by_word: dict[int, NDArray[np.int64]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, image_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """The rows of ``image_ids`` (-1 for one that is not a searchable photo)."""
        image_ids = np.asarray(image_ids, np.int64)
        at = np.clip(np.searchsorted(self.ids, image_ids), 0, max(len(self.ids) - 1, 0))
        found = (self.ids[at] == image_ids) if len(self.ids) else np.zeros(len(image_ids), bool)
        return np.where(found, at, -1)

    def _positions(self, word: int) -> NDArray[np.int64]:
        """Where vocabulary word ``word`` is in ``words`` (photo by photo): found by one scan at its first search
        and kept (at most every tag once, over the vocabulary), so a word searched again costs its own photos."""
        found = self._by_word.get(word)
        if found is None:
            found = np.flatnonzero(self.words == word)
            self._by_word[word] = found
        return found

    def with_word(self, word: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The rows of the photos showing vocabulary word ``word`` (in order), and its confidence on each."""
        at = self._positions(word)
        return self._rows_of_tags[at], self.confidence[at]

    @property
    def rows_of_tags(self) -> NDArray[np.int64]:
        """The row of each tag in ``words`` (its photo's)."""
        return self._rows_of_tags

    def has_word(self, rows: NDArray[np.int64], word: int) -> NDArray[np.bool_]:
        tagged = np.zeros(len(self.ids), bool)
        tagged[self.with_word(word)[0]] = True
        return tagged[rows]

    def tags(self, row: int) -> list[PhotoTag]:
        lo, hi = self.ptr[row], self.ptr[row + 1]
        return [PhotoTag(self.vocabulary[w], float(c), SOURCES[s])
                for w, c, s in zip(self.words[lo:hi], self.confidence[lo:hi], self.source[lo:hi], strict=True)]

    def kind(self, row: int) -> str:
        return "library" if self.library[row] else "training"
