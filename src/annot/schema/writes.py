"""Writing a store's database through SQLAlchemy Core: rows inserted, deleted and updated, on a layered database
into the writer's working segment after the groups they touch are copied there (:mod:`annot.schema.layered`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Table, func, insert, select, update

from annot.schema.database import raw_connection, touched_keys
from annot.schema.layered import GROUP_KEY, LAYERS_INFO, WORKING, ensure_groups, registered

_INSERT_CHUNK = 2000


def next_id(conn: Connection, table: Table) -> int:
    """The next free integer id of ``table`` (ids are assigned by annot, not by the database)."""
    value = conn.execute(select(func.max(table.c.id))).scalar()
    return 1 if value is None else int(value) + 1


_TO_WORKING = {"schema_translate_map": {None: WORKING}}


def _layered(conn: Connection) -> bool:
    """Whether ``conn`` writes into a working segment (see :mod:`annot.schema.layered`)."""
    return bool(conn.info.get(LAYERS_INFO))


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]], *, new: bool = False) -> int:
    """Insert rows as multi-row VALUES statements (much faster than executemany on DuckDB). On a layered database,
    into the working segment, after the groups they join (the rows under the same group key) are copied there;
    ``new``: their group keys are ids no layer holds yet (past the table's largest), so there is nothing to copy."""
    layered = _layered(conn)
    count = 0
    batch: list[Mapping[str, Any]] = []

    def flush() -> None:
        if layered:
            ensure_groups(raw_connection(conn), table.name, [r[GROUP_KEY[table.name]] for r in batch],
                          touched_keys(conn), new=new)
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
    raw = raw_connection(conn)
    target = f'"{table.name}"'
    if _layered(conn):
        ensure_groups(raw, table.name, arrays[GROUP_KEY[table.name]], touched_keys(conn))
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
        ensure_groups(raw_connection(conn), table.name, _groups_of(conn, table, where, keys), touched_keys(conn))
    conn.execute(table.delete().where(*where), execution_options=_TO_WORKING if _layered(conn) else {})


def update_rows(conn: Connection, table: Table, where: Sequence[Any], values: Mapping[str, Any], *,
                keys: Sequence[Any] | None = None) -> None:
    """UPDATE ``table`` SET ``values`` WHERE ``where`` (conditions on the table's own columns), as
    :func:`delete_rows` does."""
    if _layered(conn):
        ensure_groups(raw_connection(conn), table.name, _groups_of(conn, table, where, keys), touched_keys(conn))
    conn.execute(update(table).where(*where).values(**values), execution_options=_TO_WORKING if _layered(conn) else {})
