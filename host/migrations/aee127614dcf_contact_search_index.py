"""contact search index: kept in sync by database triggers

Revision ID: aee127614dcf
Revises: 15912894cebc
Create Date: 2026-11-23 19:23:12.058403

Why triggers: contacts change through the ORM, bulk Core updates (import,
merge, erasure, ``audited_bulk_update``), foreign-key actions (a deleted
company sets its people's ``company_id`` to NULL) and raw SQL. A trigger sees
every one of them, in the writing transaction, so the index can neither lag
nor be forgotten by a new write path.

One row per contact (deleted ones too: the search joins ``contact`` and
filters ``deleted_at`` and the record scope there, so a restore needs no
reindex). Columns: ``name`` (name, first and last name), ``emails`` (the
primary address and every ``contact_email``), ``phones`` (digits) and
``company`` (the company's name, refreshed when the company is renamed).

SQLite: an FTS5 table (rowid = contact id) with the unicode61 tokenizer and
``remove_diacritics 2``. That tokenizer folds case in every script and strips
Latin diacritics, but leaves Greek accents (tonos, dialytika), ё, and letters
that have no Unicode decomposition (ß, ł, ø, đ, æ, œ, þ, ı, ħ, ŧ, ŋ); the
triggers fold those with ``replace()`` (``FOLD`` below, the same map that
``host.core.search`` applies to queries), matching what PostgreSQL's
``unaccent`` does. Pure SQL on purpose: a Python function in a trigger would
break every connection that has not registered it (the sqlite3 shell).

PostgreSQL: a table with the texts as written (the search ranks on them)
and a ``tsvector`` generated from their folded form (``simple``
configuration; weights A name, B e-mails, C phones, D company) with a GIN
index. ``mosaic_unaccent`` is the IMMUTABLE wrapper ``unaccent()`` needs
(it is only STABLE, because its dictionary could change); ``mosaic_search_fold``
lower-cases, unaccents and turns everything but letters and digits into
spaces, for the index and for queries alike. The functions name the schema
they were created in (qualified, or ``SET search_path FROM CURRENT``), so
the triggers work whatever path a session uses (tests run each in their own
schema; the extension lives in ``public``, or wherever it was installed).

An e-mail or phone row that repeats the contact's primary address or number
(how services store them) is not re-indexed on insert or delete: the
contact row already put it in the index. That keeps creating a contact at
one index write instead of three.

These objects are not models: ``host.migrate.schema_differences`` leaves them
out explicitly. TRAP for later migrations: on SQLite, Alembic's batch mode
recreates a table, which drops its triggers; a migration that batch-alters
``contact``, ``contact_email`` or ``contact_phone`` must recreate them
(tests/test_search.py fails otherwise).
"""
from alembic import op


revision = 'aee127614dcf'
down_revision = '15912894cebc'
branch_labels = None
depends_on = None


#: Characters the SQLite tokenizer does not fold, and what they become.
#: Frozen here: changing it needs a new migration that recreates the triggers.
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

SQLITE_TRIGGERS = (
    "contact_search_contact_insert", "contact_search_contact_update", "contact_search_contact_delete",
    "contact_search_company_rename",
    "contact_search_email_insert", "contact_search_email_update", "contact_search_email_delete",
    "contact_search_phone_insert", "contact_search_phone_update", "contact_search_phone_delete",
)

#: Contact columns the index is made of; an UPDATE touching none of them
#: (owner, lifecycle stage, deleted_at ...) leaves the index alone.
INDEXED_COLUMNS = ("name", "first_name", "last_name", "email", "phone_digits", "company_id")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _postgresql_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            _run(f"DROP TRIGGER IF EXISTS {name}")
        _run("DROP TABLE IF EXISTS contact_search")
    else:
        _run("DROP TABLE IF EXISTS contact_search")
        for statement in (
            "DROP TRIGGER IF EXISTS contact_search_insert ON contact",
            "DROP TRIGGER IF EXISTS contact_search_update ON contact",
            "DROP TRIGGER IF EXISTS contact_search_email ON contact_email",
            "DROP TRIGGER IF EXISTS contact_search_phone ON contact_phone",
            "DROP FUNCTION IF EXISTS mosaic_contact_search_on_contact()",
            "DROP FUNCTION IF EXISTS mosaic_contact_search_on_email()",
            "DROP FUNCTION IF EXISTS mosaic_contact_search_on_phone()",
            "DROP FUNCTION IF EXISTS mosaic_contact_search_refresh(integer)",
            "DROP FUNCTION IF EXISTS mosaic_search_fold(text)",
            "DROP FUNCTION IF EXISTS mosaic_unaccent(text)",
        ):
            _run(statement)


def _run(sql: str) -> None:
    """Raw DDL, not ``text()``: trigger bodies hold colons and percent signs."""
    op.get_bind().exec_driver_sql(sql)


# --- SQLite ---------------------------------------------------------------------


#: SQLite's parser overflows past about 28 nested calls in a trigger, so the
#: fold runs in stages of this many ``replace()`` calls, one subquery each.
FOLD_STAGE = 15


def _sqlite_fold(expr: str, pairs) -> str:
    for char, replacement in pairs:
        expr = f"replace({expr}, '{char}', '{replacement}')"
    return expr


def _sqlite_refresh(ids: str) -> str:
    """Trigger statements that rebuild the index rows of the contacts whose
    ids the SQL ``ids`` (a list or a subquery) yields."""
    return f"DELETE FROM contact_search WHERE rowid IN ({ids});\n{_sqlite_insert(ids)};\n"


def _sqlite_insert(ids: str) -> str:
    rows = (
        "SELECT c.id AS id,"
        " c.name || ' ' || coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '') AS name,"
        " coalesce(c.email, '') || ' ' || coalesce((SELECT group_concat(e.email, ' ')"
        " FROM contact_email AS e WHERE e.contact_id = c.id), '') AS emails,"
        " coalesce(c.phone_digits, '') || ' ' || coalesce((SELECT group_concat(p.number_digits, ' ')"
        " FROM contact_phone AS p WHERE p.contact_id = c.id), '') AS phones,"
        " coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), '') AS company"
        f" FROM contact AS c WHERE c.id IN ({ids})"
    )
    for start in range(0, len(FOLD), FOLD_STAGE):
        pairs = FOLD[start:start + FOLD_STAGE]
        rows = (
            f"SELECT id, {_sqlite_fold('name', pairs)} AS name, {_sqlite_fold('emails', pairs)} AS emails,"
            f" phones, {_sqlite_fold('company', pairs)} AS company FROM ({rows})"
        )
    return (
        "INSERT INTO contact_search (rowid, name, emails, phones, company)\n"
        f"SELECT id, name, emails, phones, company FROM ({rows})"
    )


#: (table, trigger name part, its indexed column, the contact's primary copy).
CHILDREN = (("contact_email", "email", "email", "email"), ("contact_phone", "phone", "number_digits", "phone_digits"))


def _sqlite_news_to_index(row: str, value: str, primary: str) -> str:
    """Whether adding or removing this e-mail or phone row changes what the
    index holds: not when it repeats the contact's primary address or
    number (indexed from the contact row, and how services store it), nor
    when the contact itself is gone (a cascade; its delete trigger did it).
    Rebuilding an FTS5 row costs about a millisecond when statements write
    one row each (FTS5 flushes at every statement), which is how the ORM
    inserts; skipping the common case keeps creating a contact cheap."""
    return (
        f"EXISTS (SELECT 1 FROM contact AS c WHERE c.id = {row}.contact_id"
        f" AND lower(c.{primary}) IS NOT lower({row}.{value}))"
    )


def _sqlite_upgrade() -> None:
    _run(
        "CREATE VIRTUAL TABLE contact_search USING fts5("
        "name, emails, phones, company, tokenize = 'unicode61 remove_diacritics 2')"
    )
    changed = " OR ".join(f"old.{col} IS NOT new.{col}" for col in INDEXED_COLUMNS)
    columns = ", ".join(INDEXED_COLUMNS)
    triggers = {
        "contact_search_contact_insert": ("AFTER INSERT ON contact", _sqlite_refresh("new.id")),
        "contact_search_contact_update": (
            f"AFTER UPDATE OF {columns} ON contact WHEN {changed}",
            _sqlite_refresh("new.id"),
        ),
        "contact_search_contact_delete": (
            "AFTER DELETE ON contact",
            "DELETE FROM contact_search WHERE rowid = old.id;\n",
        ),
        "contact_search_company_rename": (
            "AFTER UPDATE OF name ON contact WHEN old.name IS NOT new.name",
            _sqlite_refresh("SELECT id FROM contact WHERE company_id = new.id"),
        ),
    }
    for table, short, value, primary in CHILDREN:
        triggers[f"contact_search_{short}_insert"] = (
            f"AFTER INSERT ON {table} WHEN {_sqlite_news_to_index('new', value, primary)}",
            _sqlite_refresh("new.contact_id"),
        )
        triggers[f"contact_search_{short}_update"] = (
            f"AFTER UPDATE ON {table}",
            _sqlite_refresh("old.contact_id, new.contact_id"),
        )
        triggers[f"contact_search_{short}_delete"] = (
            f"AFTER DELETE ON {table} WHEN {_sqlite_news_to_index('old', value, primary)}",
            _sqlite_refresh("old.contact_id"),
        )
    assert set(triggers) == set(SQLITE_TRIGGERS)
    for name, (when, body) in triggers.items():
        _run(f"CREATE TRIGGER {name} {when}\nBEGIN\n{body}END")
    _run(_sqlite_insert("SELECT id FROM contact"))  # contacts that exist already


# --- PostgreSQL -----------------------------------------------------------------


#: One index row per contact of ``contact AS c`` (the texts as written).
PG_INDEXED_ROWS = """
    SELECT c.id,
           concat_ws(' ', c.name, c.first_name, c.last_name),
           concat_ws(' ', c.email,
               (SELECT string_agg(e.email, ' ') FROM contact_email AS e WHERE e.contact_id = c.id)),
           concat_ws(' ', c.phone_digits,
               (SELECT string_agg(p.number_digits, ' ') FROM contact_phone AS p WHERE p.contact_id = c.id)),
           coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), '')
    FROM contact AS c"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _postgresql_upgrade() -> None:
    bind = op.get_bind()
    # Extensions are database-wide; put it in public unless it is installed
    # already (wherever that is), then call it by its schema.
    _run("CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public")
    ext_schema = bind.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'unaccent'"
    ).scalar_one()
    schema = _quoted(bind.exec_driver_sql("SELECT current_schema()").scalar_one())
    unaccent = f"{_quoted(ext_schema)}.unaccent"
    dictionary = "'" + unaccent.replace("'", "''") + "'"
    _run(
        "CREATE FUNCTION mosaic_unaccent(text) RETURNS text"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT"
        f" AS $$ SELECT {unaccent}({dictionary}::regdictionary, $1) $$"
    )
    # Qualified rather than SET search_path: a SQL function with a SET clause
    # is never inlined, and this runs three times per indexed row and per
    # query word (28 us a call with the clause). Final sigma: lower() keeps
    # 'ς', while 'Σ' lowers to 'σ'.
    _run(
        "CREATE FUNCTION mosaic_search_fold(text) RETURNS text"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT"
        f" AS $$ SELECT btrim(regexp_replace(replace(lower({schema}.mosaic_unaccent($1)), 'ς', 'σ'),"
        " '[^[:alnum:]]+', ' ', 'g')) $$"
    )
    _run(
        """
        CREATE TABLE contact_search (
            contact_id integer NOT NULL,
            name text NOT NULL,
            emails text NOT NULL,
            phones text NOT NULL,
            company text NOT NULL,
            document tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('simple'::regconfig, mosaic_search_fold(name)), 'A')
                || setweight(to_tsvector('simple'::regconfig, mosaic_search_fold(emails)), 'B')
                || setweight(to_tsvector('simple'::regconfig, phones), 'C')
                || setweight(to_tsvector('simple'::regconfig, mosaic_search_fold(company)), 'D')
            ) STORED,
            CONSTRAINT pk_contact_search PRIMARY KEY (contact_id),
            CONSTRAINT fk_contact_search_contact_id_contact FOREIGN KEY (contact_id)
                REFERENCES contact (id) ON DELETE CASCADE
        )
        """
    )
    _run("CREATE INDEX ix_contact_search_document ON contact_search USING gin (document)")
    # PL/pgSQL, not SQL: a SQL function plans its statement on every call
    # (650 us a contact from a trigger); PL/pgSQL keeps the plan. Without
    # sequential scans: a plan made while the tables looked empty (a first
    # import into a new database) would scan them for every row, growing
    # quadratically (260 us a contact after 5,000, against 35 us).
    _run(
        f"""
        CREATE FUNCTION mosaic_contact_search_refresh(contact integer) RETURNS void
        LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
        BEGIN
            INSERT INTO contact_search (contact_id, name, emails, phones, company)
            {PG_INDEXED_ROWS} WHERE c.id = contact
            ON CONFLICT (contact_id) DO UPDATE
            SET name = excluded.name, emails = excluded.emails, phones = excluded.phones, company = excluded.company;
        END
        $$
        """
    )
    _run(
        """
        CREATE FUNCTION mosaic_contact_search_on_contact() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN
            PERFORM mosaic_contact_search_refresh(NEW.id);
            IF TG_OP = 'UPDATE' AND NEW.name IS DISTINCT FROM OLD.name THEN
                PERFORM mosaic_contact_search_refresh(c.id) FROM contact AS c WHERE c.company_id = NEW.id;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for table, short, value, primary in CHILDREN:
        _run(_pg_child_function(short, value, primary))
    changed = " OR ".join(f"OLD.{col} IS DISTINCT FROM NEW.{col}" for col in INDEXED_COLUMNS)
    _run(
        "CREATE TRIGGER contact_search_insert AFTER INSERT ON contact"
        " FOR EACH ROW EXECUTE FUNCTION mosaic_contact_search_on_contact()"
    )
    _run(
        f"CREATE TRIGGER contact_search_update AFTER UPDATE OF {', '.join(INDEXED_COLUMNS)} ON contact"
        f" FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION mosaic_contact_search_on_contact()"
    )
    for table, short, _value, _primary in CHILDREN:
        _run(
            f"CREATE TRIGGER contact_search_{short} AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION mosaic_contact_search_on_{short}()"
        )
    _run(f"INSERT INTO contact_search (contact_id, name, emails, phones, company) {PG_INDEXED_ROWS}")  # existing contacts


def _pg_child_function(short: str, value: str, primary: str) -> str:
    """The trigger function of ``contact_email`` or ``contact_phone``: as on
    SQLite (``_sqlite_news_to_index``), an inserted or deleted row that
    repeats the contact's primary value, or whose contact is gone, changes
    nothing in the index."""
    return f"""
        CREATE FUNCTION mosaic_contact_search_on_{short}() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        DECLARE
            changed record;
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                PERFORM mosaic_contact_search_refresh(OLD.contact_id);
                IF NEW.contact_id IS DISTINCT FROM OLD.contact_id THEN
                    PERFORM mosaic_contact_search_refresh(NEW.contact_id);
                END IF;
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN
                changed := NEW;
            ELSE
                changed := OLD;
            END IF;
            IF EXISTS (SELECT 1 FROM contact AS c WHERE c.id = changed.contact_id
                       AND lower(c.{primary}) IS DISTINCT FROM lower(changed.{value})) THEN
                PERFORM mosaic_contact_search_refresh(changed.contact_id);
            END IF;
            RETURN NULL;
        END
        $$
    """
