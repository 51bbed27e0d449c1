"""Admin REST API for outgoing webhooks: ``/api/v1/admin/webhooks``.

Every operation needs ``core.webhook.update`` (admins by default): a webhook
subscribed to ``*`` receives every record change, so managing them is as
sensitive as exporting data. The secret is in the response of creation and of
``rotate-secret`` only; no other response carries it. The logic lives in
``host.core.webhooks``; this module maps HTTP to it.
"""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint as ApiBlueprint
from flask_smorest import abort
from marshmallow import ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from host.db import session as db_session
from host.pagination import PageArgsSchema, page
from host.schemas import BaseSchema
from host.security.access import require

from . import webhooks
from .models import Webhook

api = ApiBlueprint("api_core_webhooks", __name__, url_prefix="/api/v1",
                   description="Outgoing webhooks: signed POSTs of domain events to other systems (admin).")

PERMISSION = webhooks.PERMISSION
DELIVERY_STATUSES = ("pending", "delivered", "failed")



def _event_types(**kwargs) -> fields.List:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        validate=validate.Length(min=1, max=webhooks.MAX_EVENT_TYPES),
        metadata={"description": 'Exact event types such as "contact.created", or ["*"] for every event.'},
        **kwargs,
    )


class WebhookSchema(BaseSchema):
    id = fields.Integer(dump_only=True)
    url = fields.String(dump_only=True)
    event_types = fields.List(fields.String(), dump_only=True)
    active = fields.Boolean(dump_only=True)
    consecutive_failures = fields.Integer(dump_only=True)
    disabled_reason = fields.String(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(dump_only=True, metadata={
        "description": "The HMAC key for X-Mosaic-Signature. Shown only in this response: store it now.",
    })


class WebhookCreateSchema(BaseSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=webhooks.MAX_URL_LENGTH), metadata={
        "description": "http(s) URL without credentials; it must resolve to public addresses only, unless the "
                       "install allows private ones (webhooks_allow_private).",
    })
    event_types = _event_types(required=True)


class WebhookUpdateSchema(BaseSchema):
    url = fields.String(validate=validate.Length(min=1, max=webhooks.MAX_URL_LENGTH))
    event_types = _event_types()
    active = fields.Boolean(metadata={
        "description": "false pauses deliveries; true re-enables (clears the failure count; events of the "
                       "inactive time are not sent).",
    })

    @validates_schema
    def _something(self, data, **_kwargs):
        if not data:
            raise ValidationError("Send at least one of url, event_types, active.", "_schema")


class WebhookSecretSchema(BaseSchema):
    id = fields.Integer(dump_only=True)
    secret = fields.String(dump_only=True, metadata={"description": "The new secret, shown only here."})


class WebhookPageSchema(BaseSchema):
    items = fields.List(fields.Nested(WebhookSchema))
    next = fields.String(allow_none=True)


class WebhookDeliverySchema(BaseSchema):
    id = fields.Integer()
    event_id = fields.Integer()
    event_type = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "pending, delivered or failed (gave up)"})
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime(metadata={"description": "When a pending delivery is tried next."})
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class WebhookDeliveryPageSchema(BaseSchema):
    items = fields.List(fields.Nested(WebhookDeliverySchema))
    next = fields.String(allow_none=True)


class WebhookDeliveryArgsSchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))


class WebhookTestSchema(BaseSchema):
    delivery_id = fields.Integer()
    event_id = fields.Integer()


# --- helpers ------------------------------------------------------------------


def _allow_private() -> bool:
    return bool(current_app.extensions["mosaic"].config.webhooks_allow_private)


def _get(webhook_id: int) -> Webhook:
    hook = db_session().get(Webhook, webhook_id)
    if hook is None:
        abort(404, message="No such webhook.")
    return hook


def _invalid(exc: webhooks.WebhookError):
    abort(422, message="Invalid webhook.", errors={"json": {exc.field: [exc.message]}})


def _cursor_key(cursor) -> int | None:
    if not cursor:
        return None
    try:
        (key,) = cursor
        return int(key)
    except (TypeError, ValueError):
        abort(422, message="Invalid cursor.", errors={"query": {"cursor": ["Not a valid cursor."]}})


def _shown(hook: Webhook) -> dict:
    """The webhook's public fields as values (the response schema dumps them)."""
    return {name: getattr(hook, name) for name in WebhookSchema().fields}


# --- endpoints ----------------------------------------------------------------


@api.get("/admin/webhooks")
@require(PERMISSION)
@api.arguments(PageArgsSchema, location="query")
@api.response(200, WebhookPageSchema)
def list_webhooks(args):
    """Registered webhooks, oldest first (secrets are never listed)."""
    after = _cursor_key(args.get("cursor"))
    stmt = select(Webhook).order_by(Webhook.id).limit(args["limit"] + 1)
    if after is not None:
        stmt = stmt.where(Webhook.id > after)
    items, next_cursor = page(list(db_session().scalars(stmt)), args["limit"], key=lambda hook: [hook.id])
    return {"items": items, "next": next_cursor}


@api.post("/admin/webhooks")
@require(PERMISSION)
@api.arguments(WebhookCreateSchema)
@api.response(201, WebhookCreatedSchema)
def create_webhook(data):
    """Register a webhook. The response holds its secret: the only time it is shown."""
    session = db_session()
    try:
        hook, secret = webhooks.create_webhook(session, data["url"], data["event_types"],
                                               allow_private=_allow_private())
    except webhooks.WebhookError as exc:
        _invalid(exc)
    session.commit()
    return {**_shown(hook), "secret": secret}


@api.get("/admin/webhooks/<int:webhook_id>")
@require(PERMISSION)
@api.response(200, WebhookSchema)
def get_webhook(webhook_id):
    """One webhook (without its secret)."""
    return _get(webhook_id)


@api.patch("/admin/webhooks/<int:webhook_id>")
@require(PERMISSION)
@api.arguments(WebhookUpdateSchema)
@api.response(200, WebhookSchema)
def update_webhook(data, webhook_id):
    """Change the URL, the event types, or pause/re-enable it."""
    session = db_session()
    hook = _get(webhook_id)
    try:
        webhooks.update_webhook(session, hook, allow_private=_allow_private(), url=data.get("url"),
                                event_types=data.get("event_types"), active=data.get("active"))
    except webhooks.WebhookError as exc:
        _invalid(exc)
    session.commit()
    return hook


@api.delete("/admin/webhooks/<int:webhook_id>")
@require(PERMISSION)
@api.response(204)
def delete_webhook(webhook_id):
    """Delete a webhook and its delivery log."""
    session = db_session()
    webhooks.delete_webhook(session, _get(webhook_id))
    session.commit()


@api.post("/admin/webhooks/<int:webhook_id>/rotate-secret")
@require(PERMISSION)
@api.response(200, WebhookSecretSchema)
def rotate_secret(webhook_id):
    """Replace the secret; the next attempt is signed with the new one. Shown only in this response."""
    session = db_session()
    hook = _get(webhook_id)
    secret = webhooks.rotate_secret(session, hook)
    session.commit()
    return {"id": hook.id, "secret": secret}


@api.get("/admin/webhooks/<int:webhook_id>/deliveries")
@require(PERMISSION)
@api.arguments(WebhookDeliveryArgsSchema, location="query")
@api.response(200, WebhookDeliveryPageSchema)
def list_deliveries(args, webhook_id):
    """The delivery log, newest event first; filter by status."""
    _get(webhook_id)
    rows = webhooks.list_deliveries(db_session(), webhook_id, before_event_id=_cursor_key(args.get("cursor")),
                                    status=args.get("status"), limit=args["limit"] + 1)
    items, next_cursor = page(rows, args["limit"], key=lambda row: [row[0].event_id])
    return {"items": [_delivery(delivery, event_type) for delivery, event_type in items], "next": next_cursor}


def _delivery(delivery, event_type) -> dict:
    shown = {name: getattr(delivery, name) for name in WebhookDeliverySchema().fields if name != "event_type"}
    return {**shown, "event_type": event_type}


@api.post("/admin/webhooks/<int:webhook_id>/test")
@require(PERMISSION)
@api.response(202, WebhookTestSchema)
def test_webhook(webhook_id):
    """Queue a "webhook.test" ping to this webhook only; the next delivery pass
    (every few seconds) sends it, and the delivery log shows the outcome."""
    session = db_session()
    hook = _get(webhook_id)
    if not hook.active:
        abort(409, message="The webhook is inactive: re-enable it first.")
    delivery = webhooks.queue_test(session, hook)
    session.commit()
    return {"delivery_id": delivery.id, "event_id": delivery.event_id}
