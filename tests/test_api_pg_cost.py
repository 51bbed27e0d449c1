"""What keeps a page of contacts cheap on both databases (issue 5, the
PostgreSQL API at a million contacts): the contact schemas' fast dump gives
exactly what marshmallow's own would, and a list page loads its contacts'
e-mails, phones and tags in three statements however many contacts it holds
(the recycle bin included), without touching collections already loaded.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from marshmallow import Schema, fields, post_dump
from sqlalchemy import event, select

from host.core import services
from host.core.models import Contact, ContactEmail, ContactPhone, Tag
from host.core.schemas import ContactCreatedSchema, ContactPageSchema, ContactSchema, FastDumpSchema
from host.db import utcnow
from host.pagination import decode_cursor
from host.security.access import Principal
from host.testing import api_token, bearer, make_user

pytestmark = pytest.mark.with_plugins()  # the host alone

UTC = dt.timezone.utc


def _marshmallow_only(schema: Schema) -> Schema:
    """``schema`` with the fast path switched off here and in every nested schema."""
    if isinstance(schema, FastDumpSchema):
        schema._fast_plan = None
    for field in schema.fields.values():
        inner = getattr(field, "inner", field)
        if isinstance(inner, fields.Nested):
            _marshmallow_only(inner.schema)
    return schema


def _contact(**values):
    base = dict(
        id=7, owner_id=3, team_id=None, created_by=3, updated_by=None, version=2,
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        updated_at=dt.datetime(2026, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        kind="person", name="Žofia Nováková", first_name="Žofia", last_name=None, company_id=None,
        email="zofia@example.sk", phone=None, phone_digits=None, street=None, city="Бургас", postal_code=None,
        region=None, country="SK", website=None, tax_number=None, lifecycle_stage="customer", source=None,
        birthday=dt.date(1990, 2, 28), language=None, marketing_consent=True, consent_at=None, consent_source=None,
        notes="line\nbreak", custom_fields={"size": 12, "vip": True, "when": "2026-01-01", "nested": {"a": [1]}},
        external_id=None, last_activity_at=None,
        emails=[SimpleNamespace(email="zofia@example.sk", label=None), SimpleNamespace(email="z@work.sk", label="work")],
        phones=[SimpleNamespace(phone="+421 900 123 456", label="mobile", number_digits="+421900123456")],
        tags=[SimpleNamespace(name="newsletter"), SimpleNamespace(name="vip")],
    )
    return SimpleNamespace(**{**base, **values})


ODD_VALUES = [
    {},
    {"name": 5, "id": "8", "version": True, "city": b"Ko\xc5\xa1ice"},  # coerced as marshmallow coerces them
    {"birthday": dt.datetime(1990, 2, 28, 12, 0, tzinfo=UTC)},  # a datetime in a date field
    {"emails": None, "phones": [], "tags": [], "custom_fields": None, "birthday": None, "created_at": None},
    {"consent_at": dt.datetime(2025, 12, 31, 23, 59, 59, 1, tzinfo=UTC), "marketing_consent": 0},
]


@pytest.mark.parametrize("values", ODD_VALUES)
def test_the_fast_dump_gives_what_marshmallow_gives(values):
    contact = _contact(**values)
    assert ContactSchema().dump(contact) == _marshmallow_only(ContactSchema()).dump(contact)
    as_dict = vars(contact)  # a mapping goes through marshmallow's accessor, as before
    assert ContactSchema().dump(as_dict) == _marshmallow_only(ContactSchema()).dump(as_dict)
    page = {"items": [contact, _contact(id=6)], "next": "abc"}
    fast = ContactPageSchema().dump(page)
    assert fast == _marshmallow_only(ContactPageSchema()).dump(page)
    assert fast["items"][0]["tags"] == ([] if "tags" in values else ["newsletter", "vip"])


def test_an_absent_attribute_is_left_out_as_marshmallow_leaves_it():
    contact = _contact()
    assert "possible_duplicates" not in ContactCreatedSchema().dump(contact)
    contact.possible_duplicates = [3, 4]
    assert ContactCreatedSchema().dump(contact)["possible_duplicates"] == [3, 4]
    del contact.email
    as_dict = vars(contact)
    for obj in (contact, as_dict):
        assert ContactSchema().dump(obj) == _marshmallow_only(ContactSchema()).dump(obj)
        assert "email" not in ContactSchema().dump(obj)


def test_schemas_the_fast_path_does_not_copy_go_through_marshmallow():
    class Hooked(FastDumpSchema):
        name = fields.String()

        @post_dump
        def shout(self, data, **kwargs):
            return {**data, "name": data["name"].upper()}

    class Computed(FastDumpSchema):
        name = fields.String()
        length = fields.Method("name_length")

        def name_length(self, obj):
            return len(obj.name)

    hooked, computed = Hooked(), Computed()
    assert hooked.dump(SimpleNamespace(name="ann")) == {"name": "ANN"}
    assert computed.dump(SimpleNamespace(name="ann")) == {"name": "ann", "length": 3}
    assert hooked._fast_plan is None and computed._fast_plan is None


# --- loading a page ---------------------------------------------------------------------


def _add(session, name: str, owner_id: int, *, emails=(), phones=(), tags=(), **values) -> int:
    contact = Contact(kind="person", name=name, owner_id=owner_id, **values)
    contact.emails = [ContactEmail(email=e) for e in emails]
    contact.phones = [ContactPhone(phone=p, number_digits=p) for p in phones]
    contact.tags = [session.scalar(select(Tag).where(Tag.name == t)) or Tag(name=t) for t in tags]
    session.add(contact)
    session.flush()
    return contact.id


@pytest.fixture
def people(app):
    ann = make_user(app, "ann@example.com", roles=("admin",))
    with app.extensions["mosaic"].db.transaction() as session:
        made = [_add(session, f"Person {i}", ann, emails=[f"p{i}@example.com", f"p{i}@home.example"][: i % 3],
                     phones=[f"+3591{i}"] * (i % 2), tags=["vip", "b2b", "newsletter"][: i % 4])
                for i in range(12)]
    return SimpleNamespace(ann=ann, ids=made, admin=Principal(user_id=ann, scopes={"*": "all"}))


class Statements:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self.seen

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args):
        self.seen.append(statement)


def _expected(session, contact_id: int) -> dict:
    """The collections as the relationships load them one by one."""
    contact = session.get(Contact, contact_id)
    return {"emails": [e.email for e in contact.emails], "phones": [p.phone for p in contact.phones],
            "tags": [t.name for t in contact.tags]}


def test_a_page_loads_its_collections_in_three_statements_whatever_its_size(app, people):
    db = app.extensions["mosaic"].db
    for limit in (3, 10):
        with db.Session() as session, Statements(db.engine) as seen:
            items, _next = services.list_contacts(session, {}, limit=limit, principal=people.admin)
            loaded = {c.id: {"emails": [e.email for e in c.emails], "phones": [p.phone for p in c.phones],
                             "tags": [t.name for t in c.tags]} for c in items}
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 4, selects  # the page, then e-mails, phones, tags
        assert list(loaded) == sorted(people.ids, reverse=True)[:limit]
        with db.Session() as session:
            assert loaded == {i: _expected(session, i) for i in loaded}
    assert any(len(v["tags"]) > 1 for v in loaded.values())  # ordered by name, as the relationship says


def test_the_api_list_reads_plain_rows_of_the_same_page(app, people):
    """``list_contact_records`` (the API's) pages like ``list_contacts`` and
    carries every column and collection row, in two statements."""
    db = app.extensions["mosaic"].db
    with db.Session() as session:
        session.get(Contact, people.ids[3]).lifecycle_stage = "customer"
        session.get(Contact, people.ids[7]).lifecycle_stage = "customer"
        session.commit()
    for filters in ({}, {"tag": "vip"}, {"lifecycle_stage": "customer"}, {"q": "person"}):
        with db.Session() as session:
            cursor, pages = None, 0
            while True:
                objects, next_objects = services.list_contacts(session, filters, limit=3, cursor=cursor, principal=people.admin)
                with Statements(db.engine) as seen:
                    records, next_records = services.list_contact_records(session, filters, limit=3, cursor=cursor,
                                                                          principal=people.admin)
                assert next_records == next_objects
                assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == (2 if records else 1)
                for contact, record in zip(objects, records, strict=True):
                    columns = {c.key: getattr(contact, c.key) for c in Contact.__table__.c}
                    assert {k: v for k, v in record.items() if k not in ("emails", "phones", "tags")} == columns
                    for name in ("emails", "phones", "tags"):
                        assert record[name] == [{key: getattr(row, key) for key in item}
                                                for row, item in zip(getattr(contact, name), record[name], strict=True)]
                    assert [e["email"] for e in record["emails"]] == [e.email for e in contact.emails]
                    assert [t["name"] for t in record["tags"]] == [t.name for t in contact.tags]
                pages += 1
                if next_objects is None:
                    break
                cursor = decode_cursor(next_objects)
            assert pages >= 1


def test_the_recycle_bin_loads_its_collections_with_the_page(app, people):
    db = app.extensions["mosaic"].db
    with db.transaction() as session:
        for contact in session.scalars(select(Contact).where(Contact.id.in_(people.ids[:6]))):
            contact.deleted_at = utcnow()
    client = app.test_client()
    headers = bearer(api_token(app, "ann@example.com"))
    for limit in (2, 5):
        with Statements(db.engine) as seen:
            answer = client.get(f"/api/v1/contacts/deleted?limit={limit}", headers=headers)
        assert answer.status_code == 200
        loads = [s for s in seen if any(table in s for table in ("contact_email", "contact_phone", "contact_tag"))]
        assert len(loads) == 3, loads  # not three per contact
    assert [item["id"] for item in answer.get_json()["items"]] == sorted(people.ids[:6], reverse=True)[:5]


def test_collections_already_loaded_in_the_session_are_left_alone(app, people):
    db = app.extensions["mosaic"].db
    with db.Session() as session:
        first = session.get(Contact, people.ids[-1])
        first.tags.append(Tag(name="unsaved"))
        items, _next = services.list_contacts(session, {}, limit=3, principal=people.admin)
        assert items[0] is first
        assert [t.name for t in first.tags][-1] == "unsaved"
        assert [e.email for e in items[1].emails] == [e.email for e in session.get(Contact, items[1].id).emails]
        session.rollback()


def test_the_api_page_is_what_marshmallow_made_of_the_same_contacts(app, people):
    client = app.test_client()
    headers = bearer(api_token(app, "ann@example.com"))
    answer = client.get("/api/v1/contacts?limit=5", headers=headers)
    assert answer.status_code == 200
    with app.extensions["mosaic"].db.Session() as session:
        page = services.list_contacts(session, {}, limit=5, principal=people.admin)
        slow = _marshmallow_only(ContactPageSchema()).dump({"items": page[0], "next": page[1]})
    assert answer.get_json() == slow
    with app.test_request_context():
        assert answer.get_data() == app.json.response(slow).get_data()


# --- the pool ---------------------------------------------------------------------------------


def test_postgresql_pings_only_a_connection_that_sat_idle(app, monkeypatch):
    import psycopg

    import host.db

    db = app.extensions["mosaic"].db
    if db.is_sqlite:
        pytest.skip("PostgreSQL's connection pool")
    pings = []
    real_ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    with db.engine.connect() as conn:
        first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with db.engine.connect() as conn:  # back a moment ago: no round trip before use
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == first
    assert pings == []

    # The server cuts the idle connection (a restart, an idle timeout): the
    # next checkout finds out before the request's statement and reconnects.
    monkeypatch.setattr(host.db, "PING_AFTER_IDLE_S", 0.0)
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first])
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != first
    assert pings == [1]
