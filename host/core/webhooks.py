"""Outgoing webhooks: an admin registers a URL and event types; a periodic job
POSTs each matching outbox event there, signed, with retries.

What a receiver gets
    ``POST <url>`` with the JSON body ``{"id", "type", "occurred_at", "data"}``
    (``id`` is the outbox event id: the same event never has two ids) and the
    headers ``Content-Type: application/json``, ``X-Mosaic-Event`` (the type),
    ``X-Mosaic-Delivery`` (the delivery id) and ``X-Mosaic-Signature:
    t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the
    webhook's secret>``. ``verify_signature`` is the receiver's side: it
    refuses a wrong signature and a timestamp outside the tolerance, so a
    captured request cannot be replayed later. Any 2xx answer is success;
    anything else (a redirect too: it is never followed) is a failure.

Where events come from: the outbox, per webhook, from its ``cursor``
    ``read_outbox``'s caveat applies: on PostgreSQL an id is drawn at insert
    and becomes visible at commit, so id 11 can appear after id 12. A
    consumer that jumps to the highest id seen loses 11. Here a pass reads
    every visible event above the cursor, queues a delivery for each matching
    one (the unique ``(webhook_id, event_id)`` key makes that idempotent,
    so reading an event twice queues it once), and then moves the cursor
    only as far as is safe:

    - through the ids that are all present (no gap): nothing can appear there;
    - past a gap only once the gap is older than ``GAP_GRACE``. A missing id
      is an event whose transaction has not committed yet, or one that rolled
      back (ids are not reused). Its age is measured on our own clock: every
      pass records a mark ``[time, highest visible id]`` (the ``Setting`` row
      ``MARKS_KEY``, shared by all processes); ids up to the highest id seen
      at least ``GAP_GRACE`` ago have had that long to commit, so a gap below
      it is given up. Event timestamps are not used for this: a publisher may
      set ``occurred_at`` in the past.

    Events above a held gap are still delivered at once; they are only read
    again (cheaply: id and type) until the gap resolves. An event whose
    transaction stays open longer than ``GAP_GRACE`` is the one case that is
    not delivered. On SQLite writers are serialised, so there are no such gaps.

    A new webhook starts at the newest event (no history). Events that occur
    while a webhook is inactive are not delivered: re-enabling it starts at
    the newest event again (deliveries already queued resume).

Delivery, retries, no duplicates
    A delivery is claimed with a conditional ``UPDATE`` (still pending, same
    attempt count, due) that also pushes ``next_attempt_at`` out by
    ``CLAIM_LEASE``; only the worker whose update hit the row sends, so two
    passes running at once never both send it. Results are written with the
    same condition. A worker that dies mid-send leaves the attempt counted and
    the delivery due again after the lease (at-least-once in that case only).
    A failure is retried after 1, 2, 4, ... minutes (capped at one hour);
    after ``MAX_ATTEMPTS`` the delivery is ``failed``. No database transaction
    is open while a request is in flight.

    A webhook that fails ``DISABLE_AFTER_FAILURES`` attempts in a row *and* has
    had no successful delivery for ``DISABLE_AFTER_FAILING_FOR`` (counted from
    its creation when it never succeeded) is disabled: ``active`` false,
    ``disabled_reason`` set, a ``webhook.disabled`` security-log entry and a
    notification for every user who may manage webhooks. Both conditions, so
    a receiver that is down for a short deploy under heavy traffic is not
    disabled, and one that fails rarely but never succeeds is. Re-enabling
    restarts the count, not the 24 hours: one re-enabled while still broken
    is disabled again after 20 more failures.

SSRF guard
    Only http(s) URLs without credentials. Unless ``webhooks_allow_private``
    is set, every address the host resolves to must be public (not loopback,
    private, link-local, multicast, reserved, unspecified; IPv4 embedded in
    IPv6 is unwrapped). Checked when a URL is registered AND before every
    attempt, and the request then connects to exactly the addresses that were
    checked (no second DNS lookup a rebinding attacker could answer
    differently). Environment proxies are ignored.

Secrets: generated here, shown once by the API (creation and rotation), never
logged, never in the security log (which names the webhook id and host only:
a URL's query may hold the receiver's own token).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import re
import secrets
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hooks import JobDefinition
from host.db import Database, utcnow
from host.models import OutboxEvent, Setting
from host.security import seclog
from host.security.models import RolePermission, User, UserRole

from .models import Notification, Webhook, WebhookDelivery

log = logging.getLogger("mosaic.webhooks")

JOB_NAME = "core.deliver_webhooks"
#: Seconds between delivery passes: the latency of a new event.
JOB_EVERY = 10
PERMISSION = "core.webhook.update"
#: The ping sent by ``queue_test``; never fanned out to other webhooks.
TEST_EVENT = "webhook.test"

#: Socket timeout per connect/read step of one request.
TIMEOUT = 10.0
#: Bytes of a response body read at most (for the delivery log).
RESPONSE_CAP = 1024
USER_AGENT = "Mosaic-Webhooks/1"

MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 60
BACKOFF_CAP_SECONDS = 3600
#: How long a claimed attempt is reserved for its worker; far above
#: ``TIMEOUT`` so a slow but live send is never sent a second time.
CLAIM_LEASE = dt.timedelta(minutes=10)
DISABLE_AFTER_FAILURES = 20
DISABLE_AFTER_FAILING_FOR = dt.timedelta(hours=24)

#: How long a missing outbox id may still commit before the cursor moves past it.
GAP_GRACE = dt.timedelta(minutes=15)
MARKS_KEY = "core.webhooks.outbox_marks"
MAX_MARKS = 500
SCAN_PAGE = 1000
MAX_SCAN_PAGES = 20
#: Per pass: at most this many attempts, and no new attempt after this long,
#: so one pass never blocks the job runner for long.
SENDS_PER_PASS = 200
PASS_BUDGET_SECONDS = 60.0

SIGNATURE_TOLERANCE = 300
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 1000
MAX_EVENT_TYPES = 100
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class WebhookError(ValueError):
    """Invalid webhook input; ``field`` names what to fix (the API answers 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class UnsafeDestination(WebhookError):
    """The URL's host cannot be resolved or resolves to a non-public address."""

    def __init__(self, message: str):
        super().__init__("url", message)


# ---------------------------------------------------------------------------
# Validation and the SSRF guard
# ---------------------------------------------------------------------------


def validate_url(url: Any) -> str:
    """The URL, stripped, if it is an http(s) URL with a host and without
    credentials; else ``WebhookError``. Credentials are refused because they
    would be stored and shown in clear: the signature authenticates us."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookError("url", "A URL is required.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError("url", f"At most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise WebhookError("url", "Must not contain spaces or control characters.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookError("url", "Only http and https URLs are allowed.")
    if "@" in parts.netloc:
        raise WebhookError("url", "Must not contain credentials (user:password@); receivers verify the signature instead.")
    if not parts.hostname:
        raise WebhookError("url", "The URL needs a host.")
    try:
        _ = parts.port  # raises for a port out of range
    except ValueError:
        raise WebhookError("url", "Not a valid port.") from None
    if parts.fragment:
        raise WebhookError("url", "Must not contain a fragment (#...).")
    return url


def validate_event_types(event_types: Any) -> list[str]:
    """Exact types (``contact.created``) or ``"*"`` for all, deduplicated;
    ``["*"]`` when ``"*"`` is among them."""
    if isinstance(event_types, str) or not isinstance(event_types, Iterable):
        raise WebhookError("event_types", "A list of event types is required.")
    found: list[str] = []
    for raw in event_types:
        name = str(raw).strip()
        if name != "*" and (len(name) > 100 or not _EVENT_TYPE.match(name)):
            raise WebhookError("event_types", f"{name!r} is not an event type: use '<object>.<verb>' such as "
                                              "'contact.created', or '*' for all.")
        if name == TEST_EVENT:
            raise WebhookError("event_types", f"{TEST_EVENT!r} is sent by the test action, not subscribed to.")
        if name not in found:
            found.append(name)
    if not found:
        raise WebhookError("event_types", "Name at least one event type, or '*' for all.")
    if len(found) > MAX_EVENT_TYPES:
        raise WebhookError("event_types", f"At most {MAX_EVENT_TYPES} event types.")
    return ["*"] if "*" in found else found


def subscribed(event_types: Sequence[str], event_type: str) -> bool:
    return event_type != TEST_EVENT and ("*" in event_types or event_type in event_types)


def is_public_address(address: str) -> bool:
    """True only for a globally routable unicast address. IPv4 carried inside
    IPv6 (mapped, NAT64, 6to4) is judged by the IPv4 address it reaches."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.sixtofour is not None and not is_public_address(str(ip.sixtofour)):
            return False
        if ip.teredo is not None:
            return False
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


Resolver = Callable[[str, int], list[str]]


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_destination(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> list[str]:
    """The addresses to connect to for ``url``: ALL of them must be public
    unless ``allow_private`` (one private address among public ones is how a
    rebinding attacker gets in). Raises ``UnsafeDestination``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses = (resolver or _getaddrinfo)(host, port)
    except (OSError, UnicodeError):
        raise UnsafeDestination(f"Cannot resolve the host {host!r}.") from None
    if not addresses:
        raise UnsafeDestination(f"Cannot resolve the host {host!r}.")
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise UnsafeDestination(
                    f"Refused: {host} resolves to {address}, which is not a public address (loopback, private, "
                    "link-local, multicast and reserved addresses need the setting webhooks_allow_private)."
                )
    return addresses


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


# ---------------------------------------------------------------------------
# Administration (the API calls these; the caller commits)
# ---------------------------------------------------------------------------


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _outbox_head(session: Session) -> int:
    return session.scalar(select(func.max(OutboxEvent.id))) or 0


def create_webhook(session: Session, url: Any, event_types: Any, *, allow_private: bool) -> tuple[Webhook, str]:
    """Register a webhook; returns it and its secret (the only time the
    secret is handed out apart from ``rotate_secret``). It receives events
    from now on, not the outbox's history."""
    url = validate_url(url)
    types = validate_event_types(event_types)
    resolve_destination(url, allow_private=allow_private)
    secret = generate_secret()
    hook = Webhook(url=url, event_types=types, secret=secret, active=True, consecutive_failures=0,
                   cursor=_outbox_head(session))
    session.add(hook)
    session.flush()
    seclog.record(session, "webhook.create", detail={"webhook_id": hook.id, "host": _host_of(url), "event_types": types})
    return hook, secret


def update_webhook(
    session: Session,
    hook: Webhook,
    *,
    allow_private: bool,
    url: Any = None,
    event_types: Any = None,
    active: bool | None = None,
) -> Webhook:
    """Change what is given. Re-enabling re-checks the URL, clears the
    failure count and the reason, and starts at the newest event (events of
    the inactive time are not sent)."""
    changed: list[str] = []
    if url is not None:
        url = validate_url(url)
        if url != hook.url:
            resolve_destination(url, allow_private=allow_private)
            hook.url = url
            changed.append("url")
    if event_types is not None:
        types = validate_event_types(event_types)
        if types != list(hook.event_types):
            hook.event_types = types
            changed.append("event_types")
    if active is not None and bool(active) != hook.active:
        if active:
            resolve_destination(hook.url, allow_private=allow_private)
            hook.active = True
            hook.consecutive_failures = 0
            hook.disabled_reason = None
            hook.cursor = max(hook.cursor, _outbox_head(session))
        else:
            hook.active = False
            hook.disabled_reason = "Deactivated by an administrator."
        changed.append("active")
    if changed:
        session.flush()
        seclog.record(session, "webhook.update", detail={"webhook_id": hook.id, "host": _host_of(hook.url),
                                                          "fields": changed, "active": hook.active})
    return hook


def rotate_secret(session: Session, hook: Webhook) -> str:
    """A new secret, effective for the next attempt (there is one secret per
    webhook: receivers switch when they are told the new one)."""
    secret = generate_secret()
    hook.secret = secret
    session.flush()
    seclog.record(session, "webhook.secret_rotate", detail={"webhook_id": hook.id, "host": _host_of(hook.url)})
    return secret


def delete_webhook(session: Session, hook: Webhook) -> None:
    """Delete it with its delivery log (the foreign key cascades)."""
    seclog.record(session, "webhook.delete", detail={"webhook_id": hook.id, "host": _host_of(hook.url)})
    session.delete(hook)
    session.flush()


def queue_test(session: Session, hook: Webhook, now: dt.datetime | None = None) -> WebhookDelivery:
    """Queue a ``webhook.test`` ping for this webhook only; the next pass
    sends it. It is written to the outbox only so the delivery has a payload
    like any other (not through ``publish``: it is no domain event, and
    plugins' ``mosaic_event`` never see it)."""
    now = now or utcnow()
    event = OutboxEvent(type=TEST_EVENT, source="host", occurred_at=now,
                        data={"webhook_id": hook.id, "message": "A test delivery from Mosaic."})
    session.add(event)
    session.flush()
    delivery = WebhookDelivery(webhook_id=hook.id, event_id=event.id, status="pending", attempts=0,
                               next_attempt_at=now, created_at=now)
    session.add(delivery)
    session.flush()
    return delivery


def list_deliveries(
    session: Session, webhook_id: int, *, before_event_id: int | None = None, status: str | None = None, limit: int = 50
) -> list[tuple[WebhookDelivery, str | None]]:
    """The delivery log, newest event first, with each event's type (``None``
    once the outbox row is gone). Keyset on ``event_id``: the unique
    ``(webhook_id, event_id)`` index serves it."""
    stmt = (select(WebhookDelivery, OutboxEvent.type)
            .outerjoin(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.event_id.desc()).limit(limit))
    if before_event_id is not None:
        stmt = stmt.where(WebhookDelivery.event_id < before_event_id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return [(delivery, event_type) for delivery, event_type in session.execute(stmt)]


# ---------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes | str, timestamp: int) -> str:
    """The ``X-Mosaic-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
    The timestamp is inside the MAC, so it cannot be changed to replay an old request."""
    return f"t={int(timestamp)},v1={_mac(secret, int(timestamp), _as_bytes(body))}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance: int = SIGNATURE_TOLERANCE,
    now: float | dt.datetime | None = None,
) -> bool:
    """For receivers: True when ``header`` is a valid signature of exactly
    ``body`` (the raw bytes received, before any JSON parsing) with
    ``secret``, made within ``tolerance`` seconds of ``now``. Reject
    everything else; remember delivery ids to also drop a replay inside the
    tolerance window."""
    if not header or not secret:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = now.timestamp() if isinstance(now, dt.datetime) else (time.time() if now is None else float(now))
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, _as_bytes(body))
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def event_body(event_id: int, event_type: str, occurred_at: dt.datetime, data: Any) -> bytes:
    return json.dumps(
        {"id": event_id, "type": event_type, "occurred_at": occurred_at.isoformat(), "data": data},
        separators=(",", ":"), ensure_ascii=False,
    ).encode("utf-8")


# ---------------------------------------------------------------------------
# HTTP: pinned addresses, no redirects, no proxies, a capped read
# ---------------------------------------------------------------------------


def _connect_pinned(addresses: Sequence[str], address: tuple[str, int], timeout, source_address=None):
    """Connect to the checked addresses only, never to a fresh DNS answer."""
    last: OSError | None = None
    for ip in addresses:
        try:
            return socket.create_connection((ip, address[1]), timeout, source_address)
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, addresses: Sequence[str], **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_connect_pinned, addresses)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS is verified against the URL's host name (SNI too), while the TCP
    connection goes to the checked address."""

    def __init__(self, *args, addresses: Sequence[str], **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_connect_pinned, addresses)


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, addresses: Sequence[str]):
        super().__init__()
        self.addresses = addresses

    def http_open(self, req):
        return self.do_open(functools.partial(_PinnedHTTPConnection, addresses=self.addresses), req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, addresses: Sequence[str]):
        super().__init__(context=ssl.create_default_context())
        self.addresses = addresses

    def https_open(self, req):
        return self.do_open(functools.partial(_PinnedHTTPSConnection, addresses=self.addresses), req,
                            context=self._context)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout: float | None = None) -> SendResult:
    """POST once. The opener has only our two handlers: no proxy from the
    environment, no redirect handling (a 3xx comes back as a response and is
    a failure), and no error processor (every status is just a status)."""
    try:
        addresses = resolve_destination(url, allow_private=allow_private)
    except UnsafeDestination as exc:
        return SendResult(False, None, exc.message)
    opener = urllib.request.OpenerDirector()
    opener.add_handler(_PinnedHTTPHandler(addresses))
    opener.add_handler(_PinnedHTTPSHandler(addresses))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=TIMEOUT if timeout is None else timeout) as response:
            status = response.status
            snippet = response.read(RESPONSE_CAP)
            location = response.headers.get("Location", "")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return SendResult(False, None, _describe(exc))
    if 200 <= status < 300:
        return SendResult(True, status)
    if 300 <= status < 400:
        return SendResult(False, status, f"HTTP {status}: redirect to {location[:200]!r} not followed")
    text = snippet.decode("utf-8", "replace").strip()
    return SendResult(False, status, f"HTTP {status}" + (f": {text[:300]}" if text else ""))


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    inner = reason if isinstance(reason, BaseException) else exc
    if isinstance(inner, TimeoutError) or "timed out" in str(inner):
        return f"timed out after {TIMEOUT:g} s"
    return f"{type(inner).__name__}: {inner}"[:500]


# ---------------------------------------------------------------------------
# The delivery pass
# ---------------------------------------------------------------------------


def backoff(attempts: int) -> dt.timedelta:
    """Wait after the ``attempts``-th failed attempt: 1, 2, 4 ... minutes, at most an hour."""
    return dt.timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS))


@dataclass
class PassReport:
    queued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    disabled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def deliver_webhooks(app: Flask, *, now: dt.datetime | None = None) -> PassReport:
    """One pass: queue deliveries for new outbox events of every active
    webhook, then send what is due at ``now`` (default: the current time;
    tests pass a later one instead of waiting for backoff). Safe to run in
    several processes at once."""
    state = app.extensions["mosaic"]
    db: Database = state.db
    allow_private = bool(state.config.webhooks_allow_private)
    now = now or utcnow()
    report = PassReport()
    watermark = _outbox_watermark(db, now)
    with db.Session() as session:
        head = _outbox_head(session)
        hooks = session.execute(select(Webhook.id, Webhook.cursor).where(Webhook.active.is_(True))
                                .order_by(Webhook.id)).all()
    for hook_id, cursor in hooks:
        if cursor < head:  # nothing new: no write transaction
            report.queued += _fan_out(db, hook_id, watermark, now)
    _send_due(db, now, allow_private, report)
    return report


def _deliver_job(ctx) -> dict[str, int]:
    return deliver_webhooks(ctx.app).as_dict()


def job_definition() -> JobDefinition:
    return JobDefinition(
        name=JOB_NAME,
        func=_deliver_job,
        every=JOB_EVERY,
        description="Outgoing webhooks: queue new outbox events, send due deliveries, retry with backoff.",
        max_attempts=1,  # periodic: the next period is the retry
    )


# -- reading the outbox ------------------------------------------------------


def _outbox_watermark(db: Database, now: dt.datetime) -> int:
    """Record ``[now, highest visible id]`` and return the highest id that
    was already visible ``GAP_GRACE`` ago: gaps at or below it are given up.
    Read first, write only when the marks change (an idle pass takes no
    write lock); the write re-reads under a row lock, so concurrent passes
    do not drop each other's marks on PostgreSQL."""
    stamp = now.timestamp()
    with db.Session() as session:
        stored = _valid_marks(_stored_marks(session))
        marks, watermark = _next_marks(stored, _outbox_head(session), stamp)
    if marks == stored:
        return watermark
    try:
        with db.transaction() as session:
            row = session.get(Setting, MARKS_KEY, with_for_update=True)
            stored = _valid_marks(row.value if row is not None else None)
            marks, watermark = _next_marks(stored, _outbox_head(session), stamp)
            if row is None:
                session.add(Setting(key=MARKS_KEY, value=marks))
            elif marks != stored:
                row.value = marks
    except IntegrityError:
        pass  # another pass created the row at this moment; a mark is only a sample
    return watermark


def _stored_marks(session: Session) -> Any:
    row = session.get(Setting, MARKS_KEY)
    return row.value if row is not None else None


def _next_marks(marks: list[list[float]], head: int, stamp: float) -> tuple[list[list[float]], int]:
    """The marks after seeing ``head`` at ``stamp``, and the watermark.
    Marks keep strictly rising ids (an unchanged head keeps its older mark,
    which ripens sooner); ripe marks collapse into the newest one; dropping
    marks only ever delays the watermark, never advances it."""
    marks = [list(mark) for mark in marks]
    if not marks or head > marks[-1][1]:
        marks.append([stamp, head])
    horizon = stamp - GAP_GRACE.total_seconds()
    ripe = [mark for mark in marks if mark[0] <= horizon]
    fresh = [mark for mark in marks if mark[0] > horizon]
    watermark = 0
    if ripe:
        newest = max(ripe, key=lambda mark: mark[1])
        watermark = int(newest[1])
        fresh.insert(0, newest)
    return fresh[:1] + fresh[1:][-(MAX_MARKS - 1):], watermark


def _valid_marks(value: Any) -> list[list[float]]:
    if not isinstance(value, list):
        return []
    marks = [[float(m[0]), int(m[1])] for m in value
             if isinstance(m, list) and len(m) == 2 and all(isinstance(x, (int, float)) for x in m)]
    return sorted(marks, key=lambda mark: mark[1])


def _fan_out(db: Database, hook_id: int, watermark: int, now: dt.datetime) -> int:
    """Queue a delivery for every matching event above the cursor, then move
    the cursor through the gap-free prefix, or up to ``watermark``."""
    with db.transaction() as session:
        hook = session.get(Webhook, hook_id)
        if hook is None or not hook.active:
            return 0
        start = after = hook.cursor
        expected = start + 1
        contiguous = True
        queued = 0
        for _ in range(MAX_SCAN_PAGES):
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.type).where(OutboxEvent.id > after)
                .order_by(OutboxEvent.id).limit(SCAN_PAGE)
            ).all()
            for event_id, _type in rows:
                if contiguous and event_id == expected:
                    expected += 1
                else:
                    contiguous = False
            wanted = [event_id for event_id, event_type in rows if subscribed(hook.event_types, event_type)]
            queued += _queue(session, hook_id, wanted, now)
            if rows:
                after = rows[-1][0]
            if len(rows) < SCAN_PAGE:
                break
        cursor = max(expected - 1, min(watermark, after))
        if cursor > start:
            # Only forward: a concurrent pass may have moved it further.
            session.execute(update(Webhook).where(Webhook.id == hook_id, Webhook.cursor < cursor).values(cursor=cursor)
                            .execution_options(synchronize_session=False))
        return queued


def _queue(session: Session, hook_id: int, event_ids: list[int], now: dt.datetime) -> int:
    """Insert pending deliveries, skipping those that exist; ON CONFLICT DO
    NOTHING covers a concurrent pass inserting the same one meanwhile."""
    if not event_ids:
        return 0
    existing = set(session.scalars(select(WebhookDelivery.event_id).where(
        WebhookDelivery.webhook_id == hook_id, WebhookDelivery.event_id.in_(event_ids))))
    new = [event_id for event_id in event_ids if event_id not in existing]
    if not new:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = [{"webhook_id": hook_id, "event_id": event_id, "status": "pending", "attempts": 0,
             "next_attempt_at": now, "created_at": now} for event_id in new]
    result = session.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing(
        index_elements=["webhook_id", "event_id"]))
    return max(result.rowcount, 0)


# -- sending -------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    hook_id: int
    attempt: int
    url: str
    secret: str
    event_type: str | None
    body: bytes | None


def _send_due(db: Database, now: dt.datetime, allow_private: bool, report: PassReport) -> None:
    """Send due deliveries, oldest due first. A webhook that fails once is
    left alone for the rest of the pass: a dead receiver costs one timeout
    per pass, not one per queued event."""
    with db.Session() as session:
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.webhook_id, WebhookDelivery.attempts)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   Webhook.active.is_(True))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(SENDS_PER_PASS)
        ).all()
    started = time.monotonic()
    failing: set[int] = set()
    for delivery_id, hook_id, attempts in due:
        if hook_id in failing:
            continue
        if time.monotonic() - started > PASS_BUDGET_SECONDS:
            break
        claimed = _claim(db, delivery_id, attempts, now)
        if claimed is None:
            continue  # another pass has it, or it changed meanwhile
        if _attempt(db, claimed, now, allow_private, report):
            report.delivered += 1
        else:
            report.failed_attempts += 1
            failing.add(hook_id)


def _claim(db: Database, delivery_id: int, seen_attempts: int, now: dt.datetime) -> _Claimed | None:
    """Take the next attempt of a delivery, or None when another worker did.
    The WHERE clause is the lock: it matches only the state we read."""
    active_hooks = select(Webhook.id).where(Webhook.active.is_(True))
    stmt = (update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                   WebhookDelivery.attempts == seen_attempts, WebhookDelivery.next_attempt_at <= now,
                   WebhookDelivery.webhook_id.in_(active_hooks))
            .values(attempts=seen_attempts + 1, next_attempt_at=now + CLAIM_LEASE)
            .execution_options(synchronize_session=False))
    with db.transaction() as session:
        if session.execute(stmt).rowcount != 1:
            return None
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id)
        event = session.get(OutboxEvent, delivery.event_id)
        body = event_body(event.id, event.type, event.occurred_at, event.data) if event is not None else None
        return _Claimed(delivery_id, hook.id, seen_attempts + 1, hook.url, hook.secret,
                        event.type if event is not None else None, body)


def _attempt(db: Database, claimed: _Claimed, now: dt.datetime, allow_private: bool, report: PassReport) -> bool:
    if claimed.body is None:
        result = SendResult(False, None, "the event is no longer in the outbox")
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Mosaic-Event": claimed.event_type or "",
            "X-Mosaic-Delivery": str(claimed.delivery_id),
            "X-Mosaic-Signature": sign(claimed.secret, claimed.body, int(now.timestamp())),
            "Connection": "close",
        }
        result = post(claimed.url, claimed.body, headers, allow_private=allow_private)
    if result.ok:
        _record_success(db, claimed, result, now)
    elif _record_failure(db, claimed, result, now):
        report.disabled += 1
    return result.ok


def _mine(claimed: _Claimed):
    """Results are written only while the attempt is still ours."""
    return (WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.status == "pending",
            WebhookDelivery.attempts == claimed.attempt)


def _record_success(db: Database, claimed: _Claimed, result: SendResult, now: dt.datetime) -> None:
    with db.transaction() as session:
        done = session.execute(
            update(WebhookDelivery).where(*_mine(claimed))
            .values(status="delivered", delivered_at=now, last_status_code=result.status_code, last_error=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.execute(update(Webhook).where(Webhook.id == claimed.hook_id).values(consecutive_failures=0)
                        .execution_options(synchronize_session=False))
    if done != 1:
        log.warning("webhook %s delivery %s: sent, but its claim had expired", claimed.hook_id, claimed.delivery_id)


def _record_failure(db: Database, claimed: _Claimed, result: SendResult, now: dt.datetime) -> bool:
    """Schedule the retry (or give up), count the failure on the webhook,
    and disable it when the rule says so; True when it was disabled now."""
    final = claimed.attempt >= MAX_ATTEMPTS
    values: dict[str, Any] = {"last_status_code": result.status_code, "last_error": (result.error or "")[:1000]}
    if final:
        values.update(status="failed", next_attempt_at=now)
    else:
        values.update(next_attempt_at=now + backoff(claimed.attempt))
    log.info("webhook %s delivery %s attempt %s failed: %s", claimed.hook_id, claimed.delivery_id, claimed.attempt,
             result.error)
    with db.transaction() as session:
        session.execute(update(WebhookDelivery).where(*_mine(claimed)).values(**values)
                        .execution_options(synchronize_session=False))
        session.execute(update(Webhook).where(Webhook.id == claimed.hook_id)
                        .values(consecutive_failures=Webhook.consecutive_failures + 1)
                        .execution_options(synchronize_session=False))
        failures = session.scalar(select(Webhook.consecutive_failures).where(Webhook.id == claimed.hook_id)) or 0
        return _maybe_disable(session, claimed.hook_id, failures, now)


def _maybe_disable(session: Session, hook_id: int, failures: int, now: dt.datetime) -> bool:
    if failures < DISABLE_AFTER_FAILURES:
        return False
    hook = session.get(Webhook, hook_id)
    if hook is None or not hook.active:
        return False
    last_success = session.scalar(select(func.max(WebhookDelivery.delivered_at))
                                  .where(WebhookDelivery.webhook_id == hook_id))
    since = max(moment for moment in (last_success, hook.created_at) if moment is not None)
    if now - since < DISABLE_AFTER_FAILING_FOR:
        return False
    reason = (f"Disabled after {failures} failed attempts in a row and no successful delivery since "
              f"{since:%Y-%m-%d %H:%M} UTC.")
    disabled = session.execute(
        update(Webhook).where(Webhook.id == hook_id, Webhook.active.is_(True))
        .values(active=False, disabled_reason=reason).execution_options(synchronize_session=False)
    ).rowcount
    if disabled != 1:
        return False
    host = _host_of(hook.url)
    seclog.record(session, "webhook.disabled", detail={"webhook_id": hook_id, "host": host,
                                                       "consecutive_failures": failures, "reason": reason})
    _notify_admins(session, hook_id, host, now)
    log.warning("webhook %s (%s) disabled: %s", hook_id, host, reason)
    return True


def _notify_admins(session: Session, hook_id: int, host: str, now: dt.datetime) -> None:
    """A bell notice for every active user who may manage webhooks."""
    user_ids = session.scalars(
        select(User.id).distinct()
        .join(UserRole, UserRole.user_id == User.id)
        .join(RolePermission, RolePermission.role_id == UserRole.role_id)
        .where(RolePermission.permission == PERMISSION, User.active.is_(True))
    ).all()
    for user_id in user_ids:
        session.add(Notification(
            user_id=user_id, kind="webhook.disabled", created_at=now,
            title=f"Webhook #{hook_id} to {host} was disabled: its deliveries kept failing."[:300],
            dedupe_key=f"webhook.disabled:{hook_id}:{int(now.timestamp())}:{user_id}",
        ))
