"""The audit trail and the security log: read-only, in the UI and the API.

Both list newest first with keyset pagination and filter by user and by
object (audit) or kind (security log). Nothing here writes.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from host.db import session as db_session
from host.pagination import PageArgsSchema, decode_cursor, page

from . import audit, seclog
from .access import require
from .models import User

bp = Blueprint("audit", __name__, url_prefix="/admin")
api = ApiBlueprint("api_core_audit", __name__, url_prefix="/api/v1", description="Audit trail and security log (read-only).")


# --- shared -------------------------------------------------------------------------


def _user_id_for(email: str | None) -> int | None:
    if not email:
        return None
    user_id = db_session().scalar(select(User.id).where(User.email == email.strip().lower()))
    return user_id if user_id is not None else -1  # unknown user: an empty list, not everything


def _audit_page(*, object_type=None, object_id=None, user_id=None, before_id=None, limit=50):
    rows = audit.history(db_session(), object_type=object_type, object_id=object_id, user_id=user_id,
                         before_id=before_id, limit=limit + 1)
    return page(rows, limit, key=lambda e: [e.id])


def _security_page(*, user_id=None, kind=None, before_id=None, limit=50):
    rows = seclog.query(db_session(), user_id=user_id, kind=kind, before_id=before_id, limit=limit + 1)
    return page(rows, limit, key=lambda e: [e.id])


def _emails(user_ids) -> dict[int, str]:
    ids = {i for i in user_ids if i}
    if not ids:
        return {}
    return dict(db_session().execute(select(User.id, User.email).where(User.id.in_(ids))).all())


def _before_id(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        (before,) = decode_cursor(cursor)
        return int(before)
    except (ValidationError, ValueError, TypeError):
        abort(400, description="Not a valid cursor.")


# --- UI -------------------------------------------------------------------------------


@bp.get("/audit")
@require("core.audit.read")
def audit_log():
    args = request.args
    entries, next_cursor = _audit_page(
        object_type=args.get("object_type") or None,
        object_id=args.get("object_id") or None,
        user_id=_user_id_for(args.get("user")),
        before_id=_before_id(args.get("cursor")),
    )
    return render_template("core/audit/audit.html", entries=entries, emails=_emails(e.user_id for e in entries),
                           next_cursor=next_cursor, filters=args)


@bp.get("/security-log")
@require("core.security.read")
def security_log():
    args = request.args
    events, next_cursor = _security_page(
        user_id=_user_id_for(args.get("user")), kind=args.get("kind") or None, before_id=_before_id(args.get("cursor"))
    )
    ids = [e.user_id for e in events] + [e.subject_user_id for e in events]
    return render_template("core/audit/security.html", events=events, emails=_emails(ids),
                           next_cursor=next_cursor, filters=args)


# --- API ------------------------------------------------------------------------------


class AuditEntrySchema(Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    user_id = fields.Integer(allow_none=True)
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    changes = fields.Dict(metadata={"description": "field -> [old, new] for updates; the values for create/delete"})


class SecurityEventSchema(Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    kind = fields.String()
    user_id = fields.Integer(allow_none=True)
    subject_user_id = fields.Integer(allow_none=True)
    ip = fields.String(allow_none=True)
    detail = fields.Dict()


class AuditArgsSchema(PageArgsSchema):
    object_type = fields.String(validate=validate.Length(max=200))
    object_id = fields.String(validate=validate.Length(max=64))
    user_id = fields.Integer()


class SecurityArgsSchema(PageArgsSchema):
    kind = fields.String(validate=validate.Length(max=50))
    user_id = fields.Integer()


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    next = fields.String(allow_none=True)


class SecurityPageSchema(Schema):
    items = fields.List(fields.Nested(SecurityEventSchema))
    next = fields.String(allow_none=True)


@api.get("/audit")
@require("core.audit.read")
@api.arguments(AuditArgsSchema, location="query")
@api.response(200, AuditPageSchema)
def api_audit(args):
    """Audit entries, newest first; filter by object and by the user who acted."""
    cursor = args.get("cursor")
    items, next_cursor = _audit_page(
        object_type=args.get("object_type"), object_id=args.get("object_id"), user_id=args.get("user_id"),
        before_id=int(cursor[0]) if cursor else None, limit=args["limit"],
    )
    return {"items": items, "next": next_cursor}


@api.get("/security-events")
@require("core.security.read")
@api.arguments(SecurityArgsSchema, location="query")
@api.response(200, SecurityPageSchema)
def api_security_events(args):
    """Security events, newest first; filter by user (actor or subject) and kind
    (exact, or a prefix ending in "." such as "login.")."""
    cursor = args.get("cursor")
    items, next_cursor = _security_page(
        user_id=args.get("user_id"), kind=args.get("kind"), before_id=int(cursor[0]) if cursor else None,
        limit=args["limit"],
    )
    return {"items": items, "next": next_cursor}
