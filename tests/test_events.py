"""Domain events: outbox rows written with the change, delivery after commit.

Subscribers are real plugins (``plugin_candidate``) so delivery goes through
the same plugin manager, ordering and error handling as in production.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

import pytest
from sqlalchemy import func, select

from hooks import Event, hookimpl
from host.db import session as request_session
from host.events import publish, publish_many, read_outbox
from host.models import OutboxEvent
from host.testing import plugin_candidate


class Subscriber:
    """A plugin that records every event it receives, and can run a callback
    at that moment to observe the world as the subscriber sees it."""

    def __init__(self, on_event: Callable[[Event], None] | None = None):
        self.events: list[Event] = []
        self.on_event = on_event

    @hookimpl
    def mosaic_event(self, event):
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


class Broken:
    @hookimpl
    def mosaic_event(self, event):
        raise RuntimeError("subscriber bug")


class Rollback(Exception):
    """Raised to make ``db.transaction()`` roll back."""


@pytest.fixture
def subscriber():
    return Subscriber()


@pytest.fixture
def app(make_app, subscriber):
    return make_app(plugins=["recorder"], extra_plugins=[plugin_candidate("recorder", subscriber)])


@pytest.fixture
def db(app):
    return app.extensions["mosaic"].db


def outbox(db) -> list[Event]:
    with db.Session() as session:
        return read_outbox(session, limit=1000)


def test_delivered_after_commit_and_stored_in_the_outbox(make_app):
    seen_in_outbox = []
    subscriber = Subscriber(on_event=lambda event: seen_in_outbox.append([e.id for e in outbox(db)]))
    app = make_app(plugins=["recorder"], extra_plugins=[plugin_candidate("recorder", subscriber)])
    db = app.extensions["mosaic"].db

    with db.transaction() as session:
        stored = publish(session, Event("deal.won", {"deal_id": 7, "amount": "1200.00"}, source="sales"))
        assert subscriber.events == []  # not before the commit

    assert subscriber.events == [stored]
    # From another connection, the row is already there when the subscriber runs.
    assert seen_in_outbox == [[stored.id]]
    [row] = outbox(db)
    assert row == stored
    assert (row.type, row.source, row.data) == ("deal.won", "sales", {"deal_id": 7, "amount": "1200.00"})


def test_event_id_is_the_outbox_row_id(db, subscriber):
    with db.transaction() as session:
        stored = [publish(session, Event("contact.created", {"n": n})) for n in range(3)]
        row_ids = session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)).all()

    assert [e.id for e in stored] == row_ids
    assert [e.id for e in subscriber.events] == row_ids


def test_rolled_back_transaction_leaves_no_row_and_delivers_nothing(db, subscriber):
    with pytest.raises(Rollback), db.transaction() as session:
        publish(session, Event("deal.won", {"deal_id": 1}))
        raise Rollback

    assert subscriber.events == []
    assert outbox(db) == []


def test_explicit_rollback_then_commit_on_the_same_session(db, subscriber):
    with db.WriteSession() as session:
        publish(session, Event("discarded"))
        session.rollback()
        publish(session, Event("kept"))
        session.commit()

    assert subscriber.types == ["kept"]
    assert [e.type for e in outbox(db)] == ["kept"]


def test_session_closed_without_commit_forgets_its_events(db, subscriber):
    # close() neither commits nor fires a rollback event; a reused session
    # must not deliver the abandoned transaction's events with the next one.
    session = db.WriteSession()
    publish(session, Event("abandoned"))
    session.close()
    publish(session, Event("kept"))
    session.commit()
    session.close()

    assert subscriber.types == ["kept"]
    assert [e.type for e in outbox(db)] == ["kept"]


def test_raising_subscriber_is_logged_by_name_and_changes_nothing(make_app, caplog):
    subscriber = Subscriber()
    # "broken" sorts before "recorder", so it runs first: the later plugin
    # still getting the event proves one failure does not stop the rest.
    app = make_app(
        plugins=["broken", "recorder"],
        extra_plugins=[plugin_candidate("broken", Broken()), plugin_candidate("recorder", subscriber)],
    )
    db = app.extensions["mosaic"].db

    with caplog.at_level(logging.ERROR, logger="mosaic.events"):
        with db.transaction() as session:
            stored = publish(session, Event("ticket.resolved", {"ticket_id": 3}))

    assert subscriber.events == [stored]
    assert outbox(db) == [stored]
    [record] = caplog.records
    assert record.name == "mosaic.events"
    assert "plugin broken failed handling event ticket.resolved" in record.getMessage()
    assert record.plugin == "broken" and record.event_id == stored.id
    assert record.exc_info and "subscriber bug" in str(record.exc_info[1])


def test_rolled_back_savepoint_drops_its_events(db, subscriber):
    with db.transaction() as session:
        publish(session, Event("before"))
        with pytest.raises(Rollback), session.begin_nested():
            publish(session, Event("in_savepoint"))
            raise Rollback
        publish(session, Event("after"))

    assert subscriber.types == ["before", "after"]
    assert [e.type for e in outbox(db)] == ["before", "after"]


def test_released_savepoint_waits_for_the_outer_commit(db, subscriber):
    with db.transaction() as session:
        with session.begin_nested():
            publish(session, Event("in_savepoint"))
        # Released, but the outer transaction may still roll back.
        assert subscriber.events == []
        publish(session, Event("after"))

    assert subscriber.types == ["in_savepoint", "after"]


def test_released_savepoint_is_undone_by_an_outer_rollback(db, subscriber):
    with pytest.raises(Rollback), db.transaction() as session:
        with session.begin_nested():
            publish(session, Event("in_savepoint"))
        raise Rollback

    assert subscriber.events == []
    assert outbox(db) == []


def test_nested_savepoints_keep_only_what_survived(db, subscriber):
    with db.transaction() as session:
        with session.begin_nested():
            publish(session, Event("outer_savepoint"))
            with pytest.raises(Rollback), session.begin_nested():
                publish(session, Event("inner_savepoint"))
                raise Rollback
            with session.begin_nested():
                publish(session, Event("second_inner"))

    assert subscriber.types == ["outer_savepoint", "second_inner"]
    assert [e.type for e in outbox(db)] == ["outer_savepoint", "second_inner"]


def test_each_transaction_of_a_session_is_delivered_after_its_own_commit(db, subscriber):
    with db.WriteSession() as session:
        first = publish(session, Event("first"))
        session.commit()
        assert subscriber.events == [first]

        second = publish(session, Event("second"))
        assert subscriber.events == [first]
        session.commit()
        assert subscriber.events == [first, second]

    assert first.id < second.id


def test_delivery_follows_publish_order(db, subscriber):
    types = ["contact.created", "deal.created", "deal.won", "order.created", "contact.updated"]
    with db.transaction() as session:
        for name in types:
            publish(session, Event(name))

    assert subscriber.types == types
    ids = [e.id for e in subscriber.events]
    assert ids == sorted(ids)


def test_a_subscriber_may_use_the_session_that_just_committed(make_app):
    # A plugin's subscriber commonly reaches for the request's session; it must
    # find it usable, not stuck in its committed transaction.
    counts = []
    subscriber = Subscriber(
        on_event=lambda event: counts.append(request_session().scalar(select(func.count()).select_from(OutboxEvent)))
    )
    app = make_app(plugins=["recorder"], extra_plugins=[plugin_candidate("recorder", subscriber)])

    with app.test_request_context("/", method="POST"):
        session = request_session()
        publish(session, Event("contact.created"))
        session.commit()

    assert counts == [1]


def test_event_data_is_a_json_copy(db, subscriber):
    data = {"tags": ("vip", "b2b"), "nested": {"n": 1}}
    with db.transaction() as session:
        stored = publish(session, Event("contact.tagged", data))
        data["nested"]["n"] = 2  # the caller keeps using its dict

    expected = {"tags": ["vip", "b2b"], "nested": {"n": 1}}
    assert stored.data == expected
    assert subscriber.events[0].data == expected
    assert outbox(db)[0].data == expected


def test_flat_data_is_copied_and_anything_else_goes_through_json(db, subscriber):
    flat = {"id": 7, "name": "Žofia", "vip": True, "score": 0.5, "team": None}
    with db.transaction() as session:
        stored = publish(session, Event("contact.created", flat))
        numbered = publish(session, Event("contact.tagged", {1: "vip"}))
        flat["id"] = 8  # the caller keeps using its dict

    assert stored.data == {"id": 7, "name": "Žofia", "vip": True, "score": 0.5, "team": None}
    assert numbered.data == {"1": "vip"}  # JSON keys are text, as outbox readers see them
    assert [event.data for event in subscriber.events] == [stored.data, numbered.data]
    assert [row.data for row in outbox(db)] == [stored.data, numbered.data]


def test_publish_many_writes_what_publish_writes_in_order(db, subscriber):
    events = [Event("contact.created", {"id": n}) for n in range(3)] + [Event("deal.won", {"tags": ("a",)}, source="sales")]
    with db.transaction() as session:
        single = publish(session, Event("contact.created", {"id": -1}))
        stored = publish_many(session, events)
    with pytest.raises(Rollback), db.transaction() as session:
        publish_many(session, [Event("rolled_back")])
        raise Rollback

    assert [event.id for event in stored] == [single.id + n for n in range(1, 5)]
    assert stored[3].data == {"tags": ["a"]} and stored[3].source == "sales"
    rows = outbox(db)
    assert [(row.id, row.type, row.source, row.data) for row in rows] == \
        [(event.id, event.type, event.source, event.data) for event in [single, *stored]]
    assert [event.id for event in subscriber.events] == [row.id for row in rows]
    assert publish_many(None, []) == []


def test_data_that_is_not_json_is_refused_at_publish(db, subscriber):
    with pytest.raises(TypeError, match="event 'deal.won': data must be JSON-serialisable"):
        with db.transaction() as session:
            publish(session, Event("deal.won", {"when": dt.date(2024, 1, 1)}))

    assert subscriber.events == [] and outbox(db) == []


def test_read_outbox_pages_in_id_order(db, subscriber):
    with db.transaction() as session:
        for n in range(3):
            publish(session, Event("a", {"n": n}))
    with pytest.raises(Rollback), db.transaction() as session:
        publish(session, Event("rolled_back"))
        raise Rollback
    with db.transaction() as session:
        for n in range(2):
            publish(session, Event("b", {"n": n}, source="sales"))

    with db.Session() as session:
        everything = read_outbox(session)
        first_page = read_outbox(session, limit=2)
        rest = read_outbox(session, after_id=first_page[-1].id)
        past_the_end = read_outbox(session, after_id=everything[-1].id)

    # Durable consumers see exactly what in-process subscribers saw.
    assert everything == subscriber.events
    assert [(e.type, e.data["n"]) for e in everything] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert first_page + rest == everything
    assert past_the_end == []
    assert all(e.occurred_at.tzinfo is not None for e in everything)
