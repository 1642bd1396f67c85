"""``annot sql``: one read-only statement against a store's database, sandboxed (no other file read or written, no
extension loaded, no setting changed), stoppable by a time limit and by Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from annot.errors import AnnotError
from annot.schema.database import SANDBOX
from annot.schema.layered import attach
from annot.settings import SettingsError
from annot.store.dbfiles import reader_layers
from annot.store.directory import StoreDir


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
    _only_reading(store_root, sql)
    with StoreDir.open(store_root) as store:
        layers = reader_layers(store.root, store.database_record())
        path = layers.base if layers.base is not None and not layers.segments else None
        if path is not None and not path.is_file():
            raise AnnotError(f"{path}: missing (the store's database)")
        where = path or store.root
        try:
            config: dict[str, str | bool | int | float | list[str]] = {
                k: v for k, v in SANDBOX.items() if k != "lock_configuration" and (path or k != "enable_external_access")}
            if path is not None:
                conn = duckdb.connect(str(path), read_only=True, config=config)
            else:  # a database in layers: attached read-only, read through views, before access is shut
                conn = duckdb.connect(config=config)
                attach(conn, layers, readable=True)
                conn.execute("SET enable_external_access = false")
            conn.execute("SET enable_progress_bar = false")  # a session setting: before the lock
            conn.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            raise AnnotError(f"{where}: cannot open the database ({_first_line(exc)})") from exc
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


READING = {"SELECT", "EXPLAIN", "PRAGMA"}  # the statements annot sql runs: the others change or reach out


def _only_reading(store_root: Path, sql: str) -> None:
    """Refuse, before anything is opened, a statement that is not a query."""
    import duckdb

    try:
        kinds = {str(s.type).rsplit(".", 1)[-1] for s in duckdb.extract_statements(sql)}
    except duckdb.Error as exc:
        raise AnnotError(f"{store_root}: SQL error: {_first_line(exc)}") from None
    if not kinds <= READING:
        statement = " ".join(sql.split())[:80]
        raise AnnotError(f"{store_root}: annot sql is read-only and runs queries only; refused: {statement}")


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


__all__ = ["read_only_sql"]
