"""The host's demo data (``mosaic serve --demo``): a living CRM that the
demo users can search in any script, where the rep's own scope shows, and
that plugins seeded after the host can build on.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from hooks import hookimpl
from host.core import search, services
from host.core.models import CHANNELS, Contact, Interaction, LifecycleChange, Task
from host.db import utcnow
from host.demo import ensure_demo_users, seed_demo_data
from host.models import OutboxEvent
from host.security.models import AuditEntry
from host.testing import plugin_candidate

from .core_support import principal_of, state


class Peek:
    """A plugin whose demo data hangs on the host's contacts."""

    def __init__(self) -> None:
        self.contacts_seen: int | None = None

    @hookimpl
    def mosaic_demo_data(self, session, rng):
        self.contacts_seen = session.scalar(select(func.count()).select_from(Contact))


@pytest.fixture
def demo(make_app):
    peek = Peek()
    app = make_app(plugins=["peek"], extra_plugins=[plugin_candidate("peek", peek)])
    with app.app_context():
        ensure_demo_users(app)
        assert seed_demo_data(app) == ["host", "peek"], "the host first, then plugins"
    return app, peek


def _ids(app) -> dict[str, int]:
    return {role: principal_of(app, f"{role}@example.com").user_id for role in ("admin", "manager", "rep")}


def _check_the_rep_finds_cyrillic_and_accented_names_by_plain_typing_and_only_their_own(demo):
    app, _peek = demo
    rep = principal_of(app, "rep@example.com")
    with app.app_context(), state(app).db.Session() as session:
        for query, expected in (("иван", "Иван Петров"), ("ИВАН петр", "Иван Петров"), ("zofia", "Žofia Kováčová"),
                                ("kovacova", "Žofia Kováčová"), ("lukasz wojcik", "Łukasz Wójcik")):
            hits = search.search_contacts(session, rep, query)
            assert expected in [hit.name for hit in hits], f"{query!r} finds {[h.name for h in hits]}"
            owners = set(session.scalars(select(Contact.owner_id).where(Contact.id.in_([h.id for h in hits]))))
            assert owners == {rep.user_id}, f"{query!r}: the rep's search shows only the rep's contacts"
        # Someone else's contacts exist, and the rep cannot find them.
        assert search.search_contacts(session, principal_of(app, "admin@example.com"), "Ольга Смирнова")
        assert search.search_contacts(session, rep, "Ольга Смирнова") == []
        assert search.search_contacts(session, rep, "jiri dvorak") == []


def _check_owners_are_spread_and_own_scope_shows(demo):
    app, _peek = demo
    ids = _ids(app)
    with app.app_context(), state(app).db.Session() as session:
        per_owner = dict(session.execute(select(Contact.owner_id, func.count()).group_by(Contact.owner_id)).all())
        total = session.scalar(select(func.count()).select_from(Contact))
        assert 150 <= total <= 400, total
        assert set(per_owner) == set(ids.values()) and min(per_owner.values()) >= 30
        kinds = dict(session.execute(select(Contact.kind, func.count()).group_by(Contact.kind)).all())
        assert kinds["company"] >= 20 and kinds["person"] >= 100
        rep = principal_of(app, "rep@example.com")
        assert services.count_contacts(session, principal=rep) == per_owner[ids["rep"]] < total
        page, _next = services.list_contacts(session, limit=200, principal=rep)
        assert {c.owner_id for c in page} == {ids["rep"]}
        admin = principal_of(app, "admin@example.com")
        assert services.count_contacts(session, principal=admin) == total
        people = session.scalars(select(Contact).where(Contact.kind == "person")).all()
        assert all(p.email and p.phone and p.company_id for p in people)
        assert len({p.email for p in people}) == len(people), "e-mails are unique"
        assert any(not p.name.isascii() for p in people) and any(p.name.isascii() for p in people)


def _check_history_tasks_and_every_channel(demo):
    app, _peek = demo
    rep = _ids(app)["rep"]
    now = utcnow()
    with state(app).db.Session() as session:
        channels = set(session.scalars(select(Interaction.channel).distinct()))
        assert channels == set(CHANNELS)
        assert session.scalar(select(func.max(Interaction.occurred_at))) <= now
        tasks = session.scalars(select(Task).where(Task.owner_id == rep)).all()
        open_tasks = [t for t in tasks if not t.done]
        assert any(t.due_at < now - dt.timedelta(hours=12) for t in open_tasks), "overdue"
        assert any(t.due_at.date() == now.date() for t in open_tasks), "due today"
        assert any(t.due_at > now + dt.timedelta(days=1) for t in open_tasks), "upcoming"
        assert any(t.done and t.done_at for t in tasks)
        assert all(t.contact_id is not None for t in tasks)
        # Lifecycle history: steps in order, dated in the past.
        steps = session.execute(select(LifecycleChange.contact_id, LifecycleChange.from_stage, LifecycleChange.to_stage,
                                       LifecycleChange.changed_at).order_by(LifecycleChange.contact_id, LifecycleChange.changed_at)).all()
        by_contact: dict[int, list] = {}
        for contact_id, before, after, when in steps:
            by_contact.setdefault(contact_id, []).append((before, after, when))
        assert any(len(path) >= 4 for path in by_contact.values())
        for contact_id, path in by_contact.items():
            assert path[0][0] is None and all(path[i][1] == path[i + 1][0] for i in range(len(path) - 1)), path
            assert all(when < now for _b, _a, when in path)
            assert session.get(Contact, contact_id).lifecycle_stage == path[-1][1]


def _check_made_through_the_services_audited_and_published(demo):
    app, peek = demo
    with state(app).db.Session() as session:
        contacts = session.scalar(select(func.count()).select_from(Contact))
        interactions = session.scalar(select(func.count()).select_from(Interaction))
        created = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.object_type == "core.contact", AuditEntry.action == "create"))
        events = session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "contact.created"))
        assert created == events == contacts
        assert session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "interaction.created")) == interactions
    assert peek.contacts_seen == contacts, "a plugin's demo data runs after the host's and sees its contacts"
    with app.app_context():
        assert seed_demo_data(app) == [], "seeded once per database"
    with state(app).db.Session() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == contacts


# Seeding costs a few seconds: two tests share the checks.


def test_search_and_scope_over_the_demo_data(demo):
    _check_the_rep_finds_cyrillic_and_accented_names_by_plain_typing_and_only_their_own(demo)
    _check_owners_are_spread_and_own_scope_shows(demo)


def test_history_tasks_and_write_paths_of_the_demo_data(demo):
    _check_history_tasks_and_every_channel(demo)
    _check_made_through_the_services_audited_and_published(demo)
