"""Creating many interactions or tasks at once, for an import: the rules of
``services.create_interaction`` and ``services.create_task``, the writes of
a whole batch in a few statements.

The per-row services cost a savepoint, a scoped SELECT of the contact, a
SELECT of the external id, an INSERT, an audit INSERT, the contact's
``last_activity_at`` UPDATE and an outbox INSERT, with two flushes, per
row: 333 interactions a second (20,000 on SQLite). ``InteractionBatch`` and
``TaskBatch`` check each new row in Python against what was looked up once
per batch (the contacts the importer may see, the assignees, the external
ids the caller matched) and keep it pending; ``flush`` writes every pending
row with multi-row INSERTs (``host.bulk_insert``): the records (ids by
``RETURNING``), the audit trail's create entries (``audit.create_entries``,
what the flush listeners write for an ORM insert), for interactions the
UPDATE of each touched contact moving ``last_activity_at`` to the latest
``occurred_at`` of the batch (``services._touch_activity`` run per row
leaves the same value: it only moves forward, stamps ``updated_at``, and
writes no audit entry, no event and no version), and the ``*.created``
events (and a task created done's ``task.completed``) in row order
(``events.publish_many``).

Messages, fields and their order are those of the services; values are
set by ``services.set_fields`` itself (text cleaned, a cleaned-away value
of a required column leaves the default). The caller
(``host.core.imports._write_linked``) matches stored external ids first and
flushes before a row that updates a stored record, so rows are stored in
file order and ids, audit entries and events come out as row by row.
tests/test_import_batch_linked.py imports files both ways and compares every
table.
"""

from __future__ import annotations

from collections.abc import Mapping  # isinstance() through typing's alias is slow
from typing import Any, Iterable

from sqlalchemy import ARRAY, Integer, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from hooks import Event
from host.bulk_insert import execute_many, insert_rows, inserted_ids
from host.db import UTCDateTime, is_among, utcnow
from host.events import publish_many
from host.security import audit
from host.security.access import Principal, scope_condition
from host.security.models import AuditEntry, User

from . import services
from .models import Contact, Interaction, Task

_TAKEN = "Another record already has this external id."
_NO_CONTACT = "No such contact."


class _Draft:
    """A new record's attributes as ``services.set_fields`` sets them (it
    reads ``__table__`` for which columns may be NULL)."""

    def __init__(self, table: Any, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
        self.__table__ = table


def _ids(values: Iterable[Any]) -> list[int]:
    """The integers a contact id lookup may find (``services._load`` finds
    nothing for anything else, booleans included)."""
    return sorted({v for v in values if isinstance(v, int) and not isinstance(v, bool)})


class _LinkedBatch:
    """New records of one model for one import batch: validated one by one
    (``prepare``), written together (``flush``). Use inside
    ``services.acting(principal)``: the audit trail names the acting user."""

    model: Any
    fields: tuple[str, ...]
    created_event: str

    def __init__(self, session: Session, principal: Principal, *, contact_ids: Iterable[Any] = (),
                 visible_contacts: Iterable[int] = (), claimed_external_ids: Iterable[str] = ()) -> None:
        services.require_actor(principal)
        self.session, self.principal = session, principal
        self.owner_id, self.team_id = principal.user_id, services.default_team(principal)
        self.table = self.model.__table__
        self.claimed = set(claimed_external_ids)
        self.created_external_ids: set[str] = set()  # by rows of this batch, pending or flushed
        self.visible: set[int] = set(visible_contacts)
        self.known: set[int] = set(self.visible)
        self._look_up(contact_ids)
        self.pending: list[dict[str, Any]] = []
        self.events: list[list[str]] = []  # per pending row, its event types after ``*.created``

    def _look_up(self, contact_ids: Iterable[Any]) -> None:
        """Which of these contacts the principal may see (live), by the
        condition ``services._load`` applies, one query per 500 ids."""
        wanted = [i for i in _ids(contact_ids) if i not in self.known]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            self.visible.update(self.session.scalars(
                select(Contact.id).where(scope_condition(self.principal, Contact), Contact.deleted_at.is_(None),
                                         is_among(self.session, Contact.id, chunk))))
            self.known.update(chunk)

    def _contact_visible(self, contact_id: Any) -> bool:
        if not isinstance(contact_id, int) or isinstance(contact_id, bool):
            return False
        if contact_id not in self.known:
            self._look_up([contact_id])
        return contact_id in self.visible

    def _external_id(self, data: Mapping[str, Any], errors: services.FieldErrors) -> None:
        """``services._unique_external_id`` for a new record: the caller
        passed the ids already stored; earlier rows of the batch add theirs."""
        value = services.clean_text(data.get("external_id"))
        if value is not None and value in self.claimed:
            errors.add("external_id", _TAKEN)

    def add(self, values: dict[str, Any], events: list[str]) -> None:
        self.pending.append(values)
        self.events.append(events)
        if values["external_id"] is not None:
            self.claimed.add(values["external_id"])
            self.created_external_ids.add(values["external_id"])

    def flush(self) -> None:
        """Write every pending record, in the order they were added."""
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        more, self.events = self.events, []
        session, user_id, now = self.session, self.principal.user_id, utcnow()
        for row in rows:
            row.update(created_by=user_id, updated_by=user_id, created_at=now, updated_at=now, version=1, deleted_at=None)
        ids = inserted_ids(session, self.table, rows)
        for row, record_id in zip(rows, ids):
            row["id"] = record_id
        insert_rows(session, AuditEntry.__table__, audit.create_entries(session, self.model, rows))
        self._after_insert(rows)
        # The events carry the flush's time, as the rows' created_at: one
        # value for the bulk insert to convert, not a clock reading each.
        publish_many(session, [Event(type=kind, data={"id": row["id"], "contact_id": row["contact_id"]}, occurred_at=now)
                               for row, extra in zip(rows, more) for kind in (self.created_event, *extra)])

    def _after_insert(self, rows: list[dict[str, Any]]) -> None:
        pass


class InteractionBatch(_LinkedBatch):
    model = Interaction
    fields = services.INTERACTION_FIELDS
    created_event = "interaction.created"

    def prepare(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The interaction ``data`` describes, as column values (and no
        event after ``interaction.created``), or the ``ValidationError``
        ``services.create_interaction`` would raise."""
        errors = services.FieldErrors()
        contact_id = data.get("contact_id")
        if not self._contact_visible(contact_id):
            errors.add("contact_id", _NO_CONTACT)
        self._external_id(data, errors)
        errors.raise_if_any()
        draft = _Draft(self.table, {"contact_id": contact_id, "owner_id": self.owner_id, "team_id": self.team_id,
                                    "direction": "out", "occurred_at": utcnow(), "channel": None, "subject": None,
                                    "body": None, "outcome": None, "external_id": None})
        services.set_fields(draft, data, self.fields)
        values = draft.__dict__
        del values["__table__"]
        return values, []

    def _after_insert(self, rows: list[dict[str, Any]]) -> None:
        """``services._touch_activity`` for the batch: each contact's
        latest ``occurred_at`` (the per-row UPDATEs, each moving it only
        forward, end there too): the same UPDATE per contact, on
        PostgreSQL one UPDATE for them all."""
        latest: dict[int, Any] = {}
        for row in rows:
            when = row["occurred_at"]
            if row["contact_id"] not in latest or latest[row["contact_id"]] < when:
                latest[row["contact_id"]] = when
        contact = Contact.__table__
        scope = scope_condition(services.reaching_children(self.principal), Contact)
        # updated_at as the ORM UPDATE of the per-row path sets it (the
        # column's onupdate), given here as one value for every contact.
        now = utcnow()
        if self.session.get_bind().dialect.name == "postgresql":
            # One UPDATE joined to the (id, time) pairs sent as two arrays:
            # a statement per contact cost psycopg a pipeline exchange each,
            # a quarter of an interaction import there.
            touched = select(
                func.unnest(bindparam("touched_ids", list(latest), type_=ARRAY(Integer))).label("id"),
                func.unnest(bindparam("touched_ats", list(latest.values()), type_=ARRAY(UTCDateTime()))).label("at"),
            ).subquery("touched")
            self.session.connection().execute(
                update(contact)
                .where(contact.c.id == touched.c.id, scope,
                       or_(contact.c.last_activity_at.is_(None), contact.c.last_activity_at < touched.c.at))
                .values(last_activity_at=touched.c.at, updated_at=now))
        else:
            statement = (update(contact)
                         .where(contact.c.id == bindparam("touched_id"), scope,
                                or_(contact.c.last_activity_at.is_(None),
                                    contact.c.last_activity_at < bindparam("touched_at")))
                         .values(last_activity_at=bindparam("touched_at"), updated_at=now))
            execute_many(self.session, statement, [{"touched_id": contact_id, "touched_at": when}
                                                    for contact_id, when in latest.items()])
        for obj in list(self.session.identity_map.values()):
            if isinstance(obj, Contact) and obj.id in latest:
                self.session.expire(obj, ["last_activity_at"])


class TaskBatch(_LinkedBatch):
    model = Task
    fields = services.TASK_FIELDS
    created_event = "task.created"

    def __init__(self, session: Session, principal: Principal, **kwargs: Any) -> None:
        super().__init__(session, principal, **kwargs)
        self.assignees: dict[Any, tuple[int, int | None] | None] = {}

    def _assignee(self, user_id: Any) -> tuple[int, int | None] | None:
        """``services._assignee`` (an active user), with the owner and team
        ``services._apply_task`` gives the task; once per user per batch."""
        if user_id not in self.assignees:
            user = self.session.get(User, user_id) if isinstance(user_id, int) else None
            self.assignees[user_id] = (None if user is None or not user.active
                                       else (user.id, user.teams[0].id if len(user.teams) == 1 else None))
        return self.assignees[user_id]

    def prepare(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The task ``data`` describes, as column values, with the events
        after ``task.created`` (``task.completed`` for one created done), or
        the ``ValidationError`` ``services.create_task`` would raise."""
        errors = services.FieldErrors()
        values = {"contact_id": None, "owner_id": self.owner_id, "team_id": self.team_id, "priority": "normal",
                  "done": False, "done_at": None, "title": None, "notes": None, "due_at": None, "snoozed_until": None,
                  "external_id": None}
        if data.get("contact_id") is not None:
            if self._contact_visible(data["contact_id"]):
                values["contact_id"] = data["contact_id"]
            else:
                errors.add("contact_id", _NO_CONTACT)
        if "assignee_id" in data and data["assignee_id"] != self.owner_id:
            assignee = self._assignee(data["assignee_id"])
            if assignee is None:
                errors.add("assignee_id", "No such active user.")
            else:
                values["owner_id"], values["team_id"] = assignee
        if "external_id" in data:
            self._external_id(data, errors)
        errors.raise_if_any()
        draft = _Draft(self.table, values)
        services.set_fields(draft, data, self.fields)
        values = draft.__dict__
        del values["__table__"]
        events = []
        if data.get("done"):
            values["done"], values["done_at"] = True, utcnow()
            events.append("task.completed")
        return values, events
