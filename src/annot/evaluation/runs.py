"""Reading stored evaluation runs back: listing them, read-only SQL, and comparing two runs word by word."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from annot.errors import AnnotError
from annot.schema import Database, runs, tags, word_metrics
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
    """Run one statement on a read-only, sandboxed connection to the store's database (DuckDB's external access off
    and its configuration locked, :data:`annot.schema.database.SANDBOX`): reading or writing any other file,
    installing or loading an extension, and anything that writes is refused with one line. ``timeout`` (seconds)
    interrupts a statement that runs longer."""
    if timeout is not None and not timeout > 0:
        raise SettingsError("timeout", f"must be a number of seconds > 0, got {timeout}")
    with StoreDir.open(store_root) as store:
        database = store.path(DATABASE)
        db = Database(database, read_only=True, sandbox=True)
        fired = threading.Event()
        try:
            with db.engine.connect() as conn:
                raw = conn.connection.driver_connection

                def stop() -> None:
                    fired.set()
                    if raw is not None:
                        raw.interrupt()

                timer = threading.Timer(timeout, stop) if timeout is not None and raw is not None else None
                if timer is not None:
                    timer.daemon = True
                    timer.start()
                try:
                    result = conn.execute(text(sql))
                    if not result.returns_rows:
                        return [], []
                    return list(result.keys()), [tuple(r) for r in result.fetchall()]
                finally:
                    if timer is not None:
                        timer.cancel()
        except SQLAlchemyError as exc:
            if type(getattr(exc, "orig", None)).__name__ == "InterruptException" and not fired.is_set():
                raise KeyboardInterrupt from None  # Ctrl-C, not the timeout
            raise AnnotError(_sql_error(store_root, sql, exc, timeout)) from exc
        finally:
            db.close()


def _sql_error(store_root: Path, sql: str, exc: SQLAlchemyError, timeout: float | None) -> str:
    original = getattr(exc, "orig", None) or exc
    kind = type(original).__name__
    message = (str(original).strip().splitlines() or [kind])[0]
    statement = " ".join(sql.split())[:80]
    if kind == "InterruptException":
        return f"{store_root}: the statement ran over its --timeout of {timeout:g} s and was stopped: {statement}"
    if kind == "PermissionException" or "disabled by configuration" in message or "configuration has been locked" in message:
        return (f"{store_root}: annot sql reads the store's tables only; refused (it reads or writes other files, or "
                f"changes settings): {statement}")
    if "read-only" in message or "read only" in message:
        return f"{store_root}: annot sql is read-only; refused: {statement}"
    return f"{store_root}: SQL error: {message}"


def compare_runs(store: StoreDir, run_a: int, run_b: int) -> list[WordChange]:
    """Per-word F1 of two runs, largest change first (words missing from either run are left out)."""
    with store.db.connect() as conn:
        known = {r for (r,) in conn.execute(select(runs.c.id).where(runs.c.id.in_([run_a, run_b])))}
        for run in (run_a, run_b):
            if run not in known:
                raise AnnotError(f"{store.root}: no run {run} (see `annot runs`)")
        rows = conn.execute(
            select(word_metrics.c.run_id, word_metrics.c.tag_id, word_metrics.c.f1, word_metrics.c.n_truth, tags.c.word)
            .join(tags, tags.c.id == word_metrics.c.tag_id)
            .where(word_metrics.c.run_id.in_([run_a, run_b]))
        ).all()
    a = {t: (f1, n, w) for run, t, f1, n, w in rows if run == run_a}
    b = {t: f1 for run, t, f1, _, _ in rows if run == run_b}
    changes = [WordChange(w, f1, b[t], n) for t, (f1, n, w) in a.items() if t in b]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.word))
