"""The batch write path of interaction and task imports
(``host.core.import_batch_linked``) stores exactly what the per-row
services store.

As tests/test_import_batch.py does for contacts: the same file is imported
into two databases set up alike, through the import's batch path and
through ``services.create_interaction``/``create_task`` row by row
(``imports.write_interactions_row_by_row``, ``write_tasks_row_by_row``).
Every row the import leaves behind must be equal, ids included:
interactions, tasks, contacts (``last_activity_at``, ``updated_at``,
``version``), audit entries, outbox events and events delivered to plugins,
and the import's report. Times the file gives are compared exactly, times
the import stamps (within the last day) only for being set. Runs on SQLite,
and on PostgreSQL with ``MOSAIC_TEST_DATABASE_URL``."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
from typing import Any

import pytest
from sqlalchemy import inspect, select, text, update

from host.core import imports, services
from host.core.models import Contact, Interaction, Task
from host.models import OutboxEvent
from host.security.access import acting_as
from host.security.models import AuditEntry, User
from host.testing import make_user

from .core_support import make_company, make_contact, make_interaction, make_task, principal_of, run_as, state
from .import_batch_support import make_pair, reference_url  # noqa: F401  (fixture)

ANN, BOB, CAROL, GONE, ADMIN = "ann@example.com", "bob@example.com", "carol@example.com", "gone@example.com", "admin@example.com"
TIME = "<time>"


@pytest.fixture
def pair(make_app, reference_url):
    """(batch app, per-row app, their listeners), set up alike."""
    return make_pair(make_app, reference_url, _setup)


def _setup(app) -> None:
    make_user(app, ADMIN, roles=("admin",))
    make_user(app, ANN, roles=("staff",), teams=("east",))
    make_user(app, BOB, roles=("staff",))  # 3
    make_user(app, CAROL, roles=("staff",), teams=("west",))  # 4
    make_user(app, GONE, roles=("staff",))  # 5, deactivated below
    with state(app).db.transaction() as session:
        session.execute(update(User).where(User.email == GONE).values(active=False))
    make_company(app, ANN, "Acme Ltd")  # contact 1
    old = make_contact(app, ANN, name="Old Customer", external_id="crm-1")  # 2
    make_contact(app, BOB, name="Bob's Contact", external_id="crm-bob")  # 3, out of Ann's scope
    binned = make_contact(app, ANN, name="Binned", external_id="crm-binned")  # 4, in the recycle bin
    run_as(app, ANN, lambda session: services.delete_contact(session, binned))
    make_contact(app, ANN, name="Quiet Ltd", kind="company")  # 5
    make_interaction(app, ANN, old, subject="First call", occurred_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
                     external_id="int-old")  # 1
    make_interaction(app, BOB, 3, subject="Bob's call", external_id="int-bob")  # 2
    make_task(app, ANN, title="Old task", contact_id=old, external_id="task-old")  # 1
    make_task(app, BOB, title="Bob's task", external_id="task-bob")  # 2


INTERACTION_HEADER = ["External id", "Contact external id", "Contact id", "Channel", "Direction", "Subject", "Body",
                      "Occurred at", "Outcome"]
TASK_HEADER = ["External id", "Contact external id", "Contact id", "Title", "Notes", "Due at", "Priority", "Done",
               "Assignee id", "Snoozed until"]


def _row(header: list[str], **cells: str) -> list[str]:
    names = {"ext": "External id", "contact_ext": "Contact external id", "contact": "Contact id"}
    by_column = {names.get(key, key.replace("_", " ").capitalize()): value for key, value in cells.items()}
    assert set(by_column) <= set(header), set(by_column) - set(header)
    return [by_column.get(column, "") for column in header]


def _i(**cells: str) -> list[str]:
    return _row(INTERACTION_HEADER, **cells)


def _t(**cells: str) -> list[str]:
    return _row(TASK_HEADER, **cells)


#: Row numbers as a spreadsheet shows them; batches of 4 rows (2-5, 6-9, ...).
#: Existing: interactions 1 (Ann's, "int-old", contact 2) and 2 (Bob's, "int-bob").
INTERACTIONS = [
    _i(ext="int-1", contact_ext="crm-1", channel="phone", subject="Called", occurred_at="2025-03-01T10:00:00Z",
       body="About the renewal."),  # 2: interaction 3, contact 2 moves to 2025-03-01
    _i(contact="5", channel="email", direction="in", subject="Mail", outcome="answered"),  # 3: 4, occurred now
    _i(ext="int-2", contact_ext="crm-1", channel="meeting", subject="Earlier", occurred_at="2025-02-01T10:00:00Z"),  # 4: 5
    _i(ext="int-1", contact="2", channel="phone", subject="Same external id as row 2"),  # 5: updates 3, row 2's (this batch's)
    _i(contact_ext="nope", channel="phone", subject="Unknown contact"),  # 6
    _i(contact_ext="crm-bob", channel="phone", subject="Out of scope by external id"),  # 7
    _i(ext="int-3", contact="2", channel="visit", subject="Before the update", occurred_at="2025-04-01 09:30"),  # 8: 6
    _i(ext="int-old", contact="2", channel="phone", subject="Renamed", outcome="done"),  # 9: updates 1, after 6 is stored
    _i(ext="int-5", contact="5", channel="phone", subject="Fine"),  # 10: 7
    _i(contact="999", channel="phone", subject="No such contact id", ext="int-5"),  # 11: would update 7: no such contact
    _i(contact="3", channel="phone", subject="Out of scope by id"),  # 12
    _i(ext="int-bob", contact="2", channel="phone", subject="Bob's external id"),  # 13
    _i(contact="1", channel="fax", subject="Bad channel"),  # 14: the schema
    _i(contact="1", channel="phone", subject="Bad date", occurred_at="yesterday"),  # 15: the schema
    _i(contact="1", contact_ext="crm-1", channel="phone", subject="Two contacts"),  # 16
    _i(channel="phone", subject="No contact"),  # 17
    _i(contact_ext="crm-binned", channel="phone", subject="Binned contact"),  # 18
    _i(contact="1", channel="chat", subject="Late", occurred_at="2025-06-01T12:00:00+02:00",
       direction="out"),  # 19: 8, contact 1 moves to 10:00 UTC
    _i(contact="1", channel="chat", subject="Earlier that day", occurred_at="2025-06-01T09:00:00Z"),  # 20: 9, it stays
    _i(ext="int-old", contact="2", channel="phone", subject="Renamed"),  # 21: unchanged
    _i(ext="int-1", contact_ext="crm-1", channel="phone", subject="Renamed too"),  # 22: updates 3 (an earlier batch's)
    _i(ext="int-4", contact="2", channel="letter", subject="Last", occurred_at="2024-12-01T00:00:00Z"),  # 23: 10
]
INTERACTIONS_REJECTED = [(6, "Contact external id"), (7, "Contact external id"), (11, "Contact id"), (12, "Contact id"),
                         (13, "External id"), (14, "Channel"), (15, "Occurred at"),
                         (16, "Contact id"), (17, "Contact id"), (18, "Contact external id")]


def _tasks() -> list[list[str]]:
    """Users: admin 1, Ann 2, Bob 3, Carol 4 (team west), Gone 5 (inactive).
    Existing: tasks 1 (Ann's, "task-old") and 2 (Bob's, "task-bob")."""
    return [
        _t(ext="t-1", contact_ext="crm-1", title="Call back", due_at="2025-05-01T09:00:00+02:00", priority="high",
           notes="Ask about the renewal."),  # 2: task 3
        _t(ext="t-1", title="Call back", notes="Ask about the renewal and the price."),  # 3: updates task 3, row 2's
        _t(title="No contact"),  # 4: 4
        _t(title="For Bob", assignee_id="3", contact="1"),  # 5: 5, Bob's, no team
        _t(title="For Gone", assignee_id="5"),  # 6: inactive
        _t(title="For nobody", assignee_id="999"),  # 7
        _t(title="Done already", done="true", contact="2"),  # 8: 6, task.completed too
        _t(title="Out of scope", contact_ext="crm-bob"),  # 9
        _t(ext="task-bob", title="Bob's external id"),  # 10
        _t(ext="task-old", title="Old task", done="true", priority="low"),  # 11: updates task 1, completes it
        _t(title="Bad priority", priority="asap"),  # 12: the schema
        _t(title="Bad date", due_at="soon"),  # 13: the schema
        _t(ext="t-3", title="For me", assignee_id="2", done="false", snoozed_until="2025-05-02T08:00:00Z"),  # 14: 7
        _t(title="For Carol", assignee_id="4"),  # 15: 8, Carol's team
        _t(title="Everything wrong", contact="999", assignee_id="999", ext="t-3"),  # 16: would update 7: two messages
        _t(title="Binned contact", contact="4"),  # 17
        _t(ext="t-2", title="Last", contact_ext="crm-1", done="1"),  # 18: 9
    ]


TASKS_REJECTED = [(6, "Assignee id"), (7, "Assignee id"), (9, "Contact external id"),
                  (10, "External id"), (12, "Priority"), (13, "Due at"), (16, "Contact id"), (16, "Assignee id"),
                  (17, "Contact id")]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    return out.getvalue().encode("utf-8")


REFERENCE = {"interactions": imports.write_interactions_row_by_row, "tasks": imports.write_tasks_row_by_row}


def _import(app, kind: str, content: bytes, *, row_by_row: bool, dry_run: bool = False, batch_size: int = 4
            ) -> dict[str, Any]:
    """Import ``content`` as Ann through ``run_import`` (small batches, so
    rows of one batch refer to records of another); the report."""
    principal = principal_of(app, ANN)
    with app.app_context(), acting_as(principal), state(app).db.WriteSession() as session:
        request = imports.prepare(session, kind, content, f"{kind}.csv", max_bytes=10 ** 7)
        session.rollback()
        if row_by_row:
            request = dataclasses.replace(request, target=dataclasses.replace(request.target, write=REFERENCE[kind]))
        request = dataclasses.replace(request, dry_run=dry_run)
        return imports.run_import(session, request, principal=principal, batch_size=batch_size).as_result()


def _stamped(value: dt.datetime) -> bool:
    """A time the import or the services set (now), not one a file gave."""
    return abs(dt.datetime.now(dt.timezone.utc) - value) < dt.timedelta(days=1)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return TIME if _stamped(value) else value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":  # a time in audit JSON
        try:
            return _plain(dt.datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rows(session, model) -> list[dict[str, Any]]:
    columns = [attr.key for attr in inspect(model).mapper.column_attrs]
    return [_plain({key: getattr(record, key) for key in columns})
            for record in session.scalars(select(model).order_by(model.id))]


def _snapshot(app) -> dict[str, Any]:
    """Everything these imports write, comparable across databases."""
    with app.app_context(), state(app).db.Session() as session:
        return {
            "interaction": _rows(session, Interaction),
            "task": _rows(session, Task),
            "contact": _rows(session, Contact),
            "audit_entry": _rows(session, AuditEntry),
            "event_outbox": _rows(session, OutboxEvent),
            "tables": _counts(session),
        }


def _counts(session) -> dict[str, int]:
    """Rows in every table: a write to one this test does not look at in
    detail still shows."""
    names = inspect(session.get_bind()).get_table_names()
    return {name: session.execute(text(f'SELECT count(*) FROM "{name}"')).scalar() for name in sorted(names)
            if not name.startswith(("alembic_version", "contact_search"))}


def _same(batch: dict[str, Any], reference: dict[str, Any]) -> None:
    """Equal, table by table; a failure names the table and its first differing row."""
    for key in reference:
        got, want = batch[key], reference[key]
        if isinstance(want, list) and len(got) == len(want):
            for index, (row, expected) in enumerate(zip(got, want)):
                assert row == expected, f"{key}[{index}]"
        assert got == want, key


def _import_both(pair, kind: str, content: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Import ``content`` row by row into the reference app and in batches
    into the other; assert the reports, every table and the events equal.
    Returns the report and the batch app's snapshot."""
    (batch_app, batch_events), (row_app, row_events) = pair
    reference = _import(row_app, kind, content, row_by_row=True)
    result = _import(batch_app, kind, content, row_by_row=False)
    assert result == reference
    batch = _snapshot(batch_app)
    _same(batch, _snapshot(row_app))
    assert batch_events.events == row_events.events
    return result, batch


def test_an_interaction_import_writes_what_the_services_write_row_by_row(pair):
    (batch_app, batch_events), (row_app, row_events) = pair
    content = _csv(INTERACTION_HEADER, INTERACTIONS)
    _same(_snapshot(batch_app), _snapshot(row_app))  # the same start
    before = _snapshot(batch_app)

    result, batch = _import_both(pair, "interactions", content)

    # The comparison is only worth something if the file did all of this:
    assert (result["created"], result["updated"], result["unchanged"], result["rejected"]) == (8, 3, 1, 10)
    assert [(r["row"], r["column"]) for r in result["rejected_rows"]] == INTERACTIONS_REJECTED
    assert [i["subject"] for i in batch["interaction"][2:]] == ["Renamed too", "Mail", "Earlier", "Before the update",
                                                               "Fine", "Late", "Earlier that day", "Last"]
    made = {i["subject"]: i for i in batch["interaction"]}
    assert (made["Mail"]["direction"], made["Mail"]["occurred_at"], made["Renamed too"]["body"],
            made["Before the update"]["occurred_at"], made["Late"]["occurred_at"], made["Mail"]["owner_id"],
            made["Mail"]["team_id"] is not None, made["Mail"]["version"]) == (
        "in", TIME, "About the renewal.", "2025-04-01T09:30:00+00:00", "2025-06-01T10:00:00+00:00", 2, True, 1)
    contacts = {c["id"]: c for c in batch["contact"]}
    assert (contacts[1]["last_activity_at"], contacts[2]["last_activity_at"], contacts[2]["version"],
            contacts[5]["last_activity_at"]) == ("2025-06-01T10:00:00+00:00", "2025-04-01T09:30:00+00:00", 1, TIME)
    assert [e["object_id"] for e in batch["audit_entry"][len(before["audit_entry"]):] if e["action"] == "create"] == [
        str(n) for n in range(3, 11)]
    assert [(e[1], e[2]["id"]) for e in batch_events.events if e[1].startswith("interaction.")] == [
        ("interaction.created", 1), ("interaction.created", 2), ("interaction.created", 3),
        ("interaction.created", 4), ("interaction.created", 5), ("interaction.updated", 3), ("interaction.created", 6),
        ("interaction.updated", 1), ("interaction.created", 7), ("interaction.created", 8),
        ("interaction.created", 9), ("interaction.updated", 3), ("interaction.created", 10)]


def test_a_task_import_writes_what_the_services_write_row_by_row(pair):
    (batch_app, batch_events), (row_app, row_events) = pair
    content = _csv(TASK_HEADER, _tasks())
    result, batch = _import_both(pair, "tasks", content)

    assert (result["created"], result["updated"], result["rejected"]) == (7, 2, 8), result["rejected_rows"]
    assert [(r["row"], r["column"]) for r in result["rejected_rows"]] == TASKS_REJECTED
    made = {t["title"]: t for t in batch["task"]}
    east = made["Call back"]["team_id"]
    assert (made["Call back"]["due_at"], made["Call back"]["priority"], made["Call back"]["contact_id"]) == (
        "2025-05-01T07:00:00+00:00", "high", 2)
    assert (made["For Bob"]["owner_id"], made["For Bob"]["team_id"]) == (3, None)
    assert (made["For me"]["owner_id"], made["For me"]["team_id"], made["For me"]["done"]) == (2, east, False)
    assert made["For Carol"]["owner_id"] == 4 and made["For Carol"]["team_id"] not in (None, east)
    assert (made["Done already"]["done"], made["Done already"]["done_at"], made["Last"]["done"]) == (True, TIME, True)
    assert [(e[1], e[2]["id"]) for e in batch_events.events if e[1].startswith("task.")] == [
        ("task.created", 1), ("task.created", 2), ("task.created", 3), ("task.updated", 3), ("task.created", 4),
        ("task.created", 5),
        ("task.created", 6), ("task.completed", 6), ("task.updated", 1), ("task.completed", 1),
        ("task.created", 7), ("task.created", 8), ("task.created", 9), ("task.completed", 9)]


@pytest.mark.parametrize("kind", ["interactions", "tasks"])
def test_a_dry_run_reports_what_the_commit_does_and_writes_nothing(pair, kind):
    (batch_app, batch_events), (row_app, _row_events) = pair
    content = _csv(INTERACTION_HEADER, INTERACTIONS) if kind == "interactions" else _csv(TASK_HEADER, _tasks())
    before, delivered = _snapshot(batch_app), list(batch_events.events)
    # the commit's report, row by row into the other database (as for contacts: sequences)
    committed = _import(row_app, kind, content, row_by_row=True)
    result = _import(batch_app, kind, content, row_by_row=False, dry_run=True)
    # row 22 of the interactions updates what row 2 (an earlier batch) created, as in the commit
    assert {**result, "dry_run": False} == committed and result["created"] == {"interactions": 8, "tasks": 7}[kind]
    assert _snapshot(batch_app) == before
    assert batch_events.events == delivered


@pytest.mark.parametrize("batch_size", [1, 500])
def test_one_batch_or_a_row_per_batch_match_too(pair, batch_size):
    """Every row in one batch (an external id created and updated within
    it), and a batch per row: the same outcome as batches of 4 row by row,
    whatever rows a batch boundary separates."""
    (batch_app, batch_events), (row_app, row_events) = pair
    for kind, content in (("interactions", _csv(INTERACTION_HEADER, INTERACTIONS)), ("tasks", _csv(TASK_HEADER, _tasks()))):
        reference = _import(row_app, kind, content, row_by_row=True)
        result = _import(batch_app, kind, content, row_by_row=False, batch_size=batch_size)
        assert result == reference, kind
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events


def test_a_database_refusal_in_a_batch_costs_only_its_row(pair):
    """A row the database refuses (here a trigger the checks do not know)
    makes the host retry the batch row by row: only that row is lost."""
    (batch_app, _), (row_app, _) = pair
    content = _csv(INTERACTION_HEADER, [_i(contact="1", channel="phone", subject=subject)
                                        for subject in ("Fine one", "Forbidden", "Fine two")])
    for app in (batch_app, row_app):
        with state(app).db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(text("CREATE TRIGGER no_forbidden BEFORE INSERT ON interaction WHEN new.subject = 'Forbidden' "
                                  "BEGIN SELECT RAISE(ABORT, 'forbidden subject'); END"))
            else:
                conn.execute(text("CREATE FUNCTION no_forbidden() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                  "IF NEW.subject = 'Forbidden' THEN RAISE EXCEPTION 'forbidden subject'; END IF; "
                                  "RETURN NEW; END $$"))
                conn.execute(text("CREATE TRIGGER no_forbidden BEFORE INSERT ON interaction FOR EACH ROW "
                                  "EXECUTE FUNCTION no_forbidden()"))
    reference = _import(row_app, "interactions", content, row_by_row=True)
    result = _import(batch_app, "interactions", content, row_by_row=False)
    assert result == reference
    assert (result["created"], result["rejected"]) == (2, 1)
    assert result["rejected_rows"][0]["row"] == 3
    batch, expected = _snapshot(batch_app), _snapshot(row_app)
    assert [i["subject"] for i in batch["interaction"]][-2:] == ["Fine one", "Fine two"]
    # PostgreSQL's sequences keep the numbers the refused INSERTs drew (the
    # batch's first attempt drew more), so ids are compared as SQLite has them.
    keyed = not os.environ.get("MOSAIC_TEST_DATABASE_URL")
    for key in ("interaction", "contact", "audit_entry", "event_outbox"):
        assert _without_ids(batch[key], keyed) == _without_ids(expected[key], keyed), key


def _without_ids(rows: list[Any], keyed: bool) -> list[Any]:
    if keyed:
        return rows
    return [{k: v for k, v in row.items() if k not in ("id", "object_id", "data")} for row in rows]
