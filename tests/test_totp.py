"""Two-factor sign-in with time-based codes, through the real pages.

Codes are computed with pyotp from the secret the app stored, exactly as an
authenticator app would. The app accepts the step before and after the
current one, so a test that needs a second fresh code uses the next step.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import select, update

from host.security import totp
from host.security.models import Role, SecurityEvent, User
from host.testing import TEST_PASSWORD, csrf_token, login, make_user

pytestmark = pytest.mark.with_plugins()

EMAIL = "ana@example.com"


# --- helpers -----------------------------------------------------------------------


def _user(app, email: str = EMAIL) -> User:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return session.scalar(select(User).where(User.email == email))


def _events(app, kind: str) -> list[SecurityEvent]:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return list(session.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind)))


def _fresh_code(app, email: str = EMAIL) -> str:
    """A code the app has not seen: the current step's, or the next one's
    when the current step was already used (still inside the drift)."""
    user = _user(app, email)
    step = totp.current_step()
    if user.totp_last_step is not None and user.totp_last_step >= step:
        step = user.totp_last_step + 1
    assert step <= totp.current_step() + totp.DRIFT_STEPS, "test used more codes than one step allows"
    return pyotp.TOTP(user.totp_secret).at(step * totp.STEP_S)


def _wrong_code(app, email: str = EMAIL) -> str:
    """A well-formed code that matches none of the accepted steps."""
    user = _user(app, email)
    step = totp.current_step()
    near = {pyotp.TOTP(user.totp_secret).at((step + d) * totp.STEP_S) for d in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in near)


def _post(client, path: str, data: dict, *, form_at: str):
    """POST like a browser: with the CSRF token of the form shown at ``form_at``."""
    return client.post(path, data={**data, "csrf_token": csrf_token(client, form_at)})


def _enrol(app, client, email: str = EMAIL) -> None:
    """Turn two-factor on from the profile page (a signed-in ``client``)."""
    assert _post(client, "/profile/two-factor/enrol", {}, form_at="/profile").status_code == 303
    response = _post(client, "/profile/two-factor/confirm", {"code": _fresh_code(app, email)}, form_at="/profile/two-factor")
    assert response.status_code == 303
    assert _user(app, email).totp_enabled


def _signed_in(client) -> bool:
    return client.get("/profile").status_code == 200


def _require_totp_for(app, role: str) -> None:
    with app.extensions["mosaic"].db.transaction() as session:
        session.execute(update(Role).where(Role.name == role).values(require_totp=True))


# --- codes ---------------------------------------------------------------------------


def test_codes_one_step_either_side_are_accepted_and_further_ones_refused():
    secret = totp.new_secret()
    now = 1_700_000_015.0
    step = totp.current_step(now)
    for offset in (-1, 0, 1):
        code = pyotp.TOTP(secret).at((step + offset) * 30)
        assert totp.matching_step(secret, code, now) == step + offset
    for offset in (-2, 2):
        code = pyotp.TOTP(secret).at((step + offset) * 30)
        if code not in {pyotp.TOTP(secret).at((step + d) * 30) for d in (-1, 0, 1)}:
            assert totp.matching_step(secret, code, now) is None
    spaced = pyotp.TOTP(secret).at(now)
    assert totp.matching_step(secret, f"{spaced[:3]} {spaced[3:]}", now) == step
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None


def test_secret_has_160_bits_and_the_uri_names_issuer_and_account():
    secret = totp.new_secret()
    assert len(secret) == 32  # base32: 5 bits a character
    uri = urlsplit(totp.provisioning_uri(secret, EMAIL))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    params = parse_qs(uri.query)
    assert params["secret"] == [secret] and params["issuer"] == ["Mosaic CRM"]
    assert EMAIL in uri.path.replace("%40", "@")


# --- enrolment on the profile ----------------------------------------------------------


def test_enrolment_shows_the_secret_and_turns_on_only_after_a_right_code(app, signed_in):
    client = signed_in(EMAIL)
    assert _post(client, "/profile/two-factor/enrol", {}, form_at="/profile").status_code == 303
    user = _user(app)
    assert user.totp_secret and not user.totp_enabled

    page = client.get("/profile/two-factor").get_data(as_text=True)
    assert user.totp_secret in page
    assert "otpauth://totp/" in page and "issuer=Mosaic" in page
    assert re.search(r'<img src="data:image/svg\+xml[^"]*" alt="QR code', page), "QR code missing (is segno installed?)"
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "no inline script (the shell's script files are fine)"

    wrong = _post(client, "/profile/two-factor/confirm", {"code": _wrong_code(app)}, form_at="/profile/two-factor")
    assert wrong.status_code == 422
    assert 'id="code-error"' in wrong.get_data(as_text=True)
    assert not _user(app).totp_enabled

    right = _post(client, "/profile/two-factor/confirm", {"code": _fresh_code(app)}, form_at="/profile/two-factor")
    assert right.status_code == 303
    assert _user(app).totp_enabled
    assert [e.user_id for e in _events(app, "totp.enable")] == [user.id]
    # Once on, the secret is never shown again and cannot be swapped.
    assert user.totp_secret not in client.get("/profile").get_data(as_text=True)
    assert client.get("/profile/two-factor").status_code == 303
    _post(client, "/profile/two-factor/enrol", {}, form_at="/profile")
    assert _user(app).totp_secret == user.totp_secret


# --- signing in ---------------------------------------------------------------------


def test_sign_in_asks_for_a_code_and_refuses_wrong_and_replayed_ones(app, signed_in):
    _enrol(app, signed_in(EMAIL))

    client = app.test_client()
    response = client.post(
        "/login", data={"email": EMAIL, "password": TEST_PASSWORD, "next": "/profile", "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/login/two-factor"
    assert not _signed_in(client), "the password alone must not open a session"

    wrong = _post(client, "/login/two-factor", {"code": _wrong_code(app)}, form_at="/login/two-factor")
    assert wrong.status_code == 200 and "not right" in wrong.get_data(as_text=True)
    assert not _signed_in(client)

    code = _fresh_code(app)
    ok = _post(client, "/login/two-factor", {"code": code}, form_at="/login/two-factor")
    assert ok.status_code == 303 and ok.headers["Location"] == "/profile"
    assert _signed_in(client)
    assert any(e.detail.get("second_factor") == "totp" for e in _events(app, "login.success"))

    # The same code, seen over a shoulder, does not sign anybody in again.
    other = app.test_client()
    assert login(other, EMAIL).headers["Location"] == "/login/two-factor"
    replayed = _post(other, "/login/two-factor", {"code": code}, form_at="/login/two-factor")
    assert "already used" in replayed.get_data(as_text=True)
    assert not _signed_in(other)
    failures = [e.detail for e in _events(app, "login.failure")]
    assert {"step": "totp", "reason": "wrong"} in failures and {"step": "totp", "reason": "replayed"} in failures


def test_code_attempts_are_limited_per_user(app, signed_in):
    _enrol(app, signed_in(EMAIL))
    client = app.test_client()
    login(client, EMAIL)
    wrong = _wrong_code(app)
    for _ in range(totp.ATTEMPT_LIMIT):
        assert _post(client, "/login/two-factor", {"code": wrong}, form_at="/login/two-factor").status_code == 200
    # Limited now: even the right code waits, so guessing cannot outrun the limit.
    limited = _post(client, "/login/two-factor", {"code": _fresh_code(app)}, form_at="/login/two-factor")
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= totp.ATTEMPT_WINDOW_S
    assert not _signed_in(client)


def test_code_page_without_a_pending_sign_in_goes_back_to_login(app):
    client = app.test_client()
    response = client.get("/login/two-factor")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/login/two-factor/setup").headers["Location"] == "/login"


def test_pending_sign_in_expires_and_dies_with_a_password_change(app, signed_in):
    _enrol(app, signed_in(EMAIL))
    client = app.test_client()
    login(client, EMAIL)
    with client.session_transaction() as cookie:
        pending = cookie["mosaic_pending_login"]
        pending["at"] = int(time.time()) - totp.PENDING_TTL_S - 1
        cookie["mosaic_pending_login"] = pending
    response = client.post("/login/two-factor", data={"code": _fresh_code(app), "csrf_token": csrf_token(client)})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert not _signed_in(client)

    login(client, EMAIL)
    with app.extensions["mosaic"].db.transaction() as session:
        session.execute(update(User).where(User.email == EMAIL).values(session_version=User.session_version + 1))
    response = client.post("/login/two-factor", data={"code": _fresh_code(app), "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/login"
    assert not _signed_in(client)


# --- a role that requires two-factor ----------------------------------------------------


def test_role_requiring_two_factor_forces_enrolment_before_any_session(app):
    make_user(app, EMAIL, roles=("staff",))
    _require_totp_for(app, "staff")
    client = app.test_client()

    response = login(client, EMAIL)
    assert response.status_code == 303 and response.headers["Location"] == "/login/two-factor/setup"
    assert not _signed_in(client)
    # The code page cannot be used to skip enrolment.
    assert client.get("/login/two-factor").headers["Location"] == "/login/two-factor/setup"

    page = client.get("/login/two-factor/setup").get_data(as_text=True)
    secret = _user(app).totp_secret
    assert secret and secret in page and "requires a second step" in page

    wrong = _post(client, "/login/two-factor/setup", {"code": _wrong_code(app)}, form_at="/login/two-factor/setup")
    assert wrong.status_code == 200 and not _signed_in(client)
    assert not _user(app).totp_enabled

    ok = _post(client, "/login/two-factor/setup", {"code": _fresh_code(app)}, form_at="/login/two-factor/setup")
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    assert _signed_in(client)
    assert _user(app).totp_enabled and _user(app).totp_secret == secret


def test_a_required_second_factor_cannot_be_turned_off(app, signed_in):
    client = signed_in(EMAIL)
    _enrol(app, client)
    _require_totp_for(app, "staff")
    response = _post(
        client, "/profile/two-factor/disable", {"password": TEST_PASSWORD, "code": _fresh_code(app)}, form_at="/profile"
    )
    assert response.status_code == 409
    assert "it cannot be turned off" in response.get_data(as_text=True)
    assert _user(app).totp_enabled


# --- turning it off ------------------------------------------------------------------


def test_turning_off_needs_the_password_and_a_current_code(app, signed_in):
    client = signed_in(EMAIL)
    _enrol(app, client)

    no_password = _post(client, "/profile/two-factor/disable", {"password": "not my password", "code": _fresh_code(app)},
                        form_at="/profile")
    assert no_password.status_code == 422
    assert re.search(r'id="totp_disable_password-error"[^>]*>That is not your current password', no_password.get_data(as_text=True))
    no_code = _post(client, "/profile/two-factor/disable", {"password": TEST_PASSWORD, "code": _wrong_code(app)},
                    form_at="/profile")
    assert no_code.status_code == 422 and 'id="totp_disable_code-error"' in no_code.get_data(as_text=True)
    assert _user(app).totp_enabled

    ok = _post(client, "/profile/two-factor/disable", {"password": TEST_PASSWORD, "code": _fresh_code(app)}, form_at="/profile")
    assert ok.status_code == 303
    user = _user(app)
    assert not user.totp_enabled and user.totp_secret is None
    assert [e.user_id for e in _events(app, "totp.disable")] == [user.id]
    # Signing in needs the password alone again.
    assert login(app.test_client(), EMAIL).headers["Location"] == "/"


def test_secret_and_codes_never_reach_the_security_log(app, signed_in):
    _enrol(app, signed_in(EMAIL))
    secret = _user(app).totp_secret
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        for event in session.scalars(select(SecurityEvent)):
            assert secret not in repr(event.detail)


def test_a_password_reset_does_not_skip_the_second_factor(app, signed_in):
    from host.security.views_reset import issue_link_token

    _enrol(app, signed_in(EMAIL))
    with app.extensions["mosaic"].db.transaction() as session:
        plain = issue_link_token(session, session.scalar(select(User).where(User.email == EMAIL)))
    client = app.test_client()
    new = "a new and rather long passphrase"
    response = client.post(f"/password-reset/{plain}", data={
        "password": new, "password_confirm": new, "csrf_token": csrf_token(client, "/password-reset")})
    assert response.status_code == 303
    assert _user(app).totp_enabled
    assert login(client, EMAIL, new).headers["Location"] == "/login/two-factor"
    assert not _signed_in(client)
