"""The import wizard (``/import``): upload a CSV or XLSX file, map its
columns to fields, check it with a dry run, import it while a progress page
follows the job, then download the rejected rows.

Every step goes through the import service (``host.core.imports``) as the
API does: the same file checks, the same automatic column matching (the
mapping page pre-selects what a file without a mapping would get), the same
``core.import`` job for the dry run and for the import, acting as the
signed-in user. Between steps the upload waits as a draft in the instance
folder (``import_drafts``), under a generated name tied to the user.

Access: every route needs a signed-in user, and each type its own import
permission (``core.contact.import``, a plugin's), checked here with a 403
because one wizard serves every type; the first page lists only the types
the user may import. A job's pages and rejected rows are for the user who
started it, or whoever may read every job (the rule of
``GET /api/v1/jobs/<id>``); anyone else gets 404.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _

from host import jobs
from host.core import imports
from host.core.jobs_api import may_see
from host.db import session as db_session
from host.security.access import current_principal, login_required

from . import import_drafts, labels
from .validation import translate_text

bp = Blueprint("imports", __name__)

#: Rejected rows per page of a report (the download has them all).
REJECTED_PAGE = 50
#: Sample values shown per column, taken from the first ``SAMPLE_ROWS`` rows.
SAMPLES = 3
SAMPLE_ROWS = 20
SAMPLE_CHARS = 80
#: Possible duplicates listed in a report.
DUPLICATES_SHOWN = 100
#: How often a page following a running job reloads itself.
REFRESH_SECONDS = 2
#: Where the host's own types are listed once imported.
LIST_ENDPOINTS = {"contacts": "contacts.index", "interactions": "interactions.index", "tasks": "tasks.index"}
FILE_ERROR_PREFIX = "ImportFileError: "


# --- types and permissions ---------------------------------------------------------------------------


def _allowed(target: Any) -> bool:
    return not target.permission or current_principal().can(target.permission)


def _label(target: Any) -> str:
    # Host labels are in the catalogues; a plugin's matching one is translated too.
    return _(target.label)


def _target_or_403(key: str) -> Any:
    target = imports.targets().get(key)
    if target is None:
        abort(404, description=_("This type can no longer be imported."))
    if not _allowed(target):
        abort(403, description=_("You may not import %(type)s.", type=_label(target)))
    return target


def _limit() -> int:
    return int(current_app.config["MAX_CONTENT_LENGTH"])


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return _("%(size)s MB", size=format_decimal(size / (1024 * 1024), "#,##0.#"))
    return _("%(size)s KB", size=format_decimal(size / 1024, "#,##0.#"))


def _plain_name(filename: str) -> str:
    """The file's own name, without any folder a browser may send."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip()[:200] or "upload"


# --- step 1: upload ------------------------------------------------------------------------------------


def _upload_page(chosen: str, errors: dict[str, list[str]], status: int = 200):
    types = [(target.key, _label(target)) for target in imports.targets().values() if _allowed(target)]
    body = render_template("core/imports/upload.html", types=types, chosen=chosen, errors=errors,
                           limit=_size(_limit()), step=1)
    return body, status


@bp.get("/import")
@login_required
def index():
    return _upload_page(request.args.get("type", ""), {})


@bp.post("/import")
@login_required
def upload():
    key = request.form.get("type", "").strip()
    errors: dict[str, list[str]] = {}
    if key not in imports.targets():
        errors["type"] = [_("Choose what to import.")]
    else:
        _target_or_403(key)
    upload_file = request.files.get("file")
    if upload_file is None or not upload_file.filename:
        errors["file"] = [_("Choose a CSV or XLSX file.")]
    if errors:
        return _upload_page(key, errors, 422)
    filename = _plain_name(upload_file.filename)
    data = upload_file.read()  # the request size limit has capped it
    try:
        imports.read_table(data, filename, max_bytes=_limit())
    except imports.ImportFileError as exc:
        return _upload_page(key, {"file": [translate_text(exc.message)]}, 422)
    draft = import_drafts.create(current_app.instance_path, current_principal().user_id, key, filename, data)
    return redirect(url_for("imports.columns", token=draft.token), code=303)


# --- drafts ------------------------------------------------------------------------------------------------


def _draft_or_404(token: str) -> tuple[import_drafts.Draft, Any]:
    draft = import_drafts.load(current_app.instance_path, current_principal().user_id, token)
    if draft is None:
        abort(404, description=_("This upload is gone (imported, cancelled or older than a day): upload the file again."))
    return draft, _target_or_403(draft.type)


def _table(draft: import_drafts.Draft) -> imports.Table:
    try:
        return imports.read_table(import_drafts.data(current_app.instance_path, draft), draft.filename,
                                  max_bytes=_limit())
    except imports.ImportFileError as exc:  # the limit shrank since the upload
        abort(422, description=translate_text(exc.message))


def _start_job(draft: import_drafts.Draft, target: Any, *, dry_run: bool) -> int:
    """The ``core.import`` job on a copy of the draft, as the API starts it:
    the job row goes into the request's transaction and runs once it commits."""
    stored_name = import_drafts.copy_for_job(current_app.instance_path, draft)
    args = {"type": target.key, "stored_name": stored_name, "filename": draft.filename, "mapping": draft.mapping,
            "dry_run": dry_run, "on_duplicate": draft.on_duplicate}
    session = db_session()
    try:
        job_id = jobs.enqueue(imports.JOB_NAME, args, user_id=current_principal().user_id, session=session)
        session.commit()
    except Exception:
        session.rollback()
        imports.stored_path(current_app.instance_path, stored_name).unlink(missing_ok=True)
        raise
    return job_id


@bp.post("/import/<token>/cancel")
@login_required
def cancel(token: str):
    draft, _target = _draft_or_404(token)
    import_drafts.discard(current_app.instance_path, draft)
    flash(_("The upload was discarded."), "success")
    return redirect(url_for("imports.index"), code=303)


# --- step 2: columns -------------------------------------------------------------------------------------


@dataclass
class ColumnChoice:
    index: int
    name: str
    samples: list[str]
    chosen: str
    errors: list[str]

    @property
    def input_name(self) -> str:
        return f"column-{self.index}"


def _samples(table: imports.Table, index: int) -> list[str]:
    found = []
    for _number, cells in table.rows[:SAMPLE_ROWS]:
        value = cells[index].strip() if index < len(cells) else ""
        if value:
            found.append(value if len(value) <= SAMPLE_CHARS else value[:SAMPLE_CHARS - 1] + "…")
        if len(found) == SAMPLES:
            break
    return found


def _field_options(available: dict[str, str], required: set[str]) -> list[tuple[str, str]]:
    options = []
    for key, label in available.items():
        text = f"{label} ({key})"
        options.append((key, _("%(field)s, required", field=text) if key in required else text))
    return options


def _required_groups(target: Any, labelled: dict[str, str], picked: set[str] | None = None) -> list[list[str]]:
    """Each required field with its alternatives ("name|first_name"), as
    labels; with ``picked``, only those no chosen field satisfies."""
    groups = [group.split("|") for group in imports.required_columns(target)]
    if picked is not None:
        groups = [group for group in groups if not set(group) & picked]
    return [[labelled.get(name, name) for name in group] for group in groups]


def _columns_page(draft, target, table, available, chosen: dict[int, str], *, on_duplicate: str = "report",
                  errors=None, general=(), status=200):
    errors = errors or {}
    required = {name for group in imports.required_columns(target) for name in group.split("|")}
    columns = [ColumnChoice(index, name, _samples(table, index), chosen.get(index, ""), errors.get(index, []))
               for index, name in enumerate(table.header) if name]
    body = render_template(
        "core/imports/columns.html", draft=draft, type_label=_label(target), rows=len(table.rows),
        columns=columns, options=_field_options(available, required), required=_required_groups(target, available),
        unnamed=sum(1 for name in table.header if not name), general=list(general),
        on_duplicate=on_duplicate, on_duplicate_errors=errors.get("on_duplicate", []),
        offers_on_duplicate=target.key == "contacts", step=2,
    )
    return body, status


#: The record pages' translated field labels, for the host's own types.
_HOST_LABELS = {"contacts": labels.contact_fields, "interactions": labels.interaction_fields, "tasks": labels.task_fields}


def _fields(target: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The fields a column may fill: the service's ``{field: label}`` (what
    its automatic matching compares headers with), and the same fields
    labelled as the record pages label them, in the user's language."""
    with current_app.extensions["mosaic"].db.Session() as session:
        service = imports.target_columns(session, target)
    known = _HOST_LABELS[target.key]() if target.key in _HOST_LABELS else {}
    return service, {key: known.get(key) or _(label) for key, label in service.items()}


@bp.get("/import/<token>/columns")
@login_required
def columns(token: str):
    draft, target = _draft_or_404(token)
    table = _table(draft)
    service, available = _fields(target)
    if draft.mapping is not None:
        chosen = {index: draft.mapping.get(name) or "" for index, name in enumerate(table.header) if name}
    else:  # what the service would choose for this file without a mapping
        chosen = imports.map_columns(table.header, service, ()).fields
    return _columns_page(draft, target, table, available, chosen, on_duplicate=draft.on_duplicate)


def _check_choices(chosen: dict[int, str], available: dict[str, str], target: Any) -> tuple[dict[int, list[str]], list[str]]:
    """Errors at the columns (an unknown field, a field chosen twice) and
    for the whole mapping (a required field without a column)."""
    errors: dict[int, list[str]] = {}
    by_field: dict[str, list[int]] = {}
    for index, wanted in chosen.items():
        if wanted and wanted not in available:
            errors[index] = [_("Choose a field of the list, or ignore the column.")]
        elif wanted:
            by_field.setdefault(wanted, []).append(index)
    for wanted, indexes in by_field.items():
        if len(indexes) > 1:
            for index in indexes:
                errors.setdefault(index, []).append(
                    _("Only one column can fill %(field)s.", field=available[wanted]))
    general = [_("Choose a column for the required field %(field)s.", field=" / ".join(labels))
               for labels in _required_groups(target, available, set(chosen.values()))]
    return errors, general


@bp.post("/import/<token>/columns")
@login_required
def save_columns(token: str):
    draft, target = _draft_or_404(token)
    table = _table(draft)
    _service, available = _fields(target)
    chosen = {index: request.form.get(f"column-{index}", "").strip() for index, name in enumerate(table.header) if name}
    errors, general = _check_choices(chosen, available, target)
    on_duplicate = request.form.get("on_duplicate", "report")
    if on_duplicate not in imports.ON_DUPLICATE:
        errors["on_duplicate"] = [_("Choose what to do with possible duplicates.")]
    mapping = {table.header[index]: (wanted or None) for index, wanted in chosen.items()}
    if not errors and not general:
        try:  # the service's own checks of the whole file, as the API runs them
            with current_app.extensions["mosaic"].db.Session() as session:
                imports.prepare(session, target.key, import_drafts.data(current_app.instance_path, draft),
                                draft.filename, max_bytes=_limit(), mapping=mapping)
        except imports.ImportFileError as exc:
            general = [translate_text(exc.message)]
    if errors or general:
        return _columns_page(draft, target, table, available, chosen, on_duplicate=on_duplicate, errors=errors,
                             general=general, status=422)
    draft.mapping, draft.on_duplicate = mapping, on_duplicate
    import_drafts.forget_dry_run(current_app.instance_path, draft)  # its report is replaced
    draft.dry_run_job = _start_job(draft, target, dry_run=True)
    import_drafts.save(current_app.instance_path, draft)
    return redirect(url_for("imports.check", token=draft.token), code=303)


# --- step 3: the dry run's report ------------------------------------------------------------------------


def _visible_job(job_id: int | None) -> dict[str, Any] | None:
    job = jobs.get_job(job_id, current_app) if job_id is not None else None
    if job is None or job["name"] != imports.JOB_NAME or not may_see(job, current_principal()):
        return None
    return job


def _job_or_404(job_id: int) -> dict[str, Any]:
    job = _visible_job(job_id)
    if job is None:
        abort(404, description=_("No such import."))
    return job


def _failure(job: dict[str, Any]) -> str:
    """Why a job failed, as its user may read it: a file-level problem in
    the service's words, anything else only as a failure (the details are
    in the server's log)."""
    error = job.get("error") or ""
    if error.startswith(FILE_ERROR_PREFIX):
        return translate_text(error[len(FILE_ERROR_PREFIX):])
    return _("The import stopped because of an error on the server; its log has the details.")


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def _report(job: dict[str, Any]) -> dict[str, Any]:
    """What a finished job's page shows: its counts and one page of its
    rejected rows."""
    result = job.get("result") or {}
    rejected_rows = result.get("rejected_rows") or []
    pages = max(1, -(-len(rejected_rows) // REJECTED_PAGE))
    page = min(_page_number(), pages)
    return {
        "result": result,
        # The job stored the service's English messages (the API reports
        # them so); the page shows them in the reader's language.
        "rejected_rows": [{**item, "message": translate_text(str(item.get("message") or ""))}
                          for item in rejected_rows[(page - 1) * REJECTED_PAGE:page * REJECTED_PAGE]],
        "page": page, "pages": pages,
        "duplicates": (result.get("possible_duplicates") or [])[:DUPLICATES_SHOWN],
        "download": url_for("imports.rejected", job_id=job["id"]) if result.get("rejected_file") else None,
    }


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    running = job["status"] not in jobs.FINISHED
    return {
        "job": job, "running": running, "refresh": REFRESH_SECONDS if running else None,
        "failure": _failure(job) if job["status"] == "failed" else None,
        "report": _report(job) if job["status"] == "done" else None,
    }


@bp.get("/import/<token>/check")
@login_required
def check(token: str):
    draft, target = _draft_or_404(token)
    job = _visible_job(draft.dry_run_job)
    if job is None:
        return redirect(url_for("imports.columns", token=token))
    return render_template("core/imports/check.html", draft=draft, type_label=_label(target), step=3,
                           page_url=url_for("imports.check", token=token), **_job_view(job))


# --- step 4: the import and its progress -----------------------------------------------------------------


@bp.post("/import/<token>/commit")
@login_required
def commit(token: str):
    draft, target = _draft_or_404(token)
    checked = _visible_job(draft.dry_run_job)
    if checked is None or checked["status"] != "done":
        flash(_("Check the file before importing it."), "error")
        return redirect(url_for("imports.check", token=token), code=303)
    job_id = _start_job(draft, target, dry_run=False)
    # The job has its own copy: the draft goes now, so a second click
    # cannot import the file twice.
    import_drafts.discard(current_app.instance_path, draft)
    return redirect(url_for("imports.progress", job_id=job_id), code=303)


@bp.get("/import/jobs/<int:job_id>")
@login_required
def progress(job_id: int):
    job = _job_or_404(job_id)
    type_key = (job.get("args") or {}).get("type") or (job.get("result") or {}).get("type") or ""
    target = imports.targets().get(type_key)
    list_endpoint = LIST_ENDPOINTS.get(type_key)
    return render_template(
        "core/imports/progress.html", type_label=_label(target) if target else type_key, step=4,
        list_url=url_for(list_endpoint) if list_endpoint and job["status"] == "done" else None,
        page_url=url_for("imports.progress", job_id=job_id), **_job_view(job))


@bp.get("/import/jobs/<int:job_id>/rejected")
@login_required
def rejected(job_id: int):
    """The rejected rows file of a dry run or an import (its columns plus
    ``error``), always as a download."""
    job = _job_or_404(job_id)
    name = (job.get("result") or {}).get("rejected_file")
    path = imports.stored_path(current_app.instance_path, name) if name else None
    if path is None or not path.is_file():
        abort(404, description=_("This import has no rejected rows file."))
    fmt = path.suffix.lstrip(".")
    mimetype = "text/csv" if fmt == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    translated = _rejected_in_language(path)
    response = send_file(io.BytesIO(translated) if translated is not None else path, mimetype=mimetype,
                         as_attachment=True, download_name=f"import-{job_id}-rejected.{fmt}",
                         conditional=False, etag=False, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _rejected_in_language(path) -> bytes | None:
    """The rejected rows file with its messages in the user's language (the
    job writes them in English: it has no request, and the API's file
    stays English like its messages); None when there is nothing to
    translate or the file cannot be read back (then it goes as it is)."""
    if str(get_locale() or "en").split("_")[0] == "en":
        return None
    try:
        table = imports.read_table(path.read_bytes(), path.name, max_bytes=path.stat().st_size)
    except imports.ImportFileError:
        return None
    if not table.header or table.header[-1] != imports.ERROR_COLUMN:
        return None
    width = len(table.header)
    rows = ([*cells[:width - 1], *[""] * (width - 1 - len(cells)), translate_text(cells[width - 1] if len(cells) >= width else "")]
            for _number, cells in table.rows)
    out = io.BytesIO()
    imports.write_rows(out, table, table.header, rows)
    return out.getvalue()
