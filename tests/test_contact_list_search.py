"""The contact list's ``q=`` filter (``services.list_contacts``): on SQLite
the search index drives the query (``search.join_matches``), on PostgreSQL
an ``IN`` condition; either way a search pages by cursor through every
match, newest first, exactly once, within the record scope and outside the
recycle bin."""

from __future__ import annotations

import pytest

from host.core import services
from host.core.models import Contact
from host.db import utcnow
from host.pagination import decode_cursor
from host.security.access import Principal
from host.testing import make_user

pytestmark = pytest.mark.with_plugins()  # the host alone


def _add(session, name: str, owner_id: int, **fields) -> int:
    first, _, last = name.partition(" ")
    contact = Contact(kind="person", name=name, first_name=first, last_name=last, owner_id=owner_id, **fields)
    session.add(contact)
    session.flush()
    return contact.id


def _all_pages(app, principal: Principal, filters: dict, limit: int) -> list[list[int]]:
    pages, cursor = [], None
    with app.extensions["mosaic"].db.Session() as session:
        while True:
            items, next_cursor = services.list_contacts(session, filters, limit=limit, cursor=cursor, principal=principal)
            pages.append([contact.id for contact in items])
            if next_cursor is None:
                return pages
            cursor = decode_cursor(next_cursor)


def test_search_pages_through_every_visible_match_newest_first(app):
    ann = make_user(app, "ann@example.com")
    bob = make_user(app, "bob@example.com")
    with app.extensions["mosaic"].db.transaction() as session:
        mine = [_add(session, name, ann) for name in ("Иван Петров", "Ivan Novak", "Ива Колева", "Ивайло Ёлкин", "Иван Иванов")]
        _add(session, "Петър Стоянов", ann)  # no match
        _add(session, "Иван Чужд", bob)  # out of Ann's scope
        binned = _add(session, "Иван Изтрит", ann, deleted_at=utcnow())
        customer = _add(session, "Иванка Клиент", ann, lifecycle_stage="customer")
    own = Principal(user_id=ann, scopes={"*": "own"})

    matches = sorted([mine[0], mine[2], mine[3], mine[4], customer], reverse=True)  # not the Latin "Ivan"
    pages = _all_pages(app, own, {"q": "ива"}, limit=2)
    assert [i for page in pages for i in page] == matches
    assert [len(page) for page in pages] == [2, 2, 1]
    assert binned not in matches

    # Accents and case never matter; other filters combine with the search.
    assert _all_pages(app, own, {"q": "ЕЛКИН"}, limit=50) == [[mine[3]]]
    assert _all_pages(app, own, {"q": "ива", "lifecycle_stage": "customer"}, limit=50) == [[customer]]
    # Every word must match; punctuation alone matches nothing.
    assert _all_pages(app, own, {"q": "иван петров"}, limit=50) == [[mine[0]]]
    assert _all_pages(app, own, {"q": "--"}, limit=50) == [[]]

    everyone = Principal(user_id=ann, scopes={"*": "all"})
    assert len([i for page in _all_pages(app, everyone, {"q": "иван"}, limit=3) for i in page]) == 3 + 1  # + Bob's
