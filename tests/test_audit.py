"""The audit trail (field history of business records, bulk updates) and the
security log, on the test model ``Note`` (OwnedMixin) and ``Secretive``
(``__audited__``), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from sqlalchemy import func, select

from host.security import audit, seclog
from host.security.access import Principal, acting_as
from host.security.concurrency import StaleVersion, commit_or_conflict
from host.security.models import AuditEntry, SecurityEvent

from .records_support import Note, Secretive, add_note, add_user, create_note_table

ALICE, BOB, CAROL = 42, 43, 44


@pytest.fixture
def app(make_app):
    app = make_app(plugins=[])
    create_note_table(app)
    return app


def db(app):
    return app.extensions["mosaic"].db


def entries(app, **filters):
    with db(app).transaction(write=False) as session:
        return [(e.action, e.user_id, e.changes) for e in audit.history(session, **filters)]


def test_create_update_delete_record_who_and_each_fields_old_and_new_value(app):
    with acting_as(Principal(user_id=ALICE)):
        note = add_note(app, title="Call back", amount=decimal.Decimal("12.50"), due=dt.date(2026, 1, 31))
    with acting_as(Principal(user_id=BOB)), db(app).transaction() as session:
        stored = session.get(Note, note.id)
        stored.title = "Call back today"
        stored.amount = decimal.Decimal("13.00")
        stored.body = None  # unchanged (was None): not a change
    with acting_as(Principal(user_id=CAROL)), db(app).transaction() as session:
        session.delete(session.get(Note, note.id))

    delete, update, create = entries(app, object_type="acme.note", object_id=note.id)
    assert create == ("create", ALICE, {"title": [None, "Call back"], "amount": [None, "12.50"], "due": [None, "2026-01-31"]})
    assert update == ("update", BOB, {"title": ["Call back", "Call back today"], "amount": ["12.50", "13.00"]})
    assert delete[0:2] == ("delete", CAROL)
    assert delete[2]["title"] == ["Call back today", None]
    assert delete[2]["amount"] == ["13.00", None]
    assert delete[2]["created_by"] == [ALICE, None]
    assert "version" not in delete[2] and "updated_at" not in delete[2]


def test_owned_records_get_created_by_and_updated_by_from_the_acting_user(app):
    with acting_as(Principal(user_id=ALICE)):
        note = add_note(app)
    assert (note.created_by, note.updated_by) == (ALICE, ALICE)
    with acting_as(Principal(user_id=BOB)), db(app).transaction() as session:
        session.get(Note, note.id).title = "edited"
    with db(app).transaction(write=False) as session:
        stored = session.get(Note, note.id)
        assert (stored.created_by, stored.updated_by, stored.version) == (ALICE, BOB, 2)


def test_an_author_set_by_the_caller_is_kept(app):
    with acting_as(Principal(user_id=ALICE)):
        note = add_note(app, created_by=7, updated_by=7)
    assert (note.created_by, note.updated_by) == (7, 7)


def test_a_rolled_back_change_leaves_no_entry(app):
    note = add_note(app)
    with pytest.raises(RuntimeError), db(app).transaction() as session:
        session.get(Note, note.id).title = "never saved"
        session.flush()  # the entry is written here, in the same transaction
        raise RuntimeError("abandon")
    assert [action for action, _, _ in entries(app, object_id=note.id)] == ["create"]


def test_an_old_value_that_was_not_loaded_is_read_from_the_row(app):
    note = add_note(app, title="original")
    with db(app).transaction() as session:
        stored = session.get(Note, note.id)
        session.expire(stored, ["title"])
        stored.title = "replaced"
    assert entries(app, object_id=note.id)[0][2] == {"title": ["original", "replaced"]}


def test_assigning_the_same_value_writes_no_entry_and_keeps_the_version(app):
    note = add_note(app, title="same")
    with db(app).transaction() as session:
        session.get(Note, note.id).title = "same"
    assert len(entries(app, object_id=note.id)) == 1
    with db(app).transaction(write=False) as session:
        assert session.get(Note, note.id).version == 1


def test_a_value_assigned_as_sql_expression_is_recorded_as_written(app):
    note = add_note(app, amount=decimal.Decimal("10.00"))
    with db(app).transaction() as session:
        stored = session.get(Note, note.id)
        stored.amount = Note.amount + 5
    assert entries(app, object_id=note.id)[0][2] == {"amount": ["10.00", "15.00"]}


def test_opted_in_model_is_audited_with_secrets_redacted_and_excluded_columns_left_out(app):
    with db(app).transaction() as session:
        item = Secretive(name="webhook", api_secret="s3cr3t-value", last_seen="today")
        session.add(item)
    with db(app).transaction() as session:
        stored = session.get(Secretive, item.id)
        stored.api_secret = "n3w-s3cr3t"
        stored.last_seen = "tomorrow"
    update, create = entries(app, object_type="acme.secretive")
    assert create[2] == {"name": [None, "webhook"], "api_secret": [None, "[redacted]"]}
    assert update[2] == {"api_secret": ["[redacted]", "[redacted]"]}
    with db(app).transaction(write=False) as session:
        dumped = json.dumps([e.changes for e in session.scalars(select(AuditEntry))])
    assert "s3cr3t" not in dumped


def test_audit_entries_are_read_only(app):
    add_note(app)
    with db(app).transaction() as session:
        entry = session.scalars(select(AuditEntry)).one()
        entry.changes = {"title": [None, "forged"]}
        with pytest.raises(PermissionError, match="read-only"):
            session.flush()
        session.rollback()
    with db(app).transaction() as session:
        session.delete(session.scalars(select(AuditEntry)).one())
        with pytest.raises(PermissionError):
            session.flush()
        session.rollback()
    assert entries(app)[0][2]["title"] == [None, "first"]


def test_history_filters_by_user_and_object_and_pages_by_id(app):
    with acting_as(Principal(user_id=ALICE)):
        first = add_note(app, title="a")
        second = add_note(app, title="b")
    with acting_as(Principal(user_id=BOB)), db(app).transaction() as session:
        session.get(Note, first.id).title = "a2"
    assert [a for a, _, _ in entries(app, user_id=ALICE)] == ["create", "create"]
    assert [(a, u) for a, u, _ in entries(app, object_type="acme.note", object_id=first.id)] == [("update", BOB), ("create", ALICE)]
    assert entries(app, object_type="acme.note", object_id=second.id) == [("create", ALICE, {"title": [None, "b"]})]
    with db(app).transaction(write=False) as session:
        page1 = audit.history(session, limit=2)
        page2 = audit.history(session, before_id=page1[-1].id, limit=2)
        assert len(page1) == 2 and len(page2) == 1
        assert page1[0].id > page1[1].id > page2[0].id
        assert audit.history_of(session, session.get(Note, second.id))[0].changes == {"title": [None, "b"]}


# --- bulk updates -----------------------------------------------------------------


@pytest.fixture
def owners(app):
    return add_user(app, "alice@example.com"), add_user(app, "bob@example.com")


def test_bulk_update_writes_an_entry_per_changed_row_and_bumps_versions(app, owners):
    alice, bob = owners
    mine = [add_note(app, title="todo", owner_id=alice) for _ in range(2)]
    done = add_note(app, title="done", owner_id=alice)
    theirs = add_note(app, title="todo", owner_id=bob)

    with acting_as(Principal(user_id=alice)), db(app).transaction() as session:
        changed = audit.audited_bulk_update(session, Note, Note.title.in_(["todo", "done"]), {"title": "done"})
    assert changed == 2, "the row already 'done' does not change; bob's row is out of alice's scope"

    with db(app).transaction(write=False) as session:
        rows = {n.id: (n.title, n.version, n.updated_by) for n in session.scalars(select(Note))}
    for note in mine:
        assert rows[note.id] == ("done", 2, alice)
        assert entries(app, object_id=note.id)[0] == ("update", alice, {"title": ["todo", "done"]})
    assert rows[done.id][1] == 1 and len(entries(app, object_id=done.id)) == 1
    assert rows[theirs.id] == ("todo", 1, None)


def test_a_bulk_update_makes_an_editor_holding_the_old_version_conflict(app, owners):
    alice, _ = owners
    note = add_note(app, title="todo", owner_id=alice)
    editor = db(app).WriteSession()
    held = editor.get(Note, note.id)
    editor.commit()  # the edit form was loaded at version 1

    with acting_as(Principal(user_id=alice)), db(app).transaction() as session:
        assert audit.audited_bulk_update(session, Note, Note.id == note.id, {"title": "closed"}) == 1

    held.title = "edited in the form"
    with pytest.raises(StaleVersion) as caught:
        commit_or_conflict(editor, held)
    editor.close()
    assert caught.value.code == 409 and caught.value.current["title"] == "closed"


def test_bulk_update_with_expected_versions_refuses_a_stale_row_and_changes_nothing(app, owners):
    alice, _ = owners
    a, b = add_note(app, title="x", owner_id=alice), add_note(app, title="x", owner_id=alice)
    with db(app).transaction() as session:
        session.get(Note, b.id).body = "changed meanwhile"  # b is now version 2
    with acting_as(Principal(user_id=alice)), pytest.raises(StaleVersion) as caught, db(app).transaction() as session:
        audit.audited_bulk_update(session, Note, Note.id.in_([a.id, b.id]), {"title": "y"}, expected_versions={a.id: 1, b.id: 1})
    assert (caught.value.object_id, caught.value.current_version, caught.value.sent_version) == (b.id, 2, 1)
    with db(app).transaction(write=False) as session:
        assert session.scalars(select(Note.title).order_by(Note.id)).all() == ["x", "x"]
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "update")) == 1


def test_bulk_update_reaches_nothing_for_an_anonymous_principal(app, owners):
    alice, _ = owners
    add_note(app, title="todo", owner_id=alice)
    with db(app).transaction() as session:
        assert audit.audited_bulk_update(session, Note, Note.title == "todo", {"title": "hacked"}) == 0
    with db(app).transaction(write=False) as session:
        assert session.scalars(select(Note.title)).all() == ["todo"]


# --- security log ------------------------------------------------------------------


@pytest.fixture
def log_start(app):
    """The last event before the test (start-up logs role defaults)."""
    with db(app).transaction(write=False) as session:
        return session.scalar(select(func.max(SecurityEvent.id))) or 0


def events(app, since, **filters):
    with db(app).transaction(write=False) as session:
        found = seclog.query(session, **filters)
    return [(e.kind, e.user_id, e.subject_user_id, e.detail) for e in found if e.id > since]


def test_security_log_records_the_acting_user_and_the_request_address(app, log_start):
    with app.test_request_context("/profile", environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        with acting_as(Principal(user_id=ALICE)), db(app).transaction() as session:
            event = seclog.record(session, "token.create", detail={"token_id": 5, "name": "ci", "read_only": True})
    assert (event.user_id, event.ip) == (ALICE, "203.0.113.9")
    with db(app).transaction() as session:
        seclog.record(session, "login.success", user_id=BOB, ip="198.51.100.1")
    assert events(app, log_start) == [
        ("login.success", BOB, None, {}),
        ("token.create", ALICE, None, {"token_id": 5, "name": "ci", "read_only": True}),
    ]


@pytest.mark.parametrize("detail", [
    {"password": "hunter2"},
    {"new_password": "hunter2"},
    {"token": "mos_abc"},
    {"api_key": "k"},
    {"totp_secret": "JBSWY3DP"},
    {"code": "123456"},
    {"changes": {"password_hash": "$argon2id$..."}},
    {"attempts": [{"Secret": "x"}]},
])
def test_security_log_refuses_a_detail_naming_a_secret(app, log_start, detail):
    with db(app).transaction() as session:
        with pytest.raises(ValueError, match="looks like a secret"):
            seclog.record(session, "password.change", detail=detail)
    assert events(app, log_start) == []


def test_security_log_accepts_names_that_only_point_at_secrets(app, log_start):
    with db(app).transaction() as session:
        seclog.record(session, "token.revoke", detail={"token_id": 3, "token_prefix": "mos_ab", "country_code": "DE"})
    assert events(app, log_start)[0][3] == {"token_id": 3, "token_prefix": "mos_ab", "country_code": "DE"}


def test_security_log_refuses_a_malformed_kind(app):
    with db(app).transaction() as session, pytest.raises(ValueError, match="kind"):
        seclog.record(session, "Login Success")


def test_security_log_query_by_user_kind_prefix_and_keyset(app, log_start):
    with db(app).transaction() as session:
        seclog.record(session, "login.failure", subject_user_id=ALICE, ip="192.0.2.1", detail={"email": "alice@example.com"})
        seclog.record(session, "login.success", user_id=ALICE, ip="192.0.2.1")
        seclog.record(session, "role.change", user_id=BOB, subject_user_id=ALICE, detail={"role": "manager"})
        seclog.record(session, "login.success", user_id=BOB, ip="192.0.2.2")
    assert [k for k, *_ in events(app, log_start, user_id=ALICE)] == ["role.change", "login.success", "login.failure"]
    assert [(k, u) for k, u, *_ in events(app, log_start, kind="login.")] == [("login.success", BOB), ("login.success", ALICE), ("login.failure", None)]
    assert [k for k, *_ in events(app, log_start, kind="login")] == []
    with db(app).transaction(write=False) as session:
        first = seclog.query(session, limit=3)
        rest = seclog.query(session, before_id=first[-1].id)
    assert [e.kind for e in first] == ["login.success", "role.change", "login.success"]
    assert [e.kind for e in rest if e.id > log_start] == ["login.failure"]


def test_install_reaches_every_new_session_factory_even_at_a_freed_address():
    """Regression: install() once asked SQLAlchemy's event.contains(), whose
    registry keys on id() and outlives a garbage-collected session class; a
    new app's factory at a reused address then got no audit listeners."""
    import gc
    import types

    from sqlalchemy.orm import sessionmaker

    for _ in range(8):  # the old check failed on nearly every new factory
        fake_db = types.SimpleNamespace(Session=sessionmaker(), WriteSession=sessionmaker())
        audit.install(fake_db)
        for factory in (fake_db.Session, fake_db.WriteSession):
            session = factory()
            assert audit._before_flush in list(session.dispatch.before_flush)
            assert audit._after_flush in list(session.dispatch.after_flush)
            session.close()
        audit.install(fake_db)  # a second install adds nothing
        assert list(fake_db.Session().dispatch.before_flush).count(audit._before_flush) == 1
        del fake_db, factory, session
        gc.collect()
