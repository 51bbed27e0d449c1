"""Sending mail through the SMTP server named by ``MOSAIC_SMTP_URL``.

``send_mail(to, subject, body)`` is the one way the host and plugins send a
message. The server is configured as a URL:

- ``smtp://host:port``: plain SMTP (default port 25);
- ``smtp://host:587?starttls=1``: upgraded with STARTTLS before anything else
  is sent (default port 587 with ``starttls``);
- ``smtps://host``: implicit TLS from the first byte (default port 465).

A user and password in the URL (URL-encoded, e.g. ``%40`` for ``@``) log in
with SMTP AUTH. Server certificates are checked against the system's CA store;
an operator whose relay uses a private CA points ``SSL_CERT_FILE`` at it (read
by OpenSSL), and code that builds its own context passes ``ssl_context``.

Without ``MOSAIC_SMTP_URL`` the message is written to the ``mosaic.mail`` log
instead of being sent, so a demo install works with nothing configured.

The password never reaches a log line or an error message: the server is
always shown as ``smtp://user:***@host:port``.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("mosaic.mail")

#: Seconds to wait for the server on connect and on each command; a hung relay
#: must not hold a request or a job forever.
SMTP_TIMEOUT = 30

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class MailError(Exception):
    """Sending failed. The message names the server without its password."""


@dataclass(frozen=True)
class SmtpServer:
    """A parsed ``MOSAIC_SMTP_URL``."""

    scheme: str
    host: str
    port: int
    starttls: bool
    user: str | None
    #: Kept out of repr() so a debug print or a traceback cannot show it.
    password: str | None = field(repr=False)

    def __str__(self) -> str:
        # The one way a server is shown anywhere, so the password cannot leak.
        auth = f"{self.user}:***@" if self.user else ""
        tls = "?starttls=1" if self.starttls else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}{tls}"


def parse_smtp_url(url: str) -> SmtpServer:
    """Parse an ``smtp://`` or ``smtps://`` URL; raise ``MailError`` on a bad one.

    Unknown options are refused rather than ignored: a mistyped ``starttls``
    would otherwise send the password in the clear."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MailError("MOSAIC_SMTP_URL: not a valid URL") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailError("MOSAIC_SMTP_URL: must be smtp://host[:port] or smtps://host[:port]")
    starttls = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls":
            raise MailError(f"MOSAIC_SMTP_URL: unknown option {key!r} (known: starttls)")
        if value.lower() not in _TRUE + _FALSE:
            raise MailError(f"MOSAIC_SMTP_URL: starttls must be 1 or true, not {value!r}")
        starttls = value.lower() in _TRUE
    if starttls and parts.scheme == "smtps":
        raise MailError("MOSAIC_SMTP_URL: smtps:// is already encrypted; drop ?starttls")
    default_port = 465 if parts.scheme == "smtps" else 587 if starttls else 25
    return SmtpServer(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        starttls=starttls,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def send_mail(
    to: str | Sequence[str],
    subject: str,
    body: str,
    *,
    html: str | None = None,
    app: Any = None,
    reply_to: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> str:
    """Send a message and return its Message-ID.

    ``to`` is one address or a list; ``body`` is the plain-text part and
    ``html``, when given, an alternative HTML part. ``app`` is the Mosaic app
    whose configuration to use (default: the current app). ``ssl_context``
    verifies the server for STARTTLS and ``smtps://`` (default: the system's
    CA store; tests pass one trusting their own certificate).

    Raises ``ValueError`` naming the field when a subject or address contains
    a line break (header injection), and ``MailError`` when the server cannot
    be reached or refuses the message. A message the server accepts for only
    some recipients is sent, and the refused ones are logged as a warning:
    raising would make the caller retry and mail the others twice.
    """
    config = _config(app)
    message = build_message(to, subject, body, html=html, sender=config.mail_from, reply_to=reply_to)
    if not config.smtp_url:
        _log_instead_of_sending(message, with_body=config.mail_log_body)
    else:
        _deliver(parse_smtp_url(config.smtp_url), message, ssl_context)
    return message["Message-ID"]


def build_message(
    to: str | Sequence[str],
    subject: str,
    body: str,
    *,
    sender: str,
    html: str | None = None,
    reply_to: str | None = None,
) -> EmailMessage:
    """The ``EmailMessage`` ``send_mail`` sends, after the header checks."""
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients:
        raise ValueError("to: no recipient")
    _check_header("subject", subject)
    _check_header("from", sender)
    for address in recipients:
        _check_header("to", address)
    if reply_to is not None:
        _check_header("reply_to", reply_to)

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # make_msgid() without a domain asks DNS for this host's name: slow, and it
    # leaks the internal host name. The sender's domain is what servers expect.
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _check_header(field: str, value: str) -> None:
    # The email package would refuse too, but with a message that does not
    # say which argument was wrong.
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"{field}: line breaks are not allowed in a mail header")
    if field != "subject" and not value.strip():
        raise ValueError(f"{field}: empty address")


def _config(app: Any):
    if app is None:
        from flask import current_app

        app = current_app
    return app.extensions["mosaic"].config


def _log_instead_of_sending(message: EmailMessage, with_body: bool) -> None:
    """Without SMTP the log is the outbox. The body can carry a password-reset
    link, a secret, so it is logged only where that was asked for."""
    body = message.get_body(("plain",))
    if with_body:
        text = body.get_content() if body is not None else ""
    else:
        text = "(body not logged: set MOSAIC_MAIL_LOG_BODY=1 on a development install to see it)"
    log.info(
        "mail not sent (MOSAIC_SMTP_URL is not set)\nTo: %s\nSubject: %s\nMessage-ID: %s\n\n%s",
        message["To"],
        message["Subject"],
        message["Message-ID"],
        text,
    )


def _deliver(server: SmtpServer, message: EmailMessage, ssl_context: ssl.SSLContext | None) -> None:
    context = ssl_context or ssl.create_default_context()
    try:
        with _connect(server, context) as smtp:
            if server.user:
                smtp.login(server.user, server.password or "")
            refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        detail = _scrub(f"{type(exc).__name__}: {exc}", server.password)
        # "from None": the chained original would print the unscrubbed text.
        raise MailError(f"sending mail via {server} failed: {detail}") from None
    if refused:
        log.warning("mail %s via %s: refused for %s", message["Message-ID"], server, ", ".join(sorted(refused)))
    log.info("mail %s sent via %s to %s", message["Message-ID"], server, message["To"])


def _connect(server: SmtpServer, context: ssl.SSLContext) -> smtplib.SMTP:
    if server.scheme == "smtps":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=SMTP_TIMEOUT, context=context)
    smtp = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT)
    if server.starttls:
        try:
            # starttls() raises when the server does not offer it, so a
            # stripped STARTTLS offer cannot downgrade us to plain text.
            smtp.starttls(context=context)
        except BaseException:
            smtp.close()
            raise
    return smtp


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text
