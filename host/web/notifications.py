"""The notification bell's page: the signed-in user's own notifications
(task reminders and other notices), newest first, with mark-as-read.

Only the owner sees or marks a notification; another user's id answers 404
like a missing one (the service filters by user)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext

from host.core import notifications as svc
from host.db import session as db_session
from host.security.access import current_principal, login_required

bp = Blueprint("notifications", __name__)

PAGE_SIZE = 50


def _user_id() -> int:
    user_id = current_principal().user_id
    if user_id is None:
        abort(404)
    return user_id


def safe_link(url: str | None) -> str | None:
    """A notification's link only when it is a path on this site (a stored
    ``javascript:`` or off-site URL is shown as no link at all)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return None
    return url


@bp.get("/notifications")
@login_required
def index():
    before = request.args.get("before", type=int)
    unread_only = request.args.get("unread") == "1"
    rows = svc.list_notifications(db_session(), _user_id(), unread_only=unread_only, before_id=before,
                                  limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render_template(
        "core/notifications.html",
        notifications=[(n, safe_link(n.url)) for n in rows],
        next_before=rows[-1].id if more and rows else None,
        unread_only=unread_only,
    )


@bp.post("/notifications/<int:notification_id>/read")
@login_required
def mark_read(notification_id: int):
    session = db_session()
    notification = svc.mark_read(session, _user_id(), notification_id)
    if notification is None:
        abort(404)
    session.commit()
    link = safe_link(notification.url)
    if request.form.get("open") == "1" and link:
        return redirect(link, code=303)
    flash(gettext("Marked as read."), "success")
    return redirect(url_for("notifications.index"), code=303)


@bp.post("/notifications/read-all")
@login_required
def mark_all_read():
    session = db_session()
    marked = svc.mark_all_read(session, _user_id())
    session.commit()
    flash(ngettext("%(num)d notification marked as read.", "%(num)d notifications marked as read.", marked), "success")
    return redirect(url_for("notifications.index"), code=303)
