"""Corrections by a writer kept open between them: what the server does while a person reviews photos.

A correction on its own (:func:`annot.library.corrections.record_corrections`) opens the store for writing, writes
it, brings the training index in step, publishes and closes: a few hundred milliseconds, nearly all of it fixed
cost. A person clicking through photos makes corrections a second or two apart, so a :class:`CorrectionSession`
keeps the writer open while they come:

- the first correction of a burst takes the store's lock and opens the writer's database (its working segment);
- every correction is written there in one transaction, committed (durable) before it is answered, and the photos'
  tags as they are now read back from the same connection (:meth:`CorrectionSession.shown` keeps them, so the
  server shows them at once);
- ``linger`` seconds after the last correction, or ``longest`` seconds after the first, the burst is published:
  the training index follows every correction written (:func:`annot.library.corrections.sync_corrected`), the
  working segment becomes a segment the manifest names, and the lock is released, so other writers (``annot
  annotate``, which waits for it) take their turn, and readers in other processes see the corrections.

Readers in other processes see a burst whole, when it is published, never part of it. A SIGKILL loses nothing
answered: the working segment holds what was committed and the next writer (another burst, ``annot correct``,
``annot annotate``) publishes it and brings the training index in step (:meth:`CorrectionSession.catch_up` does it
when the server starts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from annot.errors import AnnotError, StoreError
from annot.library.corrections import Correction, CorrectReport, Memo, sync_corrected, write_corrections
from annot.library.photoview import PhotoTag
from annot.library.view import photo_tags
from annot.store import StoreDir

log = logging.getLogger(__name__)

LINGER = 2.0  # seconds after a burst's last correction that it is published (a person clicks every second or two)
LONGEST = 10.0  # seconds after a burst's first correction that it is published at the latest (other writers wait)


class CorrectionSession:
    """Corrections of one store, written by a writer kept open while they come (see the module's text). Safe to
    call from several threads; :meth:`close` publishes what is left."""

    def __init__(self, root: Path, *, wait: bool | float = False, linger: float = LINGER,
                 longest: float = LONGEST) -> None:
        self.root = Path(root)
        self.wait = wait
        self.linger, self.longest = linger, longest
        self._cond = threading.Condition(threading.RLock())
        self._store: StoreDir | None = None
        self._opened = self._last = 0.0
        self._shown: dict[int, list[PhotoTag]] = {}
        self._memo = Memo()  # what a burst reads once
        self._closed = False
        self._published = 0  # bursts published (what tests and callers wait on)
        self._thread = threading.Thread(target=self._publisher, name="annot corrections", daemon=True)
        self._thread.start()

    # -- writing -----------------------------------------------------------------------------------------------
    def correct(self, items: Sequence[Correction], *, source: str = "server") -> CorrectReport:
        """Write corrections (checked, all or none) and answer when they are committed; the photos' tags as they
        are now are in :meth:`shown` until the burst is published."""
        if not items:
            raise AnnotError("no corrections given")
        with self._cond:
            if self._closed:
                raise AnnotError(f"{self.root}: this correction session is closed")
            store = self._writer()
            try:
                report, written = write_corrections(store, items, source=source, memo=self._memo)
                words = {i: w for w, i in (self._memo.vocabulary or {}).items()}
                self._shown.update(photo_tags(store, written.photos, words=words, library=written.library,
                                              history=written.history))
            finally:  # refused ones too: the burst they opened is published (and the lock released) in time
                self._last = time.monotonic()
                self._cond.notify_all()
            return report

    def photo_tags(self, ids: Sequence[int]) -> dict[int, list[PhotoTag]]:
        """The tags shown for these photos as this session wrote them (those it did not touch: as published)."""
        with self._cond:
            if all(int(i) in self._shown for i in ids):  # what the last corrections read back
                return {int(i): list(self._shown[int(i)]) for i in ids}
            if self._store is not None:
                return photo_tags(self._store, [int(i) for i in ids])
        with StoreDir.open(self.root) as store:
            return photo_tags(store, [int(i) for i in ids])

    def shown(self) -> Mapping[int, list[PhotoTag]]:
        """The photos corrected in the burst not yet published, with their tags as they are now."""
        with self._cond:
            return dict(self._shown)

    def _writer(self, wait: bool | float | None = None) -> StoreDir:
        if self._store is None:
            self._store = StoreDir.open(self.root, write=True, wait=self.wait if wait is None else wait, brief=True)
            self._opened = time.monotonic()
        return self._store

    # -- publishing --------------------------------------------------------------------------------------------
    @property
    def published(self) -> int:
        """How many bursts were published (grows by one with each)."""
        with self._cond:
            return self._published

    def pending(self) -> bool:
        """Whether corrections wait to be published."""
        with self._cond:
            return self._store is not None

    def flush(self) -> None:
        """Publish the burst now (the training index follows, the lock is released); nothing when none is open."""
        with self._cond:
            store, self._store = self._store, None
            if store is None:
                return
            self._memo = Memo()  # the next burst reads the store afresh: other writers may change it between
            try:
                sync_corrected(store)
            finally:
                try:
                    store.close()  # publishes the working segment and the manifest, releases the lock
                finally:
                    self._shown.clear()
                    self._published += 1
                    self._cond.notify_all()

    def catch_up(self) -> None:
        """What a killed writer of corrections left (committed, not published, or the training index behind):
        published and in step now. A store whose lock another writer holds is left to that writer."""
        with self._cond:
            try:
                self._writer(wait=0.0)  # not at all: a writer holding the store publishes it itself
            except (StoreError, OSError) as exc:  # busy (its writer finishes it), or a store this user cannot write
                log.info("%s: corrections not caught up (%s)", self.root, exc)
                return
            self.flush()

    def wait_published(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` bursts were published (or ``timeout`` seconds): whether they were."""
        with self._cond:
            return self._cond.wait_for(lambda: self._published >= count, timeout)

    def _publisher(self) -> None:
        with self._cond:
            while not self._closed:
                if self._store is None:
                    self._cond.wait()
                    continue
                due = min(self._last + self.linger, self._opened + self.longest)
                left = due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001  (the next writer finishes it: nothing committed is lost)
                    log.warning("%s: publishing corrections failed (%s); the next writer publishes them", self.root,
                                exc)

    def close(self) -> None:
        """Publish what is left and stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self.flush()


__all__ = ["LINGER", "LONGEST", "CorrectionSession"]
