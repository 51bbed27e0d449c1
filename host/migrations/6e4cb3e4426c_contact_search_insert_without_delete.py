"""contact search index (SQLite): a new contact's row is inserted, not replaced

Revision ID: 6e4cb3e4426c
Revises: b7d41c9e2a60
Create Date: 2026-12-03 11:30:00

Why: the trigger ``contact_search_contact_insert`` ran the same refresh as
an update: ``DELETE FROM contact_search WHERE rowid IN (new.id)``, then the
INSERT. A new contact has no index row (ids are AUTOINCREMENT, never
reused; a rolled-back id takes its index row with it), so the DELETE never
removed anything, yet FTS5 treats a write to the rowid it has just been
told to delete as out of order and flushes its pending terms to a new
segment on disk before going on: one segment per contact, merged again and
again. Measured on 20,000 new contacts written 500 per transaction (multi-row
INSERTs, as an import writes them): 3.9 s with the DELETE, 1.4 s without it,
0.4 s with no trigger at all. Updates keep the DELETE (their row exists).

The trigger is rewritten from its stored definition (the refresh of
``222262f4b5cc`` minus its first statement), so this migration does not
copy the generated fold; the downgrade puts the statement back.
PostgreSQL's trigger upserts its row and needs nothing.
"""
from alembic import op


revision = '6e4cb3e4426c'
down_revision = 'b7d41c9e2a60'
branch_labels = None
depends_on = None

TRIGGER = "contact_search_contact_insert"
DELETE = "DELETE FROM contact_search WHERE rowid IN (new.id);\n"
HEAD = "BEGIN\n"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite(lambda sql: sql.replace(HEAD + DELETE, HEAD, 1))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite(lambda sql: sql.replace(HEAD, HEAD + DELETE, 1))


def _rewrite(change) -> None:
    connection = op.get_bind()
    sql = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (TRIGGER,)).scalar_one()
    changed = change(sql)
    if changed == sql:
        raise RuntimeError(f"{TRIGGER}: its definition is not the one this migration rewrites")
    connection.exec_driver_sql(f"DROP TRIGGER {TRIGGER}")
    connection.exec_driver_sql(changed)
