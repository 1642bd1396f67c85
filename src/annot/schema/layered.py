"""A database in layers: a base DuckDB file and a few small segment files above it, read as one.

Each table is read as groups of rows under a group key (:data:`GROUP_KEY`: an image's tags, a photo's annotations,
a run's predictions, one correction). A segment holds, for every group it changed, the group's rows as they are now
(none for a deleted one) and the group's key in ``_touched_TABLE``: the newest layer that touched a group holds it,
the layers below are shadowed for it. So a change writes only the groups it changes, and folding the segments into
the base (or into one segment) gives the same rows however often it is done (a fold that a kill interrupted is
simply done again).

A reader attaches every layer read-only to an in-memory DuckDB and reads views named as the tables (and the
readable views ``photo_tags`` and ``corrections_view``); a writer attaches one more segment, its working one, read
and write, and writes through :func:`insert_rows`, :func:`insert_columns`, :func:`delete_rows` and
:func:`update_rows` (:mod:`annot.schema.database`), which copy a group into the working segment the first time it
changes there. Segment tables hold no constraints: the group keys are annot's own.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.caches import cached_file, digest
from annot.schema.version import COLUMNS

if TYPE_CHECKING:
    from sqlalchemy import Table

GROUP_KEY = {"schema_info": "key", "images": "id", "tags": "id", "image_tags": "image_id", "runs": "id",
             "predictions": "run_id", "word_metrics": "run_id", "photo_files": "image_id", "annotations": "image_id",
             "corrections": "id"}
LAYERS_INFO = "annot_layers"  # the key of a layered connection's record info
TOUCHED_INFO = "annot_touched"  # the key of a writer connection's :class:`TouchedKeys`
WORKING = "w"  # the writer's working segment's catalog name
SEGMENT_OPTIONS = " (BLOCK_SIZE 16384)"  # small blocks: a segment of one correction is some 80 KB, not 1 MB


def touched(table: str) -> str:
    return f"_touched_{table}"


@dataclass(frozen=True)
class Layers:
    """The files of a layered database: ``base`` (None: no base yet), ``segments`` oldest first, and a writer's
    ``working`` segment."""

    base: Path | None
    segments: tuple[Path, ...] = ()
    working: Path | None = None

    def named(self) -> list[tuple[str, Path, bool]]:
        """(catalog name, file, read-only) of each layer, bottom first."""
        out = [("b", self.base, True)] if self.base is not None else []
        out += [(f"s{n}", path, True) for n, path in enumerate(self.segments)]
        if self.working is not None:
            out.append((WORKING, self.working, False))
        return out


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


Schema = dict[str, dict[str, str]]  # table: {column: its DuckDB type}, in the columns' order


def _columns(raw: Any, catalog: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """The columns of every attached table (or ``catalog``'s) with their types, by (catalog, table)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    only = "" if catalog is None else f" AND database_name = '{catalog}'"
    for catalog_name, table, column, kind in raw.execute(
            "SELECT database_name, table_name, column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
            f"AND database_name <> 'memory' AND NOT internal{only} "
            "ORDER BY database_name, table_name, column_index").fetchall():
        out.setdefault((str(catalog_name), str(table)), {})[str(column)] = str(kind)
    return out


@functools.cache
def declared_schema() -> Schema:
    """This annot's tables as :mod:`annot.schema.tables` declares them (imports SQLAlchemy)."""
    from annot.schema.tables import metadata

    dialect = _duckdb_dialect()
    return {table.name: {c.name: str(c.type.compile(dialect=dialect)) for c in table.columns}
            for table in metadata.sorted_tables}


def found_schema(columns: dict[tuple[str, str], dict[str, str]]) -> Schema | None:
    """The schema (:data:`annot.schema.version.COLUMNS`) with each column's type as a layer holds it, without
    SQLAlchemy; None when no layer holds some column (every layer written by an older annot: the column reads as a
    NULL of the type :func:`declared_schema` gives it)."""
    kinds: dict[tuple[str, str], str] = {}
    for (_, table), found in columns.items():
        for column, kind in found.items():
            kinds.setdefault((table, column), kind)
    out: Schema = {}
    for table, names in COLUMNS.items():
        if not any(t == table for _, t in columns):
            continue  # a table no layer has (a database older than it): no view
        if any((table, c) not in kinds for c in names):
            return None
        out[table] = {c: kinds[(table, c)] for c in names}
    return out


def table_sql(table: Table, catalog: str) -> str:
    """CREATE TABLE of ``table`` in ``catalog``, without constraints (a segment's)."""
    return f'CREATE TABLE IF NOT EXISTS {catalog}."{table.name}" ({_table_body(table)})'


@functools.cache
def _table_body(table: Table) -> str:
    """The column definitions of ``table`` without constraints (compiled once: the schema does not change)."""
    from sqlalchemy import Table
    from sqlalchemy.schema import CreateTable

    bare = Table(table.name, type(table.metadata)(), *[c._copy() for c in table.columns])
    for column in bare.columns:
        column.primary_key = False
        column.unique = False
        column.nullable = True
    create = str(CreateTable(bare).compile(dialect=_duckdb_dialect())).strip()
    return create.split("(", 1)[1].rsplit(")", 1)[0]


@functools.cache
def _duckdb_dialect() -> Any:
    from duckdb_engine import Dialect

    return Dialect()


def create_segment_tables(raw: Any, catalog: str) -> None:
    """Every table of the schema and its touched keys, empty, in an attached segment (those it lacks)."""
    from annot.schema.tables import metadata

    present = {str(t) for (t,) in raw.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [catalog]).fetchall()}
    columns = _columns(raw, catalog)
    for table in metadata.sorted_tables:
        if table.name not in present:
            raw.execute(table_sql(table, catalog))
        else:  # a segment an older annot began (a killed writer's): the columns added since
            for column in table.columns:
                if column.name not in columns.get((catalog, table.name), {column.name: ""}):
                    kind = declared_schema()[table.name][column.name]
                    raw.execute(f'ALTER TABLE {catalog}."{table.name}" ADD COLUMN "{column.name}" {kind}')
        if touched(table.name) not in present:
            key = table.c[GROUP_KEY[table.name]]
            kind = "VARCHAR" if key.type.python_type is str else "BIGINT"
            raw.execute(f'CREATE TABLE IF NOT EXISTS {catalog}."{touched(table.name)}" (k {kind})')


def view_sql(table: str, layers: Sequence[str], columns: dict[tuple[str, str], dict[str, str]],
             schema: Schema | None = None) -> str | None:
    """The SELECT that reads ``table`` through ``layers`` (bottom first): each layer's rows of the groups no layer
    above it touched, in the columns of ``schema`` (default :func:`declared_schema`). None when no layer has the
    table."""
    kinds = (schema or declared_schema()).get(table, {})  # a column a layer lacks (an older annot's): typed NULL
    having = [name for name in layers if (name, table) in columns]
    if not having or not kinds:
        return None
    key = GROUP_KEY[table]
    parts = []
    for n, name in enumerate(having):
        present = columns[(name, table)]
        picked = ", ".join(f'"{c}"' if c in present else f'CAST(NULL AS {kind}) AS "{c}"' for c, kind in kinds.items())
        above = [f'SELECT k FROM {other}."{touched(table)}"' for other in having[n + 1:]
                 if (other, touched(table)) in columns]
        where = f' WHERE "{key}" NOT IN ({" UNION ALL ".join(above)})' if above else ""
        parts.append(f'SELECT {picked} FROM {name}."{table}"{where}')
    return " UNION ALL ".join(parts)


def attach(raw: Any, layers: Layers, *, readable: bool = False) -> set[str]:
    """Attach ``layers`` to an in-memory DuckDB connection and make the views that read them as one database
    (a working segment gets its tables first), with ``readable`` the views a person reads too (``annot sql``);
    returns the tables it reads."""
    named = layers.named()
    for name, path, read_only in named:
        fresh = not read_only and not path.exists()
        if fresh:  # a new working segment: a copy of an empty one with every table
            scratch = path.with_name(f".{path.name}.copying")
            shutil.copyfile(_empty_segment(), scratch)
            os.replace(scratch, path)  # whole or absent: a copy cut short (a full disk) is never continued
        raw.execute(f"ATTACH {_quote(path)} AS {name}" + (" (READ_ONLY)" if read_only else ""))
        if not read_only and not fresh:
            create_segment_tables(raw, name)  # a segment a killed writer left may lack a table or a column
    columns = _columns(raw)
    schema = (found_schema(columns) if layers.working is None else None) or declared_schema()
    tables = set()
    raw.execute("BEGIN")  # the views in one transaction: DuckDB commits each statement otherwise
    try:
        for table in GROUP_KEY:
            select = view_sql(table, [name for name, _, _ in named], columns, schema)
            if select is not None:
                raw.execute(f'CREATE OR REPLACE VIEW main."{table}" AS {select}')
                tables.add(table)
        if readable and {"annotations", "corrections", "photo_files", "images", "tags", "image_tags"} <= tables:
            from annot.schema.tables import CORRECTIONS_VIEW, PHOTO_TAGS_VIEW

            raw.execute(PHOTO_TAGS_VIEW)
            raw.execute(CORRECTIONS_VIEW)
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
    return tables


def _empty_segment() -> Path:
    """An empty segment with every table (copied for each new working segment: making the tables takes longer),
    made once per user for this schema and DuckDB version."""
    import duckdb

    def make(path: Path) -> None:
        raw = duckdb.connect()
        try:
            raw.execute(f"ATTACH {_quote(path)} AS e{SEGMENT_OPTIONS}")
            create_segment_tables(raw, "e")
            raw.execute("CHECKPOINT e")
        finally:
            raw.close()

    return cached_file(_empty_segment_name(), make)


def empty_segment_size() -> int:
    """The bytes of a segment with every table and no row."""
    return _empty_segment().stat().st_size


@functools.cache
def _empty_segment_name() -> str:
    import duckdb

    from annot.schema.tables import metadata

    schema = [table_sql(table, "e") for table in metadata.sorted_tables]
    return f"segment-{digest([duckdb.__version__, SEGMENT_OPTIONS, *schema])}.duckdb"


class TouchedKeys:
    """The group keys a writer's connection knows its working segment to hold whole (it copied them there), so that
    a write of groups it already holds (the same photo corrected again) skips looking: what committed
    transactions copied, and what the open one did (forgotten if it is rolled back)."""

    def __init__(self) -> None:
        self._committed: dict[str, set[Any]] = {}
        self._pending: dict[str, set[Any]] = {}

    def fresh(self, table: str, values: NDArray[Any]) -> NDArray[Any]:
        known = self._committed.get(table, set()) | self._pending.get(table, set())
        return values[[v not in known for v in values.tolist()]] if known else values

    def add(self, table: str, values: NDArray[Any]) -> None:
        self._pending.setdefault(table, set()).update(values.tolist())

    def commit(self) -> None:
        for table, values in self._pending.items():
            self._committed.setdefault(table, set()).update(values)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()

    def forget(self) -> None:
        self._committed.clear()
        self._pending.clear()


def ensure_groups(raw: Any, table: str, keys: NDArray[Any] | Sequence[Any], known: TouchedKeys | None = None,
                  *, new: bool = False) -> None:
    """Copy the groups of ``keys`` that the working segment has not touched yet into it, as they read now, and mark
    them touched: from here on the working segment holds them whole. ``known``: the keys the connection knows it
    copied (those are not looked up again); ``new``: integer keys no layer holds (ids past every layer's largest),
    only marked."""
    values = np.unique(np.asarray(keys))
    if known is not None and len(values):
        values = known.fresh(table, values)
    if not len(values):
        return
    if values.dtype.kind in "iub":
        values = values.astype(np.int64)
    else:
        values = values.astype(str).astype(object)
    key = GROUP_KEY[table]
    if new and values.dtype.kind == "i":
        settle(raw)
        raw.execute(f'INSERT INTO {WORKING}."{touched(table)}" VALUES ' + ", ".join(f"({int(v)})" for v in values))
        if known is not None:
            known.add(table, values)
        return
    with registered(raw, {"k": values}, "keys") as name:
        fresh = f'SELECT k FROM {name} WHERE k NOT IN (SELECT k FROM {WORKING}."{touched(table)}")'
        columns = ", ".join(f'"{c}"' for c in declared_schema()[table])
        # the keys' range as well: DuckDB skips the base's row groups outside it (ids grow as rows are added)
        span = f' AND "{key}" BETWEEN {int(values[0])} AND {int(values[-1])}' if values.dtype.kind == "i" else ""
        raw.execute(f'INSERT INTO {WORKING}."{table}" ({columns}) SELECT {columns} FROM main."{table}" '
                    f'WHERE "{key}" IN ({fresh}){span}')
        raw.execute(f'INSERT INTO {WORKING}."{touched(table)}" {fresh}')
    if known is not None:
        known.add(table, values)


@contextmanager
def registered(raw: Any, columns: Mapping[str, Any], kind: str) -> Iterator[str]:
    """numpy ``columns`` as a relation the connection's SQL can name (a unique name), for the block."""
    name = f"annot_{kind}_{uuid.uuid4().hex}"
    settle(raw)
    raw.register(name, dict(columns))
    try:
        yield name
    finally:
        raw.unregister(name)


def settle(raw: Any) -> None:
    """Finish a result the connection still holds (a query read only in part), which DuckDB lets nothing but
    another query follow."""
    raw.execute("SELECT 1").fetchall()


def _read_only_layers(raw: Any, layers: Sequence[tuple[str, Path]]) -> dict[tuple[str, str], dict[str, str]]:
    for name, path in layers:
        raw.execute(f"ATTACH {_quote(path)} AS {name} (READ_ONLY)")
    return _columns(raw)


def merge_segments(segments: Sequence[Path], out: Path) -> None:
    """Write the segments' groups (each as its newest segment holds it) into one new segment file ``out``."""
    import duckdb

    raw = duckdb.connect()
    try:
        names = [(f"s{n}", path) for n, path in enumerate(segments)]
        columns = _read_only_layers(raw, names)
        shutil.copyfile(_empty_segment(), out)  # every table, empty (making them takes longer)
        raw.execute(f"ATTACH {_quote(out)} AS n")
        raw.execute("BEGIN")  # one transaction: DuckDB commits each statement otherwise, some 5 ms apiece
        for table in GROUP_KEY:
            select = view_sql(table, [name for name, _ in names], columns)
            if select is None:
                continue
            keys = [f'SELECT k FROM {name}."{touched(table)}"' for name, _ in names if (name, touched(table)) in columns]
            raw.execute(f'INSERT INTO n."{table}" {select}')
            raw.execute(f'INSERT INTO n."{touched(table)}" SELECT DISTINCT k FROM ({" UNION ALL ".join(keys)})')
        raw.execute("COMMIT")
        raw.execute("CHECKPOINT n")
    finally:
        raw.close()


def copy_base(base: Path, out: Path) -> None:
    """The base's bytes into a new file (the start of a fold)."""
    shutil.copyfile(base, out)


def fold_into_base(base: Path | None, segments: Sequence[Path], out: Path, create: Any) -> None:
    """Write a new base file ``out``: the base's rows with the segments' groups in place of its own. ``create(out)``
    opens it for writing once (making the schema, or migrating the base's copy to the current version)."""
    import duckdb

    if base is not None:
        copy_base(base, out)
    create(out)  # the schema, or the base's migrated to this annot's version (migrations only add)
    raw = duckdb.connect()
    try:
        names = [(f"s{n}", path) for n, path in enumerate(segments)]
        columns = _read_only_layers(raw, names)
        raw.execute(f"ATTACH {_quote(out)} AS n")
        for table, key in GROUP_KEY.items():
            select = view_sql(table, [name for name, _ in names], columns)
            keys = [f'SELECT k FROM {name}."{touched(table)}"' for name, _ in names if (name, touched(table)) in columns]
            if select is None or not keys:
                continue
            names_ = ", ".join(f'"{c}"' for c in declared_schema()[table])
            # one statement each: DuckDB checks a key deleted and inserted again in one transaction as a duplicate
            raw.execute(f'DELETE FROM n."{table}" WHERE "{key}" IN ({" UNION ALL ".join(keys)})')
            raw.execute(f'INSERT INTO n."{table}" ({names_}) {select}')
        raw.execute("CHECKPOINT n")
    finally:
        raw.close()


__all__ = ["GROUP_KEY", "LAYERS_INFO", "TOUCHED_INFO", "WORKING", "Layers", "TouchedKeys", "attach",
           "create_segment_tables", "ensure_groups",
           "fold_into_base", "merge_segments", "settle", "touched", "view_sql"]
