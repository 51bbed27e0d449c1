"""Migrations: the host's history, then each enabled plugin's.

Each history has its own version table (``alembic_version`` for the host,
``alembic_version_<plugin>`` for a plugin) and its own revision directory, so a
plugin can be enabled later (only its history runs), disabled (its tables and
version table stay, untouched), or uninstalled, and ``db upgrade`` still works.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from .db import Base, host_models  # noqa: F401  (host_models: re-exported)

log = logging.getLogger("mosaic.migrate")

ENV_DIR = Path(__file__).parent / "alembic"
HOST_VERSIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class History:
    name: str
    versions_dir: Path
    version_table: str
    tables: frozenset[str]


def owned_tables(models: list[type]) -> frozenset[str]:
    return frozenset(m.__table__.name for m in models)


def histories(state) -> list[History]:
    """The host's history, then each enabled plugin's, in dependency order."""
    out = [History("host", HOST_VERSIONS, "alembic_version", owned_tables(host_models()))]
    dirs = dict(state.pm.results_by_plugin("mosaic_migrations_dir"))
    for plugin in state.pm.plugins:
        if plugin.name in dirs:
            out.append(
                History(
                    plugin.name,
                    Path(dirs[plugin.name]),
                    f"alembic_version_{plugin.name}",
                    frozenset(state.tables_by_plugin.get(plugin.name, ())),
                )
            )
    return out


def _config(history: History, connection: Connection | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ENV_DIR))
    cfg.set_main_option("version_locations", str(history.versions_dir))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes.update(
        connection=connection,
        metadata=Base.metadata,
        version_table=history.version_table,
        tables=history.tables,
    )
    return cfg


@contextlib.contextmanager
def _migration_connection(db) -> Iterator[Connection]:
    with db.engine.connect() as conn:
        if db.is_sqlite:
            # Batch mode recreates tables; with foreign keys on, that would
            # cascade or fail. The pragma only takes effect outside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            yield conn
        finally:
            if db.is_sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade(state, only: str | None = None) -> list[tuple[str, str | None, str | None]]:
    """Upgrade each history to its head; returns (name, before, after)."""
    done = []
    for history in histories(state):
        if only and history.name != only:
            continue
        with _migration_connection(state.db) as conn:
            before = _current(conn, history)
            command.upgrade(_config(history, conn), "heads")
            conn.commit()
            after = _current(conn, history)
        if before != after:
            log.info("migrated %s: %s -> %s", history.name, before, after)
        done.append((history.name, before, after))
    from .security.roles import apply_defaults

    apply_defaults(state)  # built-in roles; defaults of newly declared permissions
    from .security.personal_data import replay_after_upgrade

    replay_after_upgrade(state, only)  # journaled erasures and merges reach re-enabled plugins
    return done


def _current(conn: Connection, history: History) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": history.version_table})
    heads = ctx.get_current_heads()
    return ",".join(heads) if heads else None


def current(state) -> list[tuple[str, str | None, str | None]]:
    """(name, current revision, head revision) per history."""
    out = []
    with state.db.engine.connect() as conn:
        for history in histories(state):
            script = ScriptDirectory.from_config(_config(history, None))
            head = ",".join(script.get_heads()) or None
            out.append((history.name, _current(conn, history), head))
    return out


def revision(state, name: str, message: str, autogenerate: bool = True) -> None:
    """Write a new revision file into one history (for plugin authors)."""
    history = next((h for h in histories(state) if h.name == name), None)
    if history is None:
        raise LookupError(f"no migration history named {name!r} (enabled: host, {', '.join(state.pm.plugin_names)})")
    with _migration_connection(state.db) as conn:
        command.revision(_config(history, conn), message=message, autogenerate=autogenerate)


#: Tables that migrations declare without a model: the contact search index
#: (an FTS5 table and its shadow tables on SQLite; a table with a generated
#: tsvector, its GIN index and triggers on PostgreSQL). Left out of the
#: models-vs-database comparison explicitly, even if a model of that name
#: appeared; its tests check it instead.
UNMODELLED_TABLES = frozenset(
    {"contact_search"} | {f"contact_search_{shadow}" for shadow in ("data", "idx", "content", "docsize", "config")}
)

#: Indexes of modelled tables that only the migrations make: expressions over
#: the search index's SQL functions, on PostgreSQL (``ix_contact_name_folded``,
#: migration ``b7d41c9e2a60``). Left out of the comparison by name; the
#: search tests check what they are for.
UNMODELLED_INDEXES = frozenset({"ix_contact_name_folded"})


def schema_differences(state) -> list:
    """What differs between the migrated database and the enabled models
    (empty when migrations and models agree)."""
    from alembic.autogenerate import compare_metadata

    tables: set[str] = set()
    for history in histories(state):
        tables |= history.tables
    tables -= UNMODELLED_TABLES

    def include_object(obj, name, type_, reflected, compare_to):
        if type_ == "index" and name in UNMODELLED_INDEXES:
            return False
        table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table_name is None or table_name in tables

    def include_name(name, type_, parent_names):
        if type_ == "table":
            return name in tables
        return True

    with state.db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={"include_object": include_object, "include_name": include_name, "compare_type": True},
        )
        return compare_metadata(ctx, Base.metadata)
