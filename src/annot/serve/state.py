"""What every request of the server reads, as one dependency: the store and its loaded model behind a guard, the
encoder's batcher, the upload limits and the token for writes."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request, UploadFile

from annot.api import Store
from annot.library.search import UnreadableUpload

if TYPE_CHECKING:
    from annot.features.images import UnreadableImage
    from annot.methods import Annotation
    from annot.serve.batching import Batcher

MAX_BYTES = 32 * 1024 * 1024  # an upload's size limit
MAX_PIXELS = 64_000_000  # an upload's pixel limit (a 64-megapixel photo; a decompression bomb is far above)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS


class TokenRequired(Exception):
    """A write without the server's token (401)."""


class UploadOverLimit(Exception):
    """An upload over the byte limit (413)."""


class ModelGuard:
    """Requests read the loaded model together; loading a changed store waits for them and holds new ones back.

    DuckDB opens a database file once per process, so the new model cannot be opened beside the old one: a load
    waits for the requests reading the old one. Every request's work is bounded (items, bytes, results), so that
    wait is short."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._readers = 0
        self._loading = False

    @contextmanager
    def reading(self) -> Iterator[Store]:
        if self.store.stale():
            self._load()
        with self._cond:
            while self._loading:
                self._cond.wait()
            self._readers += 1
        try:
            yield self.store
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    def _load(self) -> None:
        with self._cond:
            if self._loading:
                return
            self._loading = True
            while self._readers:
                self._cond.wait()
        try:
            self.store.load()
        finally:
            with self._cond:
                self._loading = False
                self._cond.notify_all()


@dataclass(frozen=True)
class ServerState:
    store: Store
    guard: ModelGuard
    batcher: Batcher[tuple[str, bytes], Annotation | UnreadableImage]
    limits: Limits
    token: str | None

    async def read_upload(self, image: UploadFile) -> bytes:
        """An upload's bytes, refused when empty or over the limit."""
        data = await image.read(self.limits.max_bytes + 1)
        if len(data) > self.limits.max_bytes:
            raise UploadOverLimit(f"{image.filename or 'the upload'}: over {self.limits.max_bytes:,} bytes")
        if not data:
            raise UnreadableUpload(f"{image.filename or 'the upload'}: empty")
        return data

    def check_writer(self, authorization: str | None) -> None:
        """A write goes on only with the token, where the server has one."""
        if self.token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise TokenRequired()


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.annot
    return state


State = Annotated[ServerState, Depends(get_state)]


def require_writer(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    """The dependency of every write route: the token, where the server has one."""
    state.check_writer(authorization)


__all__ = ["MAX_BYTES", "MAX_PIXELS", "Limits", "ModelGuard", "ServerState", "State", "TokenRequired",
           "UploadOverLimit", "get_state", "require_writer"]
