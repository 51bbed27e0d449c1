"""contact search index (SQLite): cheaper triggers for new contacts and for text with nothing to fold

Revision ID: 6e4cb3e4426c
Revises: b7d41c9e2a60
Create Date: 2026-12-03 11:30:00

Why: an import of 20,000 new contacts spent most of its contact INSERT in
the search-index trigger. Two things made it dear, and the rows it writes
stay exactly the same without them:

- The insert trigger ran the same refresh as an update: ``DELETE FROM
  contact_search WHERE rowid IN (new.id)``, then the INSERT. A new contact
  has no index row (ids are AUTOINCREMENT, never reused; a rolled-back id
  takes its index row with it), so the DELETE removed nothing, yet FTS5
  treats a write to the rowid it has just been told to delete as out of
  order and flushes its pending terms to a new segment first: one segment
  per contact, merged again and again. The insert trigger now only inserts.
- Every refresh ran the fold (43 ``replace()`` calls for each of name,
  e-mails and company) on every row, though few texts hold any of those
  letters. The fold now runs only where ``GLOB`` finds one of them, and the
  text is passed through as it is otherwise: what ``replace()`` would have
  returned.

Measured on 20,000 new contacts written 500 per transaction with multi-row
INSERTs, as an import writes them: 3.9 s with the old trigger, 1.3 s without
the DELETE, 0.7-0.9 s with the fold guarded too, 0.4 s with no trigger.

The trigger bodies are generated from ``222262f4b5cc`` (loaded from its file:
a migration never changes, so its letter map and rules are the frozen ones)
with those two changes; the downgrade recreates that migration's triggers.
PostgreSQL's triggers upsert through ``mosaic_search_fold`` and need nothing.
"""
import importlib.util
from pathlib import Path

from alembic import op


revision = '6e4cb3e4426c'
down_revision = 'b7d41c9e2a60'
branch_labels = None
depends_on = None


def _previous():
    path = Path(__file__).with_name("222262f4b5cc_contact_search_scope_tokens.py")
    spec = importlib.util.spec_from_file_location("mosaic_migration_222262f4b5cc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _create(triggers(_previous()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        previous = _previous()
        _create(previous._sqlite_triggers(access=True))


def _create(definitions: dict) -> None:
    connection = op.get_bind()
    for name, (when, body) in definitions.items():
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE TRIGGER {name} {when}\nBEGIN\n{body}END")


def folded_insert(previous, ids: str) -> str:
    """The index rows of the contacts ``ids`` yields, as ``222262f4b5cc``
    writes them: each text column folded in stages (SQLite's parser
    overflows on 43 nested calls), and the folded text used only where the
    text holds a letter of the map."""
    letters = "".join(char for char, _replacement in previous.FOLD)
    # The unfolded rows: the innermost SELECT of the previous generator's
    # statement (it ends with the ids' condition; the fold stages wrap it).
    statement, where = previous._sqlite_insert(ids, access=True), f"WHERE c.id IN ({ids})"
    rows = statement[statement.index("SELECT c.id AS id,"):statement.index(where) + len(where)]
    kept = "raw_name, raw_emails, raw_company"
    rows = f"SELECT id, name, emails, phones, company, access, name AS raw_name, emails AS raw_emails, company AS raw_company FROM ({rows})"
    for start in range(0, len(previous.FOLD), previous.FOLD_STAGE):
        pairs = previous.FOLD[start:start + previous.FOLD_STAGE]
        rows = (
            f"SELECT id, {previous._sqlite_fold('name', pairs)} AS name, {previous._sqlite_fold('emails', pairs)} AS emails,"
            f" phones, {previous._sqlite_fold('company', pairs)} AS company, access, {kept} FROM ({rows})"
        )

    def chosen(column: str) -> str:
        # Only one branch of a CASE is evaluated, so unfolded text skips the
        # replace() chain that the flattened subqueries inline here.
        return f"CASE WHEN raw_{column} GLOB '*[{letters}]*' THEN {column} ELSE raw_{column} END"

    return (
        "INSERT INTO contact_search (rowid, name, emails, phones, company, access)\n"
        f"SELECT id, {chosen('name')}, {chosen('emails')}, phones, {chosen('company')}, access FROM ({rows})"
    )


def triggers(previous) -> dict:
    """``222262f4b5cc``'s triggers (same names, same events and conditions)
    with the fold guarded, and the insert trigger without its DELETE."""
    definitions = {}
    for name, (when, body) in previous._sqlite_triggers(access=True).items():
        if body.startswith("DELETE FROM contact_search WHERE rowid IN ("):
            deleted, _newline, _insert = body.partition("\n")
            ids = deleted[len("DELETE FROM contact_search WHERE rowid IN ("):-len(");")]
            refresh = f"{folded_insert(previous, ids)};\n"
            body = refresh if name == "contact_search_contact_insert" else f"{deleted}\n{refresh}"
        definitions[name] = (when, body)
    return definitions
