"""Exporting lists to CSV and XLSX, streamed: any export type
(``mosaic_export_types``: the host's contacts, interactions and tasks, and
every plugin's), with the same filters as its list API.

The host's types read through the list services themselves
(``services.list_contacts`` and friends, page by page on their keyset), so
an export holds exactly what the list shows: the same filters, the record
scope, never the recycle bin. Custom fields are columns
(``custom_fields.<key>``). Lists (e-mails, phones, tags) are joined with
"; ", which an import splits again, so an export re-imports as it is.

Cells that a spreadsheet would take for a formula (starting with = + - @,
tab or carriage return) get a leading apostrophe (OWASP's CSV injection
advice); imports take it off again (``imports.unescape_cell``).

Every export writes a security-log entry (kind ``export``: who, what type,
format and filters) before the first byte is sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from host import contributions
from host.db import utcnow
from host.security import seclog
from host.security.access import Principal, acting_as
from host.security.models import User

from . import services
from .imports import FORMULA_START, _principal_of
from .schemas import ContactListArgsSchema, InteractionListArgsSchema, TaskListArgsSchema

FORMATS = ("csv", "xlsx")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: Rows read per query while streaming.
PAGE = 500
#: Bytes gathered before a CSV chunk is sent.
CHUNK = 64 * 1024
LIST_SEPARATOR = "; "


# --- cells -----------------------------------------------------------------------------------------


def escape_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in FORMULA_START:
        return "'" + value
    return value


def _plain(value: Any) -> Any:
    """A value as a cell holds it: text, number, bool or naive UTC datetime."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, (list, tuple, set, frozenset)):
        return LIST_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _csv_text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return escape_cell(str(value))


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """UTF-8 with a BOM (so Excel reads it as UTF-8), comma-separated, in
    chunks of about ``CHUNK`` bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_csv_text(column) for column in columns])
    yield ("\ufeff" + buffer.getvalue()).encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    for row in rows:
        writer.writerow([_csv_text(value) for value in row])
        if buffer.tell() >= CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def _xlsx_value(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = _plain(value)
    if isinstance(value, str):
        return escape_cell(ILLEGAL_CHARACTERS_RE.sub("", value))
    return value


def write_xlsx(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """An XLSX workbook built with openpyxl's write-only mode (rows go to a
    temporary file as they come, so memory stays flat), then sent in chunks."""
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Export")
    sheet.append([_xlsx_value(column) for column in columns])
    for row in rows:
        sheet.append([_xlsx_value(value) for value in row])
    with tempfile.TemporaryFile() as out:
        workbook.save(out)
        out.seek(0)
        while chunk := out.read(CHUNK):
            yield chunk


WRITERS: dict[str, Callable[[Sequence[str], Iterable[Sequence[Any]]], Iterator[bytes]]] = {"csv": write_csv, "xlsx": write_xlsx}


# --- export types -----------------------------------------------------------------------------------


def export_types(state=None) -> dict[str, Any]:
    """Key -> ``hooks.ExportType`` of every enabled plugin (the host's first)."""
    return {key: contribution.item for key, contribution in contributions.definitions("mosaic_export_types", state).items()}


def columns_of(session: Session, export_type: Any) -> list[str]:
    if export_type.columns_for is not None:
        return list(export_type.columns_for(session))
    return list(export_type.columns)


@dataclass
class Export:
    """A started export: its file name, content type and the body."""

    filename: str
    content_type: str
    body: Iterator[bytes]


def start_export(session: Session, app, principal: Principal, export_type: Any, fmt: str,
                 filters: Mapping[str, Any]) -> Export:
    """Log the export in the security log (committed in ``session``), then
    return the streaming body, which reads in a session of its own as
    ``principal``. Raises ``PermissionError`` without the type's permission."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if export_type.permission and not principal.can(export_type.permission):
        raise PermissionError(f"exporting {export_type.key} needs {export_type.permission}")
    seclog.record(session, "export", detail={"type": export_type.key, "format": fmt, "filters": dict(filters)})
    session.commit()
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    name = export_type.key.replace(".", "-")
    return Export(f"{name}-{stamp}.{fmt}", CONTENT_TYPES[fmt], _body(app, principal, export_type, fmt, dict(filters)))


def _body(app, principal: Principal, export_type: Any, fmt: str, filters: dict[str, Any]) -> Iterator[bytes]:
    state = app.extensions["mosaic"]
    with state.db.Session() as session, acting_as(principal):
        user = session.get(User, principal.user_id) if principal.user_id is not None else None
        columns = columns_of(session, export_type)
        rows = ([row.get(column) for column in columns] for row in export_type.rows(session, user, filters))
        yield from WRITERS[fmt](columns, rows)


def export_to_bytes(app, principal: Principal, export_type: Any, fmt: str, filters: Mapping[str, Any]) -> bytes:
    """The whole export at once (CLI, tests): same log entry, same rows."""
    state = app.extensions["mosaic"]
    with state.db.WriteSession() as session, acting_as(principal):
        export = start_export(session, app, principal, export_type, fmt, filters)
    return b"".join(export.body)


# --- the host's types ---------------------------------------------------------------------------


CONTACT_COLUMNS = (
    "id", "kind", "name", "first_name", "last_name", "company_id", "email", "emails", "phone", "phones",
    "street", "city", "postal_code", "region", "country", "website", "tax_number", "lifecycle_stage", "source",
    "birthday", "language", "marketing_consent", "consent_at", "consent_source", "notes", "tags", "external_id",
    "owner_id", "team_id", "created_at", "updated_at", "last_activity_at",
)
INTERACTION_COLUMNS = (
    "id", "contact_id", "channel", "direction", "subject", "body", "occurred_at", "outcome", "external_id",
    "owner_id", "team_id", "created_at", "updated_at",
)
TASK_COLUMNS = (
    "id", "contact_id", "title", "notes", "due_at", "priority", "done", "done_at", "snoozed_until", "assignee_id",
    "external_id", "team_id", "created_at", "updated_at",
)


def _pages(lister: Callable[..., tuple[list[Any], str | None]], session: Session, principal: Principal,
           filters: Mapping[str, Any]) -> Iterator[Any]:
    """Every row of a list service, page by page on its own keyset."""
    cursor = None
    while True:
        items, more = lister(session, filters, limit=PAGE, cursor=cursor, principal=principal)
        yield from items
        if more is None or not items:
            return
        cursor = [items[-1].id]
        for item in items:  # a long export must not keep every row in memory
            session.expunge(item)


def contact_columns(session: Session) -> list[str]:
    keys = services.custom_field_definitions(session)
    return [*CONTACT_COLUMNS, *(f"custom_fields.{key}" for key in keys)]


def contact_rows(session: Session, user: Any, filters: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """``ExportType.rows`` of contacts: every contact of the list with these
    filters that the user may see, newest first."""
    principal = _principal_of(session, user)
    for contact in _pages(services.list_contacts, session, principal, filters or {}):
        row = {column: getattr(contact, column, None) for column in CONTACT_COLUMNS}
        row["emails"] = [item.email for item in contact.emails]
        row["phones"] = [item.phone for item in contact.phones]
        row["tags"] = [tag.name for tag in contact.tags]
        for key, value in (contact.custom_fields or {}).items():
            row[f"custom_fields.{key}"] = value
        yield row


def interaction_rows(session: Session, user: Any, filters: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    principal = _principal_of(session, user)
    for interaction in _pages(services.list_interactions, session, principal, filters or {}):
        yield {column: getattr(interaction, column, None) for column in INTERACTION_COLUMNS}


def task_rows(session: Session, user: Any, filters: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    principal = _principal_of(session, user)
    for task in _pages(services.list_tasks, session, principal, filters or {}):
        row = {column: getattr(task, column, None) for column in TASK_COLUMNS}
        row["assignee_id"] = task.owner_id
        yield row


class FormatArgsSchema(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(FORMATS), metadata={"description": "csv or xlsx"})


class ContactExportArgsSchema(FormatArgsSchema, ContactListArgsSchema):
    class Meta:
        exclude = ("limit", "cursor")


class InteractionExportArgsSchema(FormatArgsSchema, InteractionListArgsSchema):
    class Meta:
        exclude = ("limit", "cursor")


class TaskExportArgsSchema(FormatArgsSchema, TaskListArgsSchema):
    class Meta:
        exclude = ("limit", "cursor")


def host_types() -> list[Any]:
    """The host's export types (registered through ``mosaic_export_types``)."""
    from hooks import ExportType

    return [
        ExportType("contacts", "Contacts", CONTACT_COLUMNS, contact_rows, "core.contact.export",
                   columns_for=contact_columns, filters_schema=ContactExportArgsSchema),
        ExportType("interactions", "Interactions", INTERACTION_COLUMNS, interaction_rows, "core.interaction.export",
                   filters_schema=InteractionExportArgsSchema),
        ExportType("tasks", "Tasks", TASK_COLUMNS, task_rows, "core.task.export", filters_schema=TaskExportArgsSchema),
    ]
