"""Password reset by e-mail link, through the real pages and a real SMTP server.

The mail goes to aiosmtpd on 127.0.0.1 (as in test_mail.py), so the link is
read from what a mailbox would receive; the log-only fallback (no SMTP
configured) is checked with caplog. Time is moved by setting ``expires_at``
in the database.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
import socket
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from host.db import utcnow
from host.security import passwords, views_reset
from host.security.models import PasswordReset, SecurityEvent, User
from host.security.tokens import hash_token
from host.testing import TEST_PASSWORD, csrf_token, login, make_user

EMAIL = "ana@example.com"
NEW_PASSWORD = "a new and rather long passphrase"
BASE_URL = "https://crm.example.com"
LINK = re.compile(r"(\S+/password-reset/[A-Za-z0-9_-]{43})")


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content.replace(b"\r\n", b"\n")
        self.messages.append(email.message_from_bytes(content, policy=email.policy.default))
        return "250 OK"

    def links(self) -> list[str]:
        return [LINK.search(m.get_body(("plain",)).get_content()).group(1) for m in self.messages]


@pytest.fixture
def mailbox():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.url = f"smtp://127.0.0.1:{port}"
    yield box
    controller.stop()


@pytest.fixture
def app(make_app, mailbox):
    return make_app(plugins=[], smtp_url=mailbox.url, base_url=BASE_URL)


# --- helpers -----------------------------------------------------------------------


def _request_link(client, address: str):
    return client.post("/password-reset", data={"email": address, "csrf_token": csrf_token(client, "/password-reset")})


def _path(link: str) -> str:
    return urlsplit(link).path


def _set_password(client, link: str, password: str, confirm: str | None = None):
    path = _path(link)
    return client.post(
        path, data={"password": password, "password_confirm": password if confirm is None else confirm,
                    "csrf_token": csrf_token(client, "/password-reset")},
    )


def _resets(app) -> list[PasswordReset]:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return list(session.scalars(select(PasswordReset).order_by(PasswordReset.id)))


def _event_kinds(app) -> list[str]:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return list(session.scalars(select(SecurityEvent.kind).order_by(SecurityEvent.id)))


def _password_is(app, password: str, address: str = EMAIL) -> bool:
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        stored = session.scalar(select(User.password_hash).where(User.email == address))
    return passwords.verify_password(stored, password)


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


# --- the whole flow ------------------------------------------------------------------


def test_reset_link_sets_a_new_password_once_and_ends_every_session(app, mailbox, signed_in):
    elsewhere = signed_in(EMAIL)  # the account is signed in on another device
    client = app.test_client()

    response = _request_link(client, EMAIL)
    assert response.status_code == 200 and views_reset.SENT in response.get_data(as_text=True)
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == EMAIL and "password" in message["Subject"].lower()
    link = mailbox.links()[0]
    assert link.startswith(BASE_URL + "/password-reset/"), "the link must use the configured base URL"

    assert client.get(_path(link)).status_code == 200
    weak = _set_password(client, link, "password")
    assert weak.status_code == 422
    assert re.search(r'id="password-error"[^>]*>This password is too common', weak.get_data(as_text=True))
    mismatch = _set_password(client, link, NEW_PASSWORD, confirm=NEW_PASSWORD + "!")
    assert mismatch.status_code == 422 and 'id="password_confirm-error"' in mismatch.get_data(as_text=True)

    done = _set_password(client, link, NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["Location"] == "/password-reset/done"
    assert client.get("/password-reset/done").status_code == 200

    # Every session ended, the old password is gone, the new one works.
    gone = elsewhere.get("/")
    assert gone.status_code == 302 and gone.headers["Location"].startswith("/login")
    assert not _password_is(app, TEST_PASSWORD)
    assert login(app.test_client(), EMAIL, NEW_PASSWORD).status_code == 303

    # Single use: the link is dead now, for reading and for writing.
    assert client.get(_path(link)).status_code == 404
    assert _set_password(client, link, "yet another long passphrase").status_code == 404
    assert login(app.test_client(), EMAIL, NEW_PASSWORD).status_code == 303
    kinds = _event_kinds(app)
    assert "password.reset_requested" in kinds and "password.change" in kinds


def test_an_expired_link_is_refused(app, mailbox):
    make_user(app, EMAIL)
    client = app.test_client()
    _request_link(client, EMAIL)
    link = mailbox.links()[0]
    (reset,) = _resets(app)
    assert dt.timedelta(minutes=55) < reset.expires_at - reset.created_at <= dt.timedelta(hours=1)

    with app.extensions["mosaic"].db.transaction() as session:
        session.execute(update(PasswordReset).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert client.get(_path(link)).status_code == 404
    assert _set_password(client, link, NEW_PASSWORD).status_code == 404
    assert _password_is(app, TEST_PASSWORD)  # unchanged


def test_using_one_link_voids_the_other_outstanding_links(app, mailbox):
    make_user(app, EMAIL)
    client = app.test_client()
    _request_link(client, EMAIL)
    _request_link(client, EMAIL)
    first, second = mailbox.links()
    assert first != second
    assert _set_password(client, second, NEW_PASSWORD).status_code == 303
    assert client.get(_path(first)).status_code == 404
    assert all(reset.used_at is not None for reset in _resets(app))


def test_only_a_hash_of_the_token_is_stored(app, mailbox):
    make_user(app, EMAIL)
    _request_link(app.test_client(), EMAIL)
    plain = _path(mailbox.links()[0]).rsplit("/", 1)[1]
    assert len(plain) == 43  # 256 bits, URL-safe base64
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        rows = session.execute(select(PasswordReset.__table__)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hash_token(plain)
    assert plain not in repr([dict(row) for row in rows])


# --- no enumeration, rate limits ---------------------------------------------------------


def test_unknown_and_inactive_addresses_get_the_same_answer_and_no_mail(app, mailbox):
    make_user(app, EMAIL)
    make_user(app, "gone@example.com")
    with app.extensions["mosaic"].db.transaction() as session:
        session.execute(update(User).where(User.email == "gone@example.com").values(active=False))
    client = app.test_client()

    known = _request_link(client, EMAIL)
    unknown = _request_link(client, "nobody@example.com")
    inactive = _request_link(client, "gone@example.com")
    assert known.status_code == unknown.status_code == inactive.status_code == 200
    answer = _without_csrf(known.get_data(as_text=True))
    assert answer == _without_csrf(unknown.get_data(as_text=True)) == _without_csrf(inactive.get_data(as_text=True))
    assert [m["To"] for m in mailbox.messages] == [EMAIL]
    assert len(_resets(app)) == 1


def test_requests_are_limited_per_address_whether_or_not_it_has_an_account(app, mailbox):
    make_user(app, EMAIL)
    client = app.test_client()
    for address in (EMAIL, "nobody@example.com"):
        for _ in range(views_reset.PER_EMAIL_LIMIT):
            assert _request_link(client, address).status_code == 200
        limited = _request_link(client, address)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["Retry-After"]) <= views_reset.LIMIT_WINDOW_S
        assert views_reset.TOO_MANY in limited.get_data(as_text=True)
    assert len(mailbox.messages) == views_reset.PER_EMAIL_LIMIT
    # Another address is not held back by these.
    make_user(app, "bo@example.com")
    assert _request_link(client, "bo@example.com").status_code == 200
    assert mailbox.messages[-1]["To"] == "bo@example.com"


def test_requests_are_limited_per_client_address(app, mailbox):
    client = app.test_client()
    for number in range(views_reset.PER_CLIENT_LIMIT):
        assert _request_link(client, f"walker{number}@example.com").status_code == 200
    assert _request_link(client, "walker-last@example.com").status_code == 429


# --- without SMTP ------------------------------------------------------------------


def test_without_smtp_the_link_is_logged_and_built_from_the_request_host(make_app, caplog):
    app = make_app(plugins=[], mail_log_body=True)
    make_user(app, EMAIL)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="mosaic.mail"):
        response = _request_link(client, EMAIL)
    assert response.status_code == 200
    (link,) = [LINK.search(r.getMessage()).group(1) for r in caplog.records if LINK.search(r.getMessage())]
    assert link.startswith("http://localhost/password-reset/")
    assert _set_password(client, link, NEW_PASSWORD).status_code == 303
    assert login(app.test_client(), EMAIL, NEW_PASSWORD).status_code == 303


def test_a_reset_request_without_the_csrf_token_is_refused(app, mailbox):
    make_user(app, EMAIL)
    response = app.test_client().post("/password-reset", data={"email": EMAIL})
    assert response.status_code == 400
    assert mailbox.messages == []
