"""Sign-in and sign-out pages.

A failed sign-in says one thing whatever was wrong (no hint whether the
account exists). Failures are limited per account-and-address pair and per
address, with counters shared by every process, so a guesser is slowed while
the real user can still sign in from elsewhere.

An account with two-factor sign-in (or a role that requires it) gets no
session from the password alone: the code page at ``/login/two-factor``
completes the sign-in, and ``/login/two-factor/setup`` enrols a user whose
role requires two-factor but who has not set it up yet.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from host.db import session as db_session
from host.db import utcnow
from host.i18n import N_

from . import passwords, seclog, totp
from .access import login_required, public
from .models import User
from .sessions import end_all_sessions, end_session, start_session
from .users import find_user

bp = Blueprint("auth", __name__)

LOGIN_WINDOW_S = 15 * 60
PAIR_LIMIT = 10
ADDRESS_LIMIT = 50
#: The limits' clock (tests hold it still: a count that straddles a window
#: boundary starts again, as fixed windows do).
clock = time.time
FAILED = N_("Those details did not match an active account. Check them and try again.")


def safe_next(target: str | None) -> str:
    """Only a path on this site: never a scheme, a host or ``//evil``."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _limits(email: str) -> list[tuple[str, int]]:
    address = request.remote_addr or "unknown"
    return [(f"login:pair:{email}:{address}", PAIR_LIMIT), (f"login:addr:{address}", ADDRESS_LIMIT)]


def _reserve_attempt(email: str, next_url: str, now: float):
    """Count this attempt as a failure before the password is checked, and
    refuse it (429) when that goes over a limit; ``_release_attempt`` takes
    it back when the password was right. Counting first is what holds the
    limit under concurrency: checking first and counting after the slow
    password hash let every request already in flight through (a burst of
    40 guesses at a limit of 10 got 40 tries)."""
    limiter = current_app.extensions["mosaic"].rate_limiter
    for key, limit in _limits(email):
        decision = limiter.hit(key, limit, LOGIN_WINDOW_S, now=now)
        if not decision.allowed:
            body = render_template(
                "core/login.html",
                error=gettext("Too many failed sign-ins. Wait a few minutes and try again."),
                email=email,
                next=next_url,
            )
            return body, 429, {"Retry-After": str(decision.retry_after)}
    return None


def _release_attempt(email: str, now: float) -> None:
    """The password was right: the attempt counted by ``_reserve_attempt``
    (in the same window, hence ``now``) was no failure."""
    limiter = current_app.extensions["mosaic"].rate_limiter
    for key, _limit in _limits(email):
        limiter.release(key, LOGIN_WINDOW_S, now=now)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(next_url, code=303)
        return render_template("core/login.html", error=None, email="", next=next_url)

    email = (request.form.get("email") or "").strip().lower()
    password = request.form.get("password") or ""
    attempt_at = clock()
    limited = _reserve_attempt(email, next_url, attempt_at)
    if limited:
        return limited

    sess = db_session()
    user = find_user(sess, email) if email else None
    ok = passwords.verify_password(user.password_hash if user else None, password) and user is not None and user.active
    if not ok:
        seclog.record(sess, "login.failure", user_id=None, subject_user_id=user.id if user else None,
                      ip=request.remote_addr, detail={"email": email[:254]})
        sess.commit()
        return render_template("core/login.html", error=gettext(FAILED), email=email, next=next_url), 200

    sess.commit()  # end the read before counting: on SQLite the counter's transaction needs the write lock
    _release_attempt(email, attempt_at)

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    if totp.needs_second_factor(user):
        return _ask_second_factor(sess, user, next_url)
    return _finish_login(sess, user, next_url)


def _finish_login(sess, user, next_url: str, detail: dict | None = None):
    """Start the real session: the password (and code, when needed) passed."""
    totp.clear_pending()
    user.last_login_at = utcnow()
    seclog.record(sess, "login.success", user_id=user.id, ip=request.remote_addr, detail=detail)
    sess.commit()
    current_app.extensions["mosaic"].rate_limiter.reset(_limits(user.email)[0][0], LOGIN_WINDOW_S, now=clock())
    start_session(user)
    return redirect(next_url, code=303)


# --- second factor -----------------------------------------------------------------
# The password was right but the account needs a code: no session exists yet,
# only a short-lived pending sign-in (see host.security.totp). A user whose
# role requires two-factor but who has not enrolled enrols here first.


def _ask_second_factor(sess, user, next_url: str):
    if not user.totp_enabled and not totp.pending_enrolment(user):
        totp.start_enrolment(user)  # a secret to show on the set-up page
    sess.commit()
    totp.begin_pending(user, next_url)
    target = "auth.two_factor" if user.totp_enabled else "auth.two_factor_setup"
    return redirect(url_for(target), code=303)


def _code_refused(sess, user, result: "totp.CheckResult", template: str, **context):
    seclog.record(sess, "login.failure", subject_user_id=user.id, ip=request.remote_addr,
                  detail={"step": "totp", "reason": result.outcome.value})
    sess.commit()
    body = render_template(template, error=result.message, **context)
    if result.outcome is totp.Check.LIMITED:
        return body, 429, {"Retry-After": str(result.retry_after)}
    return body, 200


@bp.route("/login/two-factor", methods=["GET", "POST"])
@public
def two_factor():
    """The code page between a right password and a session."""
    sess = db_session()
    pending = totp.pending_user(sess)
    if pending is None:
        return redirect(url_for("auth.login"), code=303)
    user, next_url = pending
    if not user.totp_enabled:
        return redirect(url_for("auth.two_factor_setup"), code=303)
    if request.method == "GET":
        return render_template("core/totp_code.html", error=None)
    result = totp.check_code(sess, user, request.form.get("code"))
    if not result.ok:
        return _code_refused(sess, user, result, "core/totp_code.html")
    return _finish_login(sess, user, next_url, {"second_factor": "totp"})


@bp.route("/login/two-factor/setup", methods=["GET", "POST"])
@public
def two_factor_setup():
    """Enrolment a role demands before the first session: the secret is shown,
    and a right code turns two-factor on and signs the user in."""
    sess = db_session()
    pending = totp.pending_user(sess)
    if pending is None:
        return redirect(url_for("auth.login"), code=303)
    user, next_url = pending
    if user.totp_enabled:
        return redirect(url_for("auth.two_factor"), code=303)
    if not totp.pending_enrolment(user):
        return redirect(url_for("auth.login"), code=303)
    context = _enrolment_context(user)
    if request.method == "GET":
        return render_template("core/totp_setup.html", error=None, **context)
    result = totp.confirm_enrolment(sess, user, request.form.get("code"))
    if not result.ok:
        return _code_refused(sess, user, result, "core/totp_setup.html", **context)
    return _finish_login(sess, user, next_url, {"second_factor": "totp", "enrolled": True})


def _enrolment_context(user) -> dict:
    uri = totp.provisioning_uri(user.totp_secret, user.email)
    return {"secret": user.totp_secret, "uri": uri, "qr": totp.qr_svg_data_uri(uri),
            "action": url_for("auth.two_factor_setup"), "at_login": True}


@bp.post("/logout")
@login_required
def logout():
    """Sign out everywhere: the session version moves on, so a copy of this
    cookie (or the user's other devices) no longer signs anyone in."""
    from flask_login import current_user as signed_in

    sess = db_session()
    user = sess.get(User, signed_in.id)
    end_all_sessions(user)
    seclog.record(sess, "logout", user_id=user.id, ip=request.remote_addr)
    sess.commit()
    end_session()
    return redirect(url_for("auth.login"), code=303)
