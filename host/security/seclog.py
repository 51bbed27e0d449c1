"""The security log: sign-ins and failures, password and two-factor changes,
token creation and revocation, role changes, exports and erasures.

``record`` writes a ``SecurityEvent`` in the caller's transaction, so an event
exists exactly when the change it describes was committed (a failed login is
committed on its own by the caller). ``query`` reads it back newest first with
a keyset cursor for the UI and the API.

The log is read by administrators and kept for a long time, so it must never
hold a secret: ``record`` refuses a ``detail`` with a key that names one
(password, token, secret, ...) instead of trusting every caller to remember.
The same name rule redacts secret columns in the audit trail
(``host.security.audit``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import uuid
from typing import Any, Mapping

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .access import current_principal
from .models import SecurityEvent

#: The kinds the host writes; plugins may add their own (same dotted form).
KINDS = (
    "login.success",
    "login.failure",
    "logout",
    "password.change",
    "password.reset",
    "totp.enable",
    "totp.disable",
    "token.create",
    "token.revoke",
    "role.change",
    "user.create",
    "user.deactivate",
    "export",
    "erasure",
)

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

#: A name that may hold a secret. Matched against dict keys and column names.
_SECRET_WORD = re.compile(
    r"pass(word|wd|phrase)|^pass$|pwd|secret|token|api_?key|credential|cookie|hash|private_?key|^(t?otp_?)?code$|^t?otp$",
    re.I,
)
#: ... unless it only names or points at one (``token_id``, ``token_prefix``).
_HARMLESS_SUFFIX = re.compile(r"_(id|ids|name|prefix|count|kind|type|at)$", re.I)

MAX_LIMIT = 500


def is_secret_name(name: str) -> bool:
    """True for names like ``password``, ``new_password``, ``token``,
    ``totp_secret``, ``password_hash``; False for ``token_id``, ``token_name``."""
    return bool(_SECRET_WORD.search(name)) and not _HARMLESS_SUFFIX.search(name)


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of ``value``: dates and datetimes as ISO 8601,
    Decimal and UUID as strings (no float rounding of amounts), enums by
    value, containers recursively; anything else as its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return str(value)


def check_no_secrets(detail: Any, path: str = "detail") -> None:
    """Raise ``ValueError`` naming the first key that looks like a secret,
    at any depth. Values are not inspected: a key tells what a value is."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            where = f"{path}.{key}"
            if is_secret_name(str(key)):
                raise ValueError(f"security log: {where} looks like a secret; never log passwords, tokens or secrets")
            check_no_secrets(value, where)
    elif isinstance(detail, (list, tuple)):
        for index, value in enumerate(detail):
            check_no_secrets(value, f"{path}[{index}]")


def _request_ip() -> str | None:
    """The client address of the current request, if any (``ProxyFix``, when
    the deployment configures it, has already rewritten ``remote_addr``)."""
    from flask import has_request_context, request

    return request.remote_addr if has_request_context() else None


def record(
    session: Session,
    kind: str,
    *,
    user_id: int | None = None,
    subject_user_id: int | None = None,
    ip: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> SecurityEvent:
    """Add a security event to ``session``'s transaction (the caller commits).

    ``user_id`` is who acted (default: the acting principal); pass it for
    events without a principal yet, e.g. ``login.success``. ``subject_user_id``
    is the account concerned when it differs (an admin resetting someone's
    two-factor; the account a failed login tried). ``ip`` defaults to the
    request's address. Raises ``ValueError`` for a malformed kind or a detail
    key naming a secret."""
    if not _KIND.match(kind) or len(kind) > 50:
        raise ValueError(f"security log: kind {kind!r} must be dotted lower-case words, at most 50 characters")
    detail = dict(detail or {})
    check_no_secrets(detail)
    event = SecurityEvent(
        kind=kind,
        user_id=user_id if user_id is not None else current_principal().user_id,
        subject_user_id=subject_user_id,
        ip=(ip if ip is not None else _request_ip()),
        detail=json_safe(detail),
    )
    session.add(event)
    session.flush()
    return event


def query(
    session: Session,
    *,
    user_id: int | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[SecurityEvent]:
    """Events newest first. ``user_id`` matches events the user caused *or*
    that concern their account (failed logins against it, an admin's change
    to it); ``kind`` matches exactly, or a prefix when it ends with ``.``
    (``"login."``). Page on with ``before_id`` = the last id shown."""
    stmt = select(SecurityEvent).order_by(SecurityEvent.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    if user_id is not None:
        stmt = stmt.where(or_(SecurityEvent.user_id == user_id, SecurityEvent.subject_user_id == user_id))
    if kind:
        stmt = stmt.where(SecurityEvent.kind.startswith(kind, autoescape=True) if kind.endswith(".") else SecurityEvent.kind == kind)
    if before_id is not None:
        stmt = stmt.where(SecurityEvent.id < before_id)
    return list(session.scalars(stmt))
