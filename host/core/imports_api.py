"""Import endpoints:

- ``POST /api/v1/imports`` (multipart: ``file``, ``type``, ``dry_run``,
  optional ``mapping`` as a JSON object ``{column: field}`` and
  ``on_duplicate``): checks the file as a whole (format, encoding, columns)
  at once, answering 422 naming ``file``, ``type`` or ``mapping``; else
  queues the ``core.import`` job and answers 202 with its id and a
  ``Location`` to poll (``GET /api/v1/jobs/<id>``).
- ``GET /api/v1/imports/<job_id>/rejected``: the rejected rows as a file of
  the input's format (original columns plus ``error``), as a download.

The type decides the permission (``core.contact.import``, a plugin's own):
without it, 403. A file larger than ``max_content_length`` is refused with
413 before anything reads it.
"""

from __future__ import annotations

import json

from flask import abort, current_app, send_file, url_for
from flask_smorest import Blueprint
from flask_smorest import abort as api_abort
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from host import jobs
from host.db import session as db_session
from host.security.access import accepts, current_principal, login_required

from . import imports
from .jobs_api import job_or_404

PREFIX = "/api/v1"

api = Blueprint("api_core_imports", __name__, url_prefix=PREFIX,
                description="Importing contacts, interactions, tasks (and plugins' types) from CSV or XLSX.")


class ImportFormSchema(Schema):
    type = fields.String(required=True, metadata={"description": "contacts, interactions, tasks, or a plugin's type."})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "Validate every row and write nothing."})
    mapping = fields.String(metadata={
        "description": 'A JSON object {"column": "field"} overriding the mapping by header name; '
                       "a field of null ignores the column."})
    on_duplicate = fields.String(load_default="report", validate=validate.OneOf(imports.ON_DUPLICATE), metadata={
        "description": "Contacts: report possible duplicates (default) or reject those rows."})


class ImportFileSchema(Schema):
    file = Upload(required=True, metadata={"description": "A CSV (UTF-8) or XLSX file."})


class ImportStartedSchema(Schema):
    job_id = fields.Integer()
    status = fields.String(metadata={"description": "queued, running, done or failed (inline jobs are done at once)."})
    location = fields.String(metadata={"description": "Poll this URL for progress and the result."})


def _invalid(field: str, message: str):
    location = "files" if field == "file" else "form"
    api_abort(422, message="The import cannot start.", messages={location: {field: [message]}})


def _mapping(text: str | None):
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        _invalid("mapping", "Not valid JSON: send an object {\"column\": \"field\"}.")
    return value


@api.post("/imports")
@login_required
@accepts("multipart/form-data")
@api.arguments(ImportFormSchema, location="form")
@api.arguments(ImportFileSchema, location="files")
@api.response(202, ImportStartedSchema)
@api.doc(responses={"413": {"description": "The file is larger than the upload limit.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})
def start_import(form, files):
    """Start importing a file; answers 202 with the job to poll. Columns map
    to fields by header name or label (case, spaces and punctuation aside)
    unless ``mapping`` says otherwise. Needs the type's import permission."""
    state = current_app.extensions["mosaic"]
    principal = current_principal()
    try:
        target = imports.get_target(form["type"])
    except imports.ImportFileError as exc:
        _invalid(exc.field, exc.message)
    if target.permission and not principal.can(target.permission):
        abort(403, description=f"Importing {target.key} needs the permission {target.permission}.")
    mapping = _mapping(form.get("mapping"))
    upload = files["file"]
    name = imports.new_upload_name(upload.filename or "")
    path = imports.stored_path(current_app.instance_path, name)
    upload.save(path)
    try:
        with state.db.Session() as session:
            imports.prepare(session, target.key, path.read_bytes(), upload.filename or "",
                            max_bytes=int(current_app.config["MAX_CONTENT_LENGTH"]), mapping=mapping)
    except imports.ImportFileError as exc:
        path.unlink(missing_ok=True)
        _invalid(exc.field, exc.message)
    args = {"type": target.key, "stored_name": name, "filename": upload.filename or "", "mapping": mapping,
            "dry_run": form["dry_run"], "on_duplicate": form["on_duplicate"]}
    # The request holds a writing session (on SQLite, the write lock): the
    # job row goes into its transaction and starts when it commits.
    session = db_session()
    job_id = jobs.enqueue(imports.JOB_NAME, args, user_id=principal.user_id, session=session)
    session.commit()
    location = url_for("api_core_jobs.get_job", job_id=job_id)
    status = jobs.get_job(job_id)["status"]
    return {"job_id": job_id, "status": status, "location": location}, 202, {"Location": location}


@api.get("/imports/<int:job_id>/rejected")
@login_required
@api.doc(responses={"200": {"description": "The rejected rows (original columns plus `error`), as a download.",
                            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}},
                                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                                            {"schema": {"type": "string", "format": "binary"}}}}})
def rejected_rows(job_id: int):
    """Download the rows an import rejected (for the user who started it)."""
    job = job_or_404(job_id)
    name = (job.get("result") or {}).get("rejected_file") if job["name"] == imports.JOB_NAME else None
    if not name:
        abort(404, description="This job has no rejected rows file.")
    path = imports.stored_path(current_app.instance_path, name)
    if not path.is_file():
        abort(404, description="This job has no rejected rows file.")
    fmt = path.suffix.lstrip(".")
    mimetype = "text/csv" if fmt == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = send_file(path, mimetype=mimetype, as_attachment=True, download_name=f"import-{job_id}-rejected.{fmt}",
                         conditional=False, etag=False, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
