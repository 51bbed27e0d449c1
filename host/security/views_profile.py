"""The signed-in user's own page: details, password, two-factor, API tokens.

Everything here acts on the signed-in user only, which is why the routes need
a session but no permission. Changes that would let a borrowed session take an
account over ask for the current password again (password change, turning
two-factor off), and those password checks are rate limited like logins.

A new API token is shown once, in the answer to the POST that created it, and
never stored anywhere readable: not in the session cookie, not in a log.
"""

from __future__ import annotations

import time

import functools
import zoneinfo
from typing import Any

from flask import Blueprint, abort, current_app, flash, get_flashed_messages, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from flask_babel import gettext

from host.db import session as db_session
from host.i18n import N_

from . import passwords, seclog, totp
from .access import login_required
from .models import ApiToken, User
from .sessions import start_session
from .tokens import create_token, revoke_token
from .users import set_password

bp = Blueprint("profile", __name__)

LANGUAGES = {"en": "English", "bg": "Български", "ru": "Русский", "sk": "Slovenčina"}
MAX_NAME = 200
PASSWORD_CHECK_LIMIT = 10
PASSWORD_CHECK_WINDOW_S = 15 * 60
WRONG_PASSWORD = N_("That is not your current password.")
TOO_MANY_TRIES = N_("Too many wrong passwords. Wait a few minutes and try again.")


@functools.lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """IANA zone names this system knows, sorted for the picker."""
    return tuple(sorted(zoneinfo.available_timezones()))


def _me() -> User:
    return current_user.user


def _render(status: int = 200, **overrides: Any):
    """The profile page; forms that failed pass their input and errors in."""
    user = _me()
    context: dict[str, Any] = {
        "user": user,
        "details": {"display_name": user.display_name, "language": user.language or "", "time_zone": user.time_zone or ""},
        "languages": LANGUAGES,
        "time_zones": time_zones(),
        "errors": {},
        "token_form": {"name": "", "read_only": False},
        "new_token": None,
        "tokens": _tokens(user),
        "totp_required": totp.required_for(user),
        "totp_pending": totp.pending_enrolment(user),
        "messages": get_flashed_messages(),
    }
    context.update(overrides)
    return render_template("core/profile.html", **context), status


def _tokens(user: User) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    return list(db_session().scalars(stmt))


@bp.get("/profile")
@login_required
def show():
    return _render()


# --- details -----------------------------------------------------------------------


@bp.post("/profile/details")
@login_required
def save_details():
    form = {key: (request.form.get(key) or "").strip() for key in ("display_name", "language", "time_zone")}
    errors = _details_errors(form)
    if errors:
        return _render(422, details=form, errors=errors)
    user = _me()
    user.display_name = form["display_name"]
    user.language = form["language"] or None
    user.time_zone = form["time_zone"] or None
    db_session().commit()
    flash(gettext("Your details were saved."), "success")
    return redirect(url_for("profile.show"), code=303)


def _details_errors(form: dict[str, str]) -> dict[str, str]:
    errors = {}
    if not form["display_name"]:
        errors["display_name"] = gettext("Enter the name colleagues should see.")
    elif len(form["display_name"]) > MAX_NAME:
        errors["display_name"] = gettext("Use at most %(num)d characters.", num=MAX_NAME)
    if form["language"] and form["language"] not in LANGUAGES:
        errors["language"] = gettext("Choose one of the listed languages.")
    if form["time_zone"] and form["time_zone"] not in time_zones():
        errors["time_zone"] = gettext("Choose a time zone from the list, such as Europe/Sofia.")
    return errors


# --- password ------------------------------------------------------------------------


def _password_check(user: User, password: str) -> tuple[str | None, int | None]:
    """(error, retry_after): None errors when ``password`` is the user's own.
    Wrong guesses count per user, so a borrowed session cannot try a list."""
    totp.settle(db_session())
    limiter = current_app.extensions["mosaic"].rate_limiter
    key = f"profile:password:{user.id}"
    # Counted before the (slow) check, given back when right: simultaneous
    # guesses cannot all pass a check made before any was counted.
    counted_at = time.time()
    decision = limiter.hit(key, PASSWORD_CHECK_LIMIT, PASSWORD_CHECK_WINDOW_S, now=counted_at)
    if not decision.allowed:
        return gettext(TOO_MANY_TRIES), decision.retry_after
    if passwords.verify_password(user.password_hash, password):
        limiter.release(key, PASSWORD_CHECK_WINDOW_S, now=counted_at)
        return None, None
    return gettext(WRONG_PASSWORD), None


@bp.post("/profile/password")
@login_required
def change_password():
    user = _me()
    new = request.form.get("new_password") or ""
    wrong, retry_after = _password_check(user, request.form.get("current_password") or "")
    errors = {"current_password": wrong} if wrong else _new_password_errors(user, new)
    if errors:
        body, status = _render(429 if retry_after else 422, errors=errors)
        return (body, status, {"Retry-After": str(retry_after)}) if retry_after else (body, status)
    sess = db_session()
    set_password(user, new)  # checked above; raises the session version: every session ends
    seclog.record(sess, "password.change", user_id=user.id, detail={"via": "profile"})
    sess.commit()
    start_session(user)  # ... except this one, which starts afresh
    flash(gettext("Your password was changed. Other sessions were signed out."), "success")
    return redirect(url_for("profile.show"), code=303)


def _new_password_errors(user: User, new: str) -> dict[str, str]:
    problem = passwords.policy_problem(new, user.email)
    if problem:
        return {"new_password": problem}
    if new != (request.form.get("new_password_confirm") or ""):
        return {"new_password_confirm": gettext("The two new passwords differ. Type the same password twice.")}
    return {}


# --- API tokens --------------------------------------------------------------------


@bp.post("/profile/tokens")
@login_required
def create_api_token():
    name = (request.form.get("name") or "").strip()
    read_only = request.form.get("read_only") == "1"
    error = None
    if not name:
        error = gettext("Name the token after where it will be used, such as 'ERP sync'.")
    elif len(name) > MAX_NAME:
        error = gettext("Use at most %(num)d characters.", num=MAX_NAME)
    if error:
        return _render(422, errors={"token_name": error}, token_form={"name": name, "read_only": read_only})
    sess = db_session()
    _token, plain = create_token(sess, _me(), name=name, read_only=read_only)
    sess.commit()
    # Rendered, not redirected: the token must not travel through the session cookie.
    return _render(201, new_token=plain)


@bp.post("/profile/tokens/<int:token_id>/revoke")
@login_required
def revoke_api_token(token_id: int):
    sess = db_session()
    token = sess.get(ApiToken, token_id)
    if token is None or token.user_id != _me().id:
        abort(404)  # someone else's token: not even its existence is told
    revoke_token(sess, token)
    sess.commit()
    flash(gettext("The token %(prefix)s… was revoked.", prefix=token.prefix), "success")
    return redirect(url_for("profile.show"), code=303)


# --- two-factor sign-in ----------------------------------------------------------------


def _render_enrolment(status: int = 200, error: str | None = None):
    user = _me()
    uri = totp.provisioning_uri(user.totp_secret, user.email)
    return render_template(
        "core/totp_setup.html",
        error=error,
        secret=user.totp_secret,
        uri=uri,
        qr=totp.qr_svg_data_uri(uri),
        action=url_for("profile.confirm_two_factor"),
        at_login=False,
    ), status


@bp.get("/profile/two-factor")
@login_required
def two_factor():
    """The set-up page while an enrolment waits for its first code."""
    if not totp.pending_enrolment(_me()):
        return redirect(url_for("profile.show"), code=303)
    return _render_enrolment()


@bp.post("/profile/two-factor/enrol")
@login_required
def enrol_two_factor():
    user = _me()
    if user.totp_enabled:
        flash(gettext("Two-factor sign-in is already on."))
        return redirect(url_for("profile.show"), code=303)
    totp.start_enrolment(user)
    db_session().commit()
    return redirect(url_for("profile.two_factor"), code=303)


@bp.post("/profile/two-factor/confirm")
@login_required
def confirm_two_factor():
    user = _me()
    if not totp.pending_enrolment(user):
        return redirect(url_for("profile.show"), code=303)
    sess = db_session()
    result = totp.confirm_enrolment(sess, user, request.form.get("code"))
    if not result.ok:
        body, status = _render_enrolment(429 if result.outcome is totp.Check.LIMITED else 422, result.message)
        return (body, status, {"Retry-After": str(result.retry_after)}) if result.retry_after else (body, status)
    sess.commit()
    flash(gettext("Two-factor sign-in is on. You will be asked for a code when you sign in."), "success")
    return redirect(url_for("profile.show"), code=303)


@bp.post("/profile/two-factor/disable")
@login_required
def disable_two_factor():
    user = _me()
    if not user.totp_enabled:
        return redirect(url_for("profile.show"), code=303)
    if totp.required_for(user):
        return _render(409, errors={"totp_disable": gettext("Your role requires two-factor sign-in; it cannot be turned off.")})
    errors, retry_after = _disable_errors(user)
    if errors:
        body, status = _render(429 if retry_after else 422, errors=errors)
        return (body, status, {"Retry-After": str(retry_after)}) if retry_after else (body, status)
    sess = db_session()
    totp.disable(sess, user)
    sess.commit()
    flash(gettext("Two-factor sign-in is off."), "success")
    return redirect(url_for("profile.show"), code=303)


def _disable_errors(user: User) -> tuple[dict[str, str], int | None]:
    """Both the password and a current code: a stolen session alone (or a
    stolen password alone) cannot turn the second factor off."""
    wrong, retry_after = _password_check(user, request.form.get("password") or "")
    if wrong:
        return {"totp_disable_password": wrong}, retry_after
    result = totp.check_code(db_session(), user, request.form.get("code"))
    if not result.ok:
        return {"totp_disable_code": result.message}, result.retry_after or None
    return {}, None
