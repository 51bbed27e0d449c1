"""Data-subject export and erasure through the plugins' hooks, journaled so
a plugin disabled at the time catches up when enabled again; on SQLite and
PostgreSQL.

Two test plugins keep per-contact data in their own tables (declared on a
separate base, created directly in the test database): ``alpha`` anonymises
its subscribers in place, ``beta`` deletes its visits. Both tables are
audited, so the tests also see that an erasure leaves no personal value in
the audit trail.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hooks import hookimpl
from host import migrate
from host.errors import PluginError
from host.security import audit, personal_data
from host.security.access import Principal, acting_as
from host.security.models import AuditEntry, PersonalDataJournal, SecurityEvent
from host.testing import plugin_candidate

ADMIN = 5


class PluginBase(DeclarativeBase):
    """Not the host's base: these tables belong to no migration history."""


class Subscriber(PluginBase):
    __tablename__ = "alpha_subscriber"
    __audited__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(index=True)
    email: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))


class Visit(PluginBase):
    __tablename__ = "beta_visit"
    __audited__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(index=True)
    note: Mapped[str] = mapped_column(String(200))


class Recorder:
    """Counts hook calls: a replay must reach a plugin exactly once."""

    def __init__(self):
        self.calls: list[tuple] = []

    def count(self, kind: str) -> int:
        return sum(1 for call in self.calls if call[0] == kind)


class AlphaHooks(Recorder):
    @hookimpl
    def mosaic_export_contact(self, session, contact):
        rows = session.scalars(select(Subscriber).where(Subscriber.contact_id == contact.id).order_by(Subscriber.id))
        return {"subscriptions": [{"email": r.email, "name": r.name} for r in rows]}

    @hookimpl
    def mosaic_erase_contact(self, session, contact):
        self.calls.append(("erase", contact.id))
        for row in session.scalars(select(Subscriber).where(Subscriber.contact_id == contact.id)):
            row.email, row.name = f"erased-{row.id}@invalid", "erased"

    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        self.calls.append(("merge", survivor.id, merged.id))
        for row in session.scalars(select(Subscriber).where(Subscriber.contact_id == merged.id)):
            row.contact_id = survivor.id


class BetaHooks(Recorder):
    @hookimpl
    def mosaic_export_contact(self, session, contact):
        return {"visits": [v.note for v in session.scalars(select(Visit).where(Visit.contact_id == contact.id).order_by(Visit.id))]}

    @hookimpl
    def mosaic_erase_contact(self, session, contact):
        self.calls.append(("erase", contact.id))
        for row in session.scalars(select(Visit).where(Visit.contact_id == contact.id)):
            session.delete(row)

    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        self.calls.append(("merge", survivor.id, merged.id))
        for row in session.scalars(select(Visit).where(Visit.contact_id == merged.id)):
            row.contact_id = survivor.id


@pytest.fixture
def alpha():
    return AlphaHooks()


@pytest.fixture
def beta():
    return BetaHooks()


@pytest.fixture
def build(make_app, alpha, beta):
    """``build("alpha", "beta")``: an app on the test's database with those
    plugins enabled (and migrated, which replays the journal)."""
    candidates = {"alpha": lambda: plugin_candidate("alpha", alpha), "beta": lambda: plugin_candidate("beta", beta)}

    def factory(*names: str, **kwargs):
        app = make_app(plugins=list(names), extra_plugins=[candidates[n]() for n in names], **kwargs)
        PluginBase.metadata.create_all(app.extensions["mosaic"].db.engine)
        return app

    return factory


def state(app):
    return app.extensions["mosaic"]


def seed(app, contact_id, email, name, visits=()):
    with state(app).db.transaction() as session:
        session.add(Subscriber(contact_id=contact_id, email=email, name=name))
        session.add_all(Visit(contact_id=contact_id, note=note) for note in visits)


def plugin_rows(app):
    with state(app).db.transaction(write=False) as session:
        subscribers = [(s.contact_id, s.email, s.name) for s in session.scalars(select(Subscriber).order_by(Subscriber.id))]
        visits = [(v.contact_id, v.note) for v in session.scalars(select(Visit).order_by(Visit.id))]
    return subscribers, visits


def journal(app):
    with state(app).db.transaction(write=False) as session:
        return [(j.kind, j.contact_id, j.other_contact_id, j.user_id, j.done_by) for j in session.scalars(select(PersonalDataJournal).order_by(PersonalDataJournal.id))]


def erase(app, contact_id):
    with acting_as(Principal(user_id=ADMIN)), state(app).db.transaction() as session:
        return personal_data.erase_person(session, contact_id, state=state(app))


def merge(app, survivor_id, merged_id):
    with acting_as(Principal(user_id=ADMIN)), state(app).db.transaction() as session:
        return personal_data.record_merge(session, survivor_id, merged_id, state=state(app))


def security_events(app, kind):
    with state(app).db.transaction(write=False) as session:
        return [(e.user_id, e.detail) for e in session.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind))]


def all_audit_text(app) -> str:
    with state(app).db.transaction(write=False) as session:
        return json.dumps([e.changes for e in session.scalars(select(AuditEntry))])


# --- export ------------------------------------------------------------------------


def test_export_gathers_the_host_part_and_every_enabled_plugins_part(build):
    app = build("alpha", "beta")
    seed(app, 7, "ann@example.com", "Ann", visits=["fair 2025"])
    seed(app, 8, "other@example.com", "Other", visits=["not ann's"])
    with acting_as(Principal(user_id=ADMIN)), state(app).db.transaction() as session:
        document = personal_data.export_person(session, 7, host_part={"name": "Ann", "born": None}, state=state(app))
    assert document["format"] == "mosaic.personal-data-export/1"
    assert (document["contact_id"], document["exported_by"]) == (7, ADMIN)
    assert document["data"] == {
        "host": {"name": "Ann", "born": None},
        "alpha": {"subscriptions": [{"email": "ann@example.com", "name": "Ann"}]},
        "beta": {"visits": ["fair 2025"]},
    }
    json.dumps(document)
    assert security_events(app, "export") == [(ADMIN, {"contact_id": 7, "parts": ["alpha", "beta", "host"]})]
    with state(app).db.transaction(write=False) as session:
        (entry,) = audit.history(session, object_type="core.contact", object_id=7)
    assert (entry.action, entry.user_id) == ("export", ADMIN)


def test_export_leaves_out_a_disabled_plugin(build):
    build("alpha", "beta")
    app = build("alpha")
    seed(app, 7, "ann@example.com", "Ann", visits=["fair"])
    with state(app).db.transaction() as session:
        document = personal_data.export_person(session, personal_data.ContactRef(7), state=state(app))
    assert set(document["data"]) == {"alpha"}


# --- erasure -------------------------------------------------------------------------


def test_erasure_anonymises_every_plugins_data_and_the_audit_history(build, alpha, beta):
    app = build("alpha", "beta")
    seed(app, 7, "ann@example.com", "Ann Example", visits=["met Ann at the fair"])
    seed(app, 8, "bob@example.com", "Bob", visits=["Bob's visit"])
    assert "ann@example.com" in all_audit_text(app), "creating the rows audited their values"

    entry = erase(app, 7)

    subscribers, visits = plugin_rows(app)
    assert subscribers == [(7, "erased-1@invalid", "erased"), (8, "bob@example.com", "Bob")]
    assert visits == [(8, "Bob's visit")]
    # "host" is the core record's own part (host/core/personal_data.py): it has no contact 7 here.
    assert journal(app) == [("erase", 7, None, ADMIN, ["host", "alpha", "beta"])]
    assert security_events(app, "erasure") == [(ADMIN, {"contact_id": 7, "parts": ["host", "alpha", "beta"], "journal_id": entry.id})]
    text = all_audit_text(app)
    for personal in ("ann@example.com", "Ann Example", "met Ann at the fair"):
        assert personal not in text
    assert "bob@example.com" in text and "Bob's visit" in text, "only the erased contact's history is scrubbed"
    with state(app).db.transaction(write=False) as session:
        update, create = audit.history(session, object_type="alpha.subscriber", object_id=1)
        erased_entry = audit.history(session, object_type="core.contact", object_id=7)[0]
    assert update.changes == {"email": ["[erased]", "[erased]"], "name": ["[erased]", "[erased]"]}
    assert create.changes == {"contact_id": [None, 7], "email": [None, "[erased]"], "name": [None, "[erased]"]}
    assert (erased_entry.action, erased_entry.user_id, erased_entry.changes["parts"]) == ("erase", ADMIN, ["host", "alpha", "beta"])
    assert (alpha.count("erase"), beta.count("erase")) == (1, 1)


class Broken:
    @hookimpl
    def mosaic_erase_contact(self, session, contact):
        raise RuntimeError("disk full")


def test_a_failing_plugin_rolls_the_whole_erasure_back(make_app, alpha):
    app = make_app(plugins=["alpha", "broken"], extra_plugins=[plugin_candidate("alpha", alpha), plugin_candidate("broken", Broken())])
    PluginBase.metadata.create_all(state(app).db.engine)
    seed(app, 7, "ann@example.com", "Ann")
    with pytest.raises(PluginError, match="plugin 'broken': mosaic_erase_contact raised RuntimeError: disk full"):
        erase(app, 7)
    assert alpha.calls == [("erase", 7)], "alpha ran first, in the same transaction"
    assert plugin_rows(app)[0] == [(7, "ann@example.com", "Ann")]
    assert journal(app) == [] and security_events(app, "erasure") == []
    assert "ann@example.com" in all_audit_text(app), "the rolled-back erasure scrubbed nothing"


def test_a_plugin_disabled_during_an_erasure_erases_its_part_once_when_enabled_again(build, alpha, beta):
    app = build("alpha", "beta")
    seed(app, 7, "ann@example.com", "Ann", visits=["Ann's visit"])
    seed(app, 8, "bob@example.com", "Bob", visits=["Bob's visit"])

    without_beta = build("alpha")
    erase(without_beta, 7)
    assert journal(without_beta) == [("erase", 7, None, ADMIN, ["host", "alpha"])]
    assert plugin_rows(without_beta)[1] == [(7, "Ann's visit"), (8, "Bob's visit")], "beta's data waits"

    again = build("alpha", "beta")  # migrating replays the journal
    assert plugin_rows(again)[1] == [(8, "Bob's visit")]
    assert journal(again) == [("erase", 7, None, ADMIN, ["host", "alpha", "beta"])]
    assert "Ann's visit" not in all_audit_text(again)

    build("alpha", "beta")
    migrate.upgrade(state(again))
    assert (alpha.calls, beta.calls) == ([("erase", 7)], [("erase", 7)])


def test_a_plugin_enabled_for_the_first_time_applies_past_erasures(build, beta):
    app = build("alpha")
    erase(app, 7)
    with state(app).db.transaction() as session:
        session.add(Visit(contact_id=7, note="imported before the plugin was enabled"))
    build("alpha", "beta")
    assert plugin_rows(app)[1] == []
    assert beta.calls == [("erase", 7)]


def test_replay_failure_names_the_plugin_and_marks_nothing_done(build, make_app):
    app = build("alpha")
    erase(app, 7)
    broken_app = make_app(
        plugins=["alpha", "broken"],
        extra_plugins=[plugin_candidate("alpha", AlphaHooks()), plugin_candidate("broken", Broken())],
        migrate=False,
    )
    with pytest.raises(PluginError, match="plugin 'broken': replaying erase #1: mosaic_erase_contact raised RuntimeError: disk full"):
        migrate.upgrade(state(broken_app))
    assert journal(app) == [("erase", 7, None, ADMIN, ["host", "alpha"])]


# --- merges ---------------------------------------------------------------------------


def test_merge_moves_every_plugins_references_and_is_journaled(build, alpha, beta):
    app = build("alpha", "beta")
    seed(app, 1, "keep@example.com", "Keep")
    seed(app, 2, "dup@example.com", "Dup", visits=["dup's visit"])
    merge(app, 1, 2)
    subscribers, visits = plugin_rows(app)
    assert [c for c, _, _ in subscribers] == [1, 1] and visits == [(1, "dup's visit")]
    assert journal(app) == [("merge", 1, 2, ADMIN, ["alpha", "beta"])]
    with state(app).db.transaction(write=False) as session:
        entry = audit.history(session, object_type="core.contact", object_id=1)[0]
    assert (entry.action, entry.changes["merged_id"]) == ("merge", 2)
    with pytest.raises(ValueError):
        merge(app, 3, 3)


def test_a_plugin_disabled_during_merges_and_erasures_replays_them_in_order(build, alpha, beta):
    app = build("alpha", "beta")
    seed(app, 1, "keep@example.com", "Keep", visits=["survivor's visit"])
    seed(app, 2, "dup@example.com", "Dup", visits=["dup's visit"])
    seed(app, 3, "other@example.com", "Other", visits=["other's visit"])

    without_beta = build("alpha")
    merge(without_beta, 1, 2)
    erase(without_beta, 1)  # after the merge: must also reach what was contact 2's
    assert plugin_rows(without_beta)[1] == [(1, "survivor's visit"), (2, "dup's visit"), (3, "other's visit")]

    again = build("alpha", "beta")
    assert plugin_rows(again)[1] == [(3, "other's visit")]
    assert [row[4] for row in journal(again)] == [["alpha", "beta"], ["host", "alpha", "beta"]]
    assert beta.calls == [("merge", 1, 2), ("erase", 1)]
    build("alpha", "beta")
    assert beta.calls == [("merge", 1, 2), ("erase", 1)], "applied once"


def test_contacts_are_ids_or_objects_with_an_integer_id():
    assert personal_data.contact_ref(4) == personal_data.ContactRef(4)
    ref = personal_data.ContactRef(9)
    assert personal_data.contact_ref(ref) is ref
    for bad in (True, "4", object()):
        with pytest.raises(TypeError):
            personal_data.contact_ref(bad)
