"""contact search index: who may see each contact (owner and team tokens)

Revision ID: 222262f4b5cc
Revises: 8c36d0312b95
Create Date: 2026-12-03 06:00:00

Why: a user whose contact scope is "own" or "team" searches everyone's
matches and keeps the few that are theirs; at a million contacts a sales rep
who owns 2 % of them had 50 matches looked at for each one kept (the rep's
searches at 2x their 10k figure, ``docs/benchmarks.md``). The index now also
holds, per contact, the tokens of its owner and team, and a scoped search
asks the index for "matches the words AND carries one of my tokens":

- SQLite: an FTS5 column ``access`` holding ``o<owner_id> t<team_id>``
  (either left out when NULL). FTS5 walks both doclists newest first and
  stops when the page is full, so a rep's search costs what an admin's does.
  The words of a query are confined to the four text columns (``{name
  emails phones company} :``), so typing "o7" never matches an owner token.
- PostgreSQL: a ``tsvector`` column ``access`` (same tokens, ``simple``
  configuration) with its own GIN index; a scoped search is ``document @@
  words AND access @@ 'o7 | t3'``, which the planner answers with a
  BitmapAnd of the two GIN indexes.

These tokens only narrow the candidates: ``host.core.search`` still applies
``scope_condition`` to every row it returns, so a stale token can hide a
contact but never show one the user may not see.

Kept by the same triggers as the texts: the contact update trigger now also
fires when ``owner_id`` or ``team_id`` changes (bulk owner assignment, the
hand-over on deactivation, ``audited_bulk_update``, an import, a merge, raw
SQL). The SQLite triggers of ``aee127614dcf`` are recreated with the new
column (their bodies are generated below from the same rules, and for the
downgrade without it); the FTS5 table is recreated (its columns cannot be
altered) with the same rows and the tokens read from ``contact``.

TRAP, as before: on SQLite, Alembic's batch mode recreates a table, which
drops its triggers; a migration that batch-alters ``contact``,
``contact_email`` or ``contact_phone`` must recreate them.
"""
from alembic import op


revision = '222262f4b5cc'
down_revision = '8c36d0312b95'
branch_labels = None
depends_on = None


#: Frozen copy of ``aee127614dcf.FOLD`` (the triggers' letter map).
FOLD = (
    ("ß", "ss"), ("ẞ", "ss"), ("Ł", "l"), ("ł", "l"), ("Ø", "o"), ("ø", "o"),
    ("Đ", "d"), ("đ", "d"), ("Æ", "ae"), ("æ", "ae"), ("Œ", "oe"), ("œ", "oe"),
    ("Þ", "th"), ("þ", "th"), ("ı", "i"), ("Ħ", "h"), ("ħ", "h"), ("Ŧ", "t"),
    ("ŧ", "t"), ("Ŋ", "n"), ("ŋ", "n"), ("Ё", "е"), ("ё", "е"),
    ("Ά", "α"), ("ά", "α"), ("Έ", "ε"), ("έ", "ε"), ("Ή", "η"), ("ή", "η"),
    ("Ί", "ι"), ("ί", "ι"), ("Ϊ", "ι"), ("ϊ", "ι"), ("ΐ", "ι"), ("Ό", "ο"),
    ("ό", "ο"), ("Ύ", "υ"), ("ύ", "υ"), ("Ϋ", "υ"), ("ϋ", "υ"), ("ΰ", "υ"),
    ("Ώ", "ω"), ("ώ", "ω"),
)
FOLD_STAGE = 15

SQLITE_TRIGGERS = (
    "contact_search_contact_insert", "contact_search_contact_update", "contact_search_contact_delete",
    "contact_search_company_rename",
    "contact_search_email_insert", "contact_search_email_update", "contact_search_email_delete",
    "contact_search_phone_insert", "contact_search_phone_update", "contact_search_phone_delete",
)
TEXT_COLUMNS = ("name", "first_name", "last_name", "email", "phone_digits", "company_id")
SCOPE_COLUMNS = ("owner_id", "team_id")
CHILDREN = (("contact_email", "email", "email", "email"), ("contact_phone", "phone", "number_digits", "phone_digits"))
TOKENIZER = "tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4'"

#: SQLite: the access tokens of ``contact AS c``.
SQLITE_ACCESS = "trim(coalesce('o' || c.owner_id, '') || ' ' || coalesce('t' || c.team_id, ''))"
#: PostgreSQL: the same, as a tsvector.
PG_ACCESS = "to_tsvector('simple'::regconfig, concat_ws(' ', 'o' || c.owner_id, 't' || c.team_id))"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_switch(access=True)
    else:
        _pg_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_switch(access=False)
    else:
        _pg_downgrade()


def _run(sql: str) -> None:
    """Raw DDL, not ``text()``: trigger bodies hold colons and percent signs."""
    op.get_bind().exec_driver_sql(sql)


# --- SQLite ---------------------------------------------------------------------


def _sqlite_fold(expr: str, pairs) -> str:
    for char, replacement in pairs:
        expr = f"replace({expr}, '{char}', '{replacement}')"
    return expr


def _sqlite_insert(ids: str, access: bool) -> str:
    """The index rows of the contacts ``ids`` yields (as ``aee127614dcf``,
    plus the access tokens)."""
    extra = f", {SQLITE_ACCESS} AS access" if access else ""
    rows = (
        "SELECT c.id AS id,"
        " c.name || ' ' || coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '') AS name,"
        " coalesce(c.email, '') || ' ' || coalesce((SELECT group_concat(e.email, ' ')"
        " FROM contact_email AS e WHERE e.contact_id = c.id), '') AS emails,"
        " coalesce(c.phone_digits, '') || ' ' || coalesce((SELECT group_concat(p.number_digits, ' ')"
        " FROM contact_phone AS p WHERE p.contact_id = c.id), '') AS phones,"
        " coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), '') AS company"
        f"{extra} FROM contact AS c WHERE c.id IN ({ids})"
    )
    passed = ", access" if access else ""
    for start in range(0, len(FOLD), FOLD_STAGE):
        pairs = FOLD[start:start + FOLD_STAGE]
        rows = (
            f"SELECT id, {_sqlite_fold('name', pairs)} AS name, {_sqlite_fold('emails', pairs)} AS emails,"
            f" phones, {_sqlite_fold('company', pairs)} AS company{passed} FROM ({rows})"
        )
    return (
        f"INSERT INTO contact_search (rowid, name, emails, phones, company{passed})\n"
        f"SELECT id, name, emails, phones, company{passed} FROM ({rows})"
    )


def _sqlite_refresh(ids: str, access: bool) -> str:
    return f"DELETE FROM contact_search WHERE rowid IN ({ids});\n{_sqlite_insert(ids, access)};\n"


def _sqlite_news_to_index(row: str, value: str, primary: str) -> str:
    return (
        f"EXISTS (SELECT 1 FROM contact AS c WHERE c.id = {row}.contact_id"
        f" AND lower(c.{primary}) IS NOT lower({row}.{value}))"
    )


def _sqlite_triggers(access: bool) -> dict[str, tuple[str, str]]:
    watched = TEXT_COLUMNS + (SCOPE_COLUMNS if access else ())
    changed = " OR ".join(f"old.{col} IS NOT new.{col}" for col in watched)
    triggers = {
        "contact_search_contact_insert": ("AFTER INSERT ON contact", _sqlite_refresh("new.id", access)),
        "contact_search_contact_update": (
            f"AFTER UPDATE OF {', '.join(watched)} ON contact WHEN {changed}",
            _sqlite_refresh("new.id", access),
        ),
        "contact_search_contact_delete": ("AFTER DELETE ON contact", "DELETE FROM contact_search WHERE rowid = old.id;\n"),
        "contact_search_company_rename": (
            "AFTER UPDATE OF name ON contact WHEN old.name IS NOT new.name",
            _sqlite_refresh("SELECT id FROM contact WHERE company_id = new.id", access),
        ),
    }
    for table, short, value, primary in CHILDREN:
        triggers[f"contact_search_{short}_insert"] = (
            f"AFTER INSERT ON {table} WHEN {_sqlite_news_to_index('new', value, primary)}",
            _sqlite_refresh("new.contact_id", access),
        )
        triggers[f"contact_search_{short}_update"] = (
            f"AFTER UPDATE ON {table}",
            _sqlite_refresh("old.contact_id, new.contact_id", access),
        )
        triggers[f"contact_search_{short}_delete"] = (
            f"AFTER DELETE ON {table} WHEN {_sqlite_news_to_index('old', value, primary)}",
            _sqlite_refresh("old.contact_id", access),
        )
    assert set(triggers) == set(SQLITE_TRIGGERS)
    return triggers


def _sqlite_switch(access: bool) -> None:
    """The FTS5 table with (or without) the ``access`` column, the same
    text rows, and the triggers that write it."""
    for name in SQLITE_TRIGGERS:
        _run(f"DROP TRIGGER IF EXISTS {name}")
    texts = "name, emails, phones, company"
    _run(f"CREATE TEMP TABLE contact_search_copy AS SELECT rowid AS id, {texts} FROM contact_search")
    _run("DROP TABLE contact_search")
    columns = texts + (", access" if access else "")
    _run(f"CREATE VIRTUAL TABLE contact_search USING fts5({columns}, {TOKENIZER})")
    if access:
        _run(
            f"INSERT INTO contact_search (rowid, {columns})"
            f" SELECT s.id, s.name, s.emails, s.phones, s.company, {SQLITE_ACCESS}"
            " FROM contact_search_copy AS s JOIN contact AS c ON c.id = s.id ORDER BY s.id"
        )
    else:
        _run(f"INSERT INTO contact_search (rowid, {columns}) SELECT id, {texts} FROM contact_search_copy ORDER BY id")
    _run("DROP TABLE contact_search_copy")
    _run("INSERT INTO contact_search (contact_search) VALUES ('optimize')")
    for name, (when, body) in _sqlite_triggers(access).items():
        _run(f"CREATE TRIGGER {name} {when}\nBEGIN\n{body}END")


# --- PostgreSQL -----------------------------------------------------------------


def _pg_rows(access: bool) -> str:
    extra = f", {PG_ACCESS}" if access else ""
    return f"""
    SELECT c.id,
           concat_ws(' ', c.name, c.first_name, c.last_name),
           concat_ws(' ', c.email,
               (SELECT string_agg(e.email, ' ') FROM contact_email AS e WHERE e.contact_id = c.id)),
           concat_ws(' ', c.phone_digits,
               (SELECT string_agg(p.number_digits, ' ') FROM contact_phone AS p WHERE p.contact_id = c.id)),
           coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), ''){extra}
    FROM contact AS c"""


def _pg_refresh_function(access: bool) -> str:
    columns = "contact_id, name, emails, phones, company" + (", access" if access else "")
    also = ", access = excluded.access" if access else ""
    return f"""
        CREATE OR REPLACE FUNCTION mosaic_contact_search_refresh(contact integer) RETURNS void
        LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
        BEGIN
            INSERT INTO contact_search ({columns})
            {_pg_rows(access)} WHERE c.id = contact
            ON CONFLICT (contact_id) DO UPDATE
            SET name = excluded.name, emails = excluded.emails, phones = excluded.phones, company = excluded.company{also};
        END
        $$
    """


def _pg_update_trigger(access: bool) -> None:
    watched = TEXT_COLUMNS + (SCOPE_COLUMNS if access else ())
    changed = " OR ".join(f"OLD.{col} IS DISTINCT FROM NEW.{col}" for col in watched)
    _run("DROP TRIGGER IF EXISTS contact_search_update ON contact")
    _run(
        f"CREATE TRIGGER contact_search_update AFTER UPDATE OF {', '.join(watched)} ON contact"
        f" FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION mosaic_contact_search_on_contact()"
    )


def _pg_upgrade() -> None:
    # Refilled rather than UPDATEd: an UPDATE of every row leaves as many
    # dead rows behind, which no VACUUM can clear inside a migration's
    # transaction, and every walk down the primary key (the search's probe
    # of the newest rows) then visits both versions: an admin's /search went
    # from 23 to 96 ms median at a million contacts with them.
    # TRUNCATE is transactional; the GIN indexes are built once, after.
    _run("DROP INDEX IF EXISTS ix_contact_search_document")
    _run("TRUNCATE contact_search")
    _run("ALTER TABLE contact_search ADD COLUMN access tsvector NOT NULL DEFAULT ''::tsvector")
    _run(f"INSERT INTO contact_search (contact_id, name, emails, phones, company, access) {_pg_rows(access=True)}")
    _run("CREATE INDEX ix_contact_search_document ON contact_search USING gin (document)")
    _run("CREATE INDEX ix_contact_search_access ON contact_search USING gin (access)")
    _run(_pg_refresh_function(access=True))
    _pg_update_trigger(access=True)
    _run("ANALYZE contact_search")


def _pg_downgrade() -> None:
    _run(_pg_refresh_function(access=False))
    _pg_update_trigger(access=False)
    _run("DROP INDEX IF EXISTS ix_contact_search_access")
    _run("ALTER TABLE contact_search DROP COLUMN access")
