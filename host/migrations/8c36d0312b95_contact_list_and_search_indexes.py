"""contact list and search indexes, measured at a million contacts

Revision ID: 8c36d0312b95
Revises: aee127614dcf
Create Date: 2026-12-02 23:45:00

Each change is justified by a plan in ``docs/benchmarks.md`` (found with
``bench/contacts.py --explain`` on 1,000,000 contacts and 5,000,000
interactions):

SQLite, the search index gets FTS5 prefix indexes for 2, 3 and 4
characters. Without them a prefix query ("иван*", "ivan*") makes FTS5 merge
the doclists of every term with that prefix before it can hand out the first
match: 9 to 17 ms at a million contacts, whatever the page size. With them
such a prefix is one term of its own, read newest first and left as soon as
the page is full: 0.03 ms. Longer prefixes match few distinct terms and stay
cheap without one. FTS5 options cannot be altered, so the table is recreated
with the same rows (the triggers name it and keep working; SQLite does not
validate trigger bodies on ``DROP``). PostgreSQL's GIN index needs nothing.
"""
from alembic import op


revision = '8c36d0312b95'
down_revision = 'aee127614dcf'
branch_labels = None
depends_on = None

FTS_COLUMNS = "name, emails, phones, company"
TOKENIZER = "tokenize = 'unicode61 remove_diacritics 2'"
#: Prefix lengths, in characters (FTS5 counts characters, so Cyrillic too).
PREFIXES = "2 3 4"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate_fts(f"{TOKENIZER}, prefix = '{PREFIXES}'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate_fts(TOKENIZER)


def _run(sql: str) -> None:
    op.get_bind().exec_driver_sql(sql)


def _recreate_fts(options: str) -> None:
    """The FTS5 table with other options and the same rows."""
    _run(f"CREATE TEMP TABLE contact_search_copy AS SELECT rowid AS id, {FTS_COLUMNS} FROM contact_search")
    _run("DROP TABLE contact_search")
    _run(f"CREATE VIRTUAL TABLE contact_search USING fts5({FTS_COLUMNS}, {options})")
    _run(f"INSERT INTO contact_search (rowid, {FTS_COLUMNS}) SELECT id, {FTS_COLUMNS} FROM contact_search_copy")
    _run("DROP TABLE contact_search_copy")
