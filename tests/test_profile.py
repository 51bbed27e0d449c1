"""The profile page: details, password change, personal API tokens.

Everything goes through the real forms with their CSRF tokens; tokens made on
the page are used against a real API endpoint of the sales plugin.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from host.security import passwords
from host.security.models import ApiToken, SecurityEvent, User
from host.testing import TEST_PASSWORD, bearer, csrf_token, login

pytestmark = pytest.mark.with_plugins("sales")

EMAIL = "ana@example.com"
NEW_PASSWORD = "a new and rather long passphrase"
TOKEN = re.compile(r'id="new_token" type="text" readonly value="(mos_[^"]+)"')


def _post(client, path: str, data: dict):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/profile")})


def _user(app, email: str = EMAIL) -> User:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return session.scalar(select(User).where(User.email == email))


def _events(app, kind: str) -> list[SecurityEvent]:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return list(session.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind)))


def _field_error(html: str, field: str) -> str | None:
    found = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return found.group(1) if found else None


def _create_token(client, name: str, read_only: bool = False) -> str:
    data = {"name": name, **({"read_only": "1"} if read_only else {})}
    response = _post(client, "/profile/tokens", data)
    assert response.status_code == 201
    return TOKEN.search(response.get_data(as_text=True)).group(1)


# --- access ------------------------------------------------------------------------


def test_the_profile_needs_a_signed_in_user(client):
    response = client.get("/profile")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=%2Fprofile")


# --- details -------------------------------------------------------------------------


def test_details_are_saved_and_shown(app, signed_in):
    client = signed_in(EMAIL)
    response = _post(client, "/profile/details", {"display_name": "Ана Петрова", "language": "bg", "time_zone": "Europe/Sofia"})
    assert response.status_code == 303 and response.headers["Location"] == "/profile"
    user = _user(app)
    assert (user.display_name, user.language, user.time_zone) == ("Ана Петрова", "bg", "Europe/Sofia")
    page = client.get("/profile").get_data(as_text=True)
    assert 'value="Ана Петрова"' in page
    assert '<option value="bg" lang="bg" selected>' in page
    assert "<option selected>Europe/Sofia</option>" in page
    assert "Данните ви са записани." in page, "the page now speaks the language just chosen"

    # Empty language and zone mean "the site's default".
    _post(client, "/profile/details", {"display_name": "Ana", "language": "", "time_zone": ""})
    user = _user(app)
    assert (user.language, user.time_zone) == (None, None)


def test_invalid_details_are_refused_next_to_each_field_and_the_input_kept(app, signed_in):
    client = signed_in(EMAIL)
    before = _user(app)
    response = _post(client, "/profile/details", {"display_name": "<b>Ana</b>", "language": "de", "time_zone": "Mars/Olympus"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert _field_error(html, "language") == "Choose one of the listed languages."
    assert _field_error(html, "time_zone").startswith("Choose a time zone from the list")
    assert _field_error(html, "display_name") is None
    assert 'value="&lt;b&gt;Ana&lt;/b&gt;"' in html  # kept, and escaped
    assert "<b>Ana</b>" not in html
    user = _user(app)
    assert (user.display_name, user.language, user.time_zone) == (before.display_name, None, None)

    empty = _post(client, "/profile/details", {"display_name": "  ", "language": "en", "time_zone": "UTC"})
    assert empty.status_code == 422
    assert _field_error(empty.get_data(as_text=True), "display_name") == "Enter the name colleagues should see."


# --- password ------------------------------------------------------------------------


def test_password_change_needs_the_current_password(app, signed_in):
    client = signed_in(EMAIL)
    response = _post(client, "/profile/password",
                     {"current_password": "not it at all", "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD})
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), "current_password") == "That is not your current password."
    assert passwords.verify_password(_user(app).password_hash, TEST_PASSWORD)


@pytest.mark.parametrize(
    ("new", "message"),
    [("short", "Use at least 8 characters."), ("password", "This password is too common; choose another.")],
)
def test_password_change_refuses_a_weak_password_next_to_the_field(app, signed_in, new, message):
    client = signed_in(EMAIL)
    response = _post(client, "/profile/password",
                     {"current_password": TEST_PASSWORD, "new_password": new, "new_password_confirm": new})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert _field_error(html, "new_password") == message
    assert new not in re.findall(r'value="([^"]*)"', html), "a password must never be echoed back"
    assert passwords.verify_password(_user(app).password_hash, TEST_PASSWORD)


def test_password_change_ends_other_sessions_and_keeps_this_one(app, signed_in):
    client = signed_in(EMAIL)
    elsewhere = app.test_client()
    assert login(elsewhere, EMAIL).status_code == 303

    response = _post(client, "/profile/password",
                     {"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD})
    assert response.status_code == 303
    assert "Other sessions were signed out." in client.get("/profile").get_data(as_text=True)
    gone = elsewhere.get("/profile")
    assert gone.status_code == 302 and gone.headers["Location"].startswith("/login")

    user = _user(app)
    assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
    assert [e.user_id for e in _events(app, "password.change")] == [user.id]
    assert login(app.test_client(), EMAIL, NEW_PASSWORD).status_code == 303


def test_wrong_current_passwords_are_limited(app, signed_in, monkeypatch):
    import time
    import types

    from host.security import views_profile

    # The limiter counts in fixed windows; every guess is counted at one
    # instant in the middle of the current window, so the run cannot
    # straddle a window's end (which restarts the count: seen once in CI).
    window = views_profile.PASSWORD_CHECK_WINDOW_S
    instant = (time.time() // window) * window + window / 2
    monkeypatch.setattr(views_profile, "time", types.SimpleNamespace(time=lambda: instant))
    client = signed_in(EMAIL)
    wrong = {"current_password": "guess", "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    for _ in range(views_profile.PASSWORD_CHECK_LIMIT):
        assert _post(client, "/profile/password", wrong).status_code == 422
    right = {**wrong, "current_password": TEST_PASSWORD}
    limited = _post(client, "/profile/password", right)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert passwords.verify_password(_user(app).password_hash, TEST_PASSWORD)


# --- API tokens ----------------------------------------------------------------------


def test_a_token_is_shown_once_works_and_stops_working_when_revoked(app, signed_in):
    client = signed_in(EMAIL)
    plain = _create_token(client, "ERP sync")
    assert client.get("/api/v1/sales/deals", headers=bearer(plain)).status_code == 200

    page = client.get("/profile").get_data(as_text=True)
    assert plain not in page, "a token is shown only in the answer that created it"
    assert plain[:12] in page and "ERP sync" in page and "read and write" in page
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        (token,) = session.scalars(select(ApiToken))
    assert token.user_id == _user(app).id and token.last_used_at is not None
    assert [e.detail["token_id"] for e in _events(app, "token.create")] == [token.id]

    response = _post(client, f"/profile/tokens/{token.id}/revoke", {})
    assert response.status_code == 303
    refused = client.get("/api/v1/sales/deals", headers=bearer(plain))
    assert refused.status_code == 401 and refused.get_json()["code"] == 401
    assert re.search(r"revoked \d{4}-\d\d-\d\d", client.get("/profile").get_data(as_text=True))
    assert [e.detail["token_id"] for e in _events(app, "token.revoke")] == [token.id]


def test_the_read_only_box_makes_a_read_only_token(app, signed_in):
    # That such a token cannot write is the gate's business (tested with it);
    # here: the box on the form really reaches the token.
    client = signed_in(EMAIL)
    plain = _create_token(client, "Dashboard", read_only=True)
    assert "<td>read-only</td>" in client.get("/profile").get_data(as_text=True)
    assert client.get("/api/v1/sales/deals", headers=bearer(plain)).status_code == 200
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        (token,) = session.scalars(select(ApiToken))
    assert token.read_only and token.name == "Dashboard"


def test_a_token_needs_a_name(app, signed_in):
    client = signed_in(EMAIL)
    response = _post(client, "/profile/tokens", {"name": " ", "read_only": "1"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert _field_error(html, "token_name").startswith("Name the token")
    assert 'id="token_read_only" name="read_only" type="checkbox" value="1" checked' in html
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_another_users_token_cannot_be_revoked(app, signed_in):
    owner = signed_in("bo@example.com")
    plain = _create_token(owner, "Bo's script")
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        (token,) = session.scalars(select(ApiToken))

    intruder = signed_in(EMAIL)
    assert _post(intruder, f"/profile/tokens/{token.id}/revoke", {}).status_code == 404
    assert _post(intruder, "/profile/tokens/999999/revoke", {}).status_code == 404
    assert "Bo's script" not in intruder.get("/profile").get_data(as_text=True)
    assert owner.get("/api/v1/sales/deals", headers=bearer(plain)).status_code == 200
    assert _events(app, "token.revoke") == []
