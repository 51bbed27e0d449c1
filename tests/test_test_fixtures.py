"""The fixtures host.testing ships to plugin authors keep the suite from
stalling: a PostgreSQL test schema is dropped even when the test leaked a
connection inside a transaction."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from host.testing import _postgres_schema


@pytest.mark.skipif(not os.environ.get("MOSAIC_TEST_DATABASE_URL"),
                    reason="needs PostgreSQL: set MOSAIC_TEST_DATABASE_URL")
def test_a_leaked_transaction_does_not_stop_the_schema_drop():
    base = os.environ["MOSAIC_TEST_DATABASE_URL"]
    schemas = _postgres_schema(base)
    url = next(schemas)
    schema = url.rsplit("application_name=", 1)[1]
    leaky = sa.create_engine(url)
    conn = leaky.connect()
    conn.execute(sa.text("CREATE TABLE held (id integer)"))
    conn.commit()
    conn.execute(sa.text("SELECT * FROM held"))  # a lock, held by an open transaction

    with pytest.warns(UserWarning, match="left a PostgreSQL connection 'idle in transaction'"):
        with pytest.raises(StopIteration):
            next(schemas)  # the teardown: ends the leaked connection, drops the schema

    admin = sa.create_engine(base)
    with admin.connect() as check:
        assert check.scalar(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}) == 0
    admin.dispose()
    conn.invalidate()  # its server side is gone: drop it without a rollback
    conn.close()
    leaky.dispose()
