"""Outgoing webhooks, against a real HTTP receiver on 127.0.0.1.

No HTTP is mocked: ``Receiver`` is an ``http.server`` in a thread that
records what arrives and answers as told per path. Time is moved by passing
``now`` to ``deliver_webhooks`` (backoff, the disable rule, the gap grace).
The apps allow private destinations (the receiver is on loopback) except
where a test proves the SSRF guard.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from hooks import Event
from host.core import webhooks
from host.core.models import Notification, Webhook, WebhookDelivery
from host.db import utcnow
from host.events import publish
from host.jobs import enqueue, get_job
from host.models import OutboxEvent
from host.security.models import SecurityEvent
from host.testing import api_token, bearer, make_user

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


# --- a real receiver ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request. ``answer(path,
    *statuses)`` queues the statuses for ``path`` (the last one repeats);
    the default is 200. ``delay`` slows every answer down."""

    def __init__(self):
        self.requests: list[Received] = []
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver._record(self.path, dict(self.headers.items()), body)
                if receiver.delay:
                    time.sleep(receiver.delay)
                payload = b"receiver says no" if status >= 400 else b"ok"
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, path, headers, body):
        with self._lock:
            self.requests.append(Received(path, headers, body))
            queue = self.answers.get(path) or [(200, {})]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def answer(self, path: str, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.answers[path] = [(status, dict(headers or {})) for status in statuses]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]


@pytest.fixture
def receiver():
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], webhooks_allow_private=True)


# --- helpers --------------------------------------------------------------------------


def db_of(app):
    return app.extensions["mosaic"].db


def is_postgres(app) -> bool:
    return not db_of(app).is_sqlite


def register(app, url: str, event_types=("*",)) -> tuple[int, str]:
    allow = app.extensions["mosaic"].config.webhooks_allow_private
    with app.app_context(), db_of(app).transaction() as session:
        hook, secret = webhooks.create_webhook(session, url, list(event_types), allow_private=allow)
        return hook.id, secret


def emit(app, event_type: str = "contact.created", **data) -> int:
    with db_of(app).transaction() as session:
        return publish(session, Event(event_type, data or {"contact_id": 1})).id


def deliver(app, now: dt.datetime) -> webhooks.PassReport:
    return webhooks.deliver_webhooks(app, now=now)


def deliveries(app, hook_id: int) -> list[WebhookDelivery]:
    with db_of(app).Session() as session:
        return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
                                    .order_by(WebhookDelivery.event_id)))


def hook_row(app, hook_id: int) -> Webhook | None:
    with db_of(app).Session() as session:
        return session.get(Webhook, hook_id)


def security_events(app, kind: str) -> list[SecurityEvent]:
    with db_of(app).Session() as session:
        return list(session.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind)))


# --- signing and the payload ----------------------------------------------------------


def test_a_delivery_is_a_signed_json_post_the_receiver_can_verify(app, receiver):
    hook_id, secret = register(app, receiver.url())
    event_id = emit(app, "contact.created", contact_id=42, name="Иван Петров")
    now = utcnow()

    report = deliver(app, now)

    assert report.delivered == 1
    [request] = receiver.received()
    [delivery] = deliveries(app, hook_id)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Mosaic-Event"] == "contact.created"
    assert request.headers["X-Mosaic-Delivery"] == str(delivery.id)
    body = request.json
    assert body["id"] == event_id and body["type"] == "contact.created"
    assert body["data"] == {"contact_id": 42, "name": "Иван Петров"}
    assert dt.datetime.fromisoformat(body["occurred_at"]).tzinfo is not None
    assert set(body) == {"id", "type", "occurred_at", "data"}

    header = request.headers["X-Mosaic-Signature"]
    assert header.startswith(f"t={int(now.timestamp())},v1=")
    assert webhooks.verify_signature(secret, header, request.body, now=now)
    assert webhooks.verify_signature(secret, header, request.body, now=now + dt.timedelta(seconds=299))
    assert not webhooks.verify_signature(secret, header, request.body.replace(b"42", b"43"), now=now), "tampered body"
    assert not webhooks.verify_signature("whsec_wrong", header, request.body, now=now), "wrong secret"
    assert not webhooks.verify_signature(secret, header, request.body, now=now + dt.timedelta(seconds=301)), "replayed"
    assert not webhooks.verify_signature(secret, header, request.body, now=now - dt.timedelta(seconds=301))
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at == now


def test_verify_signature_refuses_malformed_headers_and_accepts_any_matching_v1():
    body, secret, t = b'{"id":1}', "whsec_abc", 1_700_000_000
    good = webhooks.sign(secret, body, t)
    mac = good.split("v1=")[1]
    assert webhooks.verify_signature(secret, good, body, now=t)
    assert webhooks.verify_signature(secret, good, body.decode(), now=t), "str and bytes bodies alike"
    # A receiver may be sent several v1 values (e.g. during a key change): one match is enough.
    assert webhooks.verify_signature(secret, f"t={t},v1={'0' * 64},v1={mac}", body, now=t)
    # Moving the timestamp breaks the MAC: the time cannot be refreshed for a replay.
    assert not webhooks.verify_signature(secret, f"t={t + 100},v1={mac}", body, now=t + 100)
    for header in (None, "", f"v1={mac}", f"t={t}", f"t=soon,v1={mac}", "garbage", f"t={t},v0={mac}"):
        assert not webhooks.verify_signature(secret, header, body, now=t), header
    assert not webhooks.verify_signature("", good, body, now=t)


# --- what is delivered ------------------------------------------------------------------


def test_only_subscribed_event_types_are_delivered(app, receiver):
    narrow, _ = register(app, receiver.url("/narrow"), ["contact.created", "task.due"])
    everything, _ = register(app, receiver.url("/all"), ["*"])
    ids = [emit(app, "contact.created"), emit(app, "deal.won"), emit(app, "contact.updated"), emit(app, "task.due")]

    deliver(app, utcnow())

    assert [r.json["type"] for r in receiver.received("/narrow")] == ["contact.created", "task.due"]
    assert [r.json["id"] for r in receiver.received("/all")] == ids
    assert [d.event_id for d in deliveries(app, narrow)] == [ids[0], ids[3]]
    assert len(deliveries(app, everything)) == 4


def test_a_new_webhook_starts_at_the_newest_event(app, receiver):
    emit(app, "contact.created", contact_id=1)
    hook_id, _ = register(app, receiver.url())
    later = emit(app, "contact.created", contact_id=2)

    deliver(app, utcnow())

    assert [r.json["id"] for r in receiver.received()] == [later]
    assert hook_row(app, hook_id).cursor == later


# --- retries ----------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_exponential_backoff_then_given_up(app, receiver):
    receiver.answer("/hook", 500)
    hook_id, _ = register(app, receiver.url())
    emit(app)
    t = utcnow()

    deliver(app, t)
    waits = []
    for attempt in range(1, webhooks.MAX_ATTEMPTS):
        [delivery] = deliveries(app, hook_id)
        assert (delivery.status, delivery.attempts) == ("pending", attempt)
        wait = delivery.next_attempt_at - t
        waits.append(wait)
        deliver(app, t + wait - dt.timedelta(seconds=1))  # not due yet: nothing is sent
        assert len(receiver.received()) == attempt
        t += wait
        deliver(app, t)

    assert waits == [MINUTE * 1, MINUTE * 2, MINUTE * 4, MINUTE * 8, MINUTE * 16, MINUTE * 32, HOUR]
    [delivery] = deliveries(app, hook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", webhooks.MAX_ATTEMPTS, 500)
    assert delivery.last_error == "HTTP 500: receiver says no"
    assert delivery.delivered_at is None
    deliver(app, t + dt.timedelta(days=3))
    assert len(receiver.received()) == webhooks.MAX_ATTEMPTS, "a failed delivery is not tried again"
    assert hook_row(app, hook_id).consecutive_failures == webhooks.MAX_ATTEMPTS


def test_success_stops_the_retries_and_resets_the_failure_count(app, receiver):
    receiver.answer("/hook", 503, 503, 204)
    hook_id, _ = register(app, receiver.url())
    emit(app)
    t = utcnow()

    deliver(app, t)
    deliver(app, t + MINUTE)
    assert hook_row(app, hook_id).consecutive_failures == 2
    deliver(app, t + MINUTE * 3)
    for later in (HOUR, dt.timedelta(days=2)):
        deliver(app, t + later)

    assert len(receiver.received()) == 3
    [delivery] = deliveries(app, hook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 204)
    assert delivery.last_error is None
    assert hook_row(app, hook_id).consecutive_failures == 0


def test_two_concurrent_passes_send_every_delivery_exactly_once(app, receiver):
    receiver.delay = 0.2  # both passes are mid-send at the same time
    hook_id, _ = register(app, receiver.url())
    ids = [emit(app, "contact.created", contact_id=n) for n in range(6)]
    now = utcnow()
    start = threading.Barrier(2)
    reports, errors = [], []

    def one_pass():
        start.wait()
        try:
            reports.append(deliver(app, now))
        except Exception as exc:  # noqa: BLE001 - surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(r.json["id"] for r in receiver.received()) == ids
    assert sum(report.delivered for report in reports) == len(ids)
    assert [(d.status, d.attempts) for d in deliveries(app, hook_id)] == [("delivered", 1)] * len(ids)
    deliver(app, now + HOUR)
    assert len(receiver.received()) == len(ids), "nothing is delivered twice after success"


def test_a_redirect_is_a_failure_and_is_not_followed(app, receiver):
    receiver.answer("/hook", 302, headers={"Location": receiver.url("/elsewhere")})
    hook_id, _ = register(app, receiver.url("/hook"))
    emit(app)

    deliver(app, utcnow())

    assert receiver.received("/elsewhere") == []
    [delivery] = deliveries(app, hook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 302)
    assert "redirect" in delivery.last_error and "not followed" in delivery.last_error


def test_a_receiver_that_does_not_answer_in_time_is_a_failure(app, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT", 0.3)
    receiver.delay = 1.5
    hook_id, _ = register(app, receiver.url())
    emit(app)

    started = time.monotonic()
    deliver(app, utcnow())

    assert time.monotonic() - started < 1.4
    [delivery] = deliveries(app, hook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "timed out" in delivery.last_error


def test_a_dead_receiver_costs_one_attempt_per_pass_not_one_per_event(app, receiver):
    receiver.answer("/down", 500)
    down, _ = register(app, receiver.url("/down"))
    register(app, receiver.url("/up"))
    for n in range(5):
        emit(app, "contact.created", contact_id=n)

    report = deliver(app, utcnow())

    assert len(receiver.received("/down")) == 1
    assert len(receiver.received("/up")) == 5, "a failing webhook does not hold up the others"
    assert (report.failed_attempts, report.delivered) == (1, 5)
    assert [d.attempts for d in deliveries(app, down)] == [1, 0, 0, 0, 0]


def test_https_receivers_must_present_a_trusted_certificate(app, receiver, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    hook_id, _ = register(app, receiver.url().replace("http://", "https://"))
    emit(app)

    deliver(app, utcnow())

    assert receiver.received() == [], "nothing is sent over an unverified connection"
    [delivery] = deliveries(app, hook_id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error


# --- the SSRF guard -------------------------------------------------------------------


def test_private_and_loopback_destinations_are_refused_without_the_setting(make_app, receiver):
    strict = make_app(plugins=[])
    port = receiver.server.server_address[1]
    for url in (
        receiver.url(),
        f"http://localhost:{port}/hook",
        "http://10.1.2.3/hook",
        f"http://[::1]:{port}/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",  # loopback inside IPv6
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://224.0.0.1/hook",  # multicast
    ):
        with pytest.raises(webhooks.UnsafeDestination) as refused:
            register(strict, url)
        assert "not a public address" in refused.value.message and "webhooks_allow_private" in refused.value.message, url
    hook_id, _ = register(strict, "https://93.184.216.34/hook")  # a public address is fine (no DNS needed)
    assert hook_row(strict, hook_id).active
    with pytest.raises(webhooks.UnsafeDestination, match="Cannot resolve"):
        register(strict, "https://no-such-host.invalid/hook")


def test_urls_must_be_http_without_credentials(app):
    for url, message in (
        ("ftp://93.184.216.34/hook", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("javascript:alert(1)", "Only http and https"),
        ("http://user:pw@93.184.216.34/hook", "credentials"),
        ("http://token@93.184.216.34/hook", "credentials"),
        ("http:///no-host", "needs a host"),
        ("http://93.184.216.34:99999/hook", "port"),
        ("http://93.184.216.34/a b", "spaces"),
        ("", "required"),
    ):
        with pytest.raises(webhooks.WebhookError) as invalid:
            register(app, url)
        assert invalid.value.field == "url" and message in invalid.value.message, url


def test_every_resolved_address_must_be_public():
    def resolving_to(*addresses):
        return lambda host, port: list(addresses)

    url = "https://hooks.example.com/in"
    assert webhooks.resolve_destination(url, allow_private=False, resolver=resolving_to("93.184.216.34", "2606:2800:220:1::1")) == [
        "93.184.216.34", "2606:2800:220:1::1"]
    for bad in ("10.0.0.7", "fd00::1", "fe80::1", "::1", "64:ff9b::a00:1", "2002:7f00:1::1", "100.64.0.1"):
        with pytest.raises(webhooks.UnsafeDestination):
            webhooks.resolve_destination(url, allow_private=False, resolver=resolving_to("93.184.216.34", bad))
    # NAT64 and 6to4 addresses are judged by the IPv4 address they carry.
    assert webhooks.is_public_address("64:ff9b::5db8:d822")  # 93.184.216.34
    assert webhooks.resolve_destination(url, allow_private=True, resolver=resolving_to("10.0.0.7")) == ["10.0.0.7"]


def test_the_destination_is_checked_again_at_delivery_time(make_app, receiver):
    permissive = make_app(plugins=[], webhooks_allow_private=True)
    hook_id, _ = register(permissive, receiver.url())  # allowed when registered ...
    emit(permissive)
    strict = make_app(plugins=[])  # ... but the install no longer allows private targets
    t = utcnow()

    deliver(strict, t)

    assert receiver.received() == []
    [delivery] = deliveries(strict, hook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "not a public address" in delivery.last_error
    deliver(permissive, t + MINUTE)
    assert len(receiver.received()) == 1, "the same delivery goes out where it is allowed"


# --- disabling a webhook that keeps failing ----------------------------------------------


def test_a_webhook_that_keeps_failing_is_disabled_with_a_notice(app, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answer("/hook", 500)
    admin = make_user(app, "admin@example.com", roles=("admin",))
    make_user(app, "staff@example.com", roles=("staff",))
    hook_id, secret = register(app, receiver.url())
    for n in range(4):  # 4 deliveries x 8 attempts: enough failures for the rule
        emit(app, "contact.created", contact_id=n)
    t = hook_row(app, hook_id).created_at

    for hour in range(1, 24):  # one failed attempt per pass, 23 in a row, but not yet 24 hours
        deliver(app, t + hour * HOUR)
        assert hook_row(app, hook_id).active, f"disabled after {hour} hours"
    assert hook_row(app, hook_id).consecutive_failures == 23 >= webhooks.DISABLE_AFTER_FAILURES

    report = deliver(app, t + 24 * HOUR)

    hook = hook_row(app, hook_id)
    assert report.disabled == 1
    assert not hook.active and "24 failed attempts in a row" in hook.disabled_reason
    [entry] = security_events(app, "webhook.disabled")
    assert entry.detail["webhook_id"] == hook_id and entry.detail["host"] == "127.0.0.1"
    with db_of(app).Session() as session:
        notices = list(session.scalars(select(Notification).where(Notification.kind == "webhook.disabled")))
    assert [n.user_id for n in notices] == [admin], "only those who may manage webhooks are told"
    sent = len(receiver.received())
    deliver(app, t + 30 * HOUR)
    assert len(receiver.received()) == sent, "nothing is sent to a disabled webhook"
    assert secret not in caplog.text, "the secret never reaches the log"
    assert secret not in json.dumps([e.detail for e in security_events(app, "webhook.create")])

    # Re-enabled once the receiver works: the count starts over, pending deliveries resume.
    receiver.answer("/hook", 200)
    with app.app_context(), db_of(app).transaction() as session:
        webhooks.update_webhook(session, session.get(Webhook, hook_id), allow_private=True, active=True)
    hook = hook_row(app, hook_id)
    assert (hook.active, hook.consecutive_failures, hook.disabled_reason) == (True, 0, None)
    deliver(app, t + 31 * HOUR)
    assert any(d.status == "delivered" for d in deliveries(app, hook_id))


def test_a_webhook_that_succeeded_recently_is_not_disabled(app, receiver):
    receiver.answer("/hook", 200, *([500] * 40))
    hook_id, _ = register(app, receiver.url())
    emit(app)
    t = hook_row(app, hook_id).created_at + dt.timedelta(hours=30)
    deliver(app, t)  # a success, 30 hours after creation
    for n in range(5):
        emit(app, "contact.created", contact_id=n)

    for minute in range(1, 26):  # 25 failures in a row, all within a day of that success
        deliver(app, t + minute * HOUR / 2)

    hook = hook_row(app, hook_id)
    assert hook.consecutive_failures == 25 and hook.active


# --- reading the outbox: ids that commit out of order -------------------------------------


def _insert_outbox_row(app, event_id: int, event_type: str = "contact.created") -> None:
    """SQLite serialises writers, so ids always commit in order there. To
    show the consumer's side of a late commit, write ids out of order by hand."""
    with db_of(app).transaction() as session:
        session.add(OutboxEvent(id=event_id, type=event_type, source="host", data={"late": True}))


def test_an_event_whose_transaction_commits_late_is_still_delivered(app, receiver):
    hook_id, _ = register(app, receiver.url())
    start = hook_row(app, hook_id).cursor
    t = utcnow()
    if is_postgres(app):
        db = db_of(app)
        slow, fast = db.WriteSession(), db.WriteSession()
        try:
            early = publish(slow, Event("contact.created", {"who": "slow"})).id  # id drawn first ...
            late = publish(fast, Event("contact.updated", {"who": "fast"})).id
            fast.commit()  # ... but the higher id commits first
            assert early < late
            deliver(app, t)
            assert [r.json["id"] for r in receiver.received()] == [late]
            assert hook_row(app, hook_id).cursor == start, "the cursor waits below the uncommitted id"
            slow.commit()
        finally:
            slow.close()
            fast.close()
    else:
        early, late = start + 1, start + 2
        _insert_outbox_row(app, late, "contact.updated")
        deliver(app, t)
        assert [r.json["id"] for r in receiver.received()] == [late]
        assert hook_row(app, hook_id).cursor == start
        _insert_outbox_row(app, early)

    deliver(app, t + dt.timedelta(seconds=10))

    assert [r.json["id"] for r in receiver.received()] == [late, early]
    assert [(d.event_id, d.status) for d in deliveries(app, hook_id)] == [(early, "delivered"), (late, "delivered")]
    assert hook_row(app, hook_id).cursor == late
    deliver(app, t + HOUR)
    assert len(receiver.received()) == 2, "the event read again while the gap was open is sent once"


def test_a_gap_that_never_fills_is_passed_after_the_grace_period(app, receiver):
    hook_id, _ = register(app, receiver.url())
    start = hook_row(app, hook_id).cursor
    if is_postgres(app):
        with pytest.raises(RuntimeError), db_of(app).transaction() as session:
            publish(session, Event("contact.created", {"rolled": "back"}))  # draws an id, then rolls back
            raise RuntimeError
        after_gap = emit(app, "contact.updated")
    else:
        after_gap = start + 2
        _insert_outbox_row(app, after_gap, "contact.updated")
    assert after_gap == start + 2
    t = utcnow()

    deliver(app, t)
    deliver(app, t + webhooks.GAP_GRACE - MINUTE)
    assert hook_row(app, hook_id).cursor == start, "held below the gap while it may still commit"
    deliver(app, t + webhooks.GAP_GRACE + MINUTE)

    assert hook_row(app, hook_id).cursor == after_gap
    assert [r.json["id"] for r in receiver.received()] == [after_gap], "delivered once, at once"
    newer = emit(app, "contact.created")
    deliver(app, t + webhooks.GAP_GRACE + 2 * MINUTE)
    assert hook_row(app, hook_id).cursor == newer, "without a gap the cursor follows at once"


# --- the periodic job ------------------------------------------------------------------


def test_the_periodic_job_delivers(make_app, receiver):
    app = make_app(plugins=[], webhooks_allow_private=True, jobs_inline=True)
    definition = app.extensions["mosaic"].jobs[webhooks.JOB_NAME]
    assert definition.every == webhooks.JOB_EVERY <= 15
    register(app, receiver.url())
    emit(app)

    with app.app_context():
        job = get_job(enqueue(webhooks.JOB_NAME, {}, app=app), app=app)

    assert job["status"] == "done", job["error"]
    assert job["result"]["delivered"] == 1
    assert len(receiver.received()) == 1


# --- the admin API --------------------------------------------------------------------

BASE = "/api/v1/admin/webhooks"


@pytest.fixture
def admin(app):
    make_user(app, "admin@example.com", roles=("admin",))
    return bearer(api_token(app, "admin@example.com"))


def test_the_api_needs_the_webhook_permission(app, admin, receiver):
    make_user(app, "staff@example.com", roles=("staff",))
    staff = bearer(api_token(app, "staff@example.com"))
    client = app.test_client()
    created = client.post(BASE, json={"url": receiver.url(), "event_types": ["*"]}, headers=admin)
    assert created.status_code == 201
    one = f"{BASE}/{created.get_json()['id']}"
    calls = [("get", BASE), ("post", BASE), ("get", one), ("patch", one), ("delete", one),
             ("post", f"{one}/rotate-secret"), ("get", f"{one}/deliveries"), ("post", f"{one}/test")]

    for method, path in calls:
        body = {"json": {"active": False}} if method in ("post", "patch") and path in (BASE, one) else {}
        assert getattr(client, method)(path, **body).status_code == 401, (method, path)
        assert getattr(client, method)(path, headers=staff, **body).status_code == 403, (method, path)
    assert client.get(BASE, headers=admin).status_code == 200
    assert client.get(one, headers=admin).status_code == 200
    with db_of(app).Session() as session:
        assert session.scalar(select(Webhook.active).where(Webhook.id == created.get_json()["id"])), "staff changed nothing"


def test_the_secret_is_shown_once_and_rotation_replaces_it(app, admin, receiver):
    client = app.test_client()
    created = client.post(BASE, json={"url": receiver.url(), "event_types": ["contact.created"]}, headers=admin)
    body = created.get_json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["event_types"] == ["contact.created"] and body["active"] is True
    one = f"{BASE}/{body['id']}"
    assert "secret" not in client.get(one, headers=admin).get_json()
    assert "secret" not in client.get(BASE, headers=admin).get_json()["items"][0]
    assert secret not in client.get(BASE, headers=admin).get_data(as_text=True)

    rotated = client.post(f"{one}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["secret"]
    assert new_secret != secret and new_secret.startswith("whsec_")
    assert "secret" not in client.get(one, headers=admin).get_json()
    [entry] = security_events(app, "webhook.secret_rotate")
    assert entry.detail == {"webhook_id": body["id"], "host": "127.0.0.1"}

    emit(app)
    now = utcnow()
    deliver(app, now)
    [request] = receiver.received()
    assert webhooks.verify_signature(new_secret, request.headers["X-Mosaic-Signature"], request.body, now=now)
    assert not webhooks.verify_signature(secret, request.headers["X-Mosaic-Signature"], request.body, now=now)


def test_the_api_validates_input(make_app, receiver):
    app = make_app(plugins=[])  # private destinations not allowed here
    make_user(app, "admin@example.com", roles=("admin",))
    admin = bearer(api_token(app, "admin@example.com"))
    client = app.test_client()

    def errors(response, status=422):
        assert response.status_code == status, response.get_json()
        return response.get_json().get("errors", {}).get("json", {})

    assert "not a public address" in errors(client.post(BASE, json={"url": receiver.url(), "event_types": ["*"]},
                                                        headers=admin))["url"][0]
    assert "credentials" in errors(client.post(BASE, json={"url": "https://u:p@93.184.216.34/", "event_types": ["*"]},
                                               headers=admin))["url"][0]
    assert "event_types" in errors(client.post(BASE, json={"url": "https://93.184.216.34/", "event_types": []},
                                               headers=admin))
    assert "not an event type" in errors(client.post(BASE, json={"url": "https://93.184.216.34/",
                                                                 "event_types": ["Contact Created"]}, headers=admin))["event_types"][0]
    assert errors(client.post(BASE, json={"url": "https://93.184.216.34/", "event_types": ["*"], "secret": "mine"},
                              headers=admin)) == {"secret": ["Unknown field."]}
    created = client.post(BASE, json={"url": "https://93.184.216.34/in", "event_types": ["contact.created", "*"]},
                          headers=admin)
    assert created.status_code == 201 and created.get_json()["event_types"] == ["*"]
    one = f"{BASE}/{created.get_json()['id']}"
    assert client.patch(one, json={}, headers=admin).status_code == 422
    assert "url" in errors(client.patch(one, json={"url": "http://10.0.0.1/"}, headers=admin))
    assert client.get(one, headers=admin).get_json()["url"] == "https://93.184.216.34/in", "a refused change changes nothing"
    missing = f"{BASE}/987654"
    for method, path in (("get", missing), ("patch", missing), ("delete", missing), ("get", f"{missing}/deliveries"),
                         ("post", f"{missing}/test"), ("post", f"{missing}/rotate-secret")):
        kwargs = {"json": {"active": True}} if method == "patch" else {}
        assert getattr(client, method)(path, headers=admin, **kwargs).status_code == 404, (method, path)


def test_update_pauses_and_re_enabling_starts_over(app, admin, receiver):
    client = app.test_client()
    hook_id = client.post(BASE, json={"url": receiver.url(), "event_types": ["*"]}, headers=admin).get_json()["id"]
    one = f"{BASE}/{hook_id}"

    paused = client.patch(one, json={"active": False, "event_types": ["deal.won"]}, headers=admin).get_json()
    assert (paused["active"], paused["event_types"]) == (False, ["deal.won"])
    assert paused["disabled_reason"]
    emit(app, "deal.won")  # while inactive: never sent
    deliver(app, utcnow())
    assert receiver.received() == []
    with db_of(app).transaction() as session:
        session.get(Webhook, hook_id).consecutive_failures = 7

    resumed = client.patch(one, json={"active": True}, headers=admin).get_json()
    assert (resumed["active"], resumed["consecutive_failures"], resumed["disabled_reason"]) == (True, 0, None)
    won = emit(app, "deal.won")
    emit(app, "contact.created")
    deliver(app, utcnow())
    assert [r.json["id"] for r in receiver.received()] == [won]
    assert [e.detail["fields"] for e in security_events(app, "webhook.update")] == [["event_types", "active"], ["active"]]


def test_the_test_ping_goes_to_one_webhook_and_shows_in_the_delivery_log(app, admin, receiver):
    client = app.test_client()
    hook_id = client.post(BASE, json={"url": receiver.url("/one"), "event_types": ["*"]}, headers=admin).get_json()["id"]
    client.post(BASE, json={"url": receiver.url("/other"), "event_types": ["*"]}, headers=admin)

    queued = client.post(f"{BASE}/{hook_id}/test", headers=admin)
    assert queued.status_code == 202
    deliver(app, utcnow())

    [ping] = receiver.received("/one")
    assert ping.json["type"] == "webhook.test" and ping.json["data"]["webhook_id"] == hook_id
    assert ping.headers["X-Mosaic-Delivery"] == str(queued.get_json()["delivery_id"])
    assert receiver.received("/other") == [], "a ping is for its own webhook only"
    log = client.get(f"{BASE}/{hook_id}/deliveries", headers=admin).get_json()
    [item] = log["items"]
    assert item["event_type"] == "webhook.test" and item["status"] == "delivered" and item["attempts"] == 1
    assert item["last_status_code"] == 200 and item["event_id"] == queued.get_json()["event_id"]
    assert log["next"] is None


def test_the_delivery_log_pages_newest_first_and_filters_by_status(app, admin, receiver):
    receiver.answer("/hook", 200, 200, 500)
    client = app.test_client()
    hook_id = client.post(BASE, json={"url": receiver.url(), "event_types": ["*"]}, headers=admin).get_json()["id"]
    ids = [emit(app, "contact.created", contact_id=n) for n in range(3)]
    deliver(app, utcnow())
    path = f"{BASE}/{hook_id}/deliveries"

    first = client.get(f"{path}?limit=2", headers=admin).get_json()
    rest = client.get(f"{path}?limit=2&cursor={first['next']}", headers=admin).get_json()

    assert [i["event_id"] for i in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next"] is None
    failing = client.get(f"{path}?status=pending", headers=admin).get_json()["items"]
    assert [(i["event_id"], i["last_status_code"], i["last_error"]) for i in failing] == [
        (ids[2], 500, "HTTP 500: receiver says no")]
    assert client.get(f"{path}?status=bogus", headers=admin).status_code == 422
    assert client.get(f"{path}?cursor=%%%", headers=admin).status_code == 422


def test_deleting_a_webhook_removes_it_and_its_log(app, admin, receiver):
    client = app.test_client()
    hook_id = client.post(BASE, json={"url": receiver.url(), "event_types": ["*"]}, headers=admin).get_json()["id"]
    emit(app)
    deliver(app, utcnow())
    assert len(deliveries(app, hook_id)) == 1

    assert client.delete(f"{BASE}/{hook_id}", headers=admin).status_code == 204

    assert client.get(f"{BASE}/{hook_id}", headers=admin).status_code == 404
    assert deliveries(app, hook_id) == []
    emit(app)
    deliver(app, utcnow())
    assert len(receiver.received()) == 1
    assert [e.detail["webhook_id"] for e in security_events(app, "webhook.delete")] == [hook_id]
