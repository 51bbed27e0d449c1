"""``GET /api/v1/contacts/<id>/timeline``: a contact's merged timeline.

Needs ``core.contact.read`` and the contact in the caller's scope; a contact
that is missing, in the recycle bin or out of scope answers 404 alike.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, fields, validate

from host.db import session as db_session
from host.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorField
from host.security.access import Principal, current_principal, require
from host.security.models import User

from . import timeline

api = ApiBlueprint(
    "api_core_timeline", __name__, url_prefix="/api/v1",
    description="A contact's history merged from the host and every enabled plugin, newest first.",
)


class TimelineCursorField(CursorField):
    """The opaque ``next`` of the previous page; anything else is a 422 naming ``cursor``."""

    def _deserialize(self, value, attr, data, **kwargs):
        return timeline.Cursor.from_values(super()._deserialize(value, attr, data, **kwargs))


class TimelineArgsSchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = TimelineCursorField(load_default=None)


class TimelineItemSchema(Schema):
    when = fields.AwareDateTime()
    kind = fields.String(metadata={"description": "e.g. interaction.phone, task, task.done, a plugin's kind, or placeholder"})
    title = fields.String()
    summary = fields.String()
    url = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "core, or the plugin's name"})


class TimelinePageSchema(Schema):
    items = fields.List(fields.Nested(TimelineItemSchema))
    next = fields.String(allow_none=True, metadata={"description": "cursor of the next page, or null on the last"})


@api.get("/contacts/<int:contact_id>/timeline")
@require("core.contact.read")
@api.arguments(TimelineArgsSchema, location="query")
@api.response(200, TimelinePageSchema)
def get_contact_timeline(args: dict[str, Any], contact_id: int):
    """The contact's timeline, newest first: interactions, tasks and plugins'
    entries. A plugin that fails shows as one entry of kind ``placeholder``
    naming it; the rest of the page is still there."""
    session = db_session()
    principal = current_principal()
    contact = timeline.visible_contact(session, principal, contact_id)
    if contact is None:
        abort(404, description="No such contact.")
    page = timeline.contact_timeline(
        session, contact, principal, user=_user_of(session, principal), cursor=args["cursor"], limit=args["limit"]
    )
    return {"items": page.items, "next": page.next}


def _user_of(session, principal: Principal) -> User | None:
    """The account plugins get as ``user``, as the UI passes the signed-in one."""
    return session.get(User, principal.user_id) if principal.user_id is not None else None
