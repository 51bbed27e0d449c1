"""The batch write path of contact imports (``host.core.import_batch``)
stores exactly what the per-row services store.

The same file is imported into two databases set up alike: through the
import's batch path, and through ``services.create_contact`` row by row
(``imports.write_contacts_row_by_row``). Every row the import leaves behind
must be equal, ids included: contacts, e-mails, phones, tags, lifecycle
history, audit entries, outbox events and events delivered to plugins, the
search index and search hits, and the import's report. Times are compared
only for being set. Runs on SQLite, and on PostgreSQL with
``MOSAIC_TEST_DATABASE_URL``."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
from typing import Any

import pytest
from sqlalchemy import event, inspect, select, text

from host.core import import_batch, imports, search, services
from host.core.models import Contact, ContactEmail, ContactPhone, ContactTag, LifecycleChange, Tag
from host.models import OutboxEvent
from host.security.access import acting_as
from host.security.models import AuditEntry
from host.testing import make_user

from .core_support import make_company, make_contact, principal_of, run_as, state
from .import_batch_support import make_pair, reference_url  # noqa: F401  (fixture)

ANN, BOB, ADMIN = "ann@example.com", "bob@example.com", "admin@example.com"
TIME = "<time>"


@pytest.fixture
def pair(make_app, reference_url):
    """(batch app, per-row app, their listeners), set up alike: users,
    custom fields, and contacts the file refers to."""
    return make_pair(make_app, reference_url, _setup)


def _setup(app) -> None:
    make_user(app, ADMIN, roles=("admin",))
    make_user(app, ANN, roles=("staff",), teams=("east",))
    make_user(app, BOB, roles=("staff",))
    run_as(app, ADMIN, lambda session: services.create_custom_field(
        session, {"key": "size", "label": "Company size", "type": "number"}))
    run_as(app, ADMIN, lambda session: services.create_custom_field(
        session, {"key": "tier", "label": "Tier", "type": "choice", "choices": ["gold", "silver"]}))
    make_company(app, ANN, "Acme Ltd")  # id 1
    make_contact(app, ANN, first_name="Old", last_name="Customer", external_id="crm-1", tags=["vip"])  # 2
    make_contact(app, ANN, name="Dup Holder", email="dup@example.com")  # 3
    make_company(app, BOB, "Bob Corp")  # 4, out of Ann's scope
    make_contact(app, BOB, name="Bob's Contact", external_id="crm-bob")  # 5


HEADER = ["External id", "Name", "First name", "Last name", "Kind", "Company id", "E-mail", "Emails", "Phone",
          "Phones", "Tags", "Lifecycle stage", "Marketing consent", "Consent source", "Birthday", "Country",
          "Company size", "Tier", "City"]


def _row(**cells: str) -> list[str]:
    names = {"external_id": "External id", "name": "Name", "first": "First name", "last": "Last name", "kind": "Kind",
             "company": "Company id", "email": "E-mail", "emails": "Emails", "phone": "Phone", "phones": "Phones",
             "tags": "Tags", "stage": "Lifecycle stage", "consent": "Marketing consent", "source": "Consent source",
             "birthday": "Birthday", "country": "Country", "size": "Company size", "tier": "Tier", "city": "City"}
    by_column = {names[key]: value for key, value in cells.items()}
    return [by_column.get(column, "") for column in HEADER]


#: Five contacts exist, so this file's first contact, Beta GmbH, is 6; the
#: comments say what each row is for (row numbers as a spreadsheet shows them).
ROWS = [
    _row(name="Beta GmbH", kind="company", tags="partner", tier="gold"),  # 2: created, 6
    _row(first="Иван", last="Петров", email="Ivan.Petrov@Example.com", phone="+359 88 123 4567",
         tags="vip; new tag ; new  tag", stage="customer", consent="true", source="web form", size="12",
         country="bg", birthday="1980-02-29"),  # 3: 7
    _row(first="Žofia", last="Nováková", phone="00359881234567"),  # 4: 8, Ivan's phone (still pending)
    _row(first="Emil", last="Beta", company="6", phones="+1 555 0100, +1 555 0101", tags="partner"),  # 5: 9, Beta is pending
    _row(external_id="crm-1", city="Graz", tags="retail"),  # 6: updated
    _row(external_id="crm-bob", name="Not Yours"),  # 7: Bob's external id
    _row(name="Copy Of Dup", email="dup@example.com"),  # 8: 10, duplicate of 3
    _row(name="Short Phone", phone="12", tags="orphan tag"),  # 9: rejected, its new tag not stored
    _row(name="No Consent", source="fair", tags="orphan tag"),  # 10
    _row(name="Dated Company", kind="company", birthday="2000-01-01"),  # 11
    _row(first="Maria", last="Ivanova", company="1", emails="maria@acme.example; m.ivanova@acme.example",
         email="m.ivanova@acme.example"),  # 12: 11
    _row(first="Maria", last="Ivanova", company="1"),  # 13: 12, a similar name in the same company
    _row(name="Out Of Scope Company", company="4"),  # 14
    _row(name="Company In Company", kind="company", company="1"),  # 15
    _row(external_id="new-1", name="First New One", stage="lead"),  # 16: 13
    _row(external_id="new-1", name="Second New One"),  # 17: updates 13, which row 16 (this batch) created
    _row(name="Bad Address", email="not-an-address"),  # 18: the schema refuses it
    _row(name="Bad Size", size="many"),  # 19
    _row(name="Bad Tier", tier="bronze"),  # 20
    _row(name="Zoë Quiet", emails="zoe@example.com, ZOE@example.com", consent="false"),  # 21: 14
    _row(name="Copy Of Žofia", phone="+359 (0)88 123 4567", email="ivan.petrov@example.com"),  # 22: 15
]
REJECTED = [(7, "External id"), (9, "Phone"), (10, "Consent source"), (11, "Birthday"), (14, "Company id"),
            (15, "Company id"), (18, "E-mail"), (19, "Company size"), (20, "Tier")]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8")


def _import(app, content: bytes, *, row_by_row: bool, dry_run: bool = False, batch_size: int = 4,
            on_duplicate: str = "report", dry_run_rows: int = imports.DRY_RUN_ROWS) -> dict[str, Any]:
    """Import ``content`` as Ann through ``run_import`` (small batches, so
    rows of one batch refer to rows of another); the report."""
    principal = principal_of(app, ANN)
    with app.app_context(), acting_as(principal), state(app).db.WriteSession() as session:
        request = imports.prepare(session, "contacts", content, "people.csv", max_bytes=10 ** 7)
        session.rollback()
        if row_by_row:
            request = dataclasses.replace(request, target=dataclasses.replace(
                request.target, write=imports.write_contacts_row_by_row))
        request = dataclasses.replace(request, dry_run=dry_run, options={"on_duplicate": on_duplicate})
        return imports.run_import(session, request, principal=principal, batch_size=batch_size,
                                  dry_run_rows=dry_run_rows).as_result()


def _plain(value: Any, key: str = "") -> Any:
    if isinstance(value, dt.datetime):
        return TIME
    if key == "consent_at" and isinstance(value, list):  # audit [old, new] of a time
        return [None if v is None else TIME for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rows(session, model, order) -> list[dict[str, Any]]:
    columns = [attr.key for attr in inspect(model).mapper.column_attrs]
    return [_plain({key: getattr(record, key) for key in columns}) for record in session.scalars(select(model).order_by(*order))]


def _search_index(session) -> list[tuple]:
    if session.get_bind().dialect.name == "sqlite":
        sql = "SELECT rowid, name, emails, phones, company FROM contact_search ORDER BY rowid"
    else:
        sql = "SELECT contact_id, name, emails, phones, company FROM contact_search ORDER BY contact_id"
    return [tuple(row) for row in session.execute(text(sql))]


QUERIES = ["иван", "ivan", "zofia", "maria ivanova", "+359 88 123 4567", "beta", "acme", "zoe@example", "new"]


def _snapshot(app) -> dict[str, Any]:
    """Everything an import writes, comparable across databases."""
    with app.app_context(), state(app).db.Session() as session:
        tag_names = {tag_id: name for tag_id, name in session.execute(select(Tag.id, Tag.name))}
        principal = principal_of(app, ANN)
        return {
            "contact": _rows(session, Contact, [Contact.id]),
            "contact_email": _rows(session, ContactEmail, [ContactEmail.id]),
            "contact_phone": _rows(session, ContactPhone, [ContactPhone.id]),
            # tag ids are left out: PostgreSQL's sequence keeps the numbers a rolled-back row drew
            "contact_tag": sorted((row.contact_id, tag_names[row.tag_id]) for row in session.scalars(select(ContactTag))),
            "tag": sorted(tag_names.values()),
            "lifecycle_change": _rows(session, LifecycleChange, [LifecycleChange.id]),
            "audit_entry": _rows(session, AuditEntry, [AuditEntry.id]),
            "event_outbox": _rows(session, OutboxEvent, [OutboxEvent.id]),
            "contact_search": _search_index(session),
            "hits": {q: [(h.id, h.name, h.matched, round(h.score, 6)) for h in search.search_contacts(session, principal, q)]
                     for q in QUERIES},
        }


def _same(batch: dict[str, Any], reference: dict[str, Any]) -> None:
    """Equal, table by table; a failure names the table and its first differing row."""
    for key in reference:
        got, want = batch[key], reference[key]
        if isinstance(want, list) and len(got) == len(want):
            for index, (row, expected) in enumerate(zip(got, want)):
                assert row == expected, f"{key}[{index}]"
        assert got == want, key


def test_a_batch_import_writes_what_the_services_write_row_by_row(pair):
    (batch_app, batch_events), (row_app, row_events) = pair
    content = _csv(ROWS)
    _same(_snapshot(batch_app), _snapshot(row_app))  # the same start
    before = {name: len(rows) for name, rows in _snapshot(row_app).items() if isinstance(rows, list)}

    reference = _import(row_app, content, row_by_row=True)
    result = _import(batch_app, content, row_by_row=False)
    assert result == reference
    batch, expected = _snapshot(batch_app), _snapshot(row_app)
    _same(batch, expected)
    assert batch_events.events == row_events.events

    # The comparison is only worth something if the file did all of this:
    assert (result["created"], result["updated"], result["rejected"]) == (10, 2, 9)
    assert [(r["row"], r["column"]) for r in result["rejected_rows"]] == REJECTED
    by_name = {c["name"]: c for c in batch["contact"]}
    ivan = by_name["Иван Петров"]
    assert {d["row"]: d["ids"] for d in result["possible_duplicates"]} == {
        4: [7], 8: [3], 13: [11], 22: [7, 8]}
    assert (by_name["Emil Beta"]["id"], by_name["Emil Beta"]["company_id"], by_name["Copy Of Žofia"]["id"]) == (9, 6, 15)
    assert (ivan["email"], ivan["phone_digits"], ivan["country"], ivan["custom_fields"], ivan["team_id"] is not None,
            ivan["lifecycle_stage"], ivan["consent_source"], ivan["consent_at"], ivan["version"]) == (
        "ivan.petrov@example.com", "+359881234567", "BG", {"size": 12}, True, "customer", "web form", TIME, 1)
    assert "orphan tag" not in batch["tag"] and "new tag" in batch["tag"]
    assert len(batch["contact"]) - before["contact"] == 10
    assert len([e for e in batch["audit_entry"] if e["action"] == "create" and e["object_type"] == "core.contact"]) == 5 + 10
    assert [e[2]["id"] for e in batch_events.events if e[1] == "contact.created"] == [1, 2, 3, 4, 5, *range(6, 16)]
    assert [h[0] for h in batch["hits"]["иван"]] == [7]


@pytest.mark.parametrize("batch_size", [1, 500])
def test_where_batches_end_changes_nothing(pair, batch_size):
    """A batch per row, or the whole file in one: the outcome of batches of
    4 row by row (row 17 updates what row 16 created, whether or not a
    batch boundary separates them)."""
    (batch_app, batch_events), (row_app, row_events) = pair
    reference = _import(row_app, _csv(ROWS), row_by_row=True)
    result = _import(batch_app, _csv(ROWS), row_by_row=False, batch_size=batch_size)
    assert result == reference
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events


def test_a_reimport_and_rejected_duplicates_match_too(pair):
    (batch_app, batch_events), (row_app, row_events) = pair
    first = _csv(ROWS[:3] + ROWS[9:11])
    for app, row_by_row in ((row_app, True), (batch_app, False)):
        _import(app, first, row_by_row=row_by_row)
    again = _csv([
        _row(name="Maria Again", email="maria@acme.example"),
        _row(name="Twin", email="twin@example.com"),
        _row(name="Twin Two", email="twin@example.com"),  # rejected: a duplicate of the row before
        _row(name="Phone Twin", phone="+359 88 123 4567"),
        _row(name="Fresh", email="fresh@example.com", tags="fresh"),
    ])
    reference = _import(row_app, again, row_by_row=True, on_duplicate="reject", batch_size=500)
    result = _import(batch_app, again, row_by_row=False, on_duplicate="reject", batch_size=500)
    assert result == reference
    assert (result["created"], result["rejected"]) == (2, 3)
    twin = next(c["id"] for c in _snapshot(batch_app)["contact"] if c["name"] == "Twin")
    assert [r for r in result["rejected_rows"] if r["row"] == 4] == [
        {"row": 4, "column": "E-mail", "message": f"Possible duplicate of contact {twin} (the same e-mail)."}]
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events


#: Contacts with external ids, imported first; ``AGAIN`` then repeats,
#: changes or breaks them (the comments say which).
STORED = [
    _row(external_id="e1", first="Иван", last="Петров", email="ivan@example.com", phone="+359 88 111 2222",
         tags="vip; partner", stage="customer", consent="true", source="fair", size="12", tier="gold", city="Sofia"),
    _row(external_id="e2", name="Žofia Nováková", kind="person", company="1", phones="+420 777 000 111, +420 777 000 222"),
    _row(external_id="e3", name="Gamma AG", kind="company", emails="a@gamma.example; b@gamma.example", tags="retail"),
]
AGAIN = [
    STORED[0],  # 2: unchanged
    _row(external_id="e1", first="Иван", last="Петров", email="IVAN@Example.com", phone="+359 88 111 2222",
         tags="partner ;  vip", stage="customer", consent="true", source="fair", size="12", tier="gold",
         city=" Sofia "),  # 3: unchanged (the same once cleaned, tags in another order)
    _row(external_id="e2", name="Žofia Nováková", company="1",
         phones="+420 777 000 222, +420 777 000 111"),  # 4: unchanged (the same phones in another order)
    _row(external_id="e2", phones="+420 777 000 111, +420 777 000 222, +420 777 000 333"),  # 5: updated, a phone added
    _row(external_id="new-a", name="Brand New", email="new-a@example.com"),  # 6: created between updates
    _row(external_id="e3", name="Gamma AG", kind="company", emails="a@gamma.example; b@gamma.example", tags="retail"),  # 7: unchanged
    _row(external_id="e1", city="Plovdiv"),  # 8: updated
    _row(external_id="e1", city="Plovdiv", stage="customer"),  # 9: unchanged after row 8
    _row(external_id="e1", stage="loyal"),  # 10: updated, a stage change
    _row(external_id="e3", tags="retail; fresh tag"),  # 11: updated, a tag created
    _row(external_id="e3", phone="12"),  # 12: rejected
    _row(external_id="e1", tier="silver"),  # 13: updated, a custom field
    _row(external_id="e1", tier="bronze"),  # 14: rejected by the schema
    _row(external_id="e2", kind="company"),  # 15: rejected, a person in a company
    _row(external_id="crm-1", tags="vip"),  # 16: unchanged (set up with that tag)
    _row(external_id="crm-1", consent="false"),  # 17: unchanged (no consent to withdraw)
    _row(external_id="e3", name="Gamma AG", birthday="2000-01-01"),  # 18: rejected, a company's birthday
    _row(external_id="new-b", name="Also New"),  # 19: created
]


def test_a_reimport_updates_and_leaves_rows_as_the_services_do(pair):
    """Rows that repeat what is stored are found unchanged without the
    update path (``import_batch.planned_update``); every outcome, table
    and event is still what updating row by row leaves."""
    (batch_app, batch_events), (row_app, row_events) = pair
    for app, row_by_row in ((row_app, True), (batch_app, False)):
        assert _import(app, _csv(STORED), row_by_row=row_by_row)["created"] == 3
    reference = _import(row_app, _csv(AGAIN), row_by_row=True)
    result = _import(batch_app, _csv(AGAIN), row_by_row=False)
    assert result == reference
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events
    # The comparison is only worth something if the file did all of this:
    assert (result["created"], result["updated"], result["unchanged"], result["rejected"]) == (2, 5, 7, 4)
    assert sorted({r["row"] for r in result["rejected_rows"]}) == [12, 14, 15, 18]


#: A re-sync that changes the contacts' own columns only (batches of 4).
COLUMNS_ONLY = [
    _row(external_id="e1", city="Plovdiv"),  # 2: updated
    _row(external_id="e1", city="Varna", size="15"),  # 3: the same contact again, in the same batch
    _row(external_id="e1", city="Varna", size="15"),  # 4: unchanged after row 3
    _row(external_id="e2", first="Sofia", last="Novak"),  # 5: first and last names (the given name stays)
    _row(external_id="e3", name="Gamma Group AG"),  # 6: a company's name
    _row(external_id="crm-1", consent="true", source="newsletter"),  # 7: consent given (its time and source)
    _row(external_id="crm-1", first="New", last="Customer"),  # 8: the derived name follows
    _row(external_id="e1", tier="silver", country="bg"),  # 9: a custom field and the country
    _row(external_id="e1", tags="vip; partner", city="Sofia"),  # 10: the same tags, the city back
]


def _statements(app, work) -> list[str]:
    """The first word of every statement ``work()`` runs on ``app``'s engine."""
    seen: list[str] = []
    engine = state(app).db.engine
    record = lambda _conn, _cursor, sql, *_args: seen.append(sql.split()[0].upper())  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_column_changes_are_written_together_as_the_services_write_them(pair):
    """Rows that change only a contact's own columns are written per batch
    (``import_batch.ContactUpdates``), not row by row in savepoints; every
    outcome, table, audit entry, search row and event is what updating row
    by row leaves, a contact changed twice in one batch included."""
    (batch_app, batch_events), (row_app, row_events) = pair
    for app, row_by_row in ((row_app, True), (batch_app, False)):
        assert _import(app, _csv(STORED), row_by_row=row_by_row)["created"] == 3
    reference = _import(row_app, _csv(COLUMNS_ONLY), row_by_row=True)
    results = []
    statements = _statements(batch_app, lambda: results.append(_import(batch_app, _csv(COLUMNS_ONLY), row_by_row=False)))
    assert results[0] == reference
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events
    assert (reference["updated"], reference["unchanged"], reference["rejected"]) == (8, 1, 0)
    # One savepoint a batch (three batches of at most 4 rows), none a row.
    assert statements.count("SAVEPOINT") == 3


#: A re-sync that moves stages and tags (batches of 4; "retail", "vip" and
#: "partner" are stored before it runs).
STAGES_AND_TAGS = [
    _row(external_id="e1", stage="loyal"),  # 2: a stage change
    _row(external_id="e3", tags="retail; vip"),  # 3: a tag gained
    _row(external_id="e1", tags="vip"),  # 4: a tag lost, the same contact as row 2
    _row(external_id="e2", tags="partner", stage="customer", city="Brno"),  # 5: tags, stage and a column at once
    _row(external_id="e3", tags="retail"),  # 6: row 3's tag dropped again in the same batch
    _row(external_id="e1", tags="vip; brand new tag"),  # 7: a tag not stored yet: the update path creates it
    _row(external_id="e2", tags="partner; brand new tag", stage="churned"),  # 8: that tag, now stored
    _row(external_id="e3", tags="vip"),  # 9: one tag for another
    _row(external_id="e1", stage="loyal", tags="vip ;brand new tag"),  # 10: unchanged after row 7
    _row(external_id="crm-1", tags="vip"),  # 11: unchanged
]


def test_stage_and_tag_changes_are_written_together_as_the_services_write_them(pair):
    """Rows that move a contact's lifecycle stage or change its tags (tags
    already stored) are written per batch with the column changes: the
    history row, the tag rows, the two audit entries and the event are
    what updating row by row leaves; a tag that is not stored yet still
    goes through the update path, which creates it."""
    (batch_app, batch_events), (row_app, row_events) = pair
    for app, row_by_row in ((row_app, True), (batch_app, False)):
        assert _import(app, _csv(STORED), row_by_row=row_by_row)["created"] == 3
    reference = _import(row_app, _csv(STAGES_AND_TAGS), row_by_row=True)
    results = []
    statements = _statements(batch_app, lambda: results.append(
        _import(batch_app, _csv(STAGES_AND_TAGS), row_by_row=False)))
    assert results[0] == reference
    snapshot = _snapshot(batch_app)
    _same(snapshot, _snapshot(row_app))
    assert batch_events.events == row_events.events
    assert (reference["updated"], reference["unchanged"], reference["rejected"]) == (8, 2, 0)
    # One savepoint a batch (three batches), and row 7's two: its update path's, and the new tag's.
    assert statements.count("SAVEPOINT") == 5
    # What the comparison covered: stage history, tags gained and lost, both audit entries of row 5.
    e1, e2, e3 = (next(c["id"] for c in snapshot["contact"] if c["external_id"] == key) for key in ("e1", "e2", "e3"))
    assert [(c["contact_id"], c["from_stage"], c["to_stage"]) for c in snapshot["lifecycle_change"][-3:]] == [
        (e1, "customer", "loyal"), (e2, "lead", "customer"), (e2, "customer", "churned")]
    assert [name for cid, name in snapshot["contact_tag"] if cid in (e1, e2)] == [
        "brand new tag", "vip", "brand new tag", "partner"]
    assert [name for cid, name in snapshot["contact_tag"] if cid == e3] == ["vip"]
    row_5 = [a["changes"] for a in snapshot["audit_entry"] if a["object_id"] == str(e2) and a["action"] == "update"][:2]
    assert [sorted(changes) for changes in row_5] == [["city", "lifecycle_stage"], ["tags"]]


def test_a_contact_changed_meanwhile_sends_the_batch_row_by_row(pair, monkeypatch):
    """When a contact's version moved between the batch's read and its
    write (another writer), the batch's UPDATE matches fewer rows: the batch
    is undone and retried row by row, and the contacts it had changed in
    memory are read again, so every row still lands as the services write
    it."""
    (batch_app, batch_events), (row_app, row_events) = pair
    for app, row_by_row in ((row_app, True), (batch_app, False)):
        _import(app, _csv(STORED), row_by_row=row_by_row)
    reference = _import(row_app, _csv(COLUMNS_ONLY), row_by_row=True)
    write = import_batch.ContactUpdates.flush
    # Holds the contact, as anything else in the process might: the retry
    # then meets this very object again, not a fresh copy from the database.
    interfered: list[Contact] = []

    def flush_after_another_writer(updates):
        if updates.pending and not interfered:  # once: the retry must get through
            contact = updates.pending[0][0]
            updates.session.execute(text("UPDATE contact SET version = version + 1 WHERE id = :id"), {"id": contact.id})
            interfered.append(contact)
        return write(updates)

    monkeypatch.setattr(import_batch.ContactUpdates, "flush", flush_after_another_writer)
    result = _import(batch_app, _csv(COLUMNS_ONLY), row_by_row=False)
    assert interfered and result == reference
    _same(_snapshot(batch_app), _snapshot(row_app))
    assert batch_events.events == row_events.events


def test_an_unchanged_reimport_writes_nothing(pair, make_app):
    """Importing the same file again: every row unchanged, no statement but
    reads (no UPDATE, no savepoint per row), nothing audited or published."""
    (batch_app, batch_events), _reference = pair
    content = _csv(STORED + [_row(external_id="crm-1", tags="vip")])
    _import(batch_app, content, row_by_row=False)
    before, delivered = _snapshot(batch_app), list(batch_events.events)
    statements: list[str] = []
    engine = state(batch_app).db.engine
    record = lambda _conn, _cursor, sql, *_args: statements.append(sql.split()[0].upper())  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:
        result = _import(batch_app, content, row_by_row=False)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert (result["created"], result["updated"], result["unchanged"], result["rejected"]) == (0, 0, 4, 0)
    # Reads, and the batch's own savepoint (one for its four rows, not one a row).
    assert set(statements) <= {"SELECT", "BEGIN", "SAVEPOINT", "RELEASE"}, sorted(set(statements))
    assert statements.count("SAVEPOINT") == 1
    assert _snapshot(batch_app) == before
    assert batch_events.events == delivered


@pytest.mark.parametrize("on_duplicate", ["report", "reject"])
def test_a_dry_run_reports_what_the_commit_does_and_writes_nothing(pair, on_duplicate):
    """The dry run's report is the commit's (here, of the same file row by
    row into the other database, set up alike: PostgreSQL's sequences keep
    the numbers a rolled-back dry run drew, so a commit after it numbers
    differently), though rows of later batches clash with rows of earlier
    ones (batches of 4: row 22 repeats the phone and e-mail of rows 3 and
    4). It writes and publishes nothing."""
    (batch_app, batch_events), (row_app, _row_events) = pair
    before, delivered = _snapshot(batch_app), list(batch_events.events)
    committed = _import(row_app, _csv(ROWS), row_by_row=True, on_duplicate=on_duplicate)
    result = _import(batch_app, _csv(ROWS), row_by_row=False, dry_run=True, on_duplicate=on_duplicate)
    assert result["dry_run"] is True and {**result, "dry_run": False} == committed
    assert _snapshot(batch_app) == before
    assert batch_events.events == delivered
    rejected = {r["row"] for r in result["rejected_rows"]}
    if on_duplicate == "reject":  # duplicates of rows of earlier batches are rejected, not created
        assert {4, 13, 22} <= rejected and result["created"] == 10 - 4
    else:
        assert 22 not in rejected and result["created"] == 10
        assert {d["row"]: d["ids"] for d in result["possible_duplicates"]}[22] == [7, 8]


def test_a_long_dry_run_rolls_back_after_each_span_of_rows(pair):
    """A dry run holds its transaction (SQLite's write lock) for
    ``DRY_RUN_ROWS`` rows at most: rows of different spans do not see each
    other. Spans of 8 rows: row 22 no longer finds rows 3 and 4 (created in
    the first span), which a commit and a one-span dry run report. (Each
    dry run in a database of its own: PostgreSQL's sequences keep the
    numbers a rolled-back dry run drew, and row 5 names company 6.)"""
    (batch_app, _), (row_app, _) = pair
    whole = _import(row_app, _csv(ROWS), row_by_row=True, dry_run=True)
    spans = _import(batch_app, _csv(ROWS), row_by_row=False, dry_run=True, dry_run_rows=8)
    assert {d["row"]: d["ids"] for d in whole["possible_duplicates"]}[22] == [7, 8]
    assert 22 not in {d["row"] for d in spans["possible_duplicates"]}
    assert (spans["created"], spans["rejected"]) == (whole["created"], whole["rejected"])


def test_a_required_custom_field_is_asked_for_as_the_services_ask(pair):
    (batch_app, _), (row_app, _) = pair
    for app in (batch_app, row_app):
        run_as(app, ADMIN, lambda session: services.create_custom_field(
            session, {"key": "region_code", "label": "Region code", "type": "text", "required": True}))
    content = _csv([_row(name="Without Region"), _row(name="With Size", size="3")])
    reference = _import(row_app, content, row_by_row=True)
    result = _import(batch_app, content, row_by_row=False)
    assert result == reference
    assert result["rejected"] == 2
    assert result["rejected_rows"][0] == {"row": 2, "column": "custom_fields",
                                          "message": "region_code: Missing data for required field."}
    _same(_snapshot(batch_app), _snapshot(row_app))


def test_a_database_refusal_in_a_batch_costs_only_its_row(pair):
    """A row the database refuses (say an external id another transaction
    stored meanwhile; here a trigger the checks do not know) makes the host
    retry the batch row by row, as for any target: only that row is lost."""
    (batch_app, _), (row_app, _) = pair
    content = _csv([_row(name="Fine One"), _row(name="Clash", city="Forbidden"), _row(name="Fine Two")])
    for app in (batch_app, row_app):
        with state(app).db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(text("CREATE TRIGGER no_forbidden BEFORE INSERT ON contact WHEN new.city = 'Forbidden' "
                                  "BEGIN SELECT RAISE(ABORT, 'forbidden city'); END"))
            else:
                conn.execute(text("CREATE FUNCTION no_forbidden() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                  "IF NEW.city = 'Forbidden' THEN RAISE EXCEPTION 'forbidden city'; END IF; "
                                  "RETURN NEW; END $$"))
                conn.execute(text("CREATE TRIGGER no_forbidden BEFORE INSERT ON contact FOR EACH ROW "
                                  "EXECUTE FUNCTION no_forbidden()"))
    reference = _import(row_app, content, row_by_row=True)
    result = _import(batch_app, content, row_by_row=False)
    assert result == reference
    assert (result["created"], result["rejected"]) == (2, 1)
    assert result["rejected_rows"][0]["row"] == 3
    # PostgreSQL's sequences keep the numbers the refused INSERTs drew (the
    # batch's first attempt drew more), so ids are compared as SQLite has them.
    batch, expected = _snapshot(batch_app), _snapshot(row_app)
    assert [c["name"] for c in batch["contact"]][-2:] == ["Fine One", "Fine Two"]
    keyed = not os.environ.get("MOSAIC_TEST_DATABASE_URL")
    for key in ("contact", "lifecycle_change", "audit_entry", "event_outbox", "contact_search"):
        assert _without_ids(batch[key], keyed) == _without_ids(expected[key], keyed), key


def _without_ids(rows: list[Any], keyed: bool) -> list[Any]:
    if keyed:
        return rows
    return [{k: v for k, v in row.items() if k not in ("id", "contact_id", "object_id", "data")} if isinstance(row, dict)
            else row[1:] for row in rows]


def test_insert_rows_stores_what_sqlalchemy_stores(make_app):
    """``bulk_insert.insert_rows`` (its own multi-row INSERT on SQLite)
    leaves the same column text as SQLAlchemy's insert: times, JSON, NULLs;
    and there refuses rows that leave out a column with a Python-side
    default (which it would not fill)."""
    from sqlalchemy import insert

    from host import bulk_insert

    app = make_app(plugins=[])
    table = AuditEntry.__table__
    when = dt.datetime(2026, 12, 3, 8, 15, 4, 123456, tzinfo=dt.timezone.utc)
    rows = [{"occurred_at": when, "user_id": None, "action": "create", "object_type": "core.contact",
             "object_id": str(n), "changes": {"name": [None, f"Иван {n}"], "n": [None, n]} if n else None}
            for n in range(3)]
    with app.app_context(), state(app).db.WriteSession() as session:
        session.execute(insert(table), rows)
        ids = bulk_insert.insert_rows(session, table, rows, returning=True)
        assert len(ids) == 3
        raw = [tuple(row) for row in session.execute(text(
            "SELECT occurred_at, user_id, action, object_type, object_id, changes FROM audit_entry ORDER BY id"))]
        assert raw[3:] == raw[:3]
        if session.get_bind().dialect.name == "sqlite":  # elsewhere SQLAlchemy's insert fills defaults
            with pytest.raises(ValueError):
                bulk_insert.insert_rows(session, LifecycleChange.__table__, [{"contact_id": 1, "to_stage": "lead"}])
        session.rollback()
