"""Import benchmark: validated rows per second of ``mosaic import contacts``'
code path, into a fresh SQLite database (or PostgreSQL with ``--postgresql``).

Generates N contacts as CSV (Cyrillic, accented and plain Latin names,
e-mails, phones, tags, stages, external ids; about 5 % repeat an e-mail or a
phone of an earlier row, so the duplicate check finds something), then runs
the real ``core.import`` job (``host.jobs.run_in_thread``, as the CLI does)
as an admin: schema validation, the batch write path of new contacts
(``host.core.import_batch``: the services' rules, Core multi-row inserts),
duplicate check, audit entries, search-index triggers, outbox events, one
transaction per batch. Prints the rate of the dry run and of the commit,
with the machine's load average (other work on the machine slows it).

Target (issue 5): at least 10,000 validated rows per second into SQLite.
Prints numbers; asserts nothing.

Then the same file is imported again, as a nightly re-sync would: every row
matches its contact by external id and changes nothing ("re-import"), once
more with every tenth row's city changed ("re-import, 10 % changed": those
rows are updates of the contacts' own columns, written per batch by
``host.core.import_batch.ContactUpdates``), and with every row's city
changed, and with every tenth row moved to another lifecycle stage and
given other tags ("10 % new stage and tags": a stage history row and tag
rows besides the columns, also written per batch).

    python bench/imports.py [--rows 50000] [--profile] [--postgresql postgresql://127.0.0.1:5432/test]

``--type interactions`` (or ``tasks``) first imports ``--contacts`` contacts
(default 2,000) as above, then measures ``--rows`` interactions (or tasks)
linked to them by ``contact_external_id`` (``main_linked``: the batch path of
``host.core.import_batch_linked``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

TARGET = 10_000
SEED = 20261203

FIRST = ("Иван", "Мария", "Георги", "Елена", "Дмитрий", "Анна", "Žofia", "Łukasz", "Jiří", "Zoë", "François", "José",
         "Ana", "John", "Mary", "Peter", "Sofia", "Noah", "Ольга", "Stanisław")
LAST = ("Петров", "Иванова", "Георгиев", "Смирнов", "Nováková", "Dvořák", "Wójcik", "Müller", "Lefèvre", "Núñez",
        "Smith", "Brown", "Lee", "Taylor", "Wilson", "Попова", "Kovač", "Horváth", "Łęcka", "Ødegård")
STAGES = ("lead", "prospect", "customer", "loyal", "churned")
TAGS = ("newsletter", "vip", "partner", "retail", "wholesale", "event-2026")


def generate_csv(rows: int) -> bytes:
    rng = random.Random(SEED)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["External id", "First name", "Last name", "E-mail", "Phone", "City", "Lifecycle stage", "Tags",
                     "Marketing consent"])
    emails: list[str] = []
    phones: list[str] = []
    for n in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"person{n}@example{n % 97}.com"
        phone = f"+359 88 {n:07d}"
        if n > 100 and rng.random() < 0.05:  # a duplicate of an earlier row
            if rng.random() < 0.5:
                email = rng.choice(emails)
            else:
                phone = rng.choice(phones)
        emails.append(email)
        phones.append(phone)
        tags = ";".join(rng.sample(TAGS, rng.randint(0, 2)))
        writer.writerow([f"bench-{n}", first, last, email, phone, rng.choice(("София", "Plovdiv", "Brno", "Kraków")),
                         rng.choice(STAGES), tags, rng.choice(("true", "false"))])
    return out.getvalue().encode("utf-8")


def build_app(folder: Path, database_url: str | None = None):
    from host import create_app, migrate
    from host.security.users import create_user

    url = database_url or f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"instance_path": str(folder / "instance"), "database_url": url,
                      "secret_key": "bench-secret-key-not-for-production", "plugins": []}, environ={})
    migrate.upgrade(app.extensions["mosaic"])
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        user = create_user(session, "admin@example.com", "correct horse battery staple", roles=("admin",))
        return app, user.id


def run(app, user_id: int, content: bytes, dry_run: bool, profiler: cProfile.Profile | None = None,
        kind: str = "contacts") -> tuple[float, float, dict]:
    """The ``core.import`` job on ``content`` as ``kind``: wall and CPU
    seconds, and the job's result."""
    from host import jobs
    from host.core import imports

    name = imports.new_upload_name("bench.csv")
    imports.stored_path(app.instance_path, name).write_bytes(content)
    args = {"type": kind, "stored_name": name, "filename": "bench.csv", "dry_run": dry_run}
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler is None:
        job_id, thread = jobs.run_in_thread(app, imports.JOB_NAME, args, user_id=user_id)
        thread.join()
    else:  # the profiler sees only its own thread: run the same job here
        job_id = jobs._insert_job(app, imports.JOB_NAME, args, user_id=user_id, backend="inline")
        profiler.enable()
        jobs._run(app, job_id)
        profiler.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    job = jobs.get_job(job_id, app)
    if job["status"] != "done":
        raise SystemExit(f"the import failed: {job['error']}")
    return elapsed, cpu, job["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="Profile the commit run (top 25 by cumulative and by own time).")
    parser.add_argument("--postgresql", metavar="URL", help="Import into a new schema of this PostgreSQL database instead.")
    parser.add_argument("--type", choices=("contacts", *LINKED), default="contacts",
                        help="What to import (interactions and tasks: see main_linked).")
    parser.add_argument("--contacts", type=int, default=2_000, help="Contacts imported first for --type interactions/tasks.")
    args = parser.parse_args()
    if args.type != "contacts":
        return main_linked(args)
    content = generate_csv(args.rows)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-import-") as tmp, _database(args.postgresql) as url:
        print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; {args.rows} rows into "
              f"{'PostgreSQL' if url else 'SQLite'}")
        app, user_id = build_app(Path(tmp), url)
        for dry_run in (True, False):
            profiler = cProfile.Profile() if args.profile and not dry_run else None
            elapsed, cpu, result = run(app, user_id, content, dry_run, profiler)
            rate = result["total"] / elapsed
            label = "dry run" if dry_run else "commit "
            # CPU time of the process (the job's thread, and little else):
            # steadier than the wall clock when other work shares the machine.
            print(f"{label}: {result['total']} rows in {elapsed:.1f} s = {rate:,.0f} rows/s "
                  f"({cpu:.1f} s CPU = {result['total'] / cpu:,.0f} rows per CPU second) "
                  f"(created {result['created']}, rejected {result['rejected']}, "
                  f"possible duplicates reported {len(result['possible_duplicates'])}); target {TARGET:,} rows/s; "
                  f"load average {os.getloadavg()[0]:.2f}")
            if profiler:
                for order in ("cumulative", "tottime"):
                    pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(25)
        for label, again in (("re-import", content), ("re-import, 10 % changed", with_changed_cities(content, 10)),
                             ("re-import, every row changed", with_changed_cities(content, 1)),
                             ("re-import, 10 % new stage and tags",
                              with_changed_stages(with_changed_cities(content, 1), 10))):
            elapsed, cpu, result = run(app, user_id, again, False)
            print(f"{label}: {result['total']} rows in {elapsed:.1f} s = {result['total'] / elapsed:,.0f} rows/s "
                  f"({cpu:.1f} s CPU) (updated {result['updated']}, unchanged {result['unchanged']}, "
                  f"created {result['created']}, rejected {result['rejected']}); load average {os.getloadavg()[0]:.2f}")
        app.extensions["mosaic"].db.dispose()


def with_changed_cities(content: bytes, every: int) -> bytes:
    """``content`` with the city of every ``every``-th row changed."""
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    city = rows[0].index("City")
    for number, row in enumerate(rows[1:]):
        if number % every == 0:
            row[city] = "Varna"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def with_changed_stages(content: bytes, every: int) -> bytes:
    """``content`` with every ``every``-th row moved to the next lifecycle
    stage and given other tags (stored ones: the update writes a stage
    history row and tag rows, not only the contact's columns)."""
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    stage, tags = rows[0].index("Lifecycle stage"), rows[0].index("Tags")
    for number, row in enumerate(rows[1:]):
        if number % every == 0:
            row[stage] = STAGES[(STAGES.index(row[stage]) + 1) % len(STAGES)]
            row[tags] = "vip;partner" if row[tags] != "vip;partner" else "retail"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


@contextlib.contextmanager
def _database(base: str | None):
    """None (SQLite in the temporary folder), or a new PostgreSQL schema,
    dropped afterwards."""
    if not base:
        yield None
        return
    import sqlalchemy as sa

    schema = f"bench_import_{os.getpid()}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- interactions and tasks --------------------------------------------------------------------------------

LINKED = ("interactions", "tasks")
CHANNELS = ("phone", "email", "meeting", "chat", "visit")
SUBJECTS = ("Called about the renewal", "Sent the offer", "Обсудихме поръчката", "Demo of the new module",
            "Schůzka o smlouvě", "Follow-up on the invoice")


def generate_linked_csv(kind: str, rows: int, contacts: int) -> bytes:
    """``rows`` interactions or tasks on the contacts ``generate_csv``
    made (by ``contact_external_id``), each with an external id; about 1 %
    name a contact that does not exist (rejected), a fifth give no time
    (an interaction's ``occurred_at`` defaults to now)."""
    rng = random.Random(SEED + 1)
    out = io.StringIO()
    writer = csv.writer(out)
    if kind == "interactions":
        writer.writerow(["contact_external_id", "channel", "direction", "subject", "body", "occurred_at", "external_id"])
    else:
        writer.writerow(["contact_external_id", "title", "notes", "due_at", "priority", "done", "external_id"])
    for n in range(rows):
        contact = f"bench-{rng.randrange(contacts)}" if rng.random() > 0.01 else f"missing-{n}"
        when = "" if rng.random() < 0.2 else f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T{rng.randint(8, 17):02d}:00:00Z"
        if kind == "interactions":
            writer.writerow([contact, rng.choice(CHANNELS), rng.choice(("in", "out")), rng.choice(SUBJECTS),
                             "Discussed the next steps." if rng.random() < 0.7 else "", when, f"{kind}-{n}"])
        else:
            writer.writerow([contact, rng.choice(SUBJECTS), "", when, rng.choice(("low", "normal", "high")),
                             rng.choice(("true", "false", "")), f"{kind}-{n}"])
    return out.getvalue().encode("utf-8")


def main_linked(args: argparse.Namespace) -> None:
    """``--type interactions|tasks``: the contacts first (not measured),
    then the dry run and the commit of ``--rows`` linked records."""
    content = generate_linked_csv(args.type, args.rows, args.contacts)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-import-") as tmp, _database(args.postgresql) as url:
        print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; {args.rows} {args.type} on "
              f"{args.contacts} contacts into {'PostgreSQL' if url else 'SQLite'}")
        app, user_id = build_app(Path(tmp), url)
        run(app, user_id, generate_csv(args.contacts), False)
        for dry_run in (True, False):
            profiler = cProfile.Profile() if args.profile and not dry_run else None
            elapsed, cpu, result = run(app, user_id, content, dry_run, profiler, kind=args.type)
            label = "dry run" if dry_run else "commit "
            print(f"{label}: {result['total']} rows in {elapsed:.1f} s = {result['total'] / elapsed:,.0f} rows/s "
                  f"({cpu:.1f} s CPU = {result['total'] / cpu:,.0f} rows per CPU second) "
                  f"(created {result['created']}, rejected {result['rejected']}); target {TARGET:,} rows/s; "
                  f"load average {os.getloadavg()[0]:.2f}")
            if profiler:
                for order in ("cumulative", "tottime"):
                    pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(25)
        app.extensions["mosaic"].db.dispose()


if __name__ == "__main__":
    main()
