"""Changes to the CCA statistics that corrections made and no writer has added into them yet.

The statistics of a linear-CCA store (``models/statistics-*.npz``, tens of MiB: the covariance blocks of the image
features and the text view) change with every correction: a corrected photo joins the training images, or its tags
change. Rewriting them for each correction made a correction cost what the statistics weigh. A correction writes
instead what it changed (``models/pending-*.npz``, named by ``projection.pending`` in the manifest): for each
training image it touched, the tags the statistics count it with (``before``; none for an image they do not count)
and the tags it counts with now (``after``). The next writer that needs the statistics (``refit``, ``add``,
``remove``) reads them with these changes added in (:attr:`annot.indexer.grow._Open.stats`) and writes them whole.
Only the tags the projection's text side was fitted with are kept: the statistics read no others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from annot.errors import StoreError
from annot.store import StoredFile, StoreDir


@dataclass
class Pending:
    """The training images corrections changed since the statistics were written: ``before[id]`` the tags the
    statistics count it with (absent: not counted), ``after[id]`` the tags it counts with now."""

    touched: list[int] = field(default_factory=list)
    before: dict[int, NDArray[np.bool_]] = field(default_factory=dict)
    after: dict[int, NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.touched)

    def change(self, ids: NDArray[np.int64], before: NDArray[np.bool_] | None, after: NDArray[np.bool_]) -> None:
        """Images ``ids`` now count with tags ``after``; ``before``: what they counted with (None: nothing), kept
        from an image's first change only."""
        seen = set(self.touched)
        for k, image_id in enumerate(np.asarray(ids, np.int64).tolist()):
            if image_id not in seen:
                seen.add(image_id)
                self.touched.append(image_id)
                if before is not None:
                    self.before[image_id] = np.asarray(before[k], bool)
            self.after[image_id] = np.asarray(after[k], bool)

    def digest(self) -> str:
        h = hashlib.sha256()
        for image_id in self.touched:
            h.update(np.int64(image_id).tobytes())
            for rows in (self.before, self.after):
                h.update(rows[image_id].tobytes() if image_id in rows else b"-")
        return h.hexdigest()

    def save(self, store: StoreDir, relative: str) -> StoredFile | None:
        """Write the changes (None: there are none)."""
        if not self.touched:
            return None
        width = len(next(iter(self.after.values())))

        def matrix(rows: dict[int, NDArray[np.bool_]]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
            ids = np.asarray([i for i in self.touched if i in rows], np.int64)
            return ids, np.asarray([rows[int(i)] for i in ids], bool).reshape(len(ids), width)

        before_ids, before = matrix(self.before)
        after_ids, after = matrix(self.after)
        return store.save_arrays(relative, {"touched": np.asarray(self.touched, np.int64), "before_ids": before_ids,
                                            "before": before, "after_ids": after_ids, "after": after})

    @classmethod
    def read(cls, store: StoreDir, record: StoredFile | None) -> Pending:
        if record is None:
            return cls()
        arrays = store.read_arrays(record, "pending statistics")
        try:
            out = cls([int(i) for i in arrays["touched"]])
            out.before = {int(i): np.asarray(r, bool) for i, r in zip(arrays["before_ids"], arrays["before"], strict=True)}
            out.after = {int(i): np.asarray(r, bool) for i, r in zip(arrays["after_ids"], arrays["after"], strict=True)}
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{store.path(record.path)}: damaged pending statistics ({exc})") from exc
        return out


__all__ = ["Pending"]
