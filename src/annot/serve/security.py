"""The server's safety, as one ASGI middleware in front of every route (nothing here is per-route code).

- ``Host``: a request must name this server: a loopback address or ``localhost`` when it listens on loopback, the
  address it listens on, an address literal when it listens on all of them, or a name given with ``--allow-host``.
  A web page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name, and is refused.
- Other web sites: a browser marks every request it sends for a page with ``Sec-Fetch-Site`` and a write with
  ``Origin``. A request another site's page made (``cross-site`` or ``same-site``: another port of 127.0.0.1 is the
  same site but another origin) is refused, except a plain navigation to a page; a write whose ``Origin`` is not
  this server's own is refused too. Scripts and ``curl`` send neither header and keep using the API on loopback.
- Bodies: at most ``max_body_bytes`` for an upload and ``max_json_bytes`` for anything else, counted as the bytes
  arrive (a missing or false ``Content-Length`` does not get past it), and each part of a body must arrive within
  ``body_timeout`` seconds, so a client that sends slowly cannot hold a worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WILDCARDS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_JSON_BYTES = 1 << 20  # a JSON request over 1 MiB is refused (a thousand corrections take about 60 KB)
BODY_TIMEOUT = 30.0  # seconds one part of a request body may take to arrive


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_name(header: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, lower case, without port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Access:
    """Who may talk to the server: the address it listens on, extra host names, and what a request may send."""

    bind: str = "127.0.0.1"
    allow_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 32 << 20
    max_json_bytes: int = MAX_JSON_BYTES
    body_timeout: float = BODY_TIMEOUT
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {h.strip().lower().rstrip(".") for h in self.allow_hosts if h.strip()}
        bind = self.bind.strip("[]").lower()
        if self.loopback:
            names.add("localhost")
        elif bind in WILDCARDS:
            names |= {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
        elif _ip(bind) is None:
            names.add(bind)  # listening on a name: requests name it
        object.__setattr__(self, "names", frozenset(names))

    @property
    def loopback(self) -> bool:
        bind = self.bind.strip("[]").lower()
        address = _ip(bind)
        return bind == "localhost" or (address is not None and address.is_loopback)

    def host_allowed(self, header: str) -> bool:
        name = host_name(header).rstrip(".")
        if not name:
            return False
        if name in self.names:
            return True
        address = _ip(name)
        if address is None:  # a name nobody allowed: maybe one an attacker points at this machine
            return False
        bind = self.bind.strip("[]").lower()
        if bind in WILDCARDS:
            return True  # an address literal cannot be rebound
        if self.loopback:
            return address.is_loopback
        return address == _ip(bind)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """Why a request is refused (status, message), or None."""
        host = headers.get("host", "")
        if not self.host_allowed(host):
            return 400, (f"this server does not answer for the host {host!r} (start it with --allow-host NAME to "
                         "add a name)")
        method = scope.get("method", "GET")
        site = headers.get("sec-fetch-site")
        navigation = method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
        if site in ("cross-site", "same-site") and not navigation:
            return 403, "requests from other web sites are refused"
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None:
            parts = urlsplit(origin)
            same = parts.scheme in ("http", "https") and host_name(parts.netloc) == host_name(host) and \
                _port(parts.netloc, parts.scheme) == _port(host, scope.get("scheme", "http"))
            if not same:
                return 403, f"writes from another origin ({origin}) are refused"
        return None

    def body_limit(self, headers: dict[str, str]) -> tuple[int, str]:
        """The most bytes a request's body may have (an upload: its file's limit and room for the form around it),
        and what to tell a client that sends more."""
        if headers.get("content-type", "").lower().startswith("multipart/"):
            return self.max_body_bytes + (64 << 10), f"the upload is over {self.max_body_bytes:,} bytes"
        return self.max_json_bytes, f"the request is over {self.max_json_bytes:,} bytes"


def _port(netloc: str, scheme: str) -> str:
    netloc = netloc.strip().lower()
    tail = netloc[netloc.find("]") + 1 :] if netloc.startswith("[") else netloc
    if ":" in tail and tail.count(":") == 1:
        return tail.rsplit(":", 1)[1]
    return "443" if scheme in ("https", "wss") else "80"


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: refuses what :class:`Access` refuses, and caps the body as it arrives."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = self.access.refusal(scope, headers)
        if refused is not None:
            await _answer(send, *refused)
            return
        limit, too_large = self.access.body_limit(headers)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _answer(send, 413, too_large)
            return
        await self._guarded(scope, receive, send, limit, too_large)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: str) -> None:
        received = 0
        stopped: list[tuple[int, str]] = []  # why the body was cut off
        answered = False

        async def capped_receive() -> Message:
            nonlocal received
            if stopped:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.access.body_timeout)
            except TimeoutError:
                stopped.append((408, f"the request body did not arrive within {self.access.body_timeout:g} s"))
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    stopped.append((413, too_large))
                    return {"type": "http.disconnect"}
            return message

        async def checked_send(message: Message) -> None:
            nonlocal answered
            if stopped:  # whatever the app answers to a body cut off, the client hears why
                if not answered and message["type"] == "http.response.start":
                    answered = True
                    await _answer(send, *stopped[0])
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, checked_send)
        except Exception:
            if not stopped or answered:
                raise
        if stopped and not answered:
            await _answer(send, *stopped[0])


__all__ = ["Access", "RequestGuard", "host_name"]
