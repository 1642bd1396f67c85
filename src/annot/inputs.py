"""Reading the files a person gives annot (corpora, lists of photos, corrections, vocabularies): only regular files,
and only up to a size that such a file can have, so that a named pipe, ``/dev/zero`` or a runaway file is refused
with one line instead of blocking or filling memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from annot.errors import CorpusError

LISTS = {".txt", ".lst", ".list"}  # a file of paths, one a line
TEXT_LIMIT = 1 << 30  # a corpus, list or corrections file larger than 1 GiB is not one


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for a message)."""
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def regular_file(path: Path, what: str) -> os.stat_result:
    """The status of ``path`` (links followed), or a :class:`CorpusError` naming it when it is missing or is not a
    regular file (a pipe or a device would block or never end)."""
    try:
        status = Path(path).stat()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission
        raise CorpusError(f"{path}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(status.st_mode):
        kind = file_kind(status.st_mode)
        raise CorpusError(f"{path}: {kind if kind.startswith('not') else 'is ' + kind}, not a {what} file")
    return status


def read_text(path: Path, what: str, limit: int = TEXT_LIMIT) -> str:
    """A regular text file's content (UTF-8, a byte-order mark dropped), at most ``limit`` bytes; one-line errors."""
    status = regular_file(path, what)
    if status.st_size > limit:
        raise CorpusError(f"{path}: {status.st_size:,} bytes, over the {limit:,} a {what} file may have")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    if len(data) > limit:  # it grew while being read
        raise CorpusError(f"{path}: over the {limit:,} bytes a {what} file may have")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


__all__ = ["LISTS", "TEXT_LIMIT", "file_kind", "read_text", "regular_file"]
