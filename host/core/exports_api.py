"""Export endpoints, streaming CSV or XLSX as a download:

- ``GET /api/v1/contacts/export``, ``/interactions/export``,
  ``/tasks/export``: ``format=csv|xlsx`` and the list's own filters (the
  same parameters as ``GET /api/v1/contacts``, without paging);
- ``GET /api/v1/exports/<type>``: any export type, plugins' included
  (filters validated by the type's ``filters_schema`` when it has one).

Each needs the type's export permission and writes a security-log entry;
rows are those the caller may see (``host.core.exports``).
"""

from __future__ import annotations

from typing import Any, Mapping

from flask import Response, abort, current_app, request, stream_with_context
from flask_smorest import Blueprint
from flask_smorest import abort as api_abort
from marshmallow import ValidationError

from host.db import session as db_session
from host.security.access import current_principal, login_required, require

from . import exports

PREFIX = "/api/v1"

api = Blueprint("api_core_exports", __name__, url_prefix=PREFIX,
                description="Exports of lists to CSV or XLSX, with the lists' filters, streamed as downloads.")

_FILE_RESPONSE = {"200": {
    "description": "The file, as `Content-Disposition: attachment`. Cells starting with = + - @ are escaped "
                   "with a leading apostrophe.",
    "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}},
                exports.CONTENT_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}}},
}}


def _stream(key: str, args: Mapping[str, Any]) -> Response:
    export_type = exports.export_types().get(key)
    if export_type is None:
        abort(404, description="No such export type.")
    filters = dict(args)
    fmt = filters.pop("format", "csv")
    try:
        export = exports.start_export(db_session(), current_app, current_principal(), export_type, fmt, filters)
    except PermissionError as exc:
        abort(403, description=str(exc))
    response = Response(stream_with_context(export.body), mimetype=export.content_type.split(";")[0])
    response.headers["Content-Type"] = export.content_type
    response.headers["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@api.get("/contacts/export")
@require("core.contact.export")
@api.arguments(exports.ContactExportArgsSchema, location="query")
@api.doc(responses=_FILE_RESPONSE)
def export_contacts(args):
    """Contacts you may see, with the contact list's filters (``q`` too),
    custom fields as ``custom_fields.<key>`` columns."""
    return _stream("contacts", args)


@api.get("/interactions/export")
@require("core.interaction.export")
@api.arguments(exports.InteractionExportArgsSchema, location="query")
@api.doc(responses=_FILE_RESPONSE)
def export_interactions(args):
    """Interactions you may see, with the interaction list's filters."""
    return _stream("interactions", args)


@api.get("/tasks/export")
@require("core.task.export")
@api.arguments(exports.TaskExportArgsSchema, location="query")
@api.doc(responses=_FILE_RESPONSE)
def export_tasks(args):
    """Tasks you may see, with the task list's filters."""
    return _stream("tasks", args)


@api.get("/exports/<key>")
@login_required
@api.arguments(exports.FormatArgsSchema(unknown="include"), location="query")
@api.doc(responses=_FILE_RESPONSE)
def export_any(args, key: str):
    """Any export type (``contacts``, a plugin's ``acme.machines`` ...), with
    the filters that type takes as query parameters. Needs its permission."""
    export_type = exports.export_types().get(key)
    if export_type is None:
        abort(404, description="No such export type.")
    if export_type.filters_schema is not None:
        schema = export_type.filters_schema() if isinstance(export_type.filters_schema, type) else export_type.filters_schema
        try:
            args = {**schema.load({k: v for k, v in request.args.items() if k != "format"}), "format": args.get("format", "csv")}
        except ValidationError as exc:
            api_abort(422, message="The request's data is not valid.", messages={"query": exc.messages})
    return _stream(key, args)
