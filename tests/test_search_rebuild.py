"""``host.core.search.rebuild_index``: the bulk rebuild of the contact search
index (for data loaded with the triggers out of the way) must produce
exactly the rows the triggers maintain, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from host.core.models import Contact, ContactEmail, ContactPhone
from host.core.search import rebuild_index, search_contacts
from host.security.access import Principal

pytestmark = pytest.mark.with_plugins()  # the host alone

EVERYONE = Principal(user_id=1, scopes={"*": "all"})


def _db(app):
    return app.extensions["mosaic"].db


def _index(app) -> list[tuple]:
    """Every index row as the database holds it (PostgreSQL: with the
    generated tsvector, so the folding is compared too)."""
    db = _db(app)
    if db.is_sqlite:
        query = "SELECT rowid, name, emails, phones, company, access FROM contact_search ORDER BY rowid"
    else:
        query = ("SELECT contact_id, name, emails, phones, company, document::text, access::text"
                 " FROM contact_search ORDER BY contact_id")
    with db.Session() as session:
        return [tuple(row) for row in session.execute(text(query))]


def _add(session, name: str, *, company: Contact | None = None, emails=(), phones=(), **fields) -> Contact:
    first, _, last = name.partition(" ")
    contact = Contact(kind="person", name=name, first_name=first, last_name=last or None, **fields)
    contact.company_id = company.id if company is not None else None
    contact.emails = [ContactEmail(email=e) for e in emails]
    contact.phones = [ContactPhone(phone=p, number_digits="".join(c for c in p if c.isdigit())) for p in phones]
    session.add(contact)
    session.flush()
    return contact


def test_rebuild_gives_the_rows_the_triggers_keep(app):
    with _db(app).transaction() as session:
        firm = Contact(kind="company", name="Ёлкин & Groß ООД")
        session.add(firm)
        session.flush()
        _add(session, "Иван Петров", company=firm, email="ivan@example.com",
             emails=("ivan@example.com", "i.petrov@home.example"), phone_digits="359881234567",
             phones=("+359 88 123 4567", "02 987 654"))
        _add(session, "Žofia Nováková", company=firm, emails=("zofia@example.sk",))
        _add(session, "Σωκράτης Ærø")
        _add(session, "Jürgen Łukasz", phones=("+49 30 1234",))
        # A letter to fold only in a second address (the triggers fold a text
        # only where they find one).
        _add(session, "Plain Person", email="plain@example.com", emails=("plain@example.com", "straße@example.de"))
    by_triggers = _index(app)
    assert len(by_triggers) == 6

    with _db(app).engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM contact_search")  # as after a load with the triggers away
    assert _index(app) == []

    with _db(app).engine.begin() as connection:
        assert rebuild_index(connection) == 6
    assert _index(app) == by_triggers

    with _db(app).Session() as session:
        # The company first, then its people (found by their company's name).
        found = [hit.name for hit in search_contacts(session, EVERYONE, "елкин")]
        assert found[0] == "Ёлкин & Groß ООД" and set(found[1:]) == {"Иван Петров", "Žofia Nováková"}
        assert [hit.name for hit in search_contacts(session, EVERYONE, "zofia")] == ["Žofia Nováková"]
        assert [hit.name for hit in search_contacts(session, EVERYONE, "σωκρατης aero")] == ["Σωκράτης Ærø"]
        assert [hit.name for hit in search_contacts(session, EVERYONE, "strasse")] == ["Plain Person"]


def test_rebuild_keeps_owner_and_team_tokens_so_scoped_search_is_unchanged(app):
    """The index carries each contact's owner and team (a scoped search asks
    it for those): the rebuild must write them as the triggers do, or a rep
    finds nothing after a bulk load."""
    from sqlalchemy import select

    from host.security.models import Team
    from host.testing import make_user

    ann = make_user(app, "ann@example.com", teams=("north",))
    bob = make_user(app, "bob@example.com")
    with _db(app).Session() as session:
        north = session.scalar(select(Team.id).where(Team.name == "north"))
    with _db(app).transaction() as session:
        _add(session, "Ivan Annov", owner_id=ann)
        _add(session, "Ivan Teamov", owner_id=bob, team_id=north)
        _add(session, "Ivan Bobov", owner_id=bob)
        _add(session, "Ivan Nobody")
    principals = {
        "ann": Principal(user_id=ann, scopes={"*": "own"}),
        "bob": Principal(user_id=bob, scopes={"*": "own"}),
        "ann's team": Principal(user_id=ann, scopes={"*": "team"}, team_ids=frozenset({north})),
        "all": EVERYONE,
    }

    def found() -> dict[str, list[str]]:
        with _db(app).Session() as session:
            return {who: [hit.name for hit in search_contacts(session, p, "ivan")] for who, p in principals.items()}

    by_triggers, rows = found(), _index(app)
    assert by_triggers == {"ann": ["Ivan Annov"], "bob": ["Ivan Bobov", "Ivan Teamov"],
                           "ann's team": ["Ivan Teamov", "Ivan Annov"],
                           "all": ["Ivan Nobody", "Ivan Bobov", "Ivan Teamov", "Ivan Annov"]}
    with _db(app).engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM contact_search")
        rebuild_index(connection)
    assert _index(app) == rows
    assert found() == by_triggers


def test_rebuild_replaces_stale_rows(app):
    with _db(app).transaction() as session:
        _add(session, "Petr Petrov")
    with _db(app).engine.begin() as connection:
        connection.exec_driver_sql("UPDATE contact_search SET name = 'stale'")
    with _db(app).engine.begin() as connection:
        rebuild_index(connection)
    assert [row[1].split()[0] for row in _index(app)] == ["Petr"]
