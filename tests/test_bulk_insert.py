"""host.bulk_insert: many rows in few statements, stored as SQLAlchemy's own
INSERT stores them, ids in the order of the rows. Runs on the test database
(SQLite, or PostgreSQL with MOSAIC_TEST_DATABASE_URL: the unnest path)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, select

from host.bulk_insert import insert_rows, inserted_ids
from host.db import is_among
from host.models import OutboxEvent
from host.security.models import AuditEntry

WHEN = dt.datetime(2026, 12, 3, 17, 30, 15, 123456, tzinfo=dt.timezone.utc)


def _audit_rows(marker: str) -> list[dict]:
    """Rows with what trips a writer up: a column NULL in every row, JSON
    of every shape (nested, Unicode, quotes, a JSON null), text with quotes,
    percent signs and backslashes, times in other zones."""
    values = [
        {"name": [None, "Žofia O'Brien"], "tags": [None, ["vip", "партньор"]]},
        {"notes": [None, 'say "50 %" \\ done'], "n": [None, 1.5]},
        {},
        {"custom_fields": [None, {"size": None, "ok": True}]},
    ]
    return [{"occurred_at": WHEN.astimezone(dt.timezone(dt.timedelta(hours=n))), "user_id": None,
             "action": "create", "object_type": f"{marker}%s'{n}", "object_id": f"{n}\\{marker}",
             "changes": changes} for n, changes in enumerate(values)]


def _stored(session, marker: str) -> list[tuple]:
    table = AuditEntry.__table__
    rows = session.execute(select(table.c.occurred_at, table.c.user_id, table.c.action, table.c.object_id,
                                  table.c.changes).where(table.c.object_type.like(f"{marker}%"))
                           .order_by(table.c.id)).all()
    return [tuple(row) for row in rows]


def test_rows_are_stored_as_sqlalchemy_stores_them(app):
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        insert_rows(session, AuditEntry.__table__, _audit_rows("bulk"))
        session.execute(insert(AuditEntry.__table__), _audit_rows("orm"))
        bulk, orm = _stored(session, "bulk"), _stored(session, "orm")
    assert len(bulk) == 4
    assert [row[:3] + row[4:] for row in bulk] == [row[:3] + row[4:] for row in orm]
    assert [row[3] for row in bulk] == [f"{n}\\bulk" for n in range(4)]
    assert bulk[0][0] == WHEN and bulk[0][1] is None
    assert bulk[1][4] == {"notes": [None, 'say "50 %" \\ done'], "n": [None, 1.5]}


@pytest.mark.parametrize("count", [1, 7, 1200])
def test_inserted_ids_come_back_in_the_order_of_the_rows(app, count):
    # 1,200 rows: more than one statement's worth on SQLite (its parameter limit).
    rows = [{"type": f"t.{n}", "source": "test", "data": {"n": n}, "occurred_at": WHEN} for n in range(count)]
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        ids = inserted_ids(session, OutboxEvent.__table__, rows)
        stored = dict(session.execute(select(OutboxEvent.id, OutboxEvent.type).where(OutboxEvent.id.in_(ids))).all())
        after = session.execute(insert(OutboxEvent.__table__).returning(OutboxEvent.id),
                                [{"type": "later", "source": "test", "data": {}, "occurred_at": WHEN}]).scalar_one()
    assert len(set(ids)) == count
    assert [stored[i] for i in ids] == [row["type"] for row in rows]
    assert ids == sorted(ids) and after > ids[-1]  # the sequence moved past the ids drawn


def test_a_column_with_a_default_must_be_given(app):
    rows = [{"type": "t", "source": "test", "occurred_at": WHEN}]  # "data" has a Python-side default
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        with pytest.raises(ValueError, match="data"):
            insert_rows(session, OutboxEvent.__table__, rows)


@pytest.mark.parametrize("wanted", [[], ["t.1"], ["t.0", "t.2", "t.'3", "none"]])
def test_is_among_selects_what_in_selects(app, wanted):
    rows = [{"type": name, "source": "test", "data": {}, "occurred_at": WHEN} for name in ("t.0", "t.1", "t.2", "t.'3")]
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        insert_rows(session, OutboxEvent.__table__, rows)
        found = set(session.scalars(select(OutboxEvent.type).where(is_among(session, OutboxEvent.type, wanted))))
        ids = list(session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)))
        by_id = set(session.scalars(select(OutboxEvent.id).where(is_among(session, OutboxEvent.id, iter(ids[1:3])))))
    assert found == {name for name in wanted if name != "none"}
    assert by_id == set(ids[1:3])
