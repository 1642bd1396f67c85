"""Files annot makes once per user and reuses (the empty database segment a writer starts from, a vocabulary's
multilingual embeddings): in ``$ANNOT_CACHE``, else ``$XDG_CACHE_HOME/annot``, else ``~/.cache/annot``. Each file is
named by a digest of what it is made from, written beside its place and renamed into it, so that processes making
the same file at once each end with a whole one; a cache that cannot be written is no error (the file is made in a
private temporary folder instead, removed at exit)."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_PRIVATE: list[Path] = []  # this process's fallback folder, when the user's cache cannot be written


def cache_home() -> Path:
    """The folder annot's per-user caches live in (not created here)."""
    named = os.environ.get("ANNOT_CACHE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "annot"


def digest(parts: Iterable[str]) -> str:
    """A short name for what a cached file is made from."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def _folder() -> Path:
    try:
        home = cache_home()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(home, os.W_OK | os.X_OK):
            return home
    except OSError:
        pass
    if not _PRIVATE:
        folder = Path(tempfile.mkdtemp(prefix="annot-cache-"))
        atexit.register(shutil.rmtree, folder, True)
        _PRIVATE.append(folder)
    return _PRIVATE[0]


def cached_file(name: str, make: Callable[[Path], None]) -> Path:
    """The cached file ``name``, made by ``make(path)`` (which writes ``path``) the first time it is asked for."""
    folder = _folder()
    target = folder / name
    if target.is_file():
        return target
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    try:
        made = scratch / name
        make(made)
        os.replace(made, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def prune(prefix: str, days: float) -> int:
    """Remove the cached files named ``prefix*`` made more than ``days`` ago (markers of store files long replaced:
    one that is still wanted is made again); returns how many. A file another process removes first is no error."""
    folder = _folder()
    limit = time.time() - days * 86400
    removed = 0
    for path in folder.glob(f"{prefix}*"):
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
