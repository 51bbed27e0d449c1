"""Many rows into one table in few statements, for bulk writes (an import
and the outbox events it publishes), with the values SQLAlchemy would store.

SQLAlchemy's ``executemany`` builds a parameter dictionary per row and runs
every value through its type's processor one by one; on SQLite it also
inserts one row per statement when the ids must come back in order. Here,
each column's values go through its type's own bind processor once per run
of the same value, and:

- on SQLite, rows go as multi-row ``VALUES`` statements with flat
  parameters;
- on PostgreSQL, as one ``INSERT ... SELECT FROM unnest(...)`` with one
  array parameter per column, and new ids drawn from the table's sequence
  first. SQLAlchemy's insertmanyvalues sent a ``VALUES`` list of 500 rows
  of named parameters, which psycopg parses anew on every statement (it
  caches only short ones): 0.13 s of client time per 500 contacts, more
  than the server spent inserting them. A statement of one parameter per
  column is parsed once and cached. The arrays go in binary (``%b``):
  psycopg's text format escapes every element with a regular expression,
  which cost more than the whole INSERT (audit entries: 44 ms a batch of
  500, 10 ms in binary);
- elsewhere, SQLAlchemy's own insertmanyvalues is used.
``execute_many`` does the like for one statement run with many parameter
sets (an UPDATE per touched row).
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session


def inserted_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """INSERT ``rows`` into ``table`` (an integer ``id`` key); their ids in
    the order of ``rows``. SQLite numbers the rows of a multi-row INSERT in
    VALUES order (one writer at a time; ids only grow) but may return them
    in any order, and SQLAlchemy would insert one row per statement to keep
    the order: sort instead. PostgreSQL: the ids are drawn from the
    sequence before the INSERT, so their order is known. Elsewhere:
    SQLAlchemy's ordered RETURNING."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sorted(insert_rows(session, table, rows, returning=True))
    if name == "postgresql":
        return insert_rows(session, table, rows, returning=True)  # ids drawn first, in order
    return list(session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())


def insert_rows(session: Session, table: Any, rows: list[dict[str, Any]], *, returning: bool = False) -> list[int]:
    """INSERT ``rows`` (dicts with the same keys: column keys) into
    ``table``; with ``returning``, the new ids (SQLite: in any order).

    SQLite: multi-row VALUES statements written here, each value through
    its column type's own bind processor (what SQLAlchemy stores), with
    the parameters flat. SQLAlchemy's executemany built a parameter dict
    per row and ran every value through its processor: a fifth of an
    import's time, for rows whose times are all one ``now``. A processor
    runs once for a run of the same value object. Multi-row VALUES rather
    than ``executemany``: the search-index triggers cost far less per
    statement than per row. PostgreSQL: ``_insert_unnest``, the ids in the
    order of ``rows``. Columns with a Python-side default must be in the
    rows (this writes no defaults): checked. Elsewhere: SQLAlchemy's
    insertmanyvalues."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        return _insert_unnest(connection, table, rows, returning)
    if dialect.name != "sqlite":
        if returning:
            return list(connection.execute(insert(table).returning(table.c.id), rows).scalars())
        connection.execute(insert(table), rows)
        return []
    order, head, one = _statement(table, tuple(rows[0]), dialect)
    columns = [_processed(table.c[key].type._cached_bind_processor(dialect), [row[key] for row in rows])
               for key in order]
    tail = " RETURNING id" if returning else ""
    per_statement = max(1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // len(order)))
    ids: list[int] = []
    for start in range(0, len(rows), per_statement):
        count = min(per_statement, len(rows) - start)
        flat = tuple(chain.from_iterable(zip(*(column[start:start + count] for column in columns))))
        result = connection.exec_driver_sql(f"{head} VALUES {', '.join([one] * count)}{tail}", flat)
        if returning:
            ids.extend(row[0] for row in result)
    return ids


@functools.lru_cache(maxsize=64)
def _statement(table: Any, keys: tuple[str, ...], dialect: Any) -> tuple[list[str], str, str]:
    """``insert_rows``' statement for these keys: the column keys in
    parameter order, the text before VALUES and one row's placeholders."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = list(compiled.positiontup)
    if sorted(order) != sorted(keys):
        raise ValueError(f"insert_rows: {table.name} columns with defaults must be given ({sorted(set(order) - set(keys))})")
    head, _values, one = compiled.string.partition(" VALUES ")
    return order, head, one


def _insert_unnest(connection: Any, table: Any, rows: list[dict[str, Any]], returning: bool) -> list[int]:
    """PostgreSQL: ``rows`` in one ``INSERT INTO table (...) SELECT * FROM
    unnest(%b::type[], ...)``, a column's values as one array. With
    ``returning``, the ids are drawn from the table's sequence first (in
    ascending order, as the rows' ``id``), so they need no ordered RETURNING
    and come back in the order of ``rows``. A row trigger fires per row as
    for any INSERT; a statement trigger once."""
    keys = tuple(rows[0])
    dialect = connection.dialect
    sequence, head = _unnest_statement(table, keys, dialect, returning)
    columns = [_processed(table.c[key].type._cached_bind_processor(dialect), [row[key] for row in rows])
               for key in keys]
    ids: list[int] = []
    if returning:
        # The sequence is looked up once (OFFSET 0 keeps the subquery from
        # being folded into the outer one); looked up for every id, drawing
        # 500 took 1.7 ms instead of 0.35 ms.
        ids = sorted(connection.exec_driver_sql(
            f"SELECT nextval(s.seq) FROM (SELECT {sequence}::regclass AS seq OFFSET 0) AS s,"
            " generate_series(1, %s)", (len(rows),)).scalars())
        columns.insert(0, ids)
    connection.exec_driver_sql(head, tuple(columns))
    return ids


@functools.lru_cache(maxsize=64)
def _unnest_statement(table: Any, keys: tuple[str, ...], dialect: Any, with_id: bool) -> tuple[str, str]:
    """``_insert_unnest``'s statement for these keys (with ``id`` first
    when the ids are drawn), and the text naming the table's id sequence."""
    given = set(keys) | ({"id"} if with_id else set())
    missing = sorted(c.key for c in table.columns if c.key not in given and c.default is not None)
    if missing:
        raise ValueError(f"insert_rows: {table.name} columns with defaults must be given ({missing})")
    preparer = dialect.identifier_preparer
    names = (("id",) if with_id else ()) + keys
    quoted = ", ".join(preparer.format_column(table.c[key]) for key in names)
    arrays = ", ".join(f"%b::{table.c[key].type.compile(dialect=dialect)}[]" for key in names)
    qualified = preparer.format_table(table)
    sequence = f"pg_get_serial_sequence('{qualified.replace(chr(39), chr(39) * 2)}', 'id')"
    return sequence, f"INSERT INTO {qualified} ({quoted}) SELECT * FROM unnest({arrays})"


_NOTHING = object()


def _processed(processor: Any, values: list[Any]) -> list[Any]:
    if processor is None:
        return values
    out, last, last_out = [], _NOTHING, None
    for value in values:
        if value is not last:
            last, last_out = value, processor(value)
        out.append(last_out)
    return out


def execute_many(session: Session, statement: Any, params: list[dict[str, Any]]) -> int:
    """``statement`` once per parameter set. On SQLite, compiled once and
    handed to the driver's ``executemany`` with each value through its
    type's bind processor: SQLAlchemy's executemany built and processed a
    parameter dict per set, 30 us each, a sixth of an interaction import
    (one UPDATE per touched contact per batch). Statements it must expand
    per call (an IN list) go through SQLAlchemy. Returns the number of rows
    matched, over every parameter set."""
    connection = session.connection()
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect) if dialect.name == "sqlite" else None
    if compiled is None or not compiled.positiontup or "POSTCOMPILE" in compiled.string:
        return connection.execute(statement, params).rowcount
    names = compiled.positiontup
    processors = {name: compiled.binds[name].type._cached_bind_processor(dialect) for name in set(names)}
    fixed = compiled.construct_params(params[0])
    varying = set(params[0])
    constant = {name: fixed[name] if processors[name] is None else processors[name](fixed[name])
                for name in processors if name not in varying}
    rows = []
    for values in params:
        processed = {name: values[name] if processors[name] is None else processors[name](values[name])
                     for name in varying if name in processors}
        rows.append(tuple(processed[name] if name in processed else constant[name] for name in names))
    return connection.exec_driver_sql(compiled.string, rows).rowcount
