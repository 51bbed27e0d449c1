"""Admin: users. List, invite (an account without a password plus a
single-use link to choose one, the same link as a password reset), deactivate
with a hand-over of their records to a colleague, and reset two-factor
sign-in for someone who lost their authenticator.

Every change goes through the account services (``host.security.users``,
``totp``, ``views_reset``'s link functions) and is written to the security
log, as the CLI does.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import select

from host.db import session as db_session
from host.mail import MailError, send_mail
from host.security import seclog, totp
from host.security.access import current_principal, require
from host.security.models import Role, User
from host.security.users import AccountError, count_admins, create_user, deactivate_user, find_user
from host.security.views_reset import LINK_TTL, issue_link_token

from .admin_common import form_text

log = logging.getLogger("mosaic.admin")

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")


def _user_or_404(user_id: int) -> User:
    user = db_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


def _roles() -> list[Role]:
    return list(db_session().scalars(select(Role).order_by(Role.name)))


@bp.get("")
@require("core.user.read")
def index():
    return _render_index()


def _render_index(status: int = 200, errors: dict[str, str] | None = None, form: dict[str, str] | None = None):
    users = list(db_session().scalars(select(User).order_by(User.active.desc(), User.email)))
    body = render_template(
        "core/admin/users.html",
        users=users,
        roles=_roles(),
        errors=errors or {},
        form=form or {"email": "", "display_name": "", "role": "staff"},
    )
    return body, status


@bp.post("")
@require("core.user.create")
def invite():
    """Create the account and e-mail a link to choose a password."""
    form = {"email": form_text("email", 254), "display_name": form_text("display_name", 200),
            "role": form_text("role", 100)}
    errors = {}
    if not form["email"]:
        errors["email"] = gettext("Enter the new user's e-mail address.")
    if form["role"] not in {role.name for role in _roles()}:
        errors["role"] = gettext("Choose one of the listed roles.")
    if errors:
        return _render_index(422, errors, form)
    session = db_session()
    try:
        user = create_user(session, form["email"], None, roles=(form["role"],), display_name=form["display_name"])
    except AccountError as exc:
        session.rollback()
        return _render_index(422, {"email": str(exc)}, form)
    plain = issue_link_token(session, user)
    seclog.record(session, "user.create", subject_user_id=user.id, ip=request.remote_addr,
                  detail={"roles": [form["role"]], "invited": True})
    session.commit()
    try:
        send_mail(user.email, gettext("Your Mosaic CRM account"), _invite_body(user, _link(plain)))
        flash(gettext("%(email)s was invited: they received a link to choose a password.", email=user.email), "success")
    except MailError as exc:
        log.error("invitation mail for user %s not sent: %s", user.id, exc)
        flash(gettext("%(email)s was created, but the invitation could not be sent. "
                      "They can use “Forgot your password?” on the sign-in page.", email=user.email), "warning")
    return redirect(url_for("admin_users.show", user_id=user.id), code=303)


def _link(plain: str) -> str:
    """The configured public address when there is one (as the reset flow:
    a link built from the request's Host header could carry the token away)."""
    base_url = current_app.extensions["mosaic"].config.base_url
    if base_url:
        return base_url.rstrip("/") + url_for("reset.confirm", token=plain)
    return url_for("reset.confirm", token=plain, _external=True)


def _invite_body(user: User, link: str) -> str:
    hours = int(LINK_TTL.total_seconds() // 3600)
    return gettext(
        "Hello %(name)s,\n\nan account was created for you in Mosaic CRM (%(email)s).\n"
        "Open this link within %(hours)d hour(s) to choose your password; it works once:\n\n%(link)s\n\n"
        "When the link has expired, ask for a new one with “Forgot your password?” on the sign-in page.\n",
        name=user.display_name or user.email, email=user.email, hours=hours, link=link,
    )


@bp.get("/<int:user_id>")
@require("core.user.read")
def show(user_id: int):
    return _render_user(_user_or_404(user_id))


def _render_user(user: User, status: int = 200, errors: dict[str, str] | None = None, hand_over: str = ""):
    colleagues = [u for u in db_session().scalars(select(User).where(User.active.is_(True)).order_by(User.email))
                  if u.id != user.id]
    body = render_template("core/admin/user.html", user=user, colleagues=colleagues, errors=errors or {},
                           hand_over=hand_over, totp_required=totp.required_for(user))
    return body, status


@bp.post("/<int:user_id>/deactivate")
@require("core.user.update")
def deactivate(user_id: int):
    session = db_session()
    user = _user_or_404(user_id)
    hand_over = form_text("hand_over_to", 20)
    if not user.active:
        flash(gettext("%(email)s is already deactivated.", email=user.email), "info")
        return redirect(url_for("admin_users.show", user_id=user.id), code=303)
    if user.id == current_principal().user_id:
        return _render_user(user, 409, {"hand_over_to": gettext("You cannot deactivate your own account.")}, hand_over)
    if any(role.name == "admin" for role in user.roles) and count_admins(session) <= 1:
        return _render_user(user, 409, {"hand_over_to": gettext("This is the last active admin: make someone else admin first.")}, hand_over)
    receiver = None
    if hand_over:
        receiver = session.get(User, int(hand_over)) if hand_over.isdigit() else None
        if receiver is None:
            return _render_user(user, 422, {"hand_over_to": gettext("Choose a colleague from the list.")}, hand_over)
    try:
        moved = deactivate_user(session, user, receiver)
    except AccountError as exc:
        session.rollback()
        return _render_user(_user_or_404(user_id), 422, {"hand_over_to": str(exc)}, hand_over)
    seclog.record(session, "user.deactivate", subject_user_id=user.id, ip=request.remote_addr,
                  detail={"hand_over_to": receiver.id if receiver else None, "moved": moved})
    session.commit()
    total = sum(moved.values())
    if receiver is not None:
        flash(gettext("%(email)s was deactivated; %(count)d record(s) now belong to %(receiver)s.",
                      email=user.email, count=total, receiver=receiver.email), "success")
    else:
        flash(gettext("%(email)s was deactivated; their records keep their owner.", email=user.email), "success")
    return redirect(url_for("admin_users.show", user_id=user.id), code=303)


@bp.post("/<int:user_id>/reset-two-factor")
@require("core.user.update")
def reset_two_factor(user_id: int):
    """Turn two-factor sign-in off for a user who lost their device; when
    their role requires it, they set it up again at their next sign-in."""
    session = db_session()
    user = _user_or_404(user_id)
    if not user.totp_enabled and not user.totp_secret:
        flash(gettext("%(email)s has no two-factor sign-in to reset.", email=user.email), "info")
        return redirect(url_for("admin_users.show", user_id=user.id), code=303)
    # Not ``totp.disable``: that logs the user as the one who acted.
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    seclog.record(session, "totp.disable", subject_user_id=user.id, ip=request.remote_addr, detail={"by_admin": True})
    session.commit()
    flash(gettext("Two-factor sign-in of %(email)s was reset.", email=user.email), "success")
    return redirect(url_for("admin_users.show", user_id=user.id), code=303)
