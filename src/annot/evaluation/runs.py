"""Reading stored evaluation runs back: listing them, read-only SQL, and comparing two runs word by word."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from annot.errors import AnnotError, NotFound
from annot.schema import image_tags, images, runs, tags, word_metrics
from annot.schema.database import SANDBOX
from annot.settings import SettingsError
from annot.store import DATABASE, StoreDir


@dataclass(frozen=True)
class RunRow:
    id: int
    created_at: datetime
    method: str
    dataset: str
    params: dict[str, Any]
    precision: float
    recall: float
    f1: float
    n_plus: int
    n_images: int


@dataclass(frozen=True)
class WordChange:
    word: str
    f1_a: float
    f1_b: float
    n_truth: int

    @property
    def delta(self) -> float:
        return self.f1_b - self.f1_a


def list_runs(store: StoreDir) -> list[RunRow]:
    with store.db.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id)).mappings().all()
    return [
        RunRow(r["id"], r["created_at"], r["method"], r["dataset"], json.loads(r["params_json"]),
               r["precision"], r["recall"], r["f1"], r["n_plus"], r["n_images"])
        for r in rows
    ]


def read_only_sql(store_root: Path, sql: str, timeout: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement on a read-only, sandboxed DuckDB connection to the store's database (external access off,
    configuration locked: :data:`annot.schema.database.SANDBOX`): reading or writing any other file, installing or
    loading an extension, and anything that writes is refused with one line. ``timeout`` (seconds) interrupts a
    statement that runs longer; so does Ctrl-C (a KeyboardInterrupt), however long DuckDB works."""
    import duckdb

    if timeout is not None and not timeout > 0:
        raise SettingsError("timeout", f"must be a number of seconds > 0, got {timeout}")
    if not sql.strip().strip(";").strip():
        raise AnnotError("no SQL statement given (e.g. \"SELECT word FROM tags\")")
    with StoreDir.open(store_root) as store:
        path = store.path(DATABASE)
        if not path.is_file():
            raise AnnotError(f"{path}: missing (the store's database)")
        try:
            config: dict[str, str | bool | int | float | list[str]] = {
                k: v for k, v in SANDBOX.items() if k != "lock_configuration"}
            conn = duckdb.connect(str(path), read_only=True, config=config)
            conn.execute("SET enable_progress_bar = false")  # a session setting: before the lock
            conn.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            raise AnnotError(f"{path}: cannot open the database ({_first_line(exc)})") from exc
        outcome: dict[str, Any] = {}

        def run() -> None:  # in a thread, so that the main thread stays free to hear Ctrl-C and the clock
            try:
                cursor = conn.execute(sql)
                description = getattr(cursor, "description", None)
                columns = [str(d[0]) for d in description] if description else []
                outcome["rows"] = (columns, [tuple(r) for r in cursor.fetchall()] if columns else [])
            except (duckdb.Error, ValueError, TypeError) as exc:  # the driver's own complaints too
                outcome["error"] = exc

        interrupted: list[int] = []

        def on_ctrl_c(*_: object) -> None:  # Ctrl-C stops the statement; KeyboardInterrupt follows once it has
            interrupted.append(1)
            conn.interrupt()

        worker = threading.Thread(target=run, daemon=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        previous = signal.signal(signal.SIGINT, on_ctrl_c) if threading.current_thread() is threading.main_thread() else None
        try:
            worker.start()
            while worker.is_alive():
                worker.join(0.05)
                if deadline is not None and time.monotonic() > deadline and not interrupted:
                    timed_out = True
                if timed_out or interrupted:  # again until it stops: a statement that had not started yet, or
                    conn.interrupt()  # one between DuckDB's checks, misses a single interrupt
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            conn.close()
        if interrupted:
            raise KeyboardInterrupt
        if "error" in outcome:
            raise AnnotError(_sql_error(store_root, sql, outcome["error"], timeout if timed_out else None))
        return outcome["rows"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sql_error(store_root: Path, sql: str, exc: BaseException, timeout: float | None) -> str:
    kind = type(exc).__name__
    message = _first_line(exc)
    statement = " ".join(sql.split())[:80]
    if kind == "InterruptException" and timeout is not None:
        return f"{store_root}: the statement ran over its --timeout of {timeout:g} s and was stopped: {statement}"
    if kind == "PermissionException" or "disabled by configuration" in message or "configuration has been locked" in message:
        return (f"{store_root}: annot sql reads the store's tables only; refused (it reads or writes other files, or "
                f"changes settings): {statement}")
    if "read-only" in message or "read only" in message:
        return f"{store_root}: annot sql is read-only; refused: {statement}"
    return f"{store_root}: SQL error: {message}"


@dataclass(frozen=True)
class WordMetrics:
    """One word's result in a run, with how many training images carry it."""

    word: str
    precision: float
    recall: float | None  # None: the word has no truth in the run's images
    f1: float
    n_truth: int
    train_frequency: int

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "n_truth": self.n_truth, "train_frequency": self.train_frequency}


def run_words(store: StoreDir, run_id: int) -> list[WordMetrics]:
    """A run's per-word metrics (what ``annot report`` charts), most frequent training word first."""
    with store.db.connect() as conn:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise NotFound(f"{store.root}: no run {run_id} (see `annot runs`)")
        frequency: dict[int, int] = dict(conn.execute(
            select(image_tags.c.tag_id, func.count()).join(images, images.c.id == image_tags.c.image_id)
            .where(images.c.split == "train").group_by(image_tags.c.tag_id)).tuples().all())
        rows = conn.execute(select(tags.c.word, word_metrics).join(tags, tags.c.id == word_metrics.c.tag_id)
                            .where(word_metrics.c.run_id == run_id)).mappings().all()
    out = [WordMetrics(str(r["word"]), float(r["precision"]), None if r["recall"] is None else float(r["recall"]),
                       float(r["f1"]), int(r["n_truth"]), int(frequency.get(r["tag_id"], 0))) for r in rows]
    return sorted(out, key=lambda w: (-w.train_frequency, w.word))


def compare_runs(store: StoreDir, run_a: int, run_b: int) -> list[WordChange]:
    """Per-word F1 of two runs, largest change first (words missing from either run are left out)."""
    with store.db.connect() as conn:
        known = {r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_([run_a, run_b])))}
        for run in (run_a, run_b):
            if run not in known:
                raise NotFound(f"{store.root}: no run {run} (see `annot runs`)")
        rows = conn.execute(
            select(word_metrics.c.run_id, word_metrics.c.tag_id, word_metrics.c.f1, word_metrics.c.n_truth, tags.c.word)
            .join(tags, tags.c.id == word_metrics.c.tag_id)
            .where(word_metrics.c.run_id.in_([run_a, run_b]))
        ).all()
    a = {t: (f1, n, w) for run, t, f1, n, w in rows if run == run_a}
    b = {t: f1 for run, t, f1, _, _ in rows if run == run_b}
    changes = [WordChange(w, f1, b[t], n) for t, (f1, n, w) in a.items() if t in b]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.word))
