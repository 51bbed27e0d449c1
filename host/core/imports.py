"""Importing contacts, interactions, tasks and plugins' record types from
CSV and XLSX files: reading the file, mapping its columns to fields,
validating every row through the same schemas and services as the API, and
writing the good rows in one transaction per batch.

No Flask request in here: the ``core.import`` job (``import_job``), the API
(``host.core.imports_api``) and the CLI (``host.core.imports_cli``) call it.

The steps, and what each decides:

1. ``read_table``: the file as a header and rows. CSV must be UTF-8 (a BOM
   is fine); its delimiter is the one of , ; TAB | that the header line
   holds most. XLSX is read with openpyxl in read-only mode, first sheet,
   formulas as their text (never evaluated). Anything else (a wrong
   encoding, a broken workbook, random bytes, an empty file, a file over
   the size limit) is an ``ImportFileError``: nothing is written.
2. ``map_columns``: headers map to fields by name or label, ignoring case,
   spaces and punctuation ("E-mail" is ``email``, "First name" is
   ``first_name``); an explicit mapping ``{column: field}`` wins (a field
   of None ignores the column). Columns that map to nothing are reported;
   a required field without a column is a file-level error naming it.
3. Each row: empty cells are left out (an update keeps the stored value),
   list fields split on ``;`` or ``,``, the cell text a formula-escaping
   export wrote (``'=...``) loses its apostrophe; then the target's schema
   loads it (422-style messages by field) and the target's ``write`` stores
   it (the services: custom fields, company, consent, duplicates...).
4. Rows are written in batches of ``BATCH_SIZE``, each batch one
   transaction. New contacts, interactions and tasks are checked row by row
   by the services' own rules and written together (``import_batch``,
   ``import_batch_linked``: the same rows, audit entries and events as the
   per-row services); updates go through the services, each row in a
   savepoint; a batch the database refuses is retried row by row, so a bad
   row costs only itself. A dry run does exactly the same work in one
   transaction per ``DRY_RUN_ROWS`` rows, rolled back: each batch sees what
   the batches before it in that span would have written, so it reports
   what a commit would, clashes between rows of different batches included
   (a duplicate of an earlier row, an external id an earlier row took).

Rejected rows are reported as (row number as the spreadsheet shows it,
column, message) and written to a file of the input's format, original
columns plus ``error``, in ``<instance>/imports/``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import datetime as dt
import gc
import inspect as pyinspect
import io
import logging
import re
import secrets
import time
import zipfile
from collections.abc import Mapping  # isinstance() through typing's alias is slow
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from marshmallow import Schema, ValidationError, fields, missing, validate
from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from host import contributions, fast_load
from host.db import is_among
from host.security.access import Principal, current_principal, load_principal, scope_condition
from host.security.models import User

from . import services
from .import_batch import ContactBatch, ContactUpdates, planned_update
from .import_batch_linked import InteractionBatch, TaskBatch
from .models import Contact, ContactEmail, ContactPhone, Interaction, Task
from .schemas import ContactCreateSchema, InteractionCreateSchema, TaskCreateSchema

log = logging.getLogger("mosaic.imports")

JOB_NAME = "core.import"
#: Rows per transaction (and per savepoint group).
BATCH_SIZE = 500
#: A dry run checks this many rows in one transaction, rolled back after
#: them (and at the end): the rows of one span see each other as the commit
#: would. Bounded because the transaction holds SQLite's write lock (other
#: writers wait up to 10 s; 20,000 rows take about 3 s) and, on PostgreSQL,
#: the locks of the rows it updates.
DRY_RUN_ROWS = 20_000
#: More data rows than this is a file-level error (a sheet of a million
#: blank-looking rows is usually a formatting accident).
MAX_ROWS = 500_000
#: Rejected rows listed in the job's result; the rejected file has them all.
MAX_REPORTED = 1000
#: An XLSX that unpacks to more than this many times the upload limit is refused (zip bombs).
MAX_UNPACK_FACTOR = 20
#: Cells starting with these are formulas to a spreadsheet; exports escape
#: them with a leading apostrophe, and imports take that apostrophe off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
DELIMITERS = (",", ";", "\t", "|")
FOLDER = "imports"
ON_DUPLICATE = ("report", "reject")
ERROR_COLUMN = "error"


class ImportFileError(Exception):
    """The file (or the request describing it) cannot be imported at all;
    nothing was written. ``field`` is what the request got wrong: ``file``,
    ``mapping`` or ``type``."""

    def __init__(self, message: str, field: str = "file"):
        super().__init__(message)
        self.message = message
        self.field = field


# --- reading files ---------------------------------------------------------------------------------


@dataclass
class Table:
    """A file's content: ``rows`` are (row number as a spreadsheet shows it,
    cells as text); blank rows are left out but keep their numbers."""

    format: str  # "csv" or "xlsx"
    header: list[str]
    rows: list[tuple[int, list[str]]]
    delimiter: str = ","
    bom: bool = False


def read_table(data: bytes, filename: str, *, max_bytes: int) -> Table:
    """Read a CSV or XLSX file (decided by its content, then its name)."""
    if len(data) > max_bytes:
        raise ImportFileError(f"The file is larger than the limit of {_megabytes(max_bytes)}.")
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise ImportFileError("The file is empty.")
    kind = _format_of(data, filename)
    table = _read_xlsx(data, max_bytes) if kind == "xlsx" else _read_csv(data)
    if not any(table.header):
        raise ImportFileError("The first row must hold the column names.")
    seen: dict[str, int] = {}
    for index, name in enumerate(table.header):
        if name and name in seen:
            raise ImportFileError(f"The column {name!r} appears twice (columns {seen[name] + 1} and {index + 1}).")
        seen.setdefault(name, index)
    if len(table.rows) > MAX_ROWS:
        raise ImportFileError(f"The file has more than {MAX_ROWS} rows: split it.")
    return table


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def _format_of(data: bytes, filename: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if suffix in (".xlsx", ".xlsm"):
        raise ImportFileError("The file is not a valid XLSX workbook (it is not a zip archive).")
    if suffix == ".xls" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise ImportFileError("Old Excel (.xls) files are not supported: save the sheet as .xlsx or CSV UTF-8.")
    return "csv"


def _read_csv(data: bytes) -> Table:
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"The file is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}): "
            "save it as CSV UTF-8, or as .xlsx.") from None
    if "\x00" in text:
        raise ImportFileError("The file is not a text file (it holds NUL characters): upload CSV UTF-8 or .xlsx.")
    first_line = text.split("\n", 1)[0]
    delimiter = max(DELIMITERS, key=first_line.count) if any(d in first_line for d in DELIMITERS) else ","
    rows: list[tuple[int, list[str]]] = []
    header: list[str] = []
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), start=1):
            if number == 1:
                header = [cell.strip() for cell in cells]
            elif any(cell.strip() for cell in cells):
                rows.append((number, cells))
    except csv.Error as exc:
        raise ImportFileError(f"The file is not valid CSV (row {number + 1}): {exc}.") from None
    return Table("csv", _trim_header(header), rows, delimiter, bom)


def _trim_header(header: list[str]) -> list[str]:
    while header and not header[-1]:
        header.pop()
    return header


def _read_xlsx(data: bytes, max_bytes: int) -> Table:
    import openpyxl

    try:
        unpacked = sum(item.file_size for item in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ImportFileError("The file is not a valid XLSX workbook (a damaged zip archive).") from None
    if unpacked > MAX_UNPACK_FACTOR * max_bytes:
        raise ImportFileError("The workbook unpacks to too much data: save it as CSV UTF-8, or split it.")
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds for a broken workbook
        log.info("xlsx import refused: %s: %s", type(exc).__name__, exc)
        raise ImportFileError("The file is not a valid XLSX workbook.") from None
    try:
        if not workbook.worksheets:
            raise ImportFileError("The workbook has no sheet.")
        header: list[str] = []
        rows: list[tuple[int, list[str]]] = []
        for number, values in enumerate(workbook.worksheets[0].iter_rows(values_only=True), start=1):
            cells = [_cell_text(value) for value in values]
            if number == 1:
                header = [cell.strip() for cell in cells]
            elif any(cell.strip() for cell in cells):
                rows.append((number, cells))
            if len(rows) > MAX_ROWS:
                break
    except ImportFileError:
        raise
    except Exception as exc:
        log.info("xlsx import refused while reading: %s: %s", type(exc).__name__, exc)
        raise ImportFileError("The file is not a valid XLSX workbook.") from None
    finally:
        workbook.close()
    return Table("xlsx", _trim_header(header), rows)


def _cell_text(value: Any) -> str:
    """A cell as the text a CSV of it would hold (formulas stay their text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def unescape_cell(text: str) -> str:
    """Undo an export's formula escaping ("'=x" -> "=x"); text stays text."""
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_START:
        return text[1:]
    return text


# --- targets and columns ------------------------------------------------------------------------------


def targets(state=None) -> dict[str, Any]:
    """Key -> ``hooks.ImportTarget`` of every enabled plugin (the host's first)."""
    return {key: contribution.item for key, contribution in contributions.definitions("mosaic_import_targets", state).items()}


def get_target(key: str, state=None) -> Any:
    found = targets(state).get(key)
    if found is None:
        known = ", ".join(sorted(targets(state))) or "none"
        raise ImportFileError(f"Not an importable type: {key!r} (importable: {known}).", "type")
    return found


def _schema(target: Any) -> Schema:
    return target.schema() if isinstance(target.schema, type) else target.schema


def _humanise(name: str) -> str:
    return name.replace("_", " ").capitalize()


def target_columns(session: Session, target: Any) -> dict[str, str]:
    """Field -> label a header may name (the target's ``columns`` or its
    schema's loadable plain fields)."""
    if target.columns is not None:
        return dict(target.columns(session))
    found = {}
    for name, schema_field in _schema(target).fields.items():
        if schema_field.dump_only or isinstance(schema_field, (fields.Dict, fields.Nested)):
            continue
        key = schema_field.data_key or name
        found[key] = schema_field.metadata.get("label") or _humanise(key)
    return found


def required_columns(target: Any) -> tuple[str, ...]:
    if target.required_columns is not None:
        return tuple(target.required_columns)
    return tuple(f.data_key or name for name, f in _schema(target).fields.items() if f.required)


def _normal(text: str) -> str:
    """Headers compare without case, spaces and punctuation, in any script."""
    return re.sub(r"[\W_]+", "", text.casefold())


@dataclass
class ColumnMap:
    """Which column feeds which field; ``unknown``: columns that feed none."""

    fields: dict[int, str]
    unknown: list[str]
    header: list[str]

    def column_of(self, field_name: str) -> str | None:
        for index, name in self.fields.items():
            if name == field_name:
                return self.header[index]
        return None

    def as_dict(self) -> dict[str, str]:
        return {self.header[index]: name for index, name in self.fields.items()}


def map_columns(header: Sequence[str], available: Mapping[str, str], required: Iterable[str],
                explicit: Mapping[str, str | None] | None = None) -> ColumnMap:
    """Map header columns to fields (see the module docstring); raises
    ``ImportFileError`` (field ``mapping``) for a bad explicit mapping and
    (field ``file``) for a required field without a column."""
    by_normal: dict[str, str] = {}
    for name, label in available.items():
        by_normal.setdefault(_normal(name), name)
    for name, label in available.items():
        by_normal.setdefault(_normal(label), name)
    columns = {name: index for index, name in enumerate(header) if name}
    columns_normal = {_normal(name): index for index, name in enumerate(header) if name}
    chosen: dict[int, str] = {}
    decided: set[int] = set()
    for column, wanted in (explicit or {}).items():
        index = columns.get(column, columns_normal.get(_normal(column)))
        if index is None:
            raise ImportFileError(f"The mapping names the column {column!r}, which the file does not have.", "mapping")
        decided.add(index)
        if wanted in (None, ""):
            continue
        target_field = wanted if wanted in available else by_normal.get(_normal(wanted))
        if target_field is None:
            raise ImportFileError(f"The mapping maps {column!r} to {wanted!r}, which is not a field of this type.", "mapping")
        if target_field in chosen.values():
            raise ImportFileError(f"The mapping maps two columns to the field {target_field!r}.", "mapping")
        chosen[index] = target_field
    unknown = []
    for index, name in enumerate(header):
        if index in decided or not name:
            continue
        target_field = by_normal.get(_normal(name))
        if target_field is None or target_field in chosen.values():
            unknown.append(name)
        else:
            chosen[index] = target_field
    for requirement in required:
        options = requirement.split("|")
        if not set(options) & set(chosen.values()):
            either = f" (or {', '.join(options[1:])})" if len(options) > 1 else ""
            raise ImportFileError(f"The file has no column for the required field {options[0]!r}{either}.")
    return ColumnMap(dict(sorted(chosen.items())), unknown, list(header))


# --- rows ------------------------------------------------------------------------------------------


_LIST_SPLIT = re.compile(r"\s*[;,]\s*")


def _list_value(schema_field: fields.Field, text: str) -> list[Any]:
    """A list cell: items split on ; or ,. Items of a nested schema with one
    required field (an e-mail row's ``email``) become ``{field: item}``."""
    items = [item for item in _LIST_SPLIT.split(text) if item]
    inner = getattr(schema_field, "inner", None)
    if isinstance(inner, fields.Nested):
        nested = inner.schema
        required = [name for name, f in nested.fields.items() if f.required]
        if len(required) == 1:
            return [{required[0]: item} for item in items]
    return items


def row_data(cells: Sequence[str], column_map: ColumnMap, schema: Schema) -> dict[str, Any]:
    """The input dict for ``schema.load`` from one row's cells."""
    return RowReader(column_map, schema).read(cells)


class RowReader:
    """``row_data`` with what each column needs (its field, whether it is a
    list, where a dotted field nests) worked out once per import."""

    def __init__(self, column_map: ColumnMap, schema: Schema):
        self.columns = []
        for index, name in column_map.fields.items():
            schema_field = schema.fields.get(name)
            head, dot, rest = name.partition(".")
            self.columns.append((index, name, schema_field if isinstance(schema_field, fields.List) else None,
                                 head if dot else None, rest))

    def read(self, cells: Sequence[str]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        width = len(cells)
        for index, name, list_field, head, rest in self.columns:
            raw = cells[index] if index < width else ""
            text = unescape_cell(raw.strip()) if isinstance(raw, str) else raw
            if text == "":
                continue
            value: Any = _list_value(list_field, text) if list_field is not None else text
            if head is not None:
                data.setdefault(head, {})[rest] = value
            else:
                data[name] = value
        return data


def _flatten(messages: Any) -> str:
    if isinstance(messages, Mapping):
        parts = []
        for key, value in messages.items():
            text = _flatten(value)
            parts.append(f"item {key + 1}: {text}" if isinstance(key, int) else (text if key == "_schema" else f"{key}: {text}"))
        return "; ".join(parts)
    if isinstance(messages, (list, tuple)):
        return " ".join(_flatten(item) for item in messages)
    return str(messages)


def errors_by_column(messages: Mapping[str, Any], column_map: ColumnMap) -> list[tuple[str, str]]:
    """(column, message) pairs for a row's field errors: each under the
    column that fed the field (``custom_fields`` -> ``size`` under the
    ``custom_fields.size`` column), or the field's name when no column did."""
    found = []
    for name, value in messages.items():
        if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
            nested = [(column_map.column_of(f"{name}.{key}"), key, sub) for key, sub in value.items()]
            if any(column for column, _key, _sub in nested):
                for column, key, sub in nested:
                    found.append((column or f"{name}.{key}", _flatten(sub)))
                continue
        column = column_map.column_of(name) or ("" if name == "_schema" else name)
        found.append((column, _flatten(value)))
    return found


# --- outcomes of writing ------------------------------------------------------------------------------


@dataclass
class RowOutcome:
    """What writing one row did: ``created``/``updated``/``unchanged``, or
    ``rejected`` with field errors; ``duplicates``: ids of contacts it may
    duplicate (reported, not refused, unless asked)."""

    status: str
    errors: Mapping[str, Any] | None = None
    duplicates: Sequence[int] = ()


def _outcome(value: Any) -> RowOutcome:
    if isinstance(value, RowOutcome):
        return value
    if isinstance(value, Mapping):
        return RowOutcome("rejected", value)
    if isinstance(value, str) and value in ("created", "updated", "unchanged"):
        return RowOutcome(value)
    return RowOutcome("created")


def _database_refused(exc: SQLAlchemyError) -> dict[str, list[str]]:
    log.info("import row refused by the database: %s", exc)
    return {"_schema": ["The database refused this row (it conflicts with a stored record)."]}


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class Rejected:
    row: int
    column: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportReport:
    type: str
    dry_run: bool
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    rejected_row_numbers: list[int] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    rejected_file: str | None = None

    def as_result(self) -> dict[str, Any]:
        """The job's result (JSON): counts, columns, and the first
        ``MAX_REPORTED`` rejections (the rejected file holds all)."""
        return {
            "type": self.type,
            "dry_run": self.dry_run,
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected_row_numbers),
            "rejected_rows": [r.as_dict() for r in self.rejected[:MAX_REPORTED]],
            "rejected_rows_truncated": len(self.rejected) > MAX_REPORTED,
            "possible_duplicates": self.duplicates[:MAX_REPORTED],
            "columns": self.columns,
            "unknown_columns": self.unknown_columns,
            "rejected_file": self.rejected_file,
        }


@dataclass
class ImportRequest:
    """One import as the job runs it."""

    target: Any
    table: Table
    column_map: ColumnMap
    dry_run: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def prepare(session: Session, type_key: str, data: bytes, filename: str, *, max_bytes: int,
            mapping: Mapping[str, str | None] | None = None, state=None) -> ImportRequest:
    """Read and map a file; every file-level problem is an ``ImportFileError``."""
    target = get_target(type_key, state)
    if mapping is not None and (not isinstance(mapping, Mapping)
                                or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items())):
        raise ImportFileError("The mapping must be an object of column names to field names.", "mapping")
    table = read_table(data, filename, max_bytes=max_bytes)
    column_map = map_columns(table.header, target_columns(session, target), required_columns(target), mapping)
    return ImportRequest(target, table, column_map)


def run_import(session: Session, request: ImportRequest, *, principal: Principal | None = None,
               progress: Callable[[int, int], None] | None = None, batch_size: int = BATCH_SIZE,
               dry_run_rows: int = DRY_RUN_ROWS) -> ImportReport:
    """Validate and write every row; commit after each batch, or for a dry
    run, roll back after each ``dry_run_rows`` rows and at the end (a dry
    run's later batches must see its earlier ones). The caller's session
    must be a writing one with no work of its own pending."""
    principal = principal or current_principal()
    target, table, column_map = request.target, request.table, request.column_map
    schema = _schema(target)
    report = ImportReport(target.key, request.dry_run, total=len(table.rows), columns=column_map.as_dict(),
                          unknown_columns=column_map.unknown)
    user = session.get(User, principal.user_id) if principal.user_id is not None else None
    write_options = _accepts_options(target.write)
    reader = RowReader(column_map, schema)
    schema = _row_schema(target, schema, column_map)
    done = 0
    if progress:
        progress(0, report.total)
    for start in range(0, len(table.rows), batch_size):
        batch = table.rows[start:start + batch_size]
        valid: list[tuple[int, dict[str, Any]]] = []
        with _collector_paused():
            for (number, _cells), loaded in zip(batch, _load_rows(schema, [reader.read(cells) for _n, cells in batch])):
                if isinstance(loaded, ValidationError):
                    _reject(report, number, errors_by_column(loaded.messages, column_map))
                else:
                    valid.append((number, loaded))
            if valid:
                outcomes = _write_batch(session, target, valid, user, request.options if write_options else None)
                for (number, _data), outcome in zip(valid, outcomes):
                    _count(report, number, outcome, column_map)
            if not request.dry_run:
                session.commit()
        done += len(batch)
        if request.dry_run and done % dry_run_rows < batch_size and done < report.total:
            session.rollback()  # a span ends: let other writers in
        if progress:
            progress(done, report.total)
    if request.dry_run:
        session.rollback()
    report.rejected.sort(key=lambda r: r.row)
    report.rejected_row_numbers.sort()
    return report


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection during one batch. A batch allocates
    hundreds of thousands of short-lived objects (freed by reference
    counting), and the rows it keeps for its length push objects into the
    oldest generation: the collector ran a full collection every 2,000
    rows, a tenth of an import's time. Paused, it collects once per batch,
    afterwards; what a batch holds meanwhile is bounded by ``BATCH_SIZE``.
    The switch is process-wide: it is turned back on only if it was on
    (another thread's import may be inside its own pause: harmless)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _plain(schema: Schema) -> bool:
    """Whether loading with ``schema`` is its fields and nothing else: no
    hooks (``validates``, ``pre_load``... may read any field, or the whole
    collection), no error handler of its own, errors kept by item."""
    return (not any(schema._hooks.values()) and type(schema).handle_error is Schema.handle_error
            and schema.opts.index_errors)


def _load_rows(schema: Schema, rows: list[dict[str, Any]]) -> list[Any]:
    """Each row's loaded data, or its ``ValidationError``. A plain schema
    loads its rows through ``host.fast_load`` (marshmallow's data, less
    work per field), and the rows that path leaves to marshmallow one by
    one; a plain schema it has no plan for loads the batch in one call
    (``many``): each row's messages are those of loading it alone, the
    other rows' data complete."""
    if not _plain(schema):
        return [_load_one(schema, row) for row in rows]
    rows_loader = fast_load.loader(schema)
    if rows_loader.plan is not None:
        return [_load_one(schema, row) if loaded is fast_load.SLOW else loaded
                for row, loaded in zip(rows, rows_loader.load_each(rows))]
    try:
        return schema.load(rows, many=True)
    except ValidationError as exc:
        messages, loaded = exc.messages, exc.valid_data
    return [ValidationError(messages[index]) if index in messages else loaded[index] for index in range(len(rows))]


def _load_one(schema: Schema, row: dict[str, Any]) -> Any:
    try:
        return schema.load(row)
    except ValidationError as exc:
        return exc


def _row_schema(target: Any, schema: Schema, column_map: ColumnMap) -> Schema:
    """The schema rows are loaded with: the target's schema class limited
    (``only``) to the fields a row of this file can hold, and those that act
    on a missing value (required, ``load_default``, a field class of its
    own deciding). Marshmallow runs every field for every row, present or
    not: a contact row fills 9 of 26, and loading the rest only returned
    "missing" while costing a third of the validation time. The result and
    the messages (same fields, same order, same unknown-field errors) are
    those of the full schema. A schema instance (built with options we
    cannot repeat) or one that is not ``_plain`` is used whole."""
    if not isinstance(target.schema, type) or not _plain(schema) or schema.only is not None:
        return schema
    heads = {name.partition(".")[0] for name in column_map.fields.values()}
    wanted = [name for name, f in schema.load_fields.items()
              if (f.data_key or name) in heads or f.required or f.load_default is not missing
              or type(f).deserialize is not fields.Field.deserialize
              or type(f)._validate_missing is not fields.Field._validate_missing]
    if len(wanted) == len(schema.load_fields):
        return schema
    try:
        return type(schema)(only=wanted)
    except (TypeError, ValueError):  # a constructor of its own: keep the whole schema
        return schema


def _accepts_options(write: Callable[..., Any]) -> bool:
    try:
        return "options" in pyinspect.signature(write).parameters
    except (TypeError, ValueError):
        return False


def _reject(report: ImportReport, number: int, errors: list[tuple[str, str]]) -> None:
    report.rejected_row_numbers.append(number)
    for column, message in errors or [("", "Rejected.")]:
        report.rejected.append(Rejected(number, column, message))


def _count(report: ImportReport, number: int, outcome: RowOutcome, column_map: ColumnMap) -> None:
    if outcome.status == "rejected":
        _reject(report, number, errors_by_column(outcome.errors or {}, column_map))
        return
    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
    if outcome.duplicates:
        report.duplicates.append({"row": number, "ids": list(outcome.duplicates)})


def _write_batch(session: Session, target: Any, rows: list[tuple[int, dict[str, Any]]], user: Any,
                 options: dict[str, Any] | None) -> list[RowOutcome]:
    """The batch in one savepoint; when ``write`` raises, again row by row,
    so only the rows that fail are rejected."""
    kwargs = {} if options is None else {"options": options}
    data = [row for _number, row in rows]
    try:
        with session.begin_nested():
            result = target.write(session, data, user, **kwargs)
        if isinstance(result, (list, tuple)) and len(result) == len(data):
            return [_outcome(item) for item in result]
        return [RowOutcome("created") for _ in data]
    except (ValidationError, SQLAlchemyError) as exc:
        if len(data) == 1:
            return [RowOutcome("rejected", exc.messages if isinstance(exc, ValidationError) else _database_refused(exc))]
    outcomes = []
    for row in rows:
        outcomes += _write_batch(session, target, [row], user, options)
    return outcomes


# --- the host's own targets: contacts, interactions, tasks -------------------------------------------------


def _principal_of(session: Session, user: Any) -> Principal:
    """The principal a hook acts for: the acting one when it is ``user``
    (the job's), else the user's own roles."""
    acting = current_principal()
    user_id = getattr(user, "id", None)
    if user_id is None or acting.user_id == user_id:
        return acting
    return load_principal(session, session.get(User, user_id))


def _by_external_id(session: Session, model: Any, principal: Principal, rows: Sequence[Mapping[str, Any]]
                    ) -> tuple[dict[str, int], set[str]]:
    """External ids of ``rows`` that match a record: those the principal may
    see (live) -> id, and the ones taken by a record it may not see (out of
    scope, or in the bin), which the row must not overwrite or reveal."""
    wanted = sorted({str(row["external_id"]).strip() for row in rows if row.get("external_id")})
    visible: dict[str, int] = {}
    taken: set[str] = set()
    for start in range(0, len(wanted), BATCH_SIZE):
        chunk = wanted[start:start + BATCH_SIZE]
        allowed = scope_condition(principal, model) & model.deleted_at.is_(None)
        for record_id, external_id, ok in session.execute(
                select(model.id, model.external_id, allowed).where(is_among(session, model.external_id, chunk))):
            if ok:
                visible[external_id] = record_id
            else:
                taken.add(external_id)
    return visible, taken


_TAKEN = {"external_id": ["Another record already has this external id."]}


class _Duplicates:
    """The duplicate check of a batch: the same e-mail or phone as a live
    contact the principal may see (two queries per batch instead of
    ``services.find_duplicates``' four per row, same rule), names in the
    same company through ``find_duplicates`` itself. Contacts this import
    created are added as it goes."""

    def __init__(self, session: Session, principal: Principal, rows: Sequence[Mapping[str, Any]]):
        self.session, self.principal = session, principal
        # Each row's keys, by identity: ``of`` is asked about these same rows.
        self.keys = {id(row): (services.emails_in(row), services.phones_in(row)) for row in rows}
        emails = sorted({e for row_emails, _phones in self.keys.values() for e in row_emails})
        phones = sorted({p for _emails, row_phones in self.keys.values() for p in row_phones})
        self.by_email: dict[str, set[int]] = {}
        self.by_phone: dict[str, set[int]] = {}
        # The scope is selected, not filtered on: as a WHERE condition it
        # leads SQLite (without statistics) to walk every live contact and
        # probe each for the listed values, 0.2 s a batch at 5,000 contacts.
        live = and_(scope_condition(principal, Contact), Contact.deleted_at.is_(None))
        for values, found, queries in (
                (emails, self.by_email, (
                    lambda chunk: select(ContactEmail.email, Contact.id, live)
                    .join(Contact, ContactEmail.contact_id == Contact.id).where(is_among(session, ContactEmail.email, chunk)),
                    lambda chunk: select(Contact.email, Contact.id, live).where(is_among(session, Contact.email, chunk)))),
                (phones, self.by_phone, (
                    lambda chunk: select(ContactPhone.number_digits, Contact.id, live)
                    .join(Contact, ContactPhone.contact_id == Contact.id).where(is_among(session, ContactPhone.number_digits, chunk)),
                    lambda chunk: select(Contact.phone_digits, Contact.id, live).where(is_among(session, Contact.phone_digits, chunk))))):
            for start in range(0, len(values), BATCH_SIZE):
                chunk = values[start:start + BATCH_SIZE]
                for query in queries:
                    for key, contact_id, ok in session.execute(query(chunk)):
                        if ok:
                            found.setdefault(key, set()).add(contact_id)

    def of(self, row: Mapping[str, Any]) -> tuple[list[int], str]:
        """Ids this row may duplicate, and the field that matched."""
        found: set[int] = set()
        matched = ""
        row_emails, row_phones = self.keys.get(id(row)) or (services.emails_in(row), services.phones_in(row))
        for key in row_emails:
            if self.by_email.get(key):
                found |= self.by_email[key]
                matched = matched or "email"
        for key in row_phones:
            if self.by_phone.get(key):
                found |= self.by_phone[key]
                matched = matched or "phone"
        if row.get("company_id") is not None:
            named = set(services.similar_names(self.session, self.principal, row))
            if named - found:
                found |= named
                matched = matched or "name"
        return sorted(found), matched

    def add(self, contact: Contact) -> None:
        self.add_keys(contact.id, [row.email for row in contact.emails], [row.number_digits for row in contact.phones])

    def add_keys(self, contact_id: int, emails: Iterable[str], phones: Iterable[str]) -> None:
        """A contact this import created (or a batch's placeholder id for it)."""
        for key in emails:
            self.by_email.setdefault(key, set()).add(contact_id)
        for key in phones:
            self.by_phone.setdefault(key, set()).add(contact_id)


def _savepoint_row(session: Session, work: Callable[[], RowOutcome]) -> RowOutcome:
    """One row in a savepoint: a failure undoes just that row."""
    try:
        with session.begin_nested():
            return work()
    except ValidationError as exc:
        return RowOutcome("rejected", exc.messages)
    except services.RecordNotFound:
        return RowOutcome("rejected", _TAKEN)
    except SQLAlchemyError as exc:
        return RowOutcome("rejected", _database_refused(exc))


def write_contacts(session: Session, rows: Sequence[Mapping[str, Any]], user: Any, options: Mapping[str, Any] | None = None
                   ) -> list[RowOutcome]:
    """The contacts target's ``write``: a row whose ``external_id`` matches
    a contact the user may see updates it (``services.update_contact``);
    one matching a contact they may not see is rejected exactly as the API
    would (never updated, never revealed); others are created by the rules
    of ``services.create_contact``, written together
    (``import_batch.ContactBatch``), with possible duplicates reported, or
    rejected when ``options["on_duplicate"] == "reject"``.

    Rows are stored in file order: a pending batch of new contacts is
    written before an update, and before a row whose checks must see it
    (a person of a company a pending row belongs to, a company id not found
    yet), so ids, audit entries and events come out as row by row."""
    principal = _principal_of(session, user)
    reject_duplicates = (options or {}).get("on_duplicate") == "reject"
    visible, taken = _by_external_id(session, Contact, principal, rows)
    duplicates = _Duplicates(session, principal, [row for row in rows if (row.get("external_id") or "").strip() not in visible])
    matched = _matched_contacts(session, visible.values())
    outcomes: list[RowOutcome] = []
    batch: ContactBatch | None = None
    updates = ContactUpdates(session, principal)
    try:
        with services.acting(principal):
            for row in rows:
                external_id = (row.get("external_id") or "").strip()
                _follow_created(session, Contact, batch, external_id, visible)
                if external_id in taken:
                    outcomes.append(RowOutcome("rejected", _TAKEN))
                    continue
                if external_id in visible:
                    stored = matched.get(visible[external_id])
                    planned = None if stored is None else planned_update(
                        session, stored, _update_data(row), principal, tags_named=updates.tags_named)
                    if planned is not None and not planned:
                        outcomes.append(RowOutcome("unchanged"))
                        continue
                    if batch is not None:
                        batch.flush()
                    if planned is not None:  # columns, stage, tags: written with the batch's other such rows
                        updates.add(stored, planned)
                        outcomes.append(RowOutcome("updated"))
                        continue
                # Anything else reads or writes what a pending update changes: write those first.
                updates.flush()
                if external_id in visible:
                    outcomes.append(_savepoint_row(session, lambda: _update_contact(
                        session, visible[external_id], row, principal, stored)))
                else:
                    if batch is None:
                        batch = ContactBatch(session, principal, claimed_external_ids=set(visible) | taken)
                    outcomes.append(_batch_create(batch, row, duplicates, reject_duplicates))
            updates.flush()
            if batch is not None:
                batch.flush()
                for outcome in outcomes:
                    if outcome.duplicates:
                        outcome.duplicates = sorted(batch.real_id(i) for i in outcome.duplicates)
    except BaseException:
        updates.forget()  # the caller's savepoint undoes the rows: the contacts must not keep the new values
        raise
    return outcomes


def write_contacts_row_by_row(session: Session, rows: Sequence[Mapping[str, Any]], user: Any,
                              options: Mapping[str, Any] | None = None) -> list[RowOutcome]:
    """``write_contacts`` through ``services.create_contact`` one row at a
    time, each in a savepoint: the reference the batch path is tested
    against (tests/test_import_batch.py), not used by imports."""
    principal = _principal_of(session, user)
    reject_duplicates = (options or {}).get("on_duplicate") == "reject"
    visible, taken = _by_external_id(session, Contact, principal, rows)
    duplicates = _Duplicates(session, principal, [row for row in rows if (row.get("external_id") or "").strip() not in visible])
    outcomes = []
    for row in rows:
        external_id = (row.get("external_id") or "").strip()
        if external_id in taken:
            outcomes.append(RowOutcome("rejected", _TAKEN))
        elif external_id in visible:
            outcomes.append(_savepoint_row(session, lambda: _update_contact(session, visible[external_id], row, principal)))
        else:
            outcomes.append(_savepoint_row(session, lambda: _create_contact(session, row, principal, duplicates, reject_duplicates)))
            if external_id and outcomes[-1].status == "created":
                visible[external_id] = _created_id(session, Contact, external_id)  # a later row updates it
    return outcomes


_WHAT_MATCHED = {"email": "the same e-mail", "phone": "the same phone", "name": "a very similar name in the same company"}


def _duplicate_rejection(ids: Sequence[int], matched: str) -> RowOutcome:
    listed = ", ".join(str(i) for i in ids)
    return RowOutcome("rejected", {matched: [f"Possible duplicate of contact {listed} ({_WHAT_MATCHED[matched]})."]})


def _batch_create(batch: ContactBatch, row: Mapping[str, Any], duplicates: _Duplicates, reject: bool) -> RowOutcome:
    """One new contact into ``batch``: the checks of ``_create_contact`` in
    its order (duplicates, then the services' validation)."""
    company_id = row.get("company_id")
    if company_id is not None and batch.has_pending_company(company_id):
        batch.flush()  # the similar-name check reads that company's people
    found, matched = duplicates.of(row)
    if found and reject:
        if any(i < 0 for i in found):
            batch.flush()
        return _duplicate_rejection(sorted(batch.real_id(i) for i in found), matched)
    try:
        new = batch.prepare(row)
    except ValidationError as exc:
        if company_id is None or "company_id" not in exc.messages or not batch.pending:
            return RowOutcome("rejected", exc.messages)
        batch.flush()  # the company may be a contact this batch is about to create
        try:
            new = batch.prepare(row)
        except ValidationError as again:
            return RowOutcome("rejected", again.messages)
    placeholder = batch.add(new)
    duplicates.add_keys(placeholder, new.email_keys, new.phone_keys)
    return RowOutcome("created", duplicates=found)


def _create_contact(session: Session, row: Mapping[str, Any], principal: Principal, duplicates: _Duplicates,
                    reject: bool) -> RowOutcome:
    found, matched = duplicates.of(row)
    if found and reject:
        return _duplicate_rejection(found, matched)
    contact = services.create_contact(session, row, principal=principal)
    duplicates.add(contact)
    return RowOutcome("created", duplicates=found)


def _follow_created(session: Session, model: Any, batch: Any, external_id: str, visible: dict[str, int]) -> None:
    """When an earlier row of this batch created ``external_id``: write the
    batch and add the record to ``visible``, so this row updates it as a
    row of a later batch would (the outcome of a file does not depend on
    where its batches end)."""
    if batch is None or external_id not in batch.created_external_ids or external_id in visible:
        return
    batch.flush()
    visible[external_id] = _created_id(session, model, external_id)


def _created_id(session: Session, model: Any, external_id: str) -> int:
    """The id of the record this import created with ``external_id``."""
    return session.scalars(select(model.id).where(model.external_id == external_id)).one()


def _update_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """An update row's data: the external id only found the contact."""
    return {key: value for key, value in row.items() if key != "external_id"}


def _matched_contacts(session: Session, ids: Iterable[int]) -> dict[int, Contact]:
    """The contacts a batch's rows update (by id, found visible and live),
    with their e-mails, phones and tags, in four statements instead of
    five a row; kept referenced for the batch."""
    wanted = sorted(set(ids))
    found: dict[int, Contact] = {}
    for start in range(0, len(wanted), BATCH_SIZE):
        chunk = wanted[start:start + BATCH_SIZE]
        found.update((c.id, c) for c in session.scalars(
            select(Contact).where(is_among(session, Contact.id, chunk))
            .options(selectinload(Contact.emails), selectinload(Contact.phones), selectinload(Contact.tags))))
    return found


def _update_contact(session: Session, contact_id: int, row: Mapping[str, Any], principal: Principal,
                    loaded: Contact | None = None) -> RowOutcome:
    data = _update_data(row)
    before = (loaded if loaded is not None else services.get_contact(session, contact_id, principal=principal)).version
    contact = services.update_contact(session, contact_id, data, principal=principal)
    return RowOutcome("updated" if contact.version != before else "unchanged")


class _ContactLink:
    """``contact_external_id``: the contact an interaction or task belongs
    to, named by its external id (an id in the system both came from)."""

    def __init__(self, session: Session, principal: Principal, rows: Sequence[Mapping[str, Any]]):
        wanted = [{"external_id": row["contact_external_id"]} for row in rows if row.get("contact_external_id")]
        self.ids, _taken = _by_external_id(session, Contact, principal, wanted)

    def resolve(self, row: Mapping[str, Any]) -> dict[str, Any]:
        data = dict(row)
        external = (data.pop("contact_external_id", None) or "").strip()
        if external:
            if external not in self.ids:  # unknown and out of scope look the same
                raise ValidationError({"contact_external_id": ["No such contact."]})
            if data.get("contact_id") not in (None, self.ids[external]):
                raise ValidationError({"contact_id": ["Names another contact than contact_external_id."]})
            data["contact_id"] = self.ids[external]
        return data


def _write_linked(session: Session, rows: Sequence[Mapping[str, Any]], user: Any, model: Any, *,
                  create: Callable[..., Any], update: Callable[..., Any], contact_required: bool,
                  batch_type: Callable[..., Any] | None = None) -> list[RowOutcome]:
    """Interactions and tasks: ``external_id`` updates a visible record,
    is refused for one the user may not see, else the row is created:
    through ``create`` one row at a time, each in a savepoint, or, given a
    ``batch_type`` (``import_batch_linked``), validated by the same rules and
    written together. Rows are stored in file order: the pending new rows
    are written before a row that updates, so ids, audit entries and events
    come out as row by row."""
    principal = _principal_of(session, user)
    visible, taken = _by_external_id(session, model, principal, rows)
    links = _ContactLink(session, principal, rows)

    def resolved(row: Mapping[str, Any]) -> dict[str, Any]:
        data = links.resolve(row)
        if contact_required and data.get("contact_id") is None:
            raise ValidationError({"contact_id": ["Give contact_id or contact_external_id."]})
        return data

    def updated(data: Mapping[str, Any]) -> RowOutcome:
        external_id = (data.get("external_id") or "").strip()
        record = session.get(model, visible[external_id])
        before = record.version
        changes = {key: value for key, value in data.items() if key != "external_id"}
        result = update(session, visible[external_id], changes, principal=principal)
        return RowOutcome("updated" if result.version != before else "unchanged")

    def one(row: Mapping[str, Any]) -> RowOutcome:
        data = resolved(row)
        external_id = (data.get("external_id") or "").strip()
        if external_id in visible:
            return updated(data)
        record = create(session, data, principal=principal)
        if external_id:
            visible[external_id] = record.id  # a later row of the file updates it
        return RowOutcome("created")

    if batch_type is None:
        return [RowOutcome("rejected", _TAKEN) if (row.get("external_id") or "").strip() in taken
                else _savepoint_row(session, lambda row=row: one(row)) for row in rows]

    outcomes: list[RowOutcome] = []
    batch = None
    with services.acting(principal):
        for row in rows:
            external_id = (row.get("external_id") or "").strip()
            _follow_created(session, model, batch, external_id, visible)
            if external_id in taken:
                outcomes.append(RowOutcome("rejected", _TAKEN))
            elif external_id in visible:
                if batch is not None:
                    batch.flush()
                outcomes.append(_savepoint_row(session, lambda row=row: updated(resolved(row))))
            else:
                if batch is None:
                    batch = batch_type(session, principal, contact_ids=[r.get("contact_id") for r in rows],
                                       visible_contacts=links.ids.values(), claimed_external_ids=set(visible) | taken)
                try:
                    batch.add(*batch.prepare(resolved(row)))
                except ValidationError as exc:
                    outcomes.append(RowOutcome("rejected", exc.messages))
                else:
                    outcomes.append(RowOutcome("created"))
        if batch is not None:
            batch.flush()
    return outcomes


def write_interactions(session: Session, rows: Sequence[Mapping[str, Any]], user: Any) -> list[RowOutcome]:
    """The interactions target's ``write``: new rows by the rules of
    ``services.create_interaction``, written together
    (``import_batch_linked.InteractionBatch``); a visible external id
    updates (``services.update_interaction``)."""
    return _write_linked(session, rows, user, Interaction, create=services.create_interaction,
                         update=services.update_interaction, contact_required=True, batch_type=InteractionBatch)


def write_interactions_row_by_row(session: Session, rows: Sequence[Mapping[str, Any]], user: Any) -> list[RowOutcome]:
    """``write_interactions`` through ``services.create_interaction`` one
    row at a time, each in a savepoint: the reference the batch path is
    tested against (tests/test_import_batch_linked.py), not used by imports."""
    return _write_linked(session, rows, user, Interaction, create=services.create_interaction,
                         update=services.update_interaction, contact_required=True)


def write_tasks(session: Session, rows: Sequence[Mapping[str, Any]], user: Any) -> list[RowOutcome]:
    """The tasks target's ``write``: as ``write_interactions``, by the rules
    of ``services.create_task`` (``import_batch_linked.TaskBatch``)."""
    return _write_linked(session, rows, user, Task, create=services.create_task, update=services.update_task,
                         contact_required=False, batch_type=TaskBatch)


def write_tasks_row_by_row(session: Session, rows: Sequence[Mapping[str, Any]], user: Any) -> list[RowOutcome]:
    """``write_tasks`` one row at a time (the reference, as
    ``write_interactions_row_by_row``)."""
    return _write_linked(session, rows, user, Task, create=services.create_task, update=services.update_task,
                         contact_required=False)


class InteractionImportSchema(InteractionCreateSchema):
    """An interaction row: the API's fields, and the contact named by id or
    by its external id."""

    contact_id = fields.Integer()
    contact_external_id = fields.String(validate=validate.Length(min=1, max=200))


class TaskImportSchema(TaskCreateSchema):
    contact_external_id = fields.String(validate=validate.Length(min=1, max=200))


def contact_columns(session: Session) -> dict[str, str]:
    """The contact fields a file may fill, and each custom field as
    ``custom_fields.<key>`` (its label matches too)."""
    columns = {}
    for name, schema_field in ContactCreateSchema().fields.items():
        if name in ("custom_fields", "company_id") or schema_field.dump_only:
            continue
        columns[name] = _humanise(name)
    columns["company_id"] = "Company id"
    for key, definition in services.custom_field_definitions(session).items():
        columns[f"custom_fields.{key}"] = definition.label
    return columns


def host_targets() -> list[Any]:
    """The host's import targets (registered through ``mosaic_import_targets``
    like any plugin's)."""
    from hooks import ImportTarget

    return [
        ImportTarget("contacts", "Contacts", ContactCreateSchema, write_contacts, "core.contact.import",
                     columns=contact_columns, required_columns=("name|first_name|last_name",)),
        ImportTarget("interactions", "Interactions", InteractionImportSchema, write_interactions, "core.interaction.import",
                     required_columns=("contact_id|contact_external_id", "channel", "subject")),
        ImportTarget("tasks", "Tasks", TaskImportSchema, write_tasks, "core.task.import"),
    ]


# --- files in the instance folder -------------------------------------------------------------------------


def folder(instance_path: str | Path) -> Path:
    path = Path(instance_path) / FOLDER
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_upload_name(filename: str) -> str:
    """A generated name for an uploaded file (the user's name is never a path)."""
    suffix = Path(filename or "").suffix.lower()
    return f"upload-{secrets.token_hex(16)}{suffix if suffix in ('.csv', '.xlsx', '.txt', '.tsv') else '.bin'}"


def stored_path(instance_path: str | Path, name: str) -> Path:
    """A file of the imports folder by its generated name; anything that is
    not a plain name there is refused."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name or "") or name.startswith("."):
        raise ImportFileError("Not an import file name.")
    return folder(instance_path) / name


def rejected_name(job_id: int, table: Table) -> str:
    return f"rejected-{job_id}.{table.format}"


def write_rejected(path: Path, table: Table, report: ImportReport) -> None:
    """The rejected rows in the input's format: its columns plus ``error``
    (every message of the row, "column: message"). Cells are escaped like
    an export's, so opening the file never runs a formula."""
    messages: dict[int, list[str]] = {}
    for item in report.rejected:
        messages.setdefault(item.row, []).append(f"{item.column}: {item.message}" if item.column else item.message)
    wanted = set(report.rejected_row_numbers)
    header = [*table.header, ERROR_COLUMN]
    rows = ([*cells[:len(table.header)], *[""] * (len(table.header) - len(cells)), "; ".join(messages.get(number, []))]
            for number, cells in table.rows if number in wanted)
    with path.open("wb") as out:
        write_rows(out, table, header, rows)


def write_rows(out: BinaryIO, table: Table, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """``header`` and ``rows`` to ``out`` in ``table``'s format (CSV with
    its delimiter and byte-order mark, or XLSX), cells escaped like an
    export's."""
    from .exports import escape_cell

    if table.format == "xlsx":
        from .exports import write_xlsx

        for chunk in write_xlsx(header, rows):
            out.write(chunk)
        return
    text = io.TextIOWrapper(out, encoding="utf-8-sig" if table.bom else "utf-8", newline="")
    writer = csv.writer(text, delimiter=table.delimiter)
    writer.writerow([escape_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([escape_cell(cell) for cell in row])
    text.flush()
    text.detach()


# --- the job ----------------------------------------------------------------------------------------------------


def import_job(ctx, type: str, stored_name: str, filename: str, mapping: Mapping[str, str | None] | None = None,
               dry_run: bool = False, on_duplicate: str = "report") -> dict[str, Any]:
    """The ``core.import`` job: import the uploaded file ``stored_name``
    (in ``<instance>/imports``) as ``type``, as the user who started it.
    Fails (nothing written) on a file-level problem, naming it."""
    app = ctx.app
    path = stored_path(app.instance_path, stored_name)
    try:
        target = get_target(type)
        if target.permission and not ctx.principal.can(target.permission):
            raise PermissionError(f"importing {type} needs {target.permission}")
        if on_duplicate not in ON_DUPLICATE:
            raise ImportFileError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}.", "on_duplicate")
        if not path.is_file():
            raise ImportFileError("The uploaded file is gone (was the job run twice?).")
        data = path.read_bytes()
        request = prepare(ctx.session, type, data, filename, max_bytes=int(app.config["MAX_CONTENT_LENGTH"]), mapping=mapping)
        ctx.session.rollback()  # reading the columns opened a transaction: batches start clean
        request = dataclasses.replace(request, dry_run=bool(dry_run), options={"on_duplicate": on_duplicate})
        report = run_import(ctx.session, request, principal=ctx.principal, progress=ctx.progress)
        if report.rejected_row_numbers:
            name = rejected_name(ctx.job_id, request.table)
            write_rejected(stored_path(app.instance_path, name), request.table, report)
            report.rejected_file = name
        ctx.progress(report.total, report.total, _summary(report))
        return report.as_result()
    finally:
        path.unlink(missing_ok=True)


def _summary(report: ImportReport) -> str:
    verb = "would be" if report.dry_run else "were"
    return (f"{report.created} {verb} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{len(report.rejected_row_numbers)} rejected")


#: How long an import's rejected rows file stays downloadable. It holds
#: customers' data the import did not take: kept long enough to fix and
#: re-import, then deleted (a personal-data erasure cannot find it).
REJECTED_MAX_AGE = dt.timedelta(days=7)
#: An upload a job has not deleted by then was left by a crash.
UPLOAD_MAX_AGE = dt.timedelta(days=1)
PURGE_JOB_NAME = "core.purge_import_files"


def purge_old_files(instance_path: str | Path, now: float | None = None) -> dict[str, int]:
    """Delete rejected rows files older than ``REJECTED_MAX_AGE`` and job
    uploads older than ``UPLOAD_MAX_AGE`` from the imports folder; returns
    how many of each. (The wizard's drafts have their own sweep.)"""
    now = time.time() if now is None else now
    limits = {"rejected": REJECTED_MAX_AGE.total_seconds(), "upload": UPLOAD_MAX_AGE.total_seconds()}
    deleted = dict.fromkeys(limits, 0)
    for path in folder(instance_path).iterdir():
        kind = path.name.split("-", 1)[0]
        if kind not in limits:
            continue
        try:
            if now - path.stat().st_mtime > limits[kind]:
                path.unlink()
                deleted[kind] += 1
        except FileNotFoundError:
            continue  # another process purged it meanwhile
    return deleted


def purge_job(ctx) -> dict[str, int]:
    """The ``core.purge_import_files`` job (hourly)."""
    return purge_old_files(ctx.app.instance_path)


def purge_job_definition():
    from hooks import JobDefinition

    return JobDefinition(PURGE_JOB_NAME, purge_job, every=3600,
                         description="Delete import rejected-rows files after 7 days and uploads left by a crash")


def job_definition():
    from hooks import JobDefinition

    # One attempt: a re-run after an interruption would find its upload
    # deleted or import committed batches twice.
    return JobDefinition(JOB_NAME, import_job, description="Import contacts, interactions, tasks or a plugin's records from CSV/XLSX",
                         max_attempts=1)
