"""Opening a store's database (DuckDB through SQLAlchemy by default) and running its migrations."""

from __future__ import annotations

import logging
import math
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from annot.errors import StoreError
from annot.schema.layered import (
    GROUP_KEY,
    LAYERS_INFO,
    TOUCHED_INFO,
    WORKING,
    Layers,
    TouchedKeys,
    attach,
    ensure_groups,
    registered,
    touched,
)
from annot.schema.tables import MIGRATIONS, SCHEMA_VERSION, schema_info

log = logging.getLogger(__name__)

_INSERT_CHUNK = 2000


# DuckDB settings of a sandboxed connection (``annot sql``): no file outside the database can be read or written,
# no extension installed or loaded, and the settings cannot be changed back from SQL.
SANDBOX = {"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False,
           "lock_configuration": True}


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


def _close_before_fork() -> None:
    """Close every database connection of this process before it forks (decoding workers are forked): a child that
    inherits an open DuckDB database would close it again when it exits, writing a stale copy of it."""
    for database in list(_OPEN):
        database.engine.dispose()


os.register_at_fork(before=_close_before_fork)


class Database:
    """A store's metadata database: a DuckDB file (``location``: its path) or any SQLAlchemy URL. Migrations run
    when it is opened for writing; a read-only one of an older schema is read as it is (migrations only add), and
    ``schema_version`` says which tables it has. ``sandbox`` opens DuckDB with :data:`SANDBOX`."""

    def __init__(self, location: str | Path | Layers, *, read_only: bool = False, sandbox: bool = False) -> None:
        self.layers = location if isinstance(location, Layers) else None
        self.tables: set[str] | None = None  # a layered database's tables (views over its layers)
        if isinstance(location, Layers):
            url = "duckdb:///:memory:"
            where = str(location.working or (location.segments[-1] if location.segments else location.base))
        else:
            url = location if isinstance(location, str) and "://" in location else f"duckdb:///{location}"
            where = url.removeprefix("duckdb:///")
        self.url = url
        connect_args: dict[str, Any] = {}
        if url.startswith("duckdb") and self.layers is None:
            if read_only:
                connect_args["read_only"] = True
            if sandbox:
                connect_args["config"] = dict(SANDBOX)
        try:
            if self.layers is None:
                self.engine: Engine = create_engine(url, connect_args=connect_args)
            else:
                self.engine = self._layered_engine(self.layers)
            with self.engine.connect() as conn:
                version = self._version(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"{where}: cannot open the database ({_first_line(exc)})") from exc
        if self.layers is not None:
            read_only = True  # the layers' schema is the base's, migrated before a segment is written above it
        if version > SCHEMA_VERSION:
            self.engine.dispose()
            raise StoreError(f"{url.removeprefix('duckdb:///')}: database schema version {version} is newer than this "
                             f"annot's ({SCHEMA_VERSION}); upgrade annot")
        if version < SCHEMA_VERSION and not read_only:
            self._migrate(version)
            version = SCHEMA_VERSION
        self.schema_version = version
        _OPEN.add(self)

    def _layered_engine(self, layers: Layers) -> Engine:
        """An in-memory DuckDB that reads the layers as one database. A reader's layers are attached once and its
        pooled connections are cursors of that one database (a cursor costs nothing; a database with its views about
        a tenth of a second); a writer has one connection, the only one that may open its working segment."""
        if layers.working is not None:
            engine = create_engine("duckdb:///:memory:", poolclass=StaticPool)
        else:
            import duckdb
            from duckdb_engine import ConnectionWrapper

            root = duckdb.connect()
            self.tables = attach(root, layers)
            self._root = root
            engine = create_engine("duckdb://", poolclass=QueuePool,
                                   creator=lambda: ConnectionWrapper(root.cursor()))

        @event.listens_for(engine, "connect")
        def _attach(dbapi_connection: Any, record: Any) -> None:
            if layers.working is not None:
                self.tables = attach(dbapi_connection, layers)
                record.info[TOUCHED_INFO] = TouchedKeys()
            record.info[LAYERS_INFO] = True

        if layers.working is not None:
            @event.listens_for(engine, "commit")
            def _committed(conn: Connection) -> None:
                conn.info[TOUCHED_INFO].commit()

            @event.listens_for(engine, "rollback")
            def _rolled_back(conn: Connection) -> None:
                conn.info[TOUCHED_INFO].rollback()

        return engine

    def _version(self, conn: Connection) -> int:
        if self.tables is not None:
            if "schema_info" not in self.tables:
                return 0
        elif not inspect(conn).has_table("schema_info"):
            return 0
        row = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "version")).first()
        return int(row[0]) if row else 0

    def _migrate(self, version: int) -> None:
        with self.engine.begin() as conn:
            for number in range(version, SCHEMA_VERSION):
                log.info("migrating %s to schema version %d", self.url, number + 1)
                MIGRATIONS[number](conn)
            conn.execute(schema_info.delete().where(schema_info.c.key == "version"))
            conn.execute(insert(schema_info).values(key="version", value=str(SCHEMA_VERSION)))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back on any error."""
        known = None
        try:
            with self.engine.begin() as conn:
                known = _known(conn)
                yield conn
        except BaseException:
            if known is not None:  # a commit that failed (a full disk): what the working segment holds is looked up
                known.forget()
            raise

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def checkpoint(self) -> None:
        """Write everything logged into the database file itself (DuckDB: its write-ahead log folded in). DuckDB
        does this on close too, but not always after replaying the log of a process that was killed."""
        if self.url.startswith("duckdb"):
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"CHECKPOINT {WORKING}" if self.layers is not None else "CHECKPOINT")

    def changed(self) -> bool:
        """Whether a writer's working segment holds any change (always true for a database without layers)."""
        if self.layers is None or self.layers.working is None:
            return True
        with self.engine.connect() as conn:
            return any(conn.exec_driver_sql(f'SELECT 1 FROM {WORKING}."{touched(t)}" LIMIT 1').first()
                       for t in GROUP_KEY)

    def close(self) -> None:
        self.engine.dispose()
        root = getattr(self, "_root", None)
        if root is not None:
            root.close()
            del self._root

    def read_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement and return column names and rows."""
        with self.engine.connect() as conn:
            result = conn.execute(text(sql))
            if not result.returns_rows:
                return [], []
            return list(result.keys()), [tuple(r) for r in result.fetchall()]

    def has_table(self, name: str) -> bool:
        if self.tables is not None:
            return name in self.tables
        with self.engine.connect() as conn:
            return bool(inspect(conn).has_table(name))


def next_id(conn: Connection, table: Table) -> int:
    """The next free integer id of ``table`` (ids are assigned by annot, not by the database)."""
    value = conn.execute(select(func.max(table.c.id))).scalar()
    return 1 if value is None else int(value) + 1


_TO_WORKING = {"schema_translate_map": {None: WORKING}}


def _layered(conn: Connection) -> bool:
    """Whether ``conn`` writes into a working segment (see :mod:`annot.schema.layered`)."""
    return bool(conn.info.get(LAYERS_INFO))


def _known(conn: Connection) -> TouchedKeys | None:
    """The group keys a writer's connection knows its working segment holds (see :class:`TouchedKeys`)."""
    known = conn.info.get(TOUCHED_INFO)
    return known if isinstance(known, TouchedKeys) else None


def _raw(conn: Connection) -> Any:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]], *, new: bool = False) -> int:
    """Insert rows as multi-row VALUES statements (much faster than executemany on DuckDB). On a layered database,
    into the working segment, after the groups they join (the rows under the same group key) are copied there;
    ``new``: their group keys are ids no layer holds yet (past the table's largest), so there is nothing to copy."""
    layered = _layered(conn)
    count = 0
    batch: list[Mapping[str, Any]] = []

    def flush() -> None:
        if layered:
            ensure_groups(_raw(conn), table.name, [r[GROUP_KEY[table.name]] for r in batch], _known(conn), new=new)
        conn.execute(insert(table).values(batch), execution_options=_TO_WORKING if layered else {})

    for row in rows:
        batch.append(row)
        if len(batch) >= _INSERT_CHUNK:
            flush()
            count += len(batch)
            batch = []
    if batch:
        flush()
        count += len(batch)
    return count


def insert_columns(conn: Connection, table: Table, columns: Mapping[str, NDArray[Any]]) -> int:
    """Insert rows given as equal-length numpy columns (a NaN in a float column is NULL): on DuckDB one INSERT ...
    SELECT over the arrays, in the connection's transaction (about a hundred times faster than VALUES for large
    batches); on other databases as :func:`insert_rows`."""
    arrays = {name: np.ascontiguousarray(values) for name, values in columns.items()}
    n = len(next(iter(arrays.values()))) if arrays else 0
    if not n:
        return 0
    if conn.dialect.name != "duckdb":
        names = list(arrays)
        rows = zip(*(a.tolist() for a in arrays.values()), strict=True)
        return insert_rows(conn, table, ({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in
                                           zip(names, row, strict=True)} for row in rows))
    raw = _raw(conn)
    target = f'"{table.name}"'
    if _layered(conn):
        ensure_groups(raw, table.name, arrays[GROUP_KEY[table.name]], _known(conn))
        target = f"{WORKING}.{target}"
    picked = ", ".join(f'CASE WHEN isnan("{k}") THEN NULL ELSE "{k}" END' if a.dtype.kind == "f" else f'"{k}"'
                       for k, a in arrays.items())
    with registered(raw, arrays, "rows") as view:
        raw.execute(f'INSERT INTO {target} ({", ".join(f"{chr(34)}{k}{chr(34)}" for k in arrays)}) '
                    f"SELECT {picked} FROM {view}")
    return n


def _groups_of(conn: Connection, table: Table, where: Sequence[Any], keys: Sequence[Any] | None) -> list[Any]:
    """The group keys of the rows ``where`` selects: ``keys`` where the caller knows them (the keys it names)."""
    if keys is not None:
        return list(keys)
    key = table.c[GROUP_KEY[table.name]]
    return list(conn.execute(select(key).distinct().where(*where)).scalars())


def delete_rows(conn: Connection, table: Table, *where: Any, keys: Sequence[Any] | None = None) -> None:
    """DELETE FROM ``table`` WHERE ``where`` (conditions on the table's own columns); on a layered database in the
    working segment, after the groups it touches (``keys``, where the caller knows them) are copied there."""
    if _layered(conn):
        ensure_groups(_raw(conn), table.name, _groups_of(conn, table, where, keys), _known(conn))
    conn.execute(table.delete().where(*where), execution_options=_TO_WORKING if _layered(conn) else {})


def update_rows(conn: Connection, table: Table, where: Sequence[Any], values: Mapping[str, Any], *,
                keys: Sequence[Any] | None = None) -> None:
    """UPDATE ``table`` SET ``values`` WHERE ``where`` (conditions on the table's own columns), as
    :func:`delete_rows` does."""
    if _layered(conn):
        ensure_groups(_raw(conn), table.name, _groups_of(conn, table, where, keys), _known(conn))
    conn.execute(update(table).where(*where).values(**values), execution_options=_TO_WORKING if _layered(conn) else {})


@contextmanager
def key_relation(conn: Connection, keys: NDArray[np.int64]) -> Iterator[str]:
    """``keys`` as a relation with one column ``k`` that the connection's SQL can name (DuckDB), for the block."""
    with registered(_raw(conn), {"k": np.asarray(keys, np.int64)}, "keys") as name:
        yield name


def read_columns(conn: Connection, sql: str) -> dict[str, NDArray[Any]]:
    """The result of one SELECT (annot's own SQL, no parameters) as numpy columns: on DuckDB straight from its
    result (millions of rows in a fraction of a second; NULLs in a float column as NaN), elsewhere through rows."""
    if conn.dialect.name == "duckdb":
        found = _raw(conn).execute(sql).fetchnumpy()
        return {k: (np.ma.filled(v.astype(np.float64), np.nan) if v.dtype.kind == "f" else np.ma.getdata(v))
                if isinstance(v, np.ma.MaskedArray) else np.asarray(v) for k, v in found.items()}
    result = conn.execute(text(sql))
    names = list(result.keys())
    rows = result.fetchall()
    return {name: np.array([r[j] for r in rows]) for j, name in enumerate(names)}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

