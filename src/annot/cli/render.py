"""Rich rendering for the CLI: progress bars and result tables (the library itself never prints).

Text from data (paths, tags, SQL values, error messages that quote them) is never read as rich markup: both consoles
have markup off, table cells are plain :class:`rich.text.Text`, and styles are given as styles, not as ``[bold]``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from annot.progress import Advance

console = Console(markup=False, highlight=False)
errors = Console(stderr=True, markup=False, highlight=False)


class LineProgress:
    """Progress as plain lines, for a stderr that is not a terminal (a log file, nohup, CI). Quiet work stays quiet:
    a stage reports only once it has run ``first`` seconds, then every ``every`` seconds, and says when it ends."""

    def __init__(self, write: Callable[[str], None], first: float = 10.0, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.first, self.every, self.clock = write, first, every, clock

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        start = self.clock()
        done, due, spoke = 0, start + self.first, False

        def status() -> str:
            seconds = self.clock() - start
            rate = done / seconds if seconds > 0 else 0.0
            pace = f", {rate:,.1f}/s" if rate >= 0.1 else ""
            if not total:
                return f"{description}: {done:,} done, {_duration(seconds)}{pace}"
            left = f", about {_duration((total - done) / rate)} left" if rate > 0 and done < total else ""
            return f"{description}: {done:,}/{total:,} ({100 * done / total:.0f}%), {_duration(seconds)}{pace}{left}"

        def advance(n: int) -> None:
            nonlocal done, due, spoke
            done += n
            if self.clock() >= due:
                self.write(status())
                due, spoke = self.clock() + self.every, True

        yield advance
        if spoke:
            self.write(status() + ", finished")


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, s = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


class _Rate(ProgressColumn):
    """Items a second, once there is a rate to show."""

    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:,.1f}/s" if task.speed else "", style="progress.data.speed")


class RichProgress:
    """Progress on stderr, so ``--json`` output on stdout stays clean: bars on a terminal, else occasional lines."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lines = None if errors.is_terminal else LineProgress(warn)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        if not self.enabled:
            yield lambda n: None
            return
        if self.lines is not None:
            with self.lines.task(description, total) as advance:
                yield advance
            return
        columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   _Rate(), TimeElapsedColumn(),
                   TimeRemainingColumn()]
        with Progress(*columns, console=errors, transient=True) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task_id, n)


def say(message: str | Text) -> None:
    """One unwrapped line on stdout, printed as it is (never read as markup)."""
    console.print(message, soft_wrap=True)


def warn(message: str | Text) -> None:
    """One unwrapped line on stderr, whatever the terminal width, printed as it is."""
    errors.print(message, soft_wrap=True)


def error_line(message: str) -> Text:
    """``error: MESSAGE`` with the label styled and the message as plain text."""
    return Text.assemble(("error:", "bold red"), " ", message)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of plain text parts, some with a style: ``styled((path, "bold"), ": ", tags)``."""
    return Text.assemble(*parts)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A table whose title, headers and cells are plain text (a SQL value or a path is shown as it is)."""
    t = Table(title=None if title is None else Text(title), show_header=True, header_style="bold")
    for c in columns:
        t.add_column(Text(str(c)))
    for r in rows:
        t.add_row(*[Text("" if v is None else str(v)) for v in r])
    return t
