"""Per-plugin migration histories (design rule 4): each has its own version
table; enabling later migrates only that plugin; disabling or uninstalling one
keeps its data and ``db upgrade`` working."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import inspect, select, text

from host import migrate
from host.testing import client_for

from .conftest import plugin_init


def tables_of(app) -> set[str]:
    return set(inspect(app.extensions["mosaic"].db.engine).get_table_names())


def add_deal(app, title: str) -> None:
    from plugins.sales.services import create_deal

    with app.extensions["mosaic"].db.transaction() as session:
        create_deal(session, title, Decimal("1200.50"))


def deal_titles(app) -> list[str]:
    with app.extensions["mosaic"].db.Session() as session:
        return list(session.scalars(text("SELECT title FROM sales_deal ORDER BY id")))


def test_migrating_from_empty_gives_exactly_the_models_schema(make_app):
    app = make_app()
    assert migrate.schema_differences(app.extensions["mosaic"]) == []


def test_schema_comparison_notices_a_difference(make_app):
    """The comparison above must be able to fail: drop an index by hand."""
    app = make_app(plugins=["sales"])
    with app.extensions["mosaic"].db.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_sales_deal_stage"))
    diffs = migrate.schema_differences(app.extensions["mosaic"])
    assert any("ix_sales_deal_stage" in repr(d) for d in diffs)


def test_each_history_has_its_own_version_table(make_app):
    app = make_app(plugins=["sales", "service"])
    tables = tables_of(app)
    assert {"alembic_version", "alembic_version_sales", "alembic_version_service"} <= tables
    assert "alembic_version_marketing" not in tables


def test_enabling_a_plugin_later_migrates_only_that_plugin(make_app):
    first = make_app(plugins=["sales"])
    add_deal(first, "Fleet upgrade")
    assert "service_ticket" not in tables_of(first)

    later = make_app(plugins=["sales", "service"], migrate=False)
    steps = {name: (before, after) for name, before, after in migrate.upgrade(later.extensions["mosaic"])}
    assert steps["service"][0] is None and steps["service"][1] is not None
    assert steps["sales"][0] == steps["sales"][1], "sales was already migrated"
    assert steps["host"][0] == steps["host"][1]
    assert "service_ticket" in tables_of(later)
    assert deal_titles(later) == ["Fleet upgrade"]


def test_disable_then_enable_keeps_data_and_upgrade_works(make_app):
    both = make_app(plugins=["sales", "service"])
    add_deal(both, "Annual support")

    without_sales = make_app(plugins=["service"])  # migrates; must not touch sales
    assert "sales_deal" in tables_of(without_sales)
    assert client_for(without_sales).get("/sales/").status_code == 404

    again = make_app(plugins=["sales", "service"])
    assert deal_titles(again) == ["Annual support"]
    assert client_for(again, "other-admin@example.com").get("/sales/").status_code == 200


MIGRATION = '''
from alembic import op
import sqlalchemy as sa

revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "acme_note",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.String(200), nullable=False),
    )


def downgrade():
    op.drop_table("acme_note")
'''

PLUGIN_HOOKS = '''
from pathlib import Path
from hooks import hookimpl

@hookimpl
def mosaic_migrations_dir():
    return str(Path(__file__).parent / "migrations")
'''


def test_upgrade_still_works_after_a_migrated_plugin_is_uninstalled(make_app, site_packages):
    site_packages.install(
        "acme",
        {"__init__.py": plugin_init("acme"), "plugin.py": PLUGIN_HOOKS, "migrations/a1b2c3d4e5f6_notes.py": MIGRATION},
    )
    with_acme = make_app(plugins=["acme", "sales"])
    with with_acme.extensions["mosaic"].db.engine.begin() as conn:
        conn.execute(text("INSERT INTO acme_note (body) VALUES ('keep me')"))
    assert "alembic_version_acme" in tables_of(with_acme)

    site_packages.uninstall("mosaic_test_acme")
    without = make_app()  # every installed plugin: acme is gone
    assert "acme" not in without.extensions["mosaic"].pm.plugin_names
    names = [name for name, _, _ in migrate.upgrade(without.extensions["mosaic"])]
    assert "acme" not in names
    with without.extensions["mosaic"].db.engine.connect() as conn:
        assert conn.execute(select(text("body")).select_from(text("acme_note"))).scalars().all() == ["keep me"]
        version = conn.execute(text("SELECT version_num FROM alembic_version_acme")).scalar()
    assert version == "a1b2c3d4e5f6"


def test_current_reports_pending_migrations(make_app):
    app = make_app(plugins=["sales"], migrate=False)
    assert [(name, cur) for name, cur, head in migrate.current(app.extensions["mosaic"])] == [("host", None), ("sales", None)]
    migrate.upgrade(app.extensions["mosaic"])
    assert all(cur == head for _, cur, head in migrate.current(app.extensions["mosaic"]))


def test_upgrade_is_idempotent(make_app):
    app = make_app(plugins=["sales"])
    again = migrate.upgrade(app.extensions["mosaic"])
    assert all(before == after for _, before, after in again)


def test_index_and_constraint_names_are_unique(make_app):
    """The naming convention derives names from table and column; two tables
    can still collide (``contact.phone_digits`` vs ``contact_phone.digits``),
    which only fails when the migration runs. Catch it here."""
    from collections import Counter

    from host.db import Base

    make_app(migrate=False)
    names = Counter()
    for table in Base.metadata.tables.values():
        names.update(ix.name for ix in table.indexes)
        names.update(c.name for c in table.constraints if c.name)
    assert [name for name, count in names.items() if count > 1] == []
