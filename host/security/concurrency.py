"""Optimistic concurrency: an edit made on an old version is refused, never
silently written over someone else's.

Two checks, because each sees what the other cannot:

1. ``check_version(obj, sent)`` compares the version the client *sent* (the one
   its form or GET showed) with the row's. Only this catches the common case:
   Bob saves while Alice's form, loaded an hour ago, is still open.
2. SQLAlchemy's ``version_id_col`` (``OwnedMixin.version``) makes the UPDATE
   say ``WHERE version = <loaded>``; a commit between our load and our flush
   makes it match no row (``StaleDataError``). ``flush_guard`` /
   ``commit_or_conflict`` turn that into the same conflict.

API flow (``expected_version`` reads the body's ``version`` or ``If-Match``)::

    sent = expected_version(data)          # 428 when neither is given
    note = load_or_404(...)
    check_version(note, sent)              # 409 (body) / 412 (If-Match)
    apply(note, data)
    commit_or_conflict(session, note)      # 409 on a race inside the flush

UI flow: catch ``StaleVersion`` and re-render the form from
``conflict_form(exc, request.form)``: the user's input is kept, the current
values are shown next to it.

The exceptions are werkzeug ``HTTPException``s carrying ``data`` the way
flask-smorest's ``abort`` does, so ``host.errors_http`` answers with the one
JSON shape (``code``, ``status``, ``message``) and sets the ``ETag`` of the
current version.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import BadRequest, HTTPException, PreconditionRequired, UnprocessableEntity

from .access import object_type_of
from .seclog import is_secret_name, json_safe

REDACTED = "[redacted]"


# --- errors ------------------------------------------------------------------------


class StaleVersion(HTTPException):
    """409: the client edited an older version than the row's. Carries the
    current version and values so a form can show what changed meanwhile."""

    code = 409

    def __init__(
        self,
        *,
        current_version: int | None,
        sent_version: Any,
        object_type: str | None = None,
        object_id: Any = None,
        current: Mapping[str, Any] | None = None,
    ):
        self.current_version = current_version
        self.sent_version = sent_version
        self.object_type = object_type
        self.object_id = object_id
        self.current = dict(current) if current is not None else None
        message = self._message()
        super().__init__(description=message)
        headers = {"ETag": etag(current_version)} if current_version is not None else {}
        self.data = {"message": message, "headers": headers, "current": self.current}

    @property
    def deleted(self) -> bool:
        return self.current_version is None

    def _message(self) -> str:
        if self.deleted:
            return "This record was deleted by someone else"
        return f"This record was changed by someone else (now version {self.current_version}, you sent {self.sent_version})"


class IfMatchFailed(StaleVersion):
    """412: the ``If-Match`` header names another version than the row's.
    A ``StaleVersion`` too, so one ``except`` handles both."""

    code = 412


class VersionRequired(PreconditionRequired):
    """428: an update must say which version it edits."""

    description = (
        "Send the version you are editing: a 'version' field in the body or an If-Match header "
        "(the ETag of the record, e.g. W/\"3\")"
    )

    def __init__(self, description: str | None = None):
        super().__init__(description=description)
        self.data = {"message": self.description}


def _invalid_version(value: Any) -> UnprocessableEntity:
    error = UnprocessableEntity(description="The request's version is not valid")
    error.data = {"message": error.description, "messages": {"json": {"version": [f"Not a valid integer: {value!r}."]}}}
    return error


# --- what the client sent ------------------------------------------------------------


@dataclass(frozen=True)
class SentVersion:
    """The version(s) a request claims to edit, and where it said so
    (``"body"`` -> a mismatch is 409, ``"if-match"`` -> 412)."""

    values: tuple[int, ...]
    via: str
    raw: str = field(default="", compare=False)

    def matches(self, version: int) -> bool:
        return version in self.values

    def __str__(self) -> str:
        if self.via == "body" and self.values:
            return str(self.values[0])
        return self.raw or ", ".join(map(str, self.values))


def etag(version: int) -> str:
    """The ETag of a record's version: strong (``"3"``), because If-Match
    compares strongly and a weak tag would never match there."""
    return f'"{version}"'


def parse_if_match(header: str) -> tuple[int, ...] | None:
    """``"3"``, ``W/"3"`` or ``3`` (or a comma list of them) -> versions;
    ``*`` -> None (names no version). Entries that are not a version are
    dropped: they can never match, so the request fails with 412."""
    if header.strip() == "*":
        return None
    versions = []
    for item in header.split(","):
        item = item.strip()
        if item[:2] in ("W/", "w/"):
            item = item[2:]
        item = item.strip().strip('"')
        if item.isdigit():
            versions.append(int(item))
    return tuple(versions)


def _body_version(body: Mapping[str, Any] | None) -> int | None:
    if not isinstance(body, Mapping) or body.get("version") is None:
        return None
    value = body["version"]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise _invalid_version(value)
    return int(value)


def _request_parts(body: Mapping[str, Any] | None, if_match: str | None) -> tuple[Mapping[str, Any] | None, str | None]:
    from flask import has_request_context, request

    if has_request_context():
        if body is None:
            body = request.get_json(silent=True)
        if if_match is None:
            if_match = request.headers.get("If-Match")
    return body, if_match


def expected_version(body: Mapping[str, Any] | None = None, *, if_match: str | None = None) -> SentVersion:
    """The version an update request edits: the body's ``version`` (``body``
    defaults to the request's JSON; pass the loaded data when a schema parsed
    it) or the ``If-Match`` header (default: the request's).

    Neither, or ``If-Match: *`` -> 428; both, disagreeing -> 400; a version
    that is not an integer -> 422."""
    body, if_match = _request_parts(body, if_match)
    in_body = _body_version(body)
    if if_match is None or not if_match.strip():
        if in_body is None:
            raise VersionRequired()
        return SentVersion((in_body,), "body", str(in_body))
    versions = parse_if_match(if_match)
    if versions is None:
        raise VersionRequired("If-Match: * does not say which version you are editing; send its ETag")
    if in_body is not None and in_body not in versions:
        raise BadRequest(description=f"The body's version ({in_body}) and If-Match ({if_match}) disagree")
    return SentVersion(versions, "if-match", if_match.strip())


# --- the checks --------------------------------------------------------------------


def current_values(obj: Any) -> dict[str, Any]:
    """The record's column values, JSON-safe, secrets redacted: what a
    conflict shows the user next to their own input."""
    out = {}
    for prop in inspect(obj).mapper.column_attrs:
        value = getattr(obj, prop.key)
        out[prop.key] = REDACTED if (value is not None and is_secret_name(prop.key)) else json_safe(value)
    return out


def _object_id(obj: Any) -> Any:
    ident = inspect(obj).mapper.primary_key_from_instance(obj)
    return ident[0] if len(ident) == 1 else ",".join(map(str, ident))


def conflict_for(obj: Any, sent: Any, *, if_match: bool = False) -> StaleVersion:
    """The conflict describing ``obj`` as it is now."""
    kind = IfMatchFailed if if_match else StaleVersion
    return kind(
        current_version=obj.version,
        sent_version=sent,
        object_type=object_type_of(type(obj)),
        object_id=_object_id(obj),
        current=current_values(obj),
    )


def check_version(obj: Any, sent: SentVersion | int | str | None) -> None:
    """Refuse an edit of ``obj`` made on another version than its current one.

    ``sent`` is a ``SentVersion`` (API) or the raw version (a form's hidden
    field; a string is accepted). None -> 428, mismatch -> 409 (412 when the
    version came from If-Match), with the current values attached."""
    if sent is None or sent == "":
        raise VersionRequired()
    if not isinstance(sent, SentVersion):
        number = _body_version({"version": sent})
        sent = SentVersion((number,), "body", str(number))
    if not sent.matches(obj.version):
        raise conflict_for(obj, sent, if_match=sent.via == "if-match")


@contextlib.contextmanager
def flush_guard(session: Session, obj: Any) -> Iterator[None]:
    """Turn a ``StaleDataError`` raised by a flush or commit inside the block
    (``version_id_col``: the row changed after ``obj`` was loaded) into a
    ``StaleVersion`` with the row's current values. The transaction is rolled
    back; the caller's input is wherever it came from (form, JSON body)."""
    model = type(obj)
    identity = inspect(obj).identity
    loaded_version = inspect(obj).committed_state.get("version", obj.version)
    try:
        yield
    except StaleDataError:
        session.rollback()
        fresh = session.get(model, identity, populate_existing=True) if identity else None
        if fresh is None:
            raise StaleVersion(current_version=None, sent_version=loaded_version, object_type=object_type_of(model)) from None
        raise conflict_for(fresh, loaded_version) from None


def commit_or_conflict(session: Session, obj: Any) -> None:
    """``session.commit()``, with a lost race on ``obj`` answered as 409."""
    with flush_guard(session, obj):
        session.commit()


# --- the UI side -------------------------------------------------------------------


@dataclass(frozen=True)
class ConflictForm:
    """What an edit form needs to re-render after a conflict: the user's
    input (kept), the record as it is now, and which fields differ.

    ``submitted["version"]`` is set to the current version: saving the form
    again after seeing the differences is a deliberate overwrite, which is
    then checked against the new version like any edit."""

    message: str
    submitted: dict[str, Any]
    current: dict[str, Any]
    current_version: int | None
    differing: tuple[str, ...]


def conflict_form(exc: StaleVersion, submitted: Mapping[str, Any]) -> ConflictForm:
    """Conflict details for a form; ``submitted`` is ``request.form`` (or
    any mapping of the user's input)."""
    current = exc.current or {}
    kept = {key: submitted[key] for key in submitted if key != "csrf_token"}
    differing = tuple(
        key for key in kept
        if key in current and key != "version" and _as_text(kept[key]) != _as_text(current[key])
    )
    if exc.current_version is not None:
        kept["version"] = str(exc.current_version)
    return ConflictForm(exc.description or "", kept, dict(current), exc.current_version, differing)


def _as_text(value: Any) -> str:
    """Form input is text: compare ``"5"`` with ``5`` and ``""`` with None as equal."""
    return "" if value is None else str(value)
