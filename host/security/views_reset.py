"""Password reset by a single-use, expiring link sent by e-mail.

The request form answers the same whatever address was typed, so it cannot
be used to find out who has an account; requests are limited per e-mail
address (so nobody can flood a mailbox) and per client address (so nobody can
walk a list of addresses), and the limit counts unknown addresses exactly like
known ones.

The link carries 256 random bits; only their SHA-256 is stored, so a copy of
the database lets nobody reset a password. A link works once, for an hour.
Using it sets the password, ends every session of the account and voids the
account's other outstanding links. It does not sign the user in: two-factor
sign-in, when on, still applies after a reset.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from host.db import session as db_session
from host.db import utcnow
from host.i18n import N_
from host.mail import MailError, send_mail

from . import seclog
from .access import public
from .models import PasswordReset, User
from .tokens import hash_token
from .users import find_user, set_password

log = logging.getLogger("mosaic.security")

bp = Blueprint("reset", __name__)

LINK_TTL = dt.timedelta(hours=1)
LIMIT_WINDOW_S = 60 * 60
PER_EMAIL_LIMIT = 3
PER_CLIENT_LIMIT = 20
MAX_EMAIL_LENGTH = 254

SENT = N_("If the address belongs to an account, we sent a link to it. The link works once, within an hour.")
TOO_MANY = N_("Too many reset requests. Wait a while and try again.")


# --- the domain part (no request objects) ------------------------------------------


def issue_link_token(session: Session, user: User) -> str:
    """A new reset token for ``user``; the plain token is returned once and
    only its hash is stored."""
    plain = secrets.token_urlsafe(32)
    session.add(PasswordReset(user_id=user.id, token_hash=hash_token(plain), expires_at=utcnow() + LINK_TTL))
    session.flush()
    return plain


def find_valid_reset(session: Session, plain: str) -> PasswordReset | None:
    """The unused, unexpired reset of an active account that ``plain`` names."""
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == hash_token(plain)))
    if reset is None or reset.used_at is not None or reset.expires_at <= utcnow():
        return None
    user = session.get(User, reset.user_id)
    if user is None or not user.active:
        return None
    return reset


def claim(session: Session, reset: PasswordReset) -> bool:
    """Mark the link used, atomically: of two requests racing with the same
    link, exactly one gets True."""
    result = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def void_other_links(session: Session, user_id: int) -> None:
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- pages -------------------------------------------------------------------------


@bp.route("/password-reset", methods=["GET", "POST"])
@public
def request_link():
    if request.method == "GET":
        return render_template("core/reset_request.html", email="", message=None, error=None)
    email = (request.form.get("email") or "").strip().lower()[:MAX_EMAIL_LENGTH]
    if not email or "@" not in email:
        return render_template("core/reset_request.html", email=email, message=None,
                               error=gettext("Enter the e-mail address of your account.")), 422
    limited = _rate_limited(email)
    if limited is not None:
        body = render_template("core/reset_request.html", email=email, message=None, error=gettext(TOO_MANY))
        return body, 429, {"Retry-After": str(limited)}
    _send_link_if_account(email)
    return render_template("core/reset_request.html", email="", message=gettext(SENT), error=None)


def _rate_limited(email: str) -> int | None:
    """Seconds to wait when a limit is reached, else None. Counted before
    the account is looked up, so the limit says nothing about it."""
    # The counters commit in their own transaction, which on SQLite waits
    # for the write lock a signed-in visitor's request session already holds.
    db_session().commit()
    limiter = current_app.extensions["mosaic"].rate_limiter
    client = request.remote_addr or "unknown"
    for key, limit in ((f"reset:email:{email}", PER_EMAIL_LIMIT), (f"reset:client:{client}", PER_CLIENT_LIMIT)):
        decision = limiter.hit(key, limit, LIMIT_WINDOW_S)
        if not decision.allowed:
            return decision.retry_after
    return None


def _send_link_if_account(email: str) -> None:
    sess = db_session()
    user = find_user(sess, email)
    if user is None or not user.active:
        return
    plain = issue_link_token(sess, user)
    seclog.record(sess, "password.reset_requested", subject_user_id=user.id, ip=request.remote_addr)
    sess.commit()
    try:
        send_mail(user.email, gettext("Reset your Mosaic CRM password"), _mail_body(user, _link(plain)))
    except MailError as exc:
        # Same answer to the visitor: an error page would tell them the account exists.
        log.error("password reset mail for user %s not sent: %s", user.id, exc)


def _link(plain: str) -> str:
    """The configured public address when there is one: the request's Host
    header is chosen by whoever sends the request, and a link built from it
    could carry the token to another site."""
    base_url = current_app.extensions["mosaic"].config.base_url
    if base_url:
        return base_url.rstrip("/") + url_for("reset.confirm", token=plain)
    return url_for("reset.confirm", token=plain, _external=True)


def _mail_body(user: User, link: str) -> str:
    return gettext(
        "Hello %(name)s,\n\n"
        "someone (we hope you) asked to reset the password of your Mosaic CRM account.\n"
        "Open this link within an hour to choose a new password; it works once:\n\n"
        "%(link)s\n\n"
        "If you did not ask for this, ignore this message: your password stays as it is.\n",
        name=user.display_name or user.email, link=link,
    )


@bp.route("/password-reset/<token>", methods=["GET", "POST"])
@public
def confirm(token: str):
    sess = db_session()
    reset = find_valid_reset(sess, token)
    if reset is None:
        return render_template("core/reset_invalid.html"), 404
    if request.method == "GET":
        return render_template("core/reset_confirm.html", token=token, errors={})
    errors = _password_errors(sess.get(User, reset.user_id))
    if errors:
        return render_template("core/reset_confirm.html", token=token, errors=errors), 422
    return _apply_reset(sess, reset)


def _password_errors(user: User) -> dict[str, str]:
    from .passwords import policy_problem

    password = request.form.get("password") or ""
    errors: dict[str, str] = {}
    problem = policy_problem(password, user.email)
    if problem:
        errors["password"] = problem
    elif password != (request.form.get("password_confirm") or ""):
        errors["password_confirm"] = gettext("The two passwords differ. Type the same password twice.")
    return errors


def _apply_reset(sess: Session, reset: PasswordReset):
    user = sess.get(User, reset.user_id)
    if not claim(sess, reset):
        sess.rollback()
        return render_template("core/reset_invalid.html"), 404
    set_password(user, request.form.get("password") or "")  # checked above; also ends every session
    void_other_links(sess, user.id)
    seclog.record(sess, "password.change", user_id=user.id, ip=request.remote_addr, detail={"via": "reset"})
    sess.commit()
    return redirect(url_for("reset.done"), code=303)


@bp.get("/password-reset/done")
@public
def done():
    return render_template("core/reset_done.html")
