"""Opening a store's database (DuckDB through SQLAlchemy by default) and running its migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, func, insert, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from annot.errors import StoreError
from annot.schema.tables import MIGRATIONS, SCHEMA_VERSION, schema_info

log = logging.getLogger(__name__)

_INSERT_CHUNK = 2000


class Database:
    """A store's metadata database. ``url`` is any SQLAlchemy URL; migrations run when it is opened."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        connect_args: dict[str, Any] = {}
        if url.startswith("duckdb") and read_only:
            connect_args["read_only"] = True
        try:
            self.engine: Engine = create_engine(url, connect_args=connect_args, poolclass=None)
            with self.engine.connect() as conn:
                version = self._version(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"{url}: cannot open database ({_first_line(exc)})") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(f"{url}: schema version {version} is newer than this annot ({SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            if read_only:
                raise StoreError(f"{url}: schema version {version} needs migrating; open it writable once")
            self._migrate(version)

    @staticmethod
    def _version(conn: Connection) -> int:
        if not inspect(conn).has_table("schema_info"):
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
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def read_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement and return column names and rows."""
        with self.engine.connect() as conn:
            result = conn.execute(text(sql))
            return list(result.keys()), [tuple(r) for r in result.fetchall()]


def next_id(conn: Connection, table: Table) -> int:
    """The next free integer id of ``table`` (ids are assigned by annot, not by the database)."""
    value = conn.execute(select(func.max(table.c.id))).scalar()
    return 1 if value is None else int(value) + 1


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows as multi-row VALUES statements (much faster than executemany on DuckDB)."""
    count = 0
    batch: list[Mapping[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _INSERT_CHUNK:
            conn.execute(insert(table).values(batch))
            count += len(batch)
            batch = []
    if batch:
        conn.execute(insert(table).values(batch))
        count += len(batch)
    return count


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

