"""Domain events: written to the outbox with the change, delivered after commit.

``publish(session, event)`` adds an outbox row in the session's transaction and
remembers the event on the session. When that transaction commits, each
``mosaic_event`` implementation receives it; when it rolls back, nobody does.
A raising subscriber is logged with its plugin's name and changes nothing.

Savepoints (``session.begin_nested()``) count as transactions of their own: an
event published inside one that is rolled back is dropped with its outbox row;
one published inside a released savepoint waits for the enclosing transaction
to commit. Events are delivered per transaction in the order they were
published, once the session is idle again, so a subscriber may use the same
session (e.g. the request's) for new work.

In-process delivery dies with the process. Consumers that must see every event
(webhooks, integrations) read the outbox with ``read_outbox`` instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Sequence

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from hooks import Event

from .bulk_insert import inserted_ids
from .models import OutboxEvent

log = logging.getLogger("mosaic.events")

#: session.info key: [transaction, event] pairs in publish order; the
#: transaction is the one whose fate decides the event's.
_PENDING = "mosaic_pending_events"
#: session.info key: the transaction that just committed, until it ends.
_COMMITTED = "mosaic_committed_transaction"


def publish(session: Session, event: Event) -> Event:
    """Record ``event`` in the outbox within ``session``'s transaction; it is
    delivered to subscribers once that transaction commits.

    Returns the event as stored: ``id`` is the outbox row's id, and ``data`` is
    a JSON copy, so in-process subscribers see exactly what outbox readers see
    (tuples become lists) and later changes to the caller's dict do not leak
    in. Raises ``TypeError`` naming the event when ``data`` is not JSON.
    """
    data = _json_copy(event)
    row = OutboxEvent(type=event.type, source=event.source, data=data, occurred_at=event.occurred_at)
    session.add(row)
    session.flush()  # for the id; flush([row]) alone is deprecated in SQLAlchemy 2
    stored = dataclasses.replace(event, id=row.id, data=data)
    session.info.setdefault(_PENDING, []).append([_deciding_transaction(session), stored])
    return stored


def publish_many(session: Session, events: Sequence[Event]) -> list[Event]:
    """``publish`` for many events at once (a bulk import): one multi-row
    INSERT instead of a flush per event. The same outbox rows, ids in the
    order given, the same delivery once the transaction commits."""
    if not events:
        return []
    datas = [_json_copy(event) for event in events]
    rows = [{"type": event.type, "source": event.source, "data": data, "occurred_at": event.occurred_at}
            for event, data in zip(events, datas)]
    ids = inserted_ids(session, OutboxEvent.__table__, rows)
    stored = [dataclasses.replace(event, id=event_id, data=data) for event, event_id, data in zip(events, ids, datas)]
    transaction = _deciding_transaction(session)
    session.info.setdefault(_PENDING, []).extend([transaction, event] for event in stored)
    return stored


def read_outbox(session: Session, after_id: int = 0, limit: int = 100) -> list[Event]:
    """Up to ``limit`` outbox events with an id above ``after_id``, oldest first.

    For durable consumers: keep the last id handled and ask for what follows.
    Returned as ``hooks.Event`` (the shape ``mosaic_event`` receives), so one
    handler serves both paths.

    Mind on PostgreSQL: ids are drawn when a row is inserted, not when its
    transaction commits, so a slow transaction can commit id 11 after id 12 is
    already visible. A consumer that only remembers the highest id would skip
    11; it should re-read recent gaps (or lag behind the newest rows) before
    moving past them. SQLite writers are serialised, so ids commit in order.
    """
    rows = session.scalars(
        select(OutboxEvent).where(OutboxEvent.id > after_id).order_by(OutboxEvent.id).limit(limit)
    )
    return [
        Event(type=row.type, data=row.data, occurred_at=row.occurred_at, id=row.id, source=row.source)
        for row in rows
    ]


#: Value types a JSON round trip gives back as they are (exact types).
_JSON_PLAIN = frozenset({str, int, float, bool, type(None)})


def _json_copy(event: Event) -> dict[str, Any]:
    data = event.data
    # Most events carry a few ids and names: a flat dict of plain values
    # with text keys is its own JSON copy, without the round trip (an
    # import publishes one event per row).
    if data.__class__ is dict and all(
            key.__class__ is str and value.__class__ in _JSON_PLAIN for key, value in data.items()):
        return dict(data)
    try:
        return json.loads(json.dumps(dict(data)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"event {event.type!r}: data must be JSON-serialisable: {exc}") from None


def _deciding_transaction(session: Session) -> SessionTransaction:
    """The innermost savepoint, else the root transaction: the one whose
    rollback undoes what was just written."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    assert transaction is not None, "publish() flushed, so a transaction is open"
    return transaction


def _enclosing(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or root a released savepoint's work now belongs to
    (skipping the ORM's internal subtransactions, which never commit alone)."""
    parent = transaction.parent
    while parent is not None and not (parent.nested or parent.parent is None):
        parent = parent.parent
    assert parent is not None
    return parent


class EventDispatcher:
    """Delivers committed events of one app's sessions to its plugins."""

    def __init__(self, pm) -> None:
        self.pm = pm

    def install(self, *session_factories) -> None:
        for factory in session_factories:
            sa_event.listen(factory, "after_commit", self._after_commit)
            sa_event.listen(factory, "after_transaction_end", self._after_transaction_end)

    def _after_commit(self, session: Session) -> None:
        # SQLAlchemy fires after_commit for a released savepoint too, and does
        # not say which transaction committed: at this point it is still the
        # innermost one. Remember it; its end (which follows at once) decides.
        if session.info.get(_PENDING):
            session.info[_COMMITTED] = _deciding_transaction(session)

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        # Every way a transaction finishes (commit, rollback, close() without
        # either) ends here, so nothing outlives the transaction it belongs to.
        committed = session.info.pop(_COMMITTED, None) is transaction
        pending = session.info.get(_PENDING)
        if not pending:
            return
        if transaction.parent is None:
            del session.info[_PENDING]
            if committed:
                # The session is idle now: a subscriber may use it again.
                for owner, ev in pending:
                    if owner is transaction:
                        self.deliver(ev)
        elif committed:
            heir = _enclosing(transaction)
            for entry in pending:
                if entry[0] is transaction:
                    entry[0] = heir
        else:
            # A rolled-back savepoint took its outbox rows with it.
            pending[:] = [entry for entry in pending if entry[0] is not transaction]

    def deliver(self, ev: Event) -> None:
        """Hand ``ev`` to every ``mosaic_event`` implementation; one that
        raises is logged with its plugin's name and the others still run."""
        for plugin, thunk in self.pm.call_each("mosaic_event", event=ev):
            try:
                thunk()
            except Exception:
                log.exception(
                    "plugin %s failed handling event %s (id %s)",
                    plugin,
                    ev.type,
                    ev.id,
                    extra={"plugin": plugin, "event_id": ev.id},
                )
