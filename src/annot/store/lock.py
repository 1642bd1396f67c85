"""One writer at a time per store: an advisory lock on ``STORE/.lock`` held for as long as a command changes the store.

The lock is an ``flock`` on the file, so the kernel releases it when its process ends, however it ends (a crash or a
SIGKILL leaves no stale lock). The file holds the holder's process id and command, so that a second writer can say
who it waits for. Readers never take it: they read the published database and the manifest's files, which writers
never change in place (see :mod:`annot.store.directory`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from pathlib import Path

from annot.errors import Conflict, StoreError

log = logging.getLogger(__name__)

LOCK = ".lock"
BRIEF = "brief"  # the lock file's second line while its holder holds it for a moment (one change, a burst)
BRIEF_WAIT = 30.0  # seconds a writer that would not wait waits for a holder that holds the lock for a moment


class StoreBusy(StoreError, Conflict):
    """Another process is changing the store."""


class WriterLock:
    """The store's writer lock; ``acquire(wait=False)`` raises :class:`StoreBusy` naming the holder."""

    def __init__(self, root: Path, name: str = LOCK, doing: str = "the store is being changed") -> None:
        self.path = Path(root) / name
        self.doing = doing  # what the holder does, as a busy store's message says it
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """Who holds the lock, as its file says (``process 1234 (annot add ...)``)."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return "another process"
        pid, _, command = text.partition("\n")[0].partition(" ")
        return f"process {pid}" + (f" ({command})" if command else "") if pid.isdigit() else "another process"

    def brief_holder(self) -> bool:
        """Whether the holder said it holds the lock for a moment only (a change between others' turns)."""
        try:
            return self.path.read_text(encoding="utf-8").strip().endswith("\n" + BRIEF)
        except OSError:
            return False

    def acquire(self, wait: bool | float = False, poll: float = 0.05, *, brief: bool = False) -> None:
        """Take the lock; ``wait``: False (refuse at once when it is held, except by a holder that holds it for a
        moment: then ``BRIEF_WAIT`` seconds at most), True (until it is free) or a number of seconds to wait at
        most. ``brief``: this holder holds it for a moment (others who would not wait, wait for it)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        only_brief = wait is False  # waits for a holder that said it is brief, for no other
        deadline = time.monotonic() + (BRIEF_WAIT if only_brief else float(wait)) if wait is not True else None
        try:
            announced, seen_long = False, 0
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # a holder seen twice in a row not saying it is brief (once may be a holder that just took it)
                    seen_long = seen_long + 1 if only_brief and not self.brief_holder() else 0
                    if seen_long >= 2 or deadline is not None and time.monotonic() > deadline:
                        raise StoreBusy(f"{self.path.parent}: {self.doing} by {self.holder()}; "
                                        "try again when it ends, or pass --wait") from None
                    if not announced and not seen_long:
                        log.warning("%s: waiting for %s (%s)", self.path.parent, self.holder(), self.doing)
                        announced = True
                    time.sleep(poll)
            command = " ".join(["annot", *sys.argv[1:3]]) if sys.argv and sys.argv[0].endswith("annot") else ""
            text = (f"{os.getpid()} {command}".strip() + (f"\n{BRIEF}" if brief else "")).encode()
            os.pwrite(fd, text, 0)  # then cut what a longer one left: the file is never empty in between
            os.ftruncate(fd, len(text))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:  # the text stays until the next holder writes its own: one that waits reads a holder's, never none
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
