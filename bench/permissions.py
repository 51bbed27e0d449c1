"""Permission benchmark: what record scope and the permission check cost.

1. Scoped vs unscoped list: 100,000 records of the test model (``AcmeRecord``,
   tests/access_check.py) owned by 50 users in a temporary database. A sales
   rep with own scope asks for the first page of 50 newest records and the
   count; the same two queries without the scope condition are the baseline.
   Target: scoped at most 1.2x unscoped, for a typical rep and for one whose
   records are all among the oldest (a page newest-first must not scan the
   whole table to find them). Also shown: the same with only
   OwnedMixin's single-column ``owner_id`` index (no ``(owner_id, id)``), and
   a team-scope user (own records OR the team's), for information.
2. The per-request check: ``principal.can(...)`` plus building
   ``scope_condition(...)`` (target under 0.2 ms), and ``load_principal`` (the
   role queries a request makes when it resolves the signed-in user).

Prints numbers; asserts nothing.

    python bench/permissions.py [--records 100000] [--runs 200]
    python bench/permissions.py --database-url postgresql://127.0.0.1:5432/test

With ``--database-url`` (PostgreSQL) the tables go into a fresh schema that
is dropped afterwards. Run it with the virtualenv's Python.

Found with it: on PostgreSQL with the default ``random_page_cost`` (4), the
planner answers "newest 50 of one owner" by walking the primary key backwards
and filtering, even with the ``(owner_id, id)`` index; for an owner whose
records are all old that reads nearly the whole table. With the SSD setting
(``--random-page-cost 1.1``) it uses the composite index.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.access_check

from sqlalchemy import event, func, insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from host.db import Base, make_engine, utcnow  # noqa: E402
from host.security.access import load_principal, scope_condition  # noqa: E402
from host.security.models import Role, RolePermission, RoleScope, Team, TeamMember, User, UserRole  # noqa: E402
from tests.access_check import AcmeRecord  # noqa: E402

TARGET_RATIO = 1.2
TARGET_CHECK_MS = 0.2
USERS = 50
TEAMS = 5
PAGE = 50
OLD_REP_RECORDS = 2_000
TABLES = [m.__table__ for m in (User, Team, TeamMember, Role, RolePermission, RoleScope, UserRole, AcmeRecord)]
COMPOSITE = "ix_acme_record_owner_id_id"


# --- the database ----------------------------------------------------------------


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """A temporary SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if url is None:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def populate(engine, records: int) -> float:
    """Users, teams, roles and ``records`` rows (bulk insert through Core);
    returns the seconds the record insert took."""
    Base.metadata.create_all(engine, tables=TABLES)
    rng = random.Random(20261123)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(Team.__table__), [{"id": t + 1, "name": f"team {t + 1}"} for t in range(TEAMS)])
        conn.execute(
            insert(User.__table__),
            [{"id": u + 1, "email": f"rep{u + 1}@example.com", "display_name": f"Rep {u + 1}", "active": True,
              "session_version": 1, "totp_enabled": False, "created_at": now} for u in range(USERS)],
        )
        conn.execute(insert(TeamMember.__table__), [{"team_id": u % TEAMS + 1, "user_id": u + 1} for u in range(USERS)])
        conn.execute(
            insert(Role.__table__),
            [{"id": 1, "name": "staff", "description": "", "builtin": True, "require_totp": False},
             {"id": 2, "name": "manager", "description": "", "builtin": True, "require_totp": False}],
        )
        conn.execute(insert(RoleScope.__table__), [{"role_id": 1, "object_type": "*", "scope": "own"},
                                                   {"role_id": 2, "object_type": "*", "scope": "team"}])
        perms = [f"acme.record.{a}" for a in ("read", "create", "update", "delete", "export")]
        perms += [f"core.{o}.{a}" for o in ("contact", "interaction", "task") for a in ("read", "create", "update")]
        conn.execute(insert(RolePermission.__table__), [{"role_id": r, "permission": p} for r in (1, 2) for p in perms])
        conn.execute(insert(UserRole.__table__), [{"user_id": u + 1, "role_id": 2 if u == 1 else 1} for u in range(USERS)])
    started = time.perf_counter()
    batch = 20_000
    with engine.begin() as conn:
        for start in range(0, records, batch):
            rows = []
            for n in range(start, min(records, start + batch)):
                # rep 50 joined first and then stopped: all their records are the oldest ids
                owner = USERS if n < OLD_REP_RECORDS else rng.randint(1, USERS - 1)
                rows.append({"title": f"record {rng.random():.8f}", "owner_id": owner, "team_id": (owner - 1) % TEAMS + 1,
                             "created_at": now, "updated_at": now, "version": 1})
            conn.execute(insert(AcmeRecord.__table__), rows)
    elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return elapsed


# --- measuring ---------------------------------------------------------------------


def median_ms(func: Callable[[], object], runs: int) -> float:
    for _ in range(min(20, runs)):  # warm caches and statement compilation
        func()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def list_queries(session: Session, condition) -> Callable[[], object]:
    """The first page (newest first) and the count, as a list page runs them."""
    page = select(AcmeRecord.__table__).where(condition).order_by(AcmeRecord.id.desc()).limit(PAGE)
    count = select(func.count()).select_from(AcmeRecord).where(condition)

    def run():
        rows = session.execute(page).all()
        total = session.scalar(count)
        return rows, total

    return run


def compare(session: Session, principal, runs: int) -> tuple[float, float, float, float]:
    """(scoped page+count, unscoped page+count, scoped page, unscoped page) in ms."""
    scoped, unscoped = scope_condition(principal, AcmeRecord), AcmeRecord.id.isnot(None)
    page = lambda cond: select(AcmeRecord.__table__).where(cond).order_by(AcmeRecord.id.desc()).limit(PAGE)  # noqa: E731
    return (
        median_ms(list_queries(session, scoped), runs),
        median_ms(list_queries(session, unscoped), runs),
        median_ms(lambda: session.execute(page(scoped)).all(), runs),
        median_ms(lambda: session.execute(page(unscoped)).all(), runs),
    )


def plan(session: Session, principal) -> str:
    """The database's plan for the scoped first page (its index choice)."""
    stmt = select(AcmeRecord.__table__).where(scope_condition(principal, AcmeRecord)).order_by(AcmeRecord.id.desc()).limit(PAGE)
    dialect = session.get_bind().dialect
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
    rows = session.execute(text(prefix + sql)).all()
    return " | ".join(str(row[-1]).strip() for row in rows)


def report_lists(label: str, scoped: float, unscoped: float, scoped_page: float, unscoped_page: float, target: bool) -> None:
    ratio = scoped / unscoped
    verdict = ("OK" if ratio <= TARGET_RATIO else "OVER TARGET") if target else "info"
    print(f"  {label}")
    print(f"    page+count: scoped {scoped:8.3f} ms   unscoped {unscoped:8.3f} ms   ratio {ratio:5.2f}x  [{verdict}]")
    print(f"    page only:  scoped {scoped_page:8.3f} ms   unscoped {unscoped_page:8.3f} ms   ratio {scoped_page / unscoped_page:5.2f}x")


def check_cost_us(principal, runs: int) -> float:
    """``can`` + ``scope_condition`` construction, per call, in microseconds."""
    n = 2_000

    def block():
        for _ in range(n):
            principal.can("acme.record.read")
            scope_condition(principal, AcmeRecord)

    return median_ms(block, max(5, runs // 20)) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200, help="timed repetitions per query (median)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--random-page-cost", type=float,
                        help="PostgreSQL: SET random_page_cost on every connection (1.1 is the usual SSD setting)")
    args = parser.parse_args()

    with database(args.database_url) as url:
        engine = make_engine(url)
        if args.random_page_cost is not None:
            cost = float(args.random_page_cost)
            event.listen(engine, "connect", lambda conn, _record: conn.execute(f"SET random_page_cost = {cost}"))
        print(f"Python {platform.python_version()} on {platform.machine()}, {engine.dialect.name}; "
              f"{args.records:,} records, {USERS} owners, median of {args.runs} runs"
              + (f", random_page_cost {args.random_page_cost}" if args.random_page_cost is not None else ""))
        print(f"bulk insert: {populate(engine, args.records):.2f} s")
        with Session(engine) as session:
            rep = load_principal(session, session.get(User, 8))
            lead = load_principal(session, session.get(User, 2))
            mine = session.scalar(select(func.count()).select_from(AcmeRecord).where(scope_condition(rep, AcmeRecord)))
            print(f"sales rep {rep.email}: scope {rep.scope_for('acme.record')}, sees {mine:,} records")
            print("scoped list vs the same unscoped list:")
            report_lists("own scope, (owner_id, id) index", *compare(session, rep, args.runs), target=True)
            print(f"    plan: {plan(session, rep)}")
            old_rep = load_principal(session, session.get(User, USERS))
            report_lists(f"own scope, a rep whose {OLD_REP_RECORDS:,} records are the oldest", *compare(session, old_rep, args.runs), target=True)
            print(f"    plan: {plan(session, old_rep)}")
            report_lists("team scope (own OR team), for information", *compare(session, lead, args.runs), target=False)
            session.commit()
            with engine.begin() as conn:
                conn.execute(text(f"DROP INDEX {COMPOSITE}"))
                conn.execute(text("ANALYZE"))
            report_lists("own scope, only OwnedMixin's owner_id index, for information", *compare(session, rep, args.runs), target=False)
            print(f"    plan: {plan(session, rep)}")
            report_lists("  the same for the rep with the oldest records", *compare(session, old_rep, args.runs), target=False)
            print(f"    plan: {plan(session, old_rep)}")

            print("per-request permission check:")
            check = check_cost_us(rep, args.runs)
            verdict = "OK" if check / 1000 <= TARGET_CHECK_MS else "OVER TARGET"
            print(f"  can() + scope_condition(): {check:8.1f} us   [{verdict}, target {TARGET_CHECK_MS * 1000:.0f} us]")
            user = session.get(User, 8)
            loaded = median_ms(lambda: load_principal(session, user), args.runs) * 1000
            print(f"  load_principal():          {loaded:8.1f} us   (role queries, once per request)")
        engine.dispose()


if __name__ == "__main__":
    main()
