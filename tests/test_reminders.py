"""Task reminders (host.core.reminders): each task and due time is notified
once, by whichever worker gets there first, with one e-mail sent after the
notification committed; done, deleted and snoozed tasks are skipped; a
rescheduled task is notified again; a task still open a day later gets one
"overdue" notice.

Two workers are two apps on one database, running at the same instant in
two threads; mail goes to a real SMTP server (aiosmtpd on 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from host import jobs
from host.core import reminders
from host.core.models import Notification, Task
from host.models import Job
from host.security.models import User
from host.testing import make_user

from .test_timeline import add_contact, add_task, set_values

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 9, 0, 0, 250000, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


def db_of(app):
    return app.extensions["mosaic"].db


def notifications(app) -> list[Notification]:
    with db_of(app).Session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def keys(app) -> list[str]:
    return [n.dedupe_key for n in notifications(app)]


def key(task_id: int, due: dt.datetime, overdue: bool = False) -> str:
    return f"task:{task_id}:{due.isoformat()}" + (":overdue" if overdue else "")


# --- a real SMTP server -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp():
    """(mailbox, smtp_url) of an aiosmtpd server for this test."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, f"smtp://127.0.0.1:{port}"
    controller.stop()


# --- what is due ------------------------------------------------------------------------------------


def test_a_due_task_is_notified_once_with_its_mail(make_app, smtp):
    mailbox, url = smtp
    app = make_app(plugins=[], smtp_url=url, base_url="https://crm.example.com")
    ann = make_user(app, "ann@example.com")
    contact = add_contact(app, "Ana Lima", ann)
    due = NOW - 5 * MINUTE
    task = add_task(app, contact, "Call back about the quote", due, ann)
    add_task(app, contact, "Not yet", NOW + 2 * MINUTE, ann)

    first = reminders.run_task_reminders(app, NOW)
    second = reminders.run_task_reminders(app, NOW + MINUTE)

    assert [r.task_id for r in first] == [task] and second == []
    [notice] = notifications(app)
    assert (notice.user_id, notice.kind, notice.title, notice.url, notice.dedupe_key) == (
        ann, "task.due", "Task due: Call back about the quote", f"/tasks/{task}", key(task, due))
    [message] = mailbox.messages
    assert message["To"] == "ann@example.com" and message["Subject"] == "Task due: Call back about the quote"
    body = message.get_body(("plain",)).get_content()
    assert "Due: 2026-06-01 08:55 UTC" in body and f"https://crm.example.com/tasks/{task}" in body


def test_done_deleted_snoozed_unassigned_and_inactive_tasks_are_skipped(make_app):
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    gone = make_user(app, "gone@example.com")
    contact = add_contact(app, "Ana Lima", ann)
    binned_contact = add_contact(app, "Binned", ann, deleted_at=NOW - DAY)
    due = NOW - MINUTE
    add_task(app, contact, "done", due, ann, done=True)
    add_task(app, contact, "binned", due, ann, deleted_at=NOW - MINUTE)
    add_task(app, binned_contact, "on a binned contact", due, ann)
    add_task(app, contact, "snoozed", due, ann, snoozed_until=NOW + MINUTE)
    add_task(app, contact, "nobody's", due, None)
    add_task(app, contact, "deactivated user's", due, gone)
    set_values(app, User, gone, active=False)
    woke = add_task(app, contact, "snooze over", due, ann, snoozed_until=NOW - MINUTE)
    loose = add_task(app, None, "without a contact", due, ann)

    reminders.run_task_reminders(app, NOW)

    assert sorted(keys(app)) == sorted([key(woke, due), key(loose, due)])


def test_a_snoozed_task_is_notified_when_the_snooze_ends(make_app):
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    due = NOW - MINUTE
    task = add_task(app, None, "later please", due, ann, snoozed_until=NOW + 10 * MINUTE)
    assert reminders.run_task_reminders(app, NOW) == []
    assert [r.task_id for r in reminders.run_task_reminders(app, NOW + 10 * MINUTE)] == [task]


def test_a_rescheduled_task_is_notified_again_for_its_new_due_time(make_app):
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    first_due = NOW - MINUTE
    task = add_task(app, None, "Call", first_due, ann)
    reminders.run_task_reminders(app, NOW)
    new_due = NOW + 30 * MINUTE
    set_values(app, Task, task, due_at=new_due)

    assert reminders.run_task_reminders(app, NOW + 29 * MINUTE) == []
    reminders.run_task_reminders(app, NOW + 31 * MINUTE)
    reminders.run_task_reminders(app, NOW + 32 * MINUTE)

    assert keys(app) == [key(task, first_due), key(task, new_due)]


def test_an_open_task_gets_one_overdue_notice_a_day_later(make_app):
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    due = NOW - MINUTE
    task = add_task(app, None, "Call", due, ann)
    finished = add_task(app, None, "Done in time", due, ann)
    reminders.run_task_reminders(app, NOW)
    set_values(app, Task, finished, done=True, done_at=NOW)

    assert reminders.run_task_reminders(app, due + DAY - MINUTE) == []
    late = reminders.run_task_reminders(app, due + DAY)
    reminders.run_task_reminders(app, due + 2 * DAY)

    assert [(r.task_id, r.overdue) for r in late] == [(task, True)]
    assert keys(app) == [key(task, due), key(finished, due), key(task, due, overdue=True)]
    assert notifications(app)[-1].title == "Task overdue: Call" and notifications(app)[-1].kind == "task.overdue"


def test_a_task_first_seen_late_gets_only_the_overdue_notice_and_old_ones_none(make_app):
    """A worker that was down catches up for a week, without a burst of
    stale "due" notices; due times older than that are left to the task list."""
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    two_days = add_task(app, None, "two days late", NOW - 2 * DAY, ann)
    add_task(app, None, "from last month", NOW - reminders.OVERDUE_AFTER - reminders.CATCH_UP - MINUTE, ann)
    reminders.run_task_reminders(app, NOW)
    assert keys(app) == [key(two_days, NOW - 2 * DAY, overdue=True)]


# --- two workers ----------------------------------------------------------------------------------


def run_together(apps, now) -> list[list[reminders.Reminder]]:
    """Each app's pass at the same instant, started together in its own thread."""
    barrier, results, errors = threading.Barrier(len(apps)), [None] * len(apps), []

    def work(index, app):
        try:
            barrier.wait()
            results[index] = reminders.run_task_reminders(app, now)
        except Exception as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, a)) for i, a in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    return results


def test_two_workers_notify_and_mail_each_reminder_exactly_once(make_app, smtp):
    mailbox, url = smtp
    first = make_app(plugins=[], smtp_url=url)
    second = make_app(plugins=[], smtp_url=url, migrate=False)
    assignees = [make_user(first, f"rep{i}@example.com") for i in range(3)]
    tasks = [add_task(first, None, f"task {i}", NOW - i * MINUTE, assignees[i % 3]) for i in range(30)]

    rounds = [run_together([first, second], NOW + i * MINUTE) for i in range(3)]

    created = [r.dedupe_key for one_round in rounds for worker in one_round for r in worker]
    assert sorted(created) == sorted(keys(first)), "every notice was created by exactly one worker"
    assert len(keys(first)) == len(set(keys(first))) == len(tasks) == 30
    subjects = sorted((m["To"], m["Subject"]) for m in mailbox.messages)
    expected = sorted((f"rep{i % 3}@example.com", f"Task due: task {i}") for i in range(30))
    assert subjects == expected, "one mail per notice, none twice"


def test_workers_that_read_the_same_due_list_still_create_and_mail_each_once(make_app, smtp):
    """The worst interleaving, forced: both workers found the same due tasks
    before either committed. The unique key decides; only the winner mails."""
    mailbox, url = smtp
    apps = [make_app(plugins=[], smtp_url=url), make_app(plugins=[], smtp_url=url, migrate=False)]
    ann = make_user(apps[0], "ann@example.com")
    for i in range(10):
        add_task(apps[0], None, f"task {i}", NOW - i * MINUTE, ann)
    with db_of(apps[0]).Session() as session:
        due = reminders.due_reminders(session, NOW)
    assert len(due) == 10
    barrier, won = threading.Barrier(2), [None, None]

    def work(index, app):
        barrier.wait()
        with db_of(app).transaction() as session:
            won[index] = reminders.record_reminders(session, due)
        reminders.mail_reminders(app, won[index])

    threads = [threading.Thread(target=work, args=(i, a)) for i, a in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(len(w) for w in won) == [0, 10]
    assert len(keys(apps[0])) == 10
    assert sorted(m["Subject"] for m in mailbox.messages) == sorted(f"Task due: task {i}" for i in range(10))


def test_without_smtp_the_mail_log_is_the_outbox(make_app, caplog):
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    add_task(app, None, "Call", NOW - MINUTE, ann)
    with caplog.at_level(logging.INFO, logger="mosaic.mail"):
        reminders.run_task_reminders(app, NOW)
        reminders.run_task_reminders(app, NOW + MINUTE)
    logged = [r.getMessage() for r in caplog.records if r.name == "mosaic.mail"]
    assert len(logged) == 1 and "Subject: Task due: Call" in logged[0] and "To: ann@example.com" in logged[0]


def test_a_failing_mail_server_keeps_the_notification_and_is_not_retried(make_app, caplog):
    app = make_app(plugins=[], smtp_url=f"smtp://127.0.0.1:{free_port()}")  # nothing listens
    ann = make_user(app, "ann@example.com")
    task = add_task(app, None, "Call", NOW - MINUTE, ann)
    with caplog.at_level(logging.ERROR, logger="mosaic.reminders"):
        assert len(reminders.run_task_reminders(app, NOW)) == 1
        assert reminders.run_task_reminders(app, NOW + MINUTE) == []
    assert keys(app) == [key(task, NOW - MINUTE)]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"task {task}"]


# --- the periodic job ----------------------------------------------------------------------------


def test_the_periodic_job_runs_once_per_period_across_workers_and_notifies(make_app):
    first = make_app(plugins=[], jobs_inline=True)
    second = make_app(plugins=[], jobs_inline=True, migrate=False)
    assert first.extensions["mosaic"].jobs[reminders.JOB_NAME].every == reminders.EVERY_SECONDS
    ann = make_user(first, "ann@example.com")
    real_now = dt.datetime.now(UTC)
    task = add_task(first, None, "Call", real_now - MINUTE, ann)

    started = [name for app in (first, second) for name in jobs.run_due_periodic(app, now=real_now)]

    assert started.count(reminders.JOB_NAME) == 1
    with db_of(first).Session() as session:
        [job] = session.scalars(select(Job).where(Job.name == reminders.JOB_NAME))
    assert job.status == "done" and job.result == {"notified": 1, "mailed": 1}
    assert keys(first) == [key(task, real_now - MINUTE)]
