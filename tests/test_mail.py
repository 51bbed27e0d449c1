"""host.mail against a real SMTP server (aiosmtpd on 127.0.0.1).

No SMTP mocks: what matters is what a server actually receives, and whether
TLS and AUTH really happen on the wire.
"""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from host.mail import MailError, parse_smtp_url, send_mail

SENDER = "crm@example.com"
USER = "mosaic@example.com"
# Characters that must be URL-encoded, to prove the URL is decoded.
PASSWORD = "s3cr:t/p@ss%word"
PASSWORD_IN_URL = "s3cr%3At%2Fp%40ss%25word"
USER_IN_URL = "mosaic%40example.com"


@dataclass
class Received:
    """What the server got: one entry per accepted message."""

    envelope: object
    message: email.message.EmailMessage
    encrypted: bool


@dataclass
class Recorder:
    """aiosmtpd handler that keeps every message and can refuse recipients."""

    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # Back from wire line endings, so tests compare text as it was sent.
        content = envelope.content.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope, message, encrypted))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    # handled=False: let aiosmtpd answer 535 itself.
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """Start aiosmtpd with the given options; returns (recorder, port)."""
    controllers = []

    def start(**options):
        recorder = Recorder()
        port = _free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert path, key path)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def client_tls(certificate):
    """A client context that trusts only the test certificate, with hostname
    checks on, as in production."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def mail_app(make_app):
    def build(smtp_url=None, **config):
        return make_app(plugins=[], migrate=False, smtp_url=smtp_url, mail_from=SENDER, **config)

    return build


def test_plain_delivery_reaches_every_recipient(smtp_server, mail_app):
    recorder, port = smtp_server()
    app = mail_app(f"smtp://127.0.0.1:{port}")

    message_id = send_mail(
        ["anna@example.com", "Борис <boris@example.com>"], "Счёт №42", "Здравствуйте,\nваш счёт готов.", app=app
    )

    [got] = recorder.received
    assert got.envelope.mail_from == SENDER
    assert got.envelope.rcpt_tos == ["anna@example.com", "boris@example.com"]
    assert got.message["From"] == SENDER
    assert got.message["Subject"] == "Счёт №42"
    assert got.message["Message-ID"] == message_id
    assert got.message["Message-ID"].endswith("@example.com>")
    assert got.message.get_content_type() == "text/plain"
    assert got.message.get_content() == "Здравствуйте,\nваш счёт готов.\n"
    assert not got.encrypted


def test_html_alternative_and_reply_to(smtp_server, mail_app):
    recorder, port = smtp_server()
    app = mail_app(f"smtp://127.0.0.1:{port}")

    send_mail("anna@example.com", "Hi", "plain text", html="<p>rich <b>text</b></p>", reply_to="sales@example.com", app=app)

    message = recorder.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content() == "plain text\n"
    assert message.get_body(("html",)).get_content() == "<p>rich <b>text</b></p>\n"
    assert message["Reply-To"] == "sales@example.com"


def test_uses_the_current_app_when_none_is_given(smtp_server, mail_app):
    recorder, port = smtp_server()
    app = mail_app(f"smtp://127.0.0.1:{port}")

    with app.app_context():
        send_mail("anna@example.com", "Hi", "text")

    assert len(recorder.received) == 1


# Plain-text AUTH is what this test is about; aiosmtpd warns about it.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_with_url_encoded_credentials(smtp_server, mail_app, caplog):
    recorder, port = smtp_server(authenticator=_authenticator, auth_require_tls=False, auth_required=True)
    app = mail_app(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}")

    with caplog.at_level(logging.DEBUG):
        send_mail("anna@example.com", "Hi", "text", app=app)

    assert len(recorder.received) == 1
    # The send is logged naming the server, with the password masked.
    assert f"smtp://{USER}:***@127.0.0.1:{port}" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD_IN_URL not in caplog.text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_is_a_mail_error_without_the_password(smtp_server, mail_app, caplog):
    recorder, port = smtp_server(authenticator=_authenticator, auth_require_tls=False, auth_required=True)
    app = mail_app(f"smtp://{USER_IN_URL}:wrong%3Dsecret@127.0.0.1:{port}")

    with caplog.at_level(logging.DEBUG), pytest.raises(MailError) as info:
        send_mail("anna@example.com", "Hi", "text", app=app)

    assert "SMTPAuthenticationError" in str(info.value)
    assert f"{USER}:***@127.0.0.1" in str(info.value)
    assert "wrong=secret" not in str(info.value) and "wrong%3Dsecret" not in str(info.value)
    assert "wrong=secret" not in caplog.text
    # Nothing chained: a traceback would print the original, unscrubbed error.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert recorder.received == []


def test_starttls_encrypts_before_login(smtp_server, mail_app, server_tls, client_tls):
    # The server refuses AUTH and mail until TLS is up, so a delivery proves
    # the upgrade happened first.
    recorder, port = smtp_server(
        tls_context=server_tls, require_starttls=True, authenticator=_authenticator, auth_required=True
    )
    app = mail_app(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}?starttls=true")

    send_mail("anna@example.com", "Hi", "text", app=app, ssl_context=client_tls)

    [got] = recorder.received
    assert got.encrypted


def test_starttls_checks_the_certificate(smtp_server, mail_app, server_tls):
    recorder, port = smtp_server(tls_context=server_tls, require_starttls=True)
    app = mail_app(f"smtp://127.0.0.1:{port}?starttls=1")

    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
        send_mail("anna@example.com", "Hi", "text", app=app)  # system CAs do not know it

    assert recorder.received == []


def test_starttls_not_offered_is_an_error_not_a_downgrade(smtp_server, mail_app, client_tls):
    recorder, port = smtp_server()  # no tls_context: no STARTTLS offered
    app = mail_app(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}?starttls=1")

    with pytest.raises(MailError, match="STARTTLS") as info:
        send_mail("anna@example.com", "Hi", "text", app=app, ssl_context=client_tls)

    assert PASSWORD not in str(info.value)
    assert recorder.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_implicit_tls(smtp_server, mail_app, server_tls, client_tls):
    # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from the start.
    recorder, port = smtp_server(
        ssl_context=server_tls, authenticator=_authenticator, auth_required=True, auth_require_tls=False
    )
    app = mail_app(f"smtps://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}")

    send_mail("anna@example.com", "Hi", "text", app=app, ssl_context=client_tls)

    [got] = recorder.received
    assert got.encrypted


def test_without_smtp_url_the_body_stays_out_of_the_log_by_default(mail_app, caplog):
    app = mail_app(None)

    with caplog.at_level(logging.INFO, logger="mosaic.mail"):
        send_mail("anna@example.com", "Reset", "https://crm.example.com/password-reset/SECRET", app=app)

    [record] = [r for r in caplog.records if r.name == "mosaic.mail"]
    assert "Subject: Reset" in record.getMessage()
    assert "SECRET" not in caplog.text
    assert "MOSAIC_MAIL_LOG_BODY" in record.getMessage()


def test_without_smtp_url_the_message_goes_to_the_log(mail_app, caplog):
    app = mail_app(None, mail_log_body=True)

    with caplog.at_level(logging.INFO, logger="mosaic.mail"):
        message_id = send_mail(["anna@example.com", "boris@example.com"], "Welcome", "Your account is ready.", app=app)

    [record] = [r for r in caplog.records if r.name == "mosaic.mail"]
    text = record.getMessage()
    assert "anna@example.com, boris@example.com" in text
    assert "Subject: Welcome" in text
    assert "Your account is ready." in text
    assert message_id in text


@pytest.mark.parametrize(
    "kwargs, field_name",
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"to": "anna@example.com\nBcc: victim@example.com"}, "to"),
        ({"to": ["anna@example.com", "x@example.com\r"]}, "to"),
        ({"reply_to": "a@example.com\nBcc: victim@example.com"}, "reply_to"),
    ],
)
def test_header_injection_is_refused(smtp_server, mail_app, kwargs, field_name):
    recorder, port = smtp_server()
    app = mail_app(f"smtp://127.0.0.1:{port}")
    arguments = {"to": "anna@example.com", "subject": "Hi", **kwargs}

    with pytest.raises(ValueError, match=f"^{field_name}: line breaks"):
        send_mail(arguments.pop("to"), arguments.pop("subject"), "body", app=app, **arguments)

    assert recorder.received == []


def test_unreachable_server_is_a_mail_error_without_the_password(mail_app, caplog):
    port = _free_port()  # nothing listens there
    app = mail_app(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}")

    with caplog.at_level(logging.DEBUG), pytest.raises(MailError) as info:
        send_mail("anna@example.com", "Hi", "text", app=app)

    assert f"smtp://{USER}:***@127.0.0.1:{port}" in str(info.value)
    assert "ConnectionRefusedError" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD_IN_URL not in str(info.value)
    assert PASSWORD not in caplog.text and PASSWORD_IN_URL not in caplog.text


def test_a_refused_recipient_is_logged_and_the_others_still_get_it(smtp_server, mail_app, caplog):
    recorder, port = smtp_server()
    recorder.refuse.add("gone@example.com")
    app = mail_app(f"smtp://127.0.0.1:{port}")

    with caplog.at_level(logging.WARNING, logger="mosaic.mail"):
        send_mail(["anna@example.com", "gone@example.com"], "Hi", "text", app=app)

    assert recorder.received[0].envelope.rcpt_tos == ["anna@example.com"]
    assert "refused for gone@example.com" in caplog.text


def test_every_recipient_refused_is_a_mail_error(smtp_server, mail_app):
    recorder, port = smtp_server()
    recorder.refuse.add("gone@example.com")
    app = mail_app(f"smtp://127.0.0.1:{port}")

    with pytest.raises(MailError, match="SMTPRecipientsRefused"):
        send_mail("gone@example.com", "Hi", "text", app=app)


@pytest.mark.parametrize(
    "url, scheme, port, starttls",
    [
        ("smtp://mail.example.com", "smtp", 25, False),
        ("smtp://mail.example.com?starttls=1", "smtp", 587, True),
        ("smtp://mail.example.com:2525?starttls=TRUE", "smtp", 2525, True),
        ("smtps://mail.example.com", "smtps", 465, False),
    ],
)
def test_smtp_url_default_ports(url, scheme, port, starttls):
    server = parse_smtp_url(url)
    assert (server.scheme, server.host, server.port, server.starttls) == (scheme, "mail.example.com", port, starttls)
    assert server.user is None and server.password is None


@pytest.mark.parametrize(
    "url, problem",
    [
        ("smtp://mail.example.com?starttls=ture", "starttls must be"),
        ("smtp://mail.example.com?tls=1", "unknown option 'tls'"),
        ("smtps://mail.example.com?starttls=1", "already encrypted"),
        ("smtp://:25", "must be smtp://"),
        ("smtp://mail.example.com:notaport", "not a valid URL"),
    ],
)
def test_a_bad_smtp_url_is_refused_rather_than_guessed(url, problem):
    # A mistyped starttls must not silently send the password in the clear.
    with pytest.raises(MailError, match=problem):
        parse_smtp_url(url)


def test_credentials_are_url_decoded_and_never_shown():
    server = parse_smtp_url(f"smtp://{USER_IN_URL}:{PASSWORD_IN_URL}@mail.example.com")
    assert (server.user, server.password) == (USER, PASSWORD)
    assert str(server) == f"smtp://{USER}:***@mail.example.com:25"
    assert PASSWORD not in repr(server)
