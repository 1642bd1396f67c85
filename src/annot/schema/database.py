"""Opening a store's database (DuckDB) and running its migrations.

A reader's database is one DuckDB connection (its layers attached to an in-memory database, or its one file opened
read-only) that annot's own SQL reads without SQLAlchemy (:meth:`Database.raw` with :func:`fetch_columns`,
:meth:`Database.rows`): a command that only reads what it searches starts without importing it. The SQLAlchemy
engine over the same connection is made the first time a query of the library (SQLAlchemy Core) asks for it. A
writer's database is a SQLAlchemy engine from the start (:mod:`annot.schema.writes` writes through it).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import StoreError
from annot.schema.layered import (
    GROUP_KEY,
    LAYERS_INFO,
    TOUCHED_INFO,
    WORKING,
    Layers,
    TouchedKeys,
    attach,
    registered,
    touched,
)
from annot.schema.version import SCHEMA_VERSION

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)


# DuckDB settings of a sandboxed connection (``annot sql``): no file outside the database can be read or written,
# no extension installed or loaded, and the settings cannot be changed back from SQL.
SANDBOX = {"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False,
           "lock_configuration": True}

_VERSION_SQL = "SELECT value FROM schema_info WHERE key = 'version'"

_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


def _close_before_fork() -> None:
    """Close every database connection of this process before it forks (decoding workers are forked): a child that
    inherits an open DuckDB database would close it again when it exits, writing a stale copy of it."""
    for database in list(_OPEN):
        if database._engine is not None:
            database._engine.dispose()


os.register_at_fork(before=_close_before_fork)


class Database:
    """A store's metadata database: a DuckDB file (``location``: its path) or a database in :class:`Layers`. One
    opened for reading (``read_only``, or layers without a working segment) is read as it is (migrations only add;
    ``schema_version`` says which tables it has); one opened for writing is migrated to this annot's schema."""

    def __init__(self, location: str | Path | Layers, *, read_only: bool = False) -> None:
        self.layers = location if isinstance(location, Layers) else None
        self.tables: set[str] | None = None  # a reader's tables and views
        self._root: Any = None  # a reader's DuckDB connection
        self._engine: Engine | None = None
        if isinstance(location, Layers):
            where = str(location.working or (location.segments[-1] if location.segments else location.base))
        else:
            where = str(location).removeprefix("duckdb:///")
        self.url = "duckdb:///:memory:" if self.layers is not None else f"duckdb:///{where}"
        if (self.layers is not None and self.layers.working is None) or (self.layers is None and read_only):
            version = self._open_reader(where)
        else:
            version = self._open_writer(where)
        if version > SCHEMA_VERSION:
            self.close()
            raise StoreError(f"{where}: database schema version {version} is newer than this annot's "
                             f"({SCHEMA_VERSION}); upgrade annot")
        if version < SCHEMA_VERSION and self._root is None and self.layers is None:
            self._migrate(version)
            version = SCHEMA_VERSION
        self.schema_version = version
        _OPEN.add(self)

    def _open_reader(self, where: str) -> int:
        """One DuckDB connection, read without SQLAlchemy: the layers attached (read through views) or the file."""
        import duckdb

        try:
            if self.layers is not None:
                self._root = duckdb.connect()
                self.tables = attach(self._root, self.layers)
            else:
                self._root = duckdb.connect(where, read_only=True)
                self.tables = {str(t) for (t,) in self._root.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                    "AND table_catalog = current_database()").fetchall()}
            found = self._root.execute(_VERSION_SQL).fetchone() if "schema_info" in self.tables else None
        except duckdb.Error as exc:
            self.close()
            raise StoreError(f"{where}: cannot open the database ({_first_line(exc)})") from exc
        return int(found[0]) if found else 0

    def _open_writer(self, where: str) -> int:
        """A SQLAlchemy engine: the file's, or one connection with the working segment attached above the layers."""
        from sqlalchemy import create_engine, event, inspect, text
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.pool import StaticPool

        layers = self.layers
        try:
            if layers is None:
                self._engine = create_engine(self.url)
            else:
                self._engine = create_engine("duckdb:///:memory:", poolclass=StaticPool)

                @event.listens_for(self._engine, "connect")
                def _attach(dbapi_connection: Any, record: Any) -> None:
                    self.tables = attach(dbapi_connection, layers)
                    record.info[TOUCHED_INFO] = TouchedKeys()
                    record.info[LAYERS_INFO] = True

                @event.listens_for(self._engine, "commit")
                def _committed(conn: Connection) -> None:
                    conn.info[TOUCHED_INFO].commit()

                @event.listens_for(self._engine, "rollback")
                def _rolled_back(conn: Connection) -> None:
                    conn.info[TOUCHED_INFO].rollback()

            with self._engine.connect() as conn:
                present = "schema_info" in self.tables if self.tables is not None else \
                    inspect(conn).has_table("schema_info")
                found = conn.execute(text(_VERSION_SQL)).first() if present else None
        except SQLAlchemyError as exc:
            self.close()
            raise StoreError(f"{where}: cannot open the database ({_first_line(exc)})") from exc
        return int(found[0]) if found else 0

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine: a writer's, or over a reader's connection (made when first asked for)."""
        if self._engine is None:
            from duckdb_engine import ConnectionWrapper
            from sqlalchemy import create_engine, event
            from sqlalchemy.pool import QueuePool

            root = self._root
            engine = create_engine("duckdb://", poolclass=QueuePool, creator=lambda: ConnectionWrapper(root.cursor()))
            if self.layers is not None:
                @event.listens_for(engine, "connect")
                def _layered(dbapi_connection: Any, record: Any) -> None:
                    record.info[LAYERS_INFO] = True

            self._engine = engine
        return self._engine

    def _migrate(self, version: int) -> None:
        from sqlalchemy import text

        from annot.schema.tables import MIGRATIONS

        with self.engine.begin() as conn:
            for number in range(version, SCHEMA_VERSION):
                log.info("migrating %s to schema version %d", self.url, number + 1)
                MIGRATIONS[number](conn)
            conn.execute(text("DELETE FROM schema_info WHERE key = 'version'"))
            conn.execute(text("INSERT INTO schema_info (key, value) VALUES ('version', :v)"),
                         {"v": str(SCHEMA_VERSION)})

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back on any error."""
        known = None
        try:
            with self.engine.begin() as conn:
                known = touched_keys(conn)
                yield conn
        except BaseException:
            if known is not None:  # a commit that failed (a full disk): what the working segment holds is looked up
                known.forget()
            raise

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A DuckDB connection to read with annot's own SQL, for the block (a reader's is a cursor of its one
        connection: no SQLAlchemy)."""
        if self._root is not None:
            cursor = self._root.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        else:
            with self.engine.connect() as conn:
                yield raw_connection(conn)

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one SELECT (annot's own SQL, ``?`` parameters)."""
        with self.raw() as raw:
            return [tuple(r) for r in raw.execute(sql, list(parameters)).fetchall()]

    def read_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement and return column names and rows."""
        with self.raw() as raw:
            result = raw.execute(sql)
            if not result.description:
                return [], []
            return [str(d[0]) for d in result.description], [tuple(r) for r in result.fetchall()]

    def checkpoint(self) -> None:
        """Write everything logged into the database file itself (DuckDB: its write-ahead log folded in). DuckDB
        does this on close too, but not always after replaying the log of a process that was killed."""
        if self._root is None:
            with self.raw() as raw:
                raw.execute(f"CHECKPOINT {WORKING}" if self.layers is not None else "CHECKPOINT")

    def changed(self) -> bool:
        """Whether a writer's working segment holds any change (always true for a database without layers)."""
        if self.layers is None or self.layers.working is None:
            return True
        with self.raw() as raw:
            return any(raw.execute(f'SELECT 1 FROM {WORKING}."{touched(t)}" LIMIT 1').fetchone() for t in GROUP_KEY)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._root is not None:
            self._root.close()
            self._root = None

    def has_table(self, name: str) -> bool:
        if self.tables is not None:
            return name in self.tables
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            return bool(inspect(conn).has_table(name))


def raw_connection(conn: Connection) -> Any:
    """The DuckDB connection under a SQLAlchemy one."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw


def touched_keys(conn: Connection) -> TouchedKeys | None:
    """The group keys a writer's connection knows its working segment holds (see :class:`TouchedKeys`)."""
    known = conn.info.get(TOUCHED_INFO)
    return known if isinstance(known, TouchedKeys) else None


@contextmanager
def key_relation(raw: Any, keys: NDArray[np.int64]) -> Iterator[str]:
    """``keys`` as a relation with one column ``k`` that SQL on the DuckDB connection ``raw`` can name, for the
    block."""
    with registered(raw, {"k": np.asarray(keys, np.int64)}, "keys") as name:
        yield name


def fetch_columns(raw: Any, sql: str, parameters: Sequence[Any] = ()) -> dict[str, NDArray[Any]]:
    """The result of one SELECT (``?`` for ``parameters``) on a DuckDB connection as numpy columns, straight from
    its result (millions of rows in a fraction of a second; NULLs in a float column as NaN)."""
    found = raw.execute(sql, list(parameters)).fetchnumpy()
    return {k: (np.ma.filled(v.astype(np.float64), np.nan) if v.dtype.kind == "f" else np.ma.getdata(v))
            if isinstance(v, np.ma.MaskedArray) else np.asarray(v) for k, v in found.items()}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
