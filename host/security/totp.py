"""Time-based one-time codes (RFC 6238) for two-factor sign-in.

Codes have 6 digits and change every 30 s; the step before and after the
current one are accepted too, because phone clocks drift and people type
slowly. A code is good once: the step it belongs to is kept in
``user.totp_last_step`` and an equal or older step is refused, so a code read
over someone's shoulder or out of a proxy log cannot be used again. Attempts
are limited per user through the shared rate limiter, so six digits cannot be
guessed by trying them all.

Two-factor sign-in is a two-step login: after the password is right, the
login view keeps a *pending sign-in* in the (signed) session cookie and asks
for a code; only then does a real session start. The pending sign-in carries
the user's session version and expires after a few minutes, so it dies with a
password change or deactivation like any session does.

The secret is never logged, and is shown only while the user enrols.
"""

from __future__ import annotations

import enum
import hmac
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from flask import current_app, session
from sqlalchemy.orm import Session

from .models import User

STEP_S = 30
DIGITS = 6
#: Steps accepted either side of the current one.
DRIFT_STEPS = 1
ISSUER = "Mosaic CRM"

ATTEMPT_LIMIT = 5
ATTEMPT_WINDOW_S = 5 * 60

#: How long the code page waits after the password was right.
PENDING_TTL_S = 5 * 60
_PENDING_KEY = "mosaic_pending_login"


# --- codes ---------------------------------------------------------------------


def new_secret() -> str:
    """160 random bits in base32, what authenticator apps expect (RFC 4226
    recommends 160)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://`` URI an authenticator app reads (from a QR code or a link)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg_data_uri(uri: str) -> str | None:
    """The URI as a QR code (an SVG ``data:`` URI, which the CSP allows for
    images), or None when ``segno`` is not installed: the secret is shown as
    text as well, so enrolment works either way."""
    try:
        import segno
    except ImportError:
        return None
    return segno.make_qr(uri, error="m").svg_data_uri(scale=4, dark="#1d2330")


def code_for(secret: str, step: int) -> str:
    """The code of one time step (tests and the matching below use it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).generate_otp(step)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_S)


def normalise_code(code: str | None) -> str:
    """Apps show codes as "123 456"; people paste them with spaces or dashes."""
    return "".join(ch for ch in (code or "") if ch not in " -\t")


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to within the accepted drift, or None.
    Compared in constant time so the response time tells nothing."""
    code = normalise_code(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    step = current_step(now)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_for(secret, candidate), code):
            found = candidate
    return found


class Check(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAYED = "replayed"
    LIMITED = "limited"


MESSAGES = {
    Check.WRONG: "That code is not right. Enter the current code from your authenticator app.",
    Check.REPLAYED: "That code was already used. Wait for the next code and enter it.",
    Check.LIMITED: "Too many wrong codes. Wait a few minutes and try again.",
}


@dataclass(frozen=True)
class CheckResult:
    outcome: Check
    #: Seconds to wait when limited (for ``Retry-After``).
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Check.OK

    @property
    def message(self) -> str:
        return MESSAGES.get(self.outcome, "")


def _limit_key(user: User) -> str:
    return f"totp:user:{user.id}"


def settle(session: Session) -> None:
    """End ``session``'s transaction before a rate limiter is touched.

    The limiter counts in a transaction of its own, committed even when the
    request fails; on SQLite that transaction waits for the write lock a
    request's writing session holds until it gives up ("database is locked").
    Callers have nothing unsaved at this point; refusing otherwise keeps an
    early commit from saving half of a change."""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("commit or roll back pending changes before counting an attempt")
    session.commit()


def check_code(session: Session, user: User, code: str | None, *, now: float | None = None) -> CheckResult:
    """Check ``code`` against the user's secret (enrolled or being enrolled).

    On success the step is remembered in ``user.totp_last_step`` (the caller
    commits); a wrong or replayed code counts against the per-user limit, and
    once the limit is reached even a right code is refused until the window
    ends, so guessing cannot outrun the limit. ``session`` (holding ``user``)
    is settled first, see ``settle``.
    """
    settle(session)
    limiter = current_app.extensions["mosaic"].rate_limiter
    key = _limit_key(user)
    # Counted before the check and given back when right, so simultaneous
    # guesses cannot each pass a check made before any of them was counted.
    counted_at = time.time() if now is None else now
    decision = limiter.hit(key, ATTEMPT_LIMIT, ATTEMPT_WINDOW_S, now=counted_at)
    if not decision.allowed:
        return CheckResult(Check.LIMITED, decision.retry_after)
    step = matching_step(user.totp_secret or "", code or "", now) if user.totp_secret else None
    outcome = Check.OK
    if step is None:
        outcome = Check.WRONG
    elif user.totp_last_step is not None and step <= user.totp_last_step:
        outcome = Check.REPLAYED
    if outcome is not Check.OK:
        return CheckResult(outcome)
    limiter.release(key, ATTEMPT_WINDOW_S, now=counted_at)
    user.totp_last_step = step
    return CheckResult(Check.OK)


# --- enrolment -------------------------------------------------------------------


def required_for(user: User) -> bool:
    """True when one of the user's roles makes two-factor sign-in mandatory."""
    return any(role.require_totp for role in user.roles)


def needs_second_factor(user: User) -> bool:
    """A password alone does not sign this user in."""
    return bool(user.totp_enabled) or required_for(user)


def start_enrolment(user: User) -> str:
    """Give the user a new secret that is not active until confirmed with a
    code (``confirm_enrolment``); returns it. Refused while two-factor is on,
    so a stolen session cannot silently swap the victim's secret."""
    if user.totp_enabled:
        raise ValueError("two-factor sign-in is already on; turn it off first")
    user.totp_secret = new_secret()
    user.totp_last_step = None
    return user.totp_secret


def pending_enrolment(user: User) -> bool:
    return bool(user.totp_secret) and not user.totp_enabled


def confirm_enrolment(session: Session, user: User, code: str | None) -> CheckResult:
    """Turn two-factor on once the user proves their app has the secret."""
    from . import seclog

    result = check_code(session, user, code)
    if result.ok:
        user.totp_enabled = True
        seclog.record(session, "totp.enable", user_id=user.id)
    return result


def disable(session: Session, user: User) -> None:
    """Forget the secret; the caller has checked password and code."""
    from . import seclog

    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    seclog.record(session, "totp.disable", user_id=user.id)


# --- the pending sign-in between password and code ------------------------------


def begin_pending(user: User, next_url: str, *, now: float | None = None) -> None:
    """Remember that ``user`` passed the password step (no session yet)."""
    session.pop(_PENDING_KEY, None)
    session[_PENDING_KEY] = {
        "uid": user.id,
        "sv": user.session_version,
        "at": int(time.time() if now is None else now),
        "next": next_url,
    }


def pending_user(db: Session, *, now: float | None = None) -> tuple[User, str] | None:
    """The user and ``next`` URL of a live pending sign-in, or None when there
    is none, it expired, or the account changed (deactivated, password
    changed: the session version moved on)."""
    data: Any = session.get(_PENDING_KEY)
    if not isinstance(data, dict):
        return None
    now = time.time() if now is None else now
    try:
        user_id, version, started = int(data["uid"]), int(data["sv"]), int(data["at"])
    except (KeyError, TypeError, ValueError):
        return None
    if now - started > PENDING_TTL_S:
        clear_pending()
        return None
    user = db.get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        clear_pending()
        return None
    return user, str(data.get("next") or "/")


def clear_pending() -> None:
    session.pop(_PENDING_KEY, None)
