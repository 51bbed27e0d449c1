"""Task reminders: no customer is forgotten.

The periodic job ``core.task_reminders`` (every minute) tells each assignee
(``task.owner_id``) about their open tasks that fell due: an in-app
notification, then an e-mail through ``host.mail.send_mail`` (without SMTP
configured, the mail log is the outbox, as for every host mail).

What is sent, per task and due time
    ``due``: once the due time has passed (kind ``task.due``), and
    ``overdue``: once more when the task is still open a day later (kind
    ``task.overdue``). A task that is a day late when the job first sees it
    (created late, or no worker ran meanwhile) gets only the ``overdue``
    notice. Due times older than ``CATCH_UP`` beyond that are not notified any
    more: they are in the task list, and the job must not rescan all history.

Skipped
    done tasks, tasks in the recycle bin (or whose contact is), tasks snoozed
    (``snoozed_until`` in the future: once the snooze ends, whichever notice
    is still due is sent), tasks without an assignee or with a deactivated one.

Exactly once, however many workers run
    The notification's ``dedupe_key`` is ``task:<id>:<due_at ISO>`` (plus
    ``:overdue`` for the second notice) and unique in the database; a worker
    inserts with ``ON CONFLICT DO NOTHING`` and learns which rows it created.
    Rescheduling a task changes the key, so the new due time is notified
    again. The e-mail is sent only by the worker that created the row, only
    after its transaction committed: at most once. A mail that fails is
    logged and not retried (a retry could not know whether the server got it);
    the in-app notice stays.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from flask import Flask
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hooks import JobDefinition
from host.db import utcnow
from host.mail import MailError, send_mail
from host.security.models import User

from .models import Contact, Notification, Task
from .notifications import NewNotification, add_notifications

log = logging.getLogger("mosaic.reminders")

JOB_NAME = "core.task_reminders"
EVERY_SECONDS = 60
#: A task still open this long after its due time gets the "overdue" notice.
OVERDUE_AFTER = dt.timedelta(days=1)
#: How long after it became due (or overdue) a notice is still sent when
#: the job did not run in time.
CATCH_UP = dt.timedelta(days=7)
#: Existing keys are looked up in chunks of this many (bound parameters).
_KEY_CHUNK = 500


@dataclass(frozen=True)
class Reminder:
    """One notice for one assignee about one task and due time."""

    task_id: int
    user_id: int
    email: str
    title: str
    due_at: dt.datetime
    overdue: bool

    @property
    def dedupe_key(self) -> str:
        key = f"task:{self.task_id}:{self.due_at.isoformat()}"
        return f"{key}:overdue" if self.overdue else key

    @property
    def heading(self) -> str:
        return f"{'Task overdue' if self.overdue else 'Task due'}: {self.title}"

    @property
    def url(self) -> str:
        return f"/tasks/{self.task_id}"


# --- finding what is due -------------------------------------------------------------------


def due_reminders(session: Session, now: dt.datetime) -> list[Reminder]:
    """The notices due at ``now`` that no worker has created yet."""
    candidates = list(_candidates(session, now))
    sent = _existing_keys(session, [r.dedupe_key for r in candidates])
    return [r for r in candidates if r.dedupe_key not in sent]


def _candidates(session: Session, now: dt.datetime) -> Iterable[Reminder]:
    """Open tasks due within the windows, each as its one current notice:
    ``due`` during the first day, ``overdue`` after it."""
    oldest = now - OVERDUE_AFTER - CATCH_UP
    query = (
        select(Task.id, Task.title, Task.due_at, Task.owner_id, User.email)
        .join(User, User.id == Task.owner_id)
        .outerjoin(Contact, Contact.id == Task.contact_id)
        .where(
            Task.done.is_(False),
            Task.deleted_at.is_(None),
            Task.due_at <= now,
            Task.due_at > oldest,
            or_(Task.snoozed_until.is_(None), Task.snoozed_until <= now),
            User.active.is_(True),
            Contact.deleted_at.is_(None),  # no contact (NULL row) passes too
        )
        .order_by(Task.due_at, Task.id)
    )
    for task_id, title, due_at, owner_id, email in session.execute(query):
        yield Reminder(task_id, owner_id, email, title, due_at, overdue=now - due_at >= OVERDUE_AFTER)


def _existing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start:start + _KEY_CHUNK]
        found.update(session.scalars(select(Notification.dedupe_key).where(Notification.dedupe_key.in_(chunk))))
    return found


# --- notifying ---------------------------------------------------------------------------


def record_reminders(session: Session, reminders: Sequence[Reminder]) -> list[Reminder]:
    """Create the notifications; return the reminders this call created
    (another worker may have created some of them meanwhile)."""
    notices = [
        NewNotification(user_id=r.user_id, kind="task.overdue" if r.overdue else "task.due", title=r.heading,
                        url=r.url, dedupe_key=r.dedupe_key)
        for r in reminders
    ]
    created = add_notifications(session, notices)
    return [r for r in reminders if r.dedupe_key in created]


def mail_reminders(app: Flask, reminders: Sequence[Reminder]) -> int:
    """E-mail each reminder to its assignee; call only after the
    notifications committed. A failed message is logged, never retried."""
    base_url = (app.extensions["mosaic"].config.base_url or "").rstrip("/")
    sent = 0
    for reminder in reminders:
        try:
            send_mail(reminder.email, reminder.heading, _mail_body(reminder, base_url), app=app)
        except (MailError, ValueError) as exc:
            log.error("task %s: reminder mail to user %s not sent: %s", reminder.task_id, reminder.user_id, exc)
            continue
        sent += 1
    return sent


def _mail_body(reminder: Reminder, base_url: str) -> str:
    state = "is overdue" if reminder.overdue else "is due"
    lines = [
        f"Your task {state}: {reminder.title}",
        f"Due: {reminder.due_at:%Y-%m-%d %H:%M} UTC",
    ]
    if base_url:
        lines.append(f"Open it: {base_url}{reminder.url}")
    return "\n".join(lines) + "\n"


# --- running ----------------------------------------------------------------------------


def remind(session: Session, now: dt.datetime) -> list[Reminder]:
    """One pass in ``session``'s transaction: the reminders it created. The
    caller commits, then mails them (``mail_reminders``)."""
    return record_reminders(session, due_reminders(session, now))


def run_task_reminders(app: Flask, now: dt.datetime | None = None) -> list[Reminder]:
    """One worker's pass in a transaction of its own, then its mail."""
    now = now or utcnow()
    with app.extensions["mosaic"].db.transaction() as session:
        created = remind(session, now)
    mail_reminders(app, created)
    return created


def task_reminders_job(ctx: Any) -> dict[str, int]:
    """The periodic job: commit the notifications, then send their mail."""
    created = remind(ctx.session, utcnow())
    ctx.session.commit()
    mailed = mail_reminders(ctx.app, created)
    return {"notified": len(created), "mailed": mailed}


def job_definition() -> JobDefinition:
    return JobDefinition(
        name=JOB_NAME,
        func=task_reminders_job,
        every=EVERY_SECONDS,
        description="Notify assignees of due and overdue tasks (in-app and e-mail), once per task and due time.",
    )
