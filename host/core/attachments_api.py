"""Attachment endpoints: upload, list, metadata, download, delete (API), and
the download route of the web UI.

API (``/api/v1``), for each of ``contacts``, ``interactions`` and ``tasks``:

- ``GET  /<records>/<id>/attachments``: the record's files (``core.<type>.read``);
- ``POST /<records>/<id>/attachments``: multipart ``file`` (``core.<type>.update``), 201;

and for one attachment (the permission follows its record's type):

- ``GET    /attachments/<id>``: its metadata;
- ``GET    /attachments/<id>/content``: the file, always as a download;
- ``DELETE /attachments/<id>``: to the recycle bin (``core.<type>.update``), 204.

UI: ``GET /attachments/<id>`` downloads with the session.

A record or attachment the caller may not see (missing, deleted, out of
scope, or no permission for its type) answers 404 alike.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, send_file
from flask_smorest import Blueprint as ApiBlueprint
from flask_smorest.fields import Upload as UploadField
from marshmallow import Schema, fields

from host.db import session as db_session
from host.pagination import PageArgsSchema, page
from host.security.access import accepts, current_principal, login_required, require

from . import attachments
from .models import Attachment
from .notifications import IdCursorField

log = logging.getLogger("mosaic.attachments")

API_PREFIX = "/api/v1"
PLURALS = {"contact": "contacts", "interaction": "interactions", "task": "tasks"}

api = ApiBlueprint(
    "api_core_attachments", __name__, url_prefix=API_PREFIX,
    description="Files on contacts, interactions and tasks: always served as downloads.",
)
ui = Blueprint("core_attachments", __name__)


class AttachmentSchema(Schema):
    id = fields.Integer()
    object_type = fields.String(metadata={"description": "contact, interaction or task"})
    object_id = fields.Integer()
    filename = fields.String()
    content_type = fields.String(metadata={"description": "sniffed from the content"})
    size = fields.Integer()
    uploaded_by = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()
    content_url = fields.Function(lambda a: f"{API_PREFIX}/attachments/{a.id}/content")
    download_url = fields.Function(lambda a: f"/attachments/{a.id}", metadata={"description": "the web UI's download"})


class AttachmentArgsSchema(PageArgsSchema):
    cursor = IdCursorField(load_default=None)


class AttachmentPageSchema(Schema):
    items = fields.List(fields.Nested(AttachmentSchema))
    next = fields.String(allow_none=True)


class AttachmentUploadSchema(Schema):
    file = UploadField(required=True, metadata={"description": "the file (multipart/form-data)"})


# --- shared --------------------------------------------------------------------------------


def _root():
    return attachments.storage_root(current_app.instance_path)


def _max_bytes() -> int:
    return int(current_app.config.get(attachments.MAX_BYTES_SETTING) or attachments.MAX_BYTES)


def _record_or_404(object_type: str, record_id: int) -> Any:
    record = attachments.find_record(db_session(), current_principal(), object_type, record_id)
    if record is None:
        abort(404, description=f"No such {object_type}.")
    return record


def _attachment_or_404(attachment_id: int, action: str = "read") -> Attachment:
    found = attachments.accessible_attachment(db_session(), current_principal(), attachment_id, action)
    if found is None:
        abort(404, description="No such attachment.")
    return found


def _list(object_type: str, record_id: int, args: dict[str, Any]) -> dict[str, Any]:
    _record_or_404(object_type, record_id)
    limit = args["limit"]
    rows = attachments.list_attachments(db_session(), object_type, record_id, before_id=args["cursor"], limit=limit + 1)
    items, next_cursor = page(rows, limit, key=lambda a: [a.id])
    return {"items": items, "next": next_cursor}


def _upload(object_type: str, record_id: int, files: dict[str, Any]) -> Attachment:
    record = _record_or_404(object_type, record_id)
    session, root, upload = db_session(), _root(), files["file"]
    try:
        attachment = attachments.store(
            session, root, attachments.Upload(upload.stream, upload.filename),
            record=record, user_id=current_principal().user_id, max_bytes=_max_bytes(),
        )
    except attachments.AttachmentError as exc:
        abort(exc.status, description=exc.message)
    try:
        session.commit()
    except Exception:
        attachments.remove_files(root, [attachment.stored_name])
        raise
    return attachment


def _download(attachment: Attachment):
    """The file as a download, whatever its type: a browser never renders
    it in the page's origin."""
    path = attachments.stored_path(_root(), attachment.stored_name)
    if not path.is_file():
        log.error("attachment %s: its file %s is missing", attachment.id, attachment.stored_name)
        abort(404, description="No such attachment.")
    response = send_file(path, mimetype=attachment.content_type, conditional=True, etag=False, max_age=0)
    response.headers["Content-Disposition"] = attachments.content_disposition(attachment.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --- per record type ----------------------------------------------------------------------


def _add_record_routes(object_type: str, plural: str) -> None:
    """List and upload routes for one record type, each guarded by that
    type's own permission."""
    rule = f"/{plural}/<int:record_id>/attachments"

    @api.get(rule, endpoint=f"list_{object_type}_attachments")
    @require(attachments.permission_for(object_type, "read"))
    @api.arguments(AttachmentArgsSchema, location="query")
    @api.response(200, AttachmentPageSchema)
    @api.doc(summary=f"The {object_type}'s attachments, newest first")
    def list_view(args: dict[str, Any], record_id: int):
        return _list(object_type, record_id, args)

    @api.post(rule, endpoint=f"upload_{object_type}_attachment")
    @require(attachments.permission_for(object_type, "update"))
    @accepts("multipart/form-data")
    @api.arguments(AttachmentUploadSchema, location="files")
    @api.response(201, AttachmentSchema)
    @api.doc(
        summary=f"Attach a file to the {object_type}",
        description="Multipart field `file`. Size limit 20 MB by default (413 above it); the type is sniffed "
        "from the content (415 for programs, scripts, web pages, SVG and unknown binary formats).",
        responses={"413": {"description": "The file (or the request) is larger than the limit.",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    )
    def upload_view(files: dict[str, Any], record_id: int):
        return _upload(object_type, record_id, files)


for _type, _plural in PLURALS.items():
    _add_record_routes(_type, _plural)


# --- one attachment -------------------------------------------------------------------------


@api.get("/attachments/<int:attachment_id>")
@login_required
@api.response(200, AttachmentSchema)
def get_attachment(attachment_id: int):
    """An attachment's metadata (needs read access to its record)."""
    return _attachment_or_404(attachment_id)


@api.get("/attachments/<int:attachment_id>/content")
@login_required
@api.doc(responses={"200": {"description": "The file, as `Content-Disposition: attachment`",
                            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
def get_attachment_content(attachment_id: int):
    """Download the file (needs read access to its record)."""
    return _download(_attachment_or_404(attachment_id))


@api.delete("/attachments/<int:attachment_id>")
@login_required
@api.response(204)
def delete_attachment(attachment_id: int):
    """Move the attachment to the recycle bin (needs update access to its record)."""
    attachment = _attachment_or_404(attachment_id, "update")
    session = db_session()
    attachments.move_to_recycle_bin(session, attachment)
    session.commit()


@ui.get("/attachments/<int:attachment_id>")
@login_required
def download(attachment_id: int):
    """The web UI's download link (session sign-in)."""
    return _download(_attachment_or_404(attachment_id))
