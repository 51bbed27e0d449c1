"""contact search index (PostgreSQL): new contacts indexed once per statement

Revision ID: 3f8a1c2d9e47
Revises: 6e4cb3e4426c
Create Date: 2026-12-03 17:10:00

Why: an import writes 500 contacts with one multi-row INSERT, and the row
trigger ran ``mosaic_contact_search_refresh`` once per contact: a PL/pgSQL
call, its upsert planned for one id, two GIN index probes. Measured on an
INSERT of 500 contacts into a database of 5,000: the trigger took 63-97 ms
of the statement's 76-110 ms. A statement trigger that reads the inserted
rows from a transition table and indexes them in one set-based INSERT took
12-14 ms, the statement 21-24 ms.

The rows it writes are the row trigger's: the same columns from the same
expressions (``222262f4b5cc``'s, with ``new_contacts`` in place of
``contact``), written out here because a migration never changes. The
update trigger stays a row trigger: updates come one contact at a time, and
it must also refresh a company's people. The e-mail and phone triggers are
unchanged. SQLite has no statement triggers (``6e4cb3e4426c`` made its row
trigger cheap instead).

``enable_seqscan = off``, as in the refresh function: the statement's plan
is kept for the session, and one made while the tables looked empty (the
first import into a new database) would scan ``contact_email`` for every
new contact. The transition table is read whole either way.
"""
from alembic import op


revision = '3f8a1c2d9e47'
down_revision = '6e4cb3e4426c'
branch_labels = None
depends_on = None


STATEMENT_FUNCTION = """
CREATE FUNCTION mosaic_contact_search_on_contact_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO contact_search (contact_id, name, emails, phones, company, access)
    SELECT c.id,
           concat_ws(' ', c.name, c.first_name, c.last_name),
           concat_ws(' ', c.email,
               (SELECT string_agg(e.email, ' ') FROM contact_email AS e WHERE e.contact_id = c.id)),
           concat_ws(' ', c.phone_digits,
               (SELECT string_agg(p.number_digits, ' ') FROM contact_phone AS p WHERE p.contact_id = c.id)),
           coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), ''),
           to_tsvector('simple'::regconfig, concat_ws(' ', 'o' || c.owner_id, 't' || c.team_id))
    FROM new_contacts AS c
    ON CONFLICT (contact_id) DO UPDATE
    SET name = excluded.name, emails = excluded.emails, phones = excluded.phones, company = excluded.company,
        access = excluded.access;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    run = op.get_bind().exec_driver_sql
    run(STATEMENT_FUNCTION)
    run("DROP TRIGGER contact_search_insert ON contact")
    run("CREATE TRIGGER contact_search_insert AFTER INSERT ON contact REFERENCING NEW TABLE AS new_contacts"
        " FOR EACH STATEMENT EXECUTE FUNCTION mosaic_contact_search_on_contact_insert()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    run = op.get_bind().exec_driver_sql
    run("DROP TRIGGER contact_search_insert ON contact")
    run("CREATE TRIGGER contact_search_insert AFTER INSERT ON contact"
        " FOR EACH ROW EXECUTE FUNCTION mosaic_contact_search_on_contact()")
    run("DROP FUNCTION mosaic_contact_search_on_contact_insert()")
