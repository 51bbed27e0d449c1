"""``GET /api/v1/jobs/<id>``: a background job's status, progress and result
(an import's counts and rejected rows).

A job is shown to the user who started it, and to whoever holds
``core.job.read`` with scope "all" (admins by default): a job's result can
describe records (an import's rejected rows), so holding the permission
with a narrower scope is not enough. Anyone else gets 404, the answer for a
job that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from host import jobs
from host.security.access import Principal, current_principal, login_required

PREFIX = "/api/v1"

api = Blueprint("api_core_jobs", __name__, url_prefix=PREFIX,
                description="Background jobs you started (imports...): status, progress and result.")


class JobSchema(Schema):
    id = fields.Integer()
    name = fields.String(metadata={"description": "The job, e.g. core.import."})
    status = fields.String(metadata={"description": "queued, running, done or failed."})
    done = fields.Integer(metadata={"description": "Progress: items done so far."})
    total = fields.Integer(allow_none=True, metadata={"description": "Progress: items in all, once known."})
    message = fields.String(allow_none=True)
    result = fields.Dict(allow_none=True, metadata={
        "description": "What the job returned. An import: type, dry_run, total, created, updated, unchanged, "
                       "rejected (rows), rejected_rows [{row, column, message}], possible_duplicates [{row, ids}], "
                       "columns {column: field}, unknown_columns, rejected_file."})
    error = fields.String(allow_none=True, metadata={"description": "Why it failed (a file-level import error, ...)."})
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


def may_see(job: dict[str, Any] | None, principal: Principal) -> bool:
    if job is None:
        return False
    if job["user_id"] is not None and job["user_id"] == principal.user_id:
        return True
    return principal.can("core.job.read") and principal.scope_for("core.job") == "all"


def job_or_404(job_id: int) -> dict[str, Any]:
    job = jobs.get_job(job_id, current_app)
    if not may_see(job, current_principal()):
        abort(404, description="No such job.")
    return job


@api.get("/jobs/<int:job_id>")
@login_required
@api.response(200, JobSchema)
def get_job(job_id: int):
    """A job you started: poll it until ``status`` is done or failed."""
    return job_or_404(job_id)
