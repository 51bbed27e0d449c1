"""Admin: outgoing webhooks and their delivery log. A thin layer over
``host.core.webhooks`` (validation, the SSRF guard, the security log), as the
REST API is. A secret is shown once, in the page that answers the POST that
made it (creation, rotation), never through a redirect or the session."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import select

from host.core import webhooks
from host.core.models import Webhook
from host.db import session as db_session
from host.i18n import N_
from host.security.access import require

bp = Blueprint("admin_webhooks", __name__, url_prefix="/admin/webhooks")

PERMISSION = webhooks.PERMISSION
LOG_PAGE = 50
STATUSES = (N_("pending"), N_("delivered"), N_("failed"))


def _allow_private() -> bool:
    return bool(current_app.extensions["mosaic"].config.webhooks_allow_private)


def _hook_or_404(webhook_id: int) -> Webhook:
    hook = db_session().get(Webhook, webhook_id)
    if hook is None:
        abort(404)
    return hook


def _event_types(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _render_index(status: int = 200, errors: dict[str, str] | None = None, form: dict | None = None,
                  secret: str | None = None, created: Webhook | None = None):
    hooks = list(db_session().scalars(select(Webhook).order_by(Webhook.id)))
    return render_template("core/admin/webhooks.html", hooks=hooks, errors=errors or {},
                           form=form or {"url": "", "event_types": "*"}, secret=secret, created=created), status


@bp.get("")
@require(PERMISSION)
def index():
    return _render_index()


@bp.post("")
@require(PERMISSION)
def create():
    form = {"url": (request.form.get("url") or "").strip(), "event_types": request.form.get("event_types") or ""}
    session = db_session()
    try:
        hook, secret = webhooks.create_webhook(session, form["url"], _event_types(form["event_types"]),
                                               allow_private=_allow_private())
    except webhooks.WebhookError as exc:
        session.rollback()
        return _render_index(422, {exc.field: exc.message}, form)
    session.commit()
    return _render_index(201, secret=secret, created=hook)


def _render_hook(hook: Webhook, status: int = 200, errors: dict[str, str] | None = None, form: dict | None = None,
                 secret: str | None = None):
    before = request.args.get("before", type=int)
    wanted = request.args.get("status") if request.args.get("status") in STATUSES else None
    rows = webhooks.list_deliveries(db_session(), hook.id, before_event_id=before, status=wanted, limit=LOG_PAGE + 1)
    more = len(rows) > LOG_PAGE
    rows = rows[:LOG_PAGE]
    form = form or {"url": hook.url, "event_types": "\n".join(hook.event_types), "active": hook.active}
    return render_template("core/admin/webhook.html", hook=hook, deliveries=rows, statuses=STATUSES,
                           status_filter=wanted, next_before=rows[-1][0].event_id if more and rows else None,
                           errors=errors or {}, form=form, secret=secret), status


@bp.get("/<int:webhook_id>")
@require(PERMISSION)
def show(webhook_id: int):
    return _render_hook(_hook_or_404(webhook_id))


@bp.post("/<int:webhook_id>")
@require(PERMISSION)
def update(webhook_id: int):
    session = db_session()
    hook = _hook_or_404(webhook_id)
    form = {"url": (request.form.get("url") or "").strip(), "event_types": request.form.get("event_types") or "",
            "active": request.form.get("active") == "1"}
    try:
        webhooks.update_webhook(session, hook, allow_private=_allow_private(), url=form["url"],
                                event_types=_event_types(form["event_types"]), active=form["active"])
    except webhooks.WebhookError as exc:
        session.rollback()
        return _render_hook(_hook_or_404(webhook_id), 422, {exc.field: exc.message}, form)
    session.commit()
    flash(gettext("The webhook was saved."), "success")
    return redirect(url_for("admin_webhooks.show", webhook_id=webhook_id), code=303)


@bp.post("/<int:webhook_id>/rotate-secret")
@require(PERMISSION)
def rotate(webhook_id: int):
    session = db_session()
    hook = _hook_or_404(webhook_id)
    secret = webhooks.rotate_secret(session, hook)
    session.commit()
    return _render_hook(hook, secret=secret)


@bp.post("/<int:webhook_id>/test")
@require(PERMISSION)
def test(webhook_id: int):
    session = db_session()
    hook = _hook_or_404(webhook_id)
    if not hook.active:
        flash(gettext("The webhook is inactive: re-enable it first."), "error")
        return redirect(url_for("admin_webhooks.show", webhook_id=webhook_id), code=303)
    webhooks.queue_test(session, hook)
    session.commit()
    flash(gettext("A test delivery was queued; the log below shows its outcome within a few seconds."), "success")
    return redirect(url_for("admin_webhooks.show", webhook_id=webhook_id), code=303)


@bp.post("/<int:webhook_id>/delete")
@require(PERMISSION)
def delete(webhook_id: int):
    session = db_session()
    webhooks.delete_webhook(session, _hook_or_404(webhook_id))
    session.commit()
    flash(gettext("The webhook and its delivery log were deleted."), "success")
    return redirect(url_for("admin_webhooks.index"), code=303)
