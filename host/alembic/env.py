"""Alembic environment shared by the host and every plugin.

``host.migrate`` runs it once per history (the host's, then each enabled
plugin's) with that history's version table, its revision directory and the
tables it owns; nothing else in the database is touched or compared.
"""

from alembic import context

config = context.config
attrs = config.attributes
owned_tables = attrs["tables"]


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "table":
        return name in owned_tables
    table = getattr(obj, "table", None)
    if table is not None:
        return table.name in owned_tables
    return True


def run() -> None:
    connection = attrs["connection"]
    context.configure(
        connection=connection,
        target_metadata=attrs["metadata"],
        version_table=attrs["version_table"],
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
