"""In-app notifications (the bell): the service, then its REST API.

A notification belongs to one user and only that user lists or marks it;
another user's id answers 404, as a missing one does.

``add_notifications`` creates notices at most once per ``dedupe_key``,
whatever runs it concurrently: the insert is ``ON CONFLICT DO NOTHING`` on
the key's unique index, and it returns only the rows this call created, so
the caller that won, and only that one, does what follows (the reminder job
sends its e-mail for those rows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Sequence

from flask import abort
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from host.db import session as db_session
from host.db import utcnow
from host.pagination import CursorField, PageArgsSchema, page
from host.security.access import current_principal, login_required

from .models import Notification


@dataclass(frozen=True)
class NewNotification:
    user_id: int
    kind: str
    title: str
    url: str | None = None
    dedupe_key: str | None = None


# --- service --------------------------------------------------------------------------


def add_notifications(session: Session, notices: Sequence[NewNotification]) -> dict[str, int]:
    """Insert the notices whose ``dedupe_key`` does not exist yet; return
    ``{dedupe_key: id}`` of those this call inserted (keyless notices are
    always inserted and left out of the result).

    Rows are inserted in key order so two workers inserting overlapping sets
    lock the keys in the same order (no deadlock on PostgreSQL)."""
    if not notices:
        return {}
    now = utcnow()
    rows = [
        {"user_id": n.user_id, "kind": n.kind, "title": n.title[:300], "url": n.url, "dedupe_key": n.dedupe_key,
         "created_at": now}
        for n in sorted(notices, key=lambda n: n.dedupe_key or "")
    ]
    stmt = (
        _insert_for(session)(Notification)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
        .returning(Notification.id, Notification.dedupe_key)
    )
    return {key: row_id for row_id, key in session.execute(stmt) if key is not None}


def _insert_for(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the two supported databases
        raise NotImplementedError(f"notifications need INSERT ... ON CONFLICT, not available on {dialect}")
    return insert


def list_notifications(
    session: Session, user_id: int, *, unread_only: bool = False, before_id: int | None = None, limit: int = 50
) -> list[Notification]:
    """The user's notifications, newest first (keyset on id); up to ``limit``."""
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list(session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def unread_count(session: Session, user_id: int) -> int:
    query = select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    return session.scalar(query) or 0


def mark_read(session: Session, user_id: int, notification_id: int, now: dt.datetime | None = None) -> Notification | None:
    """Mark one of the user's notifications read (keeping the first read
    time when it already was); ``None`` when the user has no such notification."""
    notification = session.scalars(
        select(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
    ).one_or_none()
    if notification is not None and notification.read_at is None:
        notification.read_at = now or utcnow()
    return notification


def mark_all_read(session: Session, user_id: int, now: dt.datetime | None = None) -> int:
    """Mark every unread notification of the user read; return how many."""
    stmt = (
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount


# --- REST API -----------------------------------------------------------------------------

api = ApiBlueprint(
    "api_core_notifications", __name__, url_prefix="/api/v1",
    description="The signed-in user's own notifications (task reminders and other notices).",
)


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    url = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    read_at = fields.AwareDateTime(allow_none=True)


class IdCursorField(CursorField):
    """Decodes to the id the previous page ended at; a cursor that is not
    ours is a 422 naming ``cursor``."""

    def _deserialize(self, value, attr, data, **kwargs):
        values = super()._deserialize(value, attr, data, **kwargs)
        if len(values) != 1 or not isinstance(values[0], int) or isinstance(values[0], bool):
            raise ValidationError("Not a valid cursor: use the `next` value of the previous page.")
        return values[0]


class NotificationArgsSchema(PageArgsSchema):
    cursor = IdCursorField(load_default=None)
    unread = fields.Boolean(load_default=False, metadata={"description": "only unread notifications"})


class NotificationPageSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema))
    next = fields.String(allow_none=True)


class UnreadCountSchema(Schema):
    unread = fields.Integer()


class MarkedReadSchema(Schema):
    marked = fields.Integer()


def _own_user_id() -> int:
    user_id = current_principal().user_id
    if user_id is None:  # a system principal has no bell
        abort(404)
    return user_id


@api.get("/notifications")
@login_required
@api.arguments(NotificationArgsSchema, location="query")
@api.response(200, NotificationPageSchema)
def api_list_notifications(args: dict[str, Any]):
    """Your notifications, newest first; ``unread=true`` for unread ones only."""
    limit = args["limit"]
    rows = list_notifications(
        db_session(), _own_user_id(), unread_only=args["unread"], before_id=args["cursor"], limit=limit + 1
    )
    items, next_cursor = page(rows, limit, key=lambda n: [n.id])
    return {"items": items, "next": next_cursor}


@api.get("/notifications/unread-count")
@login_required
@api.response(200, UnreadCountSchema)
def api_unread_count():
    """How many of your notifications are unread (for the bell's badge)."""
    return {"unread": unread_count(db_session(), _own_user_id())}


@api.post("/notifications/<int:notification_id>/read")
@login_required
@api.response(200, NotificationSchema)
def api_mark_read(notification_id: int):
    """Mark one of your notifications read. Another user's notification
    answers 404, like a missing one."""
    session = db_session()
    notification = mark_read(session, _own_user_id(), notification_id)
    if notification is None:
        abort(404, description="No such notification.")
    session.commit()
    return notification


@api.post("/notifications/read-all")
@login_required
@api.response(200, MarkedReadSchema)
def api_mark_all_read():
    """Mark all your notifications read; answers how many were unread."""
    session = db_session()
    marked = mark_all_read(session, _own_user_id())
    session.commit()
    return {"marked": marked}
