"""SQLite's own share of a contact import: the fastest any import of this
file could go on this machine before a line of our Python runs.

Runs the commit of ``bench/imports.py``'s contact file (the real
``core.import`` job, as that benchmark does) and records every statement
and parameter set it sends to the database, then replays them on a copy of
the database as it was before the import, through the bare ``sqlite3``
module with the app's own connection settings (WAL, foreign keys,
``synchronous=NORMAL``): the same rows, search-index triggers, audit
entries, outbox events and commits, and nothing else. The replay's time is
the database's work; ``rows / replay seconds`` is a ceiling for the import's
rate whatever the Python around it does.

    python bench/import_sql_floor.py [--rows 20000] [--replays 5]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imports as import_bench  # noqa: E402  (bench/imports.py, beside this file)


class StatementLog:
    """Every statement the dialect sends, with its parameters, and each
    commit and rollback, while ``recording``."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str | None, object]] = []
        self.recording = False

    def install(self) -> None:
        from sqlalchemy.engine import default

        dialect, log = default.DefaultDialect, self
        execute, execute_many, commit, rollback = (dialect.do_execute, dialect.do_executemany, dialect.do_commit,
                                                   dialect.do_rollback)

        def do_execute(self, cursor, statement, parameters, context=None):
            if log.recording:
                log.entries.append(("execute", statement, parameters))
            return execute(self, cursor, statement, parameters, context)

        def do_executemany(self, cursor, statement, parameters, context=None):
            if log.recording:
                parameters = list(parameters)
                log.entries.append(("executemany", statement, parameters))
            return execute_many(self, cursor, statement, parameters, context)

        def do_commit(self, connection):
            if log.recording:
                log.entries.append(("commit", None, None))
            return commit(self, connection)

        def do_rollback(self, connection):
            if log.recording:
                log.entries.append(("rollback", None, None))
            return rollback(self, connection)

        dialect.do_execute, dialect.do_executemany, dialect.do_commit, dialect.do_rollback = (
            do_execute, do_executemany, do_commit, do_rollback)


def replay(entries, database: Path) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of running ``entries`` on ``database``, and CPU
    seconds by statement (its first words)."""
    connection = sqlite3.connect(database, isolation_level=None)
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL"):
        connection.execute(pragma)
    cursor, by_statement = connection.cursor(), {}
    started, cpu_started = time.perf_counter(), time.process_time()
    for kind, statement, parameters in entries:
        before = time.process_time()
        if kind == "execute":
            cursor.execute(statement, parameters)
            cursor.fetchall()
        elif kind == "executemany":
            cursor.executemany(statement, parameters)
        elif connection.in_transaction:
            connection.commit() if kind == "commit" else connection.rollback()
        key = kind if statement is None else " ".join(statement.split("(")[0].split()[:3])
        by_statement[key] = by_statement.get(key, 0.0) + time.process_time() - before
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    connection.close()
    return elapsed, cpu, by_statement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--replays", type=int, default=5)
    args = parser.parse_args()
    log = StatementLog()
    log.install()
    content = import_bench.generate_csv(args.rows)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-floor-") as tmp:
        folder = Path(tmp)
        app, user_id = import_bench.build_app(folder)
        app.extensions["mosaic"].db.dispose()  # the file is complete on disk: copy it
        before = folder / "before.db"
        shutil.copy(folder / "bench.db", before)
        log.recording = True
        elapsed, cpu, result = import_bench.run(app, user_id, content, dry_run=False)
        log.recording = False
        app.extensions["mosaic"].db.dispose()
        print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs; "
              f"{args.rows} contacts")
        print(f"import (commit): {elapsed:.2f} s = {result['total'] / elapsed:,.0f} rows/s ({cpu:.2f} s CPU), "
              f"{len(log.entries)} statements; load average {os.getloadavg()[0]:.2f}")
        runs = []
        for _ in range(args.replays):
            copy = folder / "replay.db"
            for stale in (copy, copy.with_name("replay.db-wal"), copy.with_name("replay.db-shm")):
                stale.unlink(missing_ok=True)
            shutil.copy(before, copy)
            runs.append(replay(log.entries, copy))
            print(f"replay: {runs[-1][0]:.2f} s ({runs[-1][1]:.2f} s CPU): the database's work alone caps the import "
                  f"at {args.rows / runs[-1][0]:,.0f} rows/s; load average {os.getloadavg()[0]:.2f}")
        fastest = min(runs, key=lambda run: run[1])
        print("CPU seconds by statement, fastest replay:")
        for key, seconds in sorted(fastest[2].items(), key=lambda item: -item[1])[:10]:
            print(f"  {seconds:6.3f}  {key}")


if __name__ == "__main__":
    main()
