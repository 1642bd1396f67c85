"""``annot serve``: the store behind an HTTP JSON API and a web page (:mod:`annot.serve.app`), run by uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from pathlib import Path

from annot.serve.app import Limits, create_app
from annot.serve.security import Access

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(store: Path, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          limits: Limits | None = None, allow_hosts: tuple[str, ...] = (),
          announce: Callable[[str], None] = print) -> None:
    """Serve the store until interrupted. Off loopback, writes need a token: the one given, else a new one (shown).
    Requests must name the server as ``Host`` (its address, or loopback, or one of ``allow_hosts``)."""
    import uvicorn

    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
        announce(f"writes (corrections, kept uploads) need this token: {token} "
                 "(Authorization: Bearer TOKEN; the web page asks for it)")
    app = create_app(store, token=token, limits=limits or Limits(), access=Access(host, allow_hosts))
    shown = f"[{host}]" if ":" in host else host
    announce(f"serving {store} on http://{shown}:{port}/ (API under /v1, its OpenAPI explorer at /docs); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


__all__ = ["Access", "Limits", "create_app", "is_loopback", "serve"]
