"""How the library reports progress on long work without printing: the CLI passes a rich implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> AbstractContextManager[Advance]:
        """A context manager yielding ``advance(n)`` for one stage of work."""
        ...


class NoProgress:
    """Progress that shows nothing (the library default, and tests)."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        yield lambda n: None
