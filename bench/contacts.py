"""Core record benchmark: the contact API (and the staff pages, when they
exist) over 10,000 and 1,000,000 contacts, on SQLite and PostgreSQL.

Generates the data sets once (cached; ``--regenerate`` to rebuild):

- SQLite: ``bench/data/contacts-<size>.sqlite`` (git-ignored);
- PostgreSQL (``--pg`` or ``MOSAIC_BENCH_PG=1``): database
  ``mosaic_bench_<size>`` on ``--pg-url`` (default 127.0.0.1:5432), created
  here, so the tests' ``test`` database is never touched.

Each has N contacts (a tenth companies; Cyrillic, accented and plain Latin
names; e-mails, phones, tags, stages), 5N interactions and N/5 tasks, owned
by 50 users in five teams (see ``bench/_data.py``). The schema comes from the
real migrations (``host.migrate.upgrade``, what ``mosaic db upgrade`` runs).
Rows are bulk-loaded (``executemany`` on SQLite, ``COPY`` on PostgreSQL)
with the tables' secondary indexes and triggers set aside and recreated from
their own definitions afterwards; the search index is then filled by
``host.core.search.rebuild_index``, the set-based equivalent of the triggers.

Then measures server time through the Flask test client (median and p95 of
``--runs`` requests, after a warm-up), with all four plugins enabled, as a
sales rep (own scope) and as an admin (all):

- list: first page of ``/api/v1/contacts?lifecycle_stage=customer&tag=newsletter``,
  and a deep page (the cursor after 50 pages, or the rep's last page);
- search: ``?q=иван`` (a Cyrillic prefix matching ~5 % of contacts) and
  ``?q=zofia`` (finds "Žofia": accent-insensitive);
- a contact: ``/api/v1/contacts/<id>`` and its ``/timeline``, over 200
  different busy contacts (key accounts with many interactions);
- the pages ``/contacts``, ``/contacts/<id>`` and ``/search?q=`` when the app
  has them (staff UI, issue 6).

Results go to ``bench/data/results.json``; the table printed at the end puts
each 1M figure next to the 10k one (ratio = p95 at 1M / p95 at 10k).

    python bench/contacts.py                       # SQLite, 10k and 1M
    python bench/contacts.py --pg --sizes 10k      # PostgreSQL only, 10k
    python bench/contacts.py --sqlite --pg         # both
    python bench/contacts.py --report              # print the stored table
    python bench/contacts.py --explain             # query plans of the measured queries

Prints numbers; asserts nothing (a non-200 answer stops it, though).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _data
DATA = HERE / "data"
RESULTS = DATA / "results.json"
GENERATOR_VERSION = 1
PLUGINS = ["sales", "marketing", "service", "reports"]
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
BATCH = 20_000
TARGET_API_MS = 50
TARGET_PAGE_MS = 80
TARGET_RATIO = 1.5
PASSWORD = "bench password, not a secret"
LOADED_TABLES = ("contact", "contact_email", "contact_phone", "contact_tag", "interaction", "task")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- targets ---------------------------------------------------------------------------


class Target:
    """One data set: a backend and a size."""

    def __init__(self, backend: str, size: str, pg_url: str):
        self.backend, self.size, self.contacts = backend, size, SIZES[size]
        self.pg_url = pg_url.rstrip("/")
        self.sqlite_file = DATA / f"contacts-{size}.sqlite"
        self.pg_database = f"mosaic_bench_{size}"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.size}"

    @property
    def url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.sqlite_file}"
        return f"{self.pg_url.rsplit('/', 1)[0]}/{self.pg_database}"

    def exists(self) -> bool:
        if self.backend == "sqlite":
            return self.sqlite_file.exists()
        with _pg_admin(self.pg_url) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.pg_database,)).fetchone() is not None

    def drop(self) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_file}{suffix}").unlink(missing_ok=True)
            return
        with _pg_admin(self.pg_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')

    def create(self) -> None:
        DATA.mkdir(exist_ok=True)
        if self.backend == "postgresql":
            with _pg_admin(self.pg_url) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_database}"')


def _pg_admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def make_app(target: Target, **extra: Any):
    from host import create_app

    instance = DATA / "instance"
    instance.mkdir(parents=True, exist_ok=True)
    config = {
        "database_url": target.url,
        "instance_path": str(instance),
        "plugins": PLUGINS,
        "secret_key": "bench-secret-key-not-for-production",
        **extra,
    }
    return create_app(config, environ={})


MARKER = "bench.contacts"


def generated(app, target: Target) -> bool:
    from host.models import Setting

    state = app.extensions["mosaic"]
    try:
        with state.db.Session() as session:
            row = session.get(Setting, MARKER)
    except Exception:
        return False
    return bool(row and row.value == {"contacts": target.contacts, "generator": GENERATOR_VERSION})


# --- generation ----------------------------------------------------------------------------


def ensure(target: Target, regenerate: bool) -> None:
    """The data set, generated unless a complete one is cached; migrated to
    the current head either way (a new index migration lands on cached data)."""
    from host import migrate

    if regenerate and target.exists():
        log(f"{target.label}: dropping the cached data set")
        target.drop()
    if target.exists():
        app = make_app(target)
        if generated(app, target):
            started = time.perf_counter()
            done = migrate.upgrade(app.extensions["mosaic"])
            changed = [f"{name} {before}->{after}" for name, before, after in done if before != after]
            if changed:
                log(f"{target.label}: migrated {', '.join(changed)} in {time.perf_counter() - started:.1f} s")
            app.extensions["mosaic"].db.dispose()
            return
        app.extensions["mosaic"].db.dispose()
        log(f"{target.label}: incomplete data set, regenerating")
        target.drop()
    generate(target)


def generate(target: Target) -> None:
    import _data
    from host import migrate

    started = time.perf_counter()
    target.create()
    app = make_app(target)
    state = app.extensions["mosaic"]
    migrate.upgrade(state)
    log(f"{target.label}: migrated an empty database in {time.perf_counter() - started:.1f} s")
    with app.app_context():
        people, tag_ids = _create_users_and_tags(app)
    state.db.dispose()
    gen = _data.Generator(_data.Plan.of(target.contacts), people, tag_ids)
    engine = _bulk_engine(target)
    with engine.connect() as conn:
        loader = SqliteLoader(conn) if target.backend == "sqlite" else PgLoader(conn)
        loader.begin()
        saved = loader.set_aside(LOADED_TABLES)
        timings = {}
        step = time.perf_counter()
        counts = loader.load_contacts(gen.contacts())
        timings["contacts"] = time.perf_counter() - step
        step = time.perf_counter()
        counts["interaction"] = loader.load("interaction", gen.interactions())
        timings["interactions"] = time.perf_counter() - step
        step = time.perf_counter()
        counts["task"] = loader.load("task", gen.tasks())
        timings["tasks"] = time.perf_counter() - step
        log(f"{target.label}: loaded {counts} ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
        step = time.perf_counter()
        loader.restore(saved)
        log(f"{target.label}: indexes and triggers recreated in {time.perf_counter() - step:.0f} s")
        step = time.perf_counter()
        loader.finish()
        log(f"{target.label}: search index, last activity and statistics in {time.perf_counter() - step:.0f} s")
    engine.dispose()
    app = make_app(target)
    with app.extensions["mosaic"].db.transaction() as session:
        from host.models import Setting

        session.merge(Setting(key=MARKER, value={"contacts": target.contacts, "generator": GENERATOR_VERSION}))
    app.extensions["mosaic"].db.dispose()
    log(f"{target.label}: generated in {time.perf_counter() - started:.0f} s")


def _create_users_and_tags(app) -> tuple[Any, dict[str, int]]:
    """50 users in five teams (a manager and nine reps each) and an admin,
    through the services (roles, teams, as an admin would set them up)."""
    import _data
    from sqlalchemy import insert

    from host.core.models import Tag
    from host.security import roles as role_service
    from host.security.users import create_user, set_password

    state = app.extensions["mosaic"]
    owners, weights, team_of = [], [], {}
    with state.db.transaction() as session:
        admin = create_user(session, "admin@bench.example", None, roles=("admin",), display_name="Bench Admin")
        set_password(admin, PASSWORD)
        for t, team_name in enumerate(_data.TEAM_NAMES):
            team = role_service.create_team(session, team_name)
            session.flush()
            members = [("manager", f"manager.{team_name.lower()}@bench.example", 0.3)]
            members += [("staff", f"rep{k}.{team_name.lower()}@bench.example", 0.5 + ((k * 7 + t * 3) % 10) / 10)
                        for k in range(1, _data.REPS_PER_TEAM + 1)]
            for role, email, weight in members:
                user = create_user(session, email, None, roles=(role,))
                if email == REP_EMAIL:
                    set_password(user, PASSWORD)
                role_service.add_to_team(session, email, team_name)
                owners.append(user.id)
                weights.append(weight)
                team_of[user.id] = team.id
        session.execute(insert(Tag), [{"id": i, "name": name} for i, (name, _share) in enumerate(_data.TAGS, start=1)])
    tag_ids = {name: i for i, (name, _share) in enumerate(_data.TAGS, start=1)}
    return _data.People(tuple(owners), tuple(weights), team_of), tag_ids


#: The rep measured: weight 1.0 (an average load) in the first team.
REP_EMAIL = "rep5.sofia@bench.example"
ADMIN_EMAIL = "admin@bench.example"


def _bulk_engine(target: Target):
    from sqlalchemy import create_engine

    if target.backend == "sqlite":
        return create_engine(target.url)
    return create_engine("postgresql+psycopg://" + target.url.split("://", 1)[1])


class SqliteLoader:
    """executemany in batches, one transaction; journal and fsync off while
    loading (the file is thrown away if the load fails)."""

    def __init__(self, conn):
        self.conn = conn
        self.raw = conn.connection.driver_connection
        self.raw.isolation_level = None

    def begin(self) -> None:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "foreign_keys=OFF", "cache_size=-1000000",
                       "temp_store=MEMORY"):
            self.raw.execute(f"PRAGMA {pragma}")
        _check_sqlite_timestamps(self.conn)
        self.raw.execute("BEGIN")

    def set_aside(self, tables: Iterable[str]) -> list[tuple[str, str, str]]:
        """Drop the tables' secondary indexes and triggers; returns their SQL."""
        marks = ",".join("?" for _ in tables)
        saved = self.raw.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
            f" AND tbl_name IN ({marks})", tuple(tables)).fetchall()
        for kind, name, _sql in saved:
            self.raw.execute(f'DROP {kind.upper()} "{name}"')
        return saved

    def restore(self, saved: list[tuple[str, str, str]]) -> None:
        for _kind, _name, sql in sorted(saved, key=lambda item: item[0]):  # indexes, then triggers
            self.raw.execute(sql)

    def load_contacts(self, rows: Iterator[tuple[str, tuple]]) -> dict[str, int]:
        import _data

        batches: dict[str, list[tuple]] = {name: [] for name in ("contact", "contact_email", "contact_phone", "contact_tag")}
        counts = dict.fromkeys(batches, 0)
        for table, row in rows:
            batch = batches[table]
            batch.append(row)
            if len(batch) >= BATCH:
                self._insert(table, _data.COLUMNS[table], batch)
                counts[table] += len(batch)
                batch.clear()
        for table, batch in batches.items():
            self._insert(table, _data.COLUMNS[table], batch)
            counts[table] += len(batch)
        return counts

    def load(self, table: str, rows: Iterator[tuple]) -> int:
        import _data

        count, batch = 0, []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                self._insert(table, _data.COLUMNS[table], batch)
                count += len(batch)
                batch = []
        self._insert(table, _data.COLUMNS[table], batch)
        return count + len(batch)

    def _insert(self, table: str, columns: tuple[str, ...], batch: list[tuple]) -> None:
        if batch:
            self.raw.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", batch)

    def finish(self) -> None:
        from host.core.search import rebuild_index

        rebuild_index(self.conn)
        _update_last_activity(self.raw.execute)
        self.raw.execute("COMMIT")
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute("ANALYZE")


def _check_sqlite_timestamps(conn) -> None:
    """The generator writes timestamps as text: it must be the very text
    SQLAlchemy's type writes, or comparisons with bound values go wrong."""
    import datetime as dt

    import _data
    from host.db import UTCDateTime

    value = dt.datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=dt.timezone.utc)
    from sqlalchemy import String, bindparam, cast, select

    text = conn.execute(select(cast(bindparam("v", value, type_=UTCDateTime()), String))).scalar_one()
    assert text == _data.stamp(value.timestamp()), (text, _data.stamp(value.timestamp()))


def _update_last_activity(execute: Callable) -> None:
    execute(
        "UPDATE contact SET last_activity_at = (SELECT max(i.occurred_at) FROM interaction AS i"
        " WHERE i.contact_id = contact.id)"
    )


class PgLoader:
    """COPY in text format, one transaction, triggers (foreign-key checks
    included) off for the session only (``session_replication_role``)."""

    def __init__(self, conn):
        self.conn = conn
        self.raw = conn.connection.driver_connection
        self.raw.autocommit = False

    def begin(self) -> None:
        with self.raw.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute("SET maintenance_work_mem = '512MB'")

    def set_aside(self, tables: Iterable[str]) -> list[tuple[str, str]]:
        """Drop indexes that back no constraint; returns their definitions."""
        with self.raw.cursor() as cur:
            cur.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index AS x"
                " JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_class AS t ON t.oid = x.indrelid"
                " WHERE t.relname = ANY(%s) AND t.relnamespace = current_schema()::regnamespace"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = x.indexrelid)",
                (list(tables),))
            saved = cur.fetchall()
            for name, _sql in saved:
                cur.execute(f'DROP INDEX "{name}"')
        return saved

    def restore(self, saved: list[tuple[str, str]]) -> None:
        with self.raw.cursor() as cur:
            for _name, sql in saved:
                cur.execute(sql)

    def load_contacts(self, rows: Iterator[tuple[str, tuple]]) -> dict[str, int]:
        import _data

        # COPY one table at a time: buffer the child rows (a few million small tuples).
        children: dict[str, list[tuple]] = {"contact_email": [], "contact_phone": [], "contact_tag": []}

        def contacts_only() -> Iterator[tuple]:
            for table, row in rows:
                if table == "contact":
                    yield row
                else:
                    children[table].append(row)

        counts = {"contact": self.load("contact", contacts_only())}
        for table, batch in children.items():
            counts[table] = self.load(table, iter(batch))
            batch.clear()
        return counts

    def load(self, table: str, rows: Iterator[tuple]) -> int:
        import _data

        columns = _data.COLUMNS[table]
        stamps = [i for i, name in enumerate(columns) if name in _data.TIMESTAMP_COLUMNS]
        count = 0
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            lines = []
            for row in rows:
                lines.append(_copy_line(row, stamps))
                if len(lines) >= BATCH:
                    copy.write("".join(lines))
                    count += len(lines)
                    lines = []
            copy.write("".join(lines))
            count += len(lines)
        with self.raw.cursor() as cur:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                        if "id" in columns else "SELECT 1")
        return count

    def finish(self) -> None:
        from host.core.search import rebuild_index

        with self.raw.cursor() as cur:
            cur.execute("DROP INDEX ix_contact_search_document")
            rebuild_index(self.conn)
            cur.execute("CREATE INDEX ix_contact_search_document ON contact_search USING gin (document)")
            _update_last_activity(cur.execute)
        self.raw.commit()
        self.raw.autocommit = True
        with self.raw.cursor() as cur:
            cur.execute("VACUUM ANALYZE")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(row: tuple, stamps: list[int]) -> str:
    values = []
    for i, value in enumerate(row):
        if value is None:
            values.append("\\N")
        elif value is True:
            values.append("t")
        elif value is False:
            values.append("f")
        elif isinstance(value, str):
            values.append(value.translate(_COPY_ESCAPES) + ("+00" if i in stamps else ""))
        else:
            values.append(str(value))
    return "\t".join(values) + "\n"


# --- measuring --------------------------------------------------------------------------------


class Bench:
    """The app over one data set, its two users' credentials, and the
    requests to time."""

    def __init__(self, target: Target, runs: int):
        self.target, self.runs = target, runs
        self.depth: dict[str, int] = {}
        # Far above the 600 a minute a token gets: the bench sends thousands.
        self.app = make_app(target)
        self.app.config["MOSAIC_TOKEN_RATE_LIMIT"] = 10**9
        self.state = self.app.extensions["mosaic"]
        self.tokens = {"rep": self._token(REP_EMAIL), "admin": self._token(ADMIN_EMAIL)}
        self.user_ids = {who: self._user_id(email) for who, email in (("rep", REP_EMAIL), ("admin", ADMIN_EMAIL))}

    def _token(self, email: str) -> str:
        from host.security.tokens import create_token
        from host.security.users import find_user

        with self.app.app_context(), self.state.db.transaction() as session:
            return create_token(session, find_user(session, email), name="bench")[1]

    def _user_id(self, email: str) -> int:
        from host.security.users import find_user

        with self.state.db.Session() as session:
            return find_user(session, email).id

    def api(self, who: str) -> Callable[[str], Any]:
        client = self.app.test_client()
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return lambda path: client.get(path, headers=headers)

    def ui(self, who: str) -> Callable[[str], Any] | None:
        client = self.app.test_client()
        page = client.get("/login").get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        email = REP_EMAIL if who == "rep" else ADMIN_EMAIL
        answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": found.group(1) if found else ""})
        if answer.status_code != 303:
            log(f"UI login as {who} failed ({answer.status_code}); pages not measured")
            return None
        return client.get

    def has_route(self, rule: str) -> bool:
        return any(r.rule == rule for r in self.app.url_map.iter_rules())

    def busy_contacts(self, who: str, count: int) -> list[int]:
        """Key accounts (every 50th id gets 30 % of the interactions) the
        user may see, newest first."""
        from sqlalchemy import select

        from host.core.models import Contact

        stmt = select(Contact.id).where(Contact.id % 50 == 0, Contact.deleted_at.is_(None))
        if who == "rep":
            stmt = stmt.where(Contact.owner_id == self.user_ids["rep"])
        with self.state.db.Session() as session:
            return list(session.scalars(stmt.order_by(Contact.id.desc()).limit(count)))

    def deep_cursor(self, get: Callable[[str], Any], path: str, pages: int = 50) -> tuple[str, int]:
        """The path of page ``pages + 1`` (or the last page there is) and its number."""
        url, number = path, 1
        for _ in range(pages):
            body = _ok(get(url), url).get_json()
            if not body["next"]:
                break
            url, number = f"{path}&cursor={body['next']}", number + 1
        return url, number

    def requests(self, get: Callable[[str], Any], paths: list[str]) -> "Sampler":
        def one(i: int) -> None:
            _ok(get(paths[i % len(paths)]), paths[i % len(paths)])

        return Sampler(one)

    def cases(self) -> Iterator[tuple[str, str, "Sampler"]]:
        """(endpoint, user, sampler) for every measured request, always in
        the same order, so two data sets' cases pair up."""
        listing = "/api/v1/contacts?lifecycle_stage=customer&tag=newsletter&limit=50"
        for who in ("rep", "admin"):
            get = self.api(who)
            yield "API list, page 1 (stage+tag)", who, self.requests(get, [listing])
            deep, self.depth[who] = self.deep_cursor(get, listing)
            yield "API list, deep page (stage+tag)", who, self.requests(get, [deep])
            yield "API search q=иван", who, self.requests(get, ["/api/v1/contacts?q=%D0%B8%D0%B2%D0%B0%D0%BD"])
            yield "API search q=zofia", who, self.requests(get, ["/api/v1/contacts?q=zofia"])
            # Like-for-like pages: at 10k the rep has only 15 "иван" and 4
            # "zofia" matches, so the pages above hold 15 and 4 contacts
            # there against 50 at 1M; these hold as many at both sizes.
            yield "API search q=иван, page of 10", who, self.requests(get, ["/api/v1/contacts?q=%D0%B8%D0%B2%D0%B0%D0%BD&limit=10"])
            yield "API search q=zofia, page of 4", who, self.requests(get, ["/api/v1/contacts?q=zofia&limit=4"])
            busy = self.busy_contacts(who, 200)
            yield "API contact", who, self.requests(get, [f"/api/v1/contacts/{i}" for i in busy])
            yield "API contact timeline", who, self.requests(get, [f"/api/v1/contacts/{i}/timeline" for i in busy])
            yield "search_contacts() иван (ranked)", who, Sampler(self._ranked_search(who, "иван"))
        for who in ("rep", "admin"):
            get = self.ui(who) if self.has_route("/contacts") else None
            busy = self.busy_contacts(who, 200)
            pages = (("/contacts", "page /contacts", ["/contacts"]),
                     ("/contacts/<int:contact_id>", "page /contacts/<id>", [f"/contacts/{i}" for i in busy]),
                     ("/search", "page /search?q=иван", ["/search?q=%D0%B8%D0%B2%D0%B0%D0%BD"]))
            for rule, label, paths in pages:
                if get is not None and self.has_route(rule):
                    yield label, who, self.requests(get, paths)

    def _ranked_search(self, who: str, query: str) -> Callable[[int], Any]:
        from host.core.search import search_contacts
        from host.security.access import load_principal
        from host.security.models import User

        def call(_i: int):
            with self.app.app_context(), self.state.db.Session() as session:
                principal = load_principal(session, session.get(User, self.user_ids[who]))
                return search_contacts(session, principal, query, 20)

        return call

    def close(self) -> None:
        self.state.db.dispose()


class Sampler:
    """Times one kind of request: wall and CPU milliseconds per call."""

    WARMUP = 5

    def __init__(self, call: Callable[[int], Any]):
        self.call, self.wall, self.cpu, self.done = call, [], [], 0

    def take(self, n: int) -> None:
        if self.done == 0:
            for i in range(self.WARMUP):
                self.call(i)
        for _ in range(n):
            wall, cpu = time.perf_counter(), time.process_time()
            self.call(self.done)
            self.cpu.append((time.process_time() - cpu) * 1000)
            self.wall.append((time.perf_counter() - wall) * 1000)
            self.done += 1

    def figures(self) -> dict[str, float]:
        return {"median": statistics.median(self.wall), "p95": _p95(self.wall),
                "cpu_median": statistics.median(self.cpu), "cpu_p95": _p95(self.cpu), "runs": len(self.wall)}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def run_paired(benches: list[Bench], runs: int, block: int = 20, only: str = "") -> list[dict[str, Any]]:
    """Every case (or those whose name holds ``only``) on every data set, in
    alternating blocks of ``block`` requests, so load from elsewhere on the
    machine falls on all sizes alike and the ratio between them stays
    meaningful."""
    results = []
    for cases in zip(*(bench.cases() for bench in benches)):
        endpoints = {(endpoint, who) for endpoint, who, _sampler in cases}
        assert len(endpoints) == 1, endpoints
        if only and only not in cases[0][0]:
            continue
        for _ in range(0, runs, block):
            for _endpoint, _who, sampler in cases:
                sampler.take(block)
        for bench, (endpoint, who, sampler) in zip(benches, cases):
            row = {"backend": bench.target.backend, "size": bench.target.size, "endpoint": endpoint, "user": who,
                   **sampler.figures(), "load": os.getloadavg()[0], "at": time.strftime("%Y-%m-%d %H:%M")}
            if endpoint.startswith("API list, deep"):
                row["page"] = bench.depth[who]
            results.append(row)
            log(f"{bench.target.label:14} {endpoint:34} {who:5} median {row['median']:6.1f} p95 {row['p95']:6.1f} ms"
                f" | CPU median {row['cpu_median']:6.1f} p95 {row['cpu_p95']:6.1f} ms (load {row['load']:.1f})")
    for bench in benches:
        bench.close()
    return results


def _ok(answer, path: str):
    if answer.status_code != 200:
        raise SystemExit(f"GET {path} answered {answer.status_code}: {answer.get_data(as_text=True)[:300]}")
    return answer


# --- results ----------------------------------------------------------------------------------


def store(rows: list[dict[str, Any]]) -> None:
    """Keep the newest figures per (backend, size, endpoint, user)."""
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    keys = {(r["backend"], r["size"], r["endpoint"], r["user"]) for r in rows}
    kept = [r for r in existing if (r["backend"], r["size"], r["endpoint"], r["user"]) not in keys]
    RESULTS.write_text(json.dumps(kept + rows, indent=1, ensure_ascii=False))


def report() -> None:
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if not rows:
        print("no results yet")
        return
    small = {(r["backend"], _family(r["endpoint"]), r["user"]): r for r in rows if r["size"] == "10k"}
    print()
    print("| Backend | Endpoint | User | Size | Median ms | p95 ms | CPU median | CPU p95 | Ratio (p95) | Target |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    order = {"10k": 0, "100k": 1, "1m": 2}
    for r in sorted(rows, key=lambda r: (r["backend"], _family(r["endpoint"]), r["user"], order[r["size"]])):
        base = small.get((r["backend"], _family(r["endpoint"]), r["user"]))
        ratio = r["p95"] / base["p95"] if base and r["size"] != "10k" and base["p95"] else None
        # Issue 5 (API): p95 and the ratio; issue 6 (pages): p95 only.
        page = r["endpoint"].startswith("page")
        target_ms = TARGET_PAGE_MS if page else TARGET_API_MS
        verdict = "" if r["endpoint"].startswith("search_contacts") else (
            "meets" if r["p95"] < target_ms and (page or ratio is None or ratio <= TARGET_RATIO) else "**misses**")
        endpoint = r["endpoint"].replace("deep page", f"deep page ({r['page']})") if "page" in r else r["endpoint"]
        print(f"| {r['backend']} | {endpoint} | {r['user']} | {r['size']} | {r['median']:.1f} | {r['p95']:.1f} | "
              f"{r.get('cpu_median', 0):.1f} | {r.get('cpu_p95', 0):.1f} | "
              f"{'' if ratio is None else f'{ratio:.2f}'} | {verdict} |")


def _family(endpoint: str) -> str:
    return endpoint


# --- query plans --------------------------------------------------------------------------------


def explain(target: Target) -> None:
    """Each measured API request's statements on the core tables, with the
    best of five timings and the plan the database chose."""
    from sqlalchemy import event

    bench = Bench(target, runs=1)
    engine = bench.state.db.engine
    seen: dict[str, Any] = {}

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and re.search(r"\b(contact|interaction|task)\b", statement):
            seen[statement] = parameters

    for endpoint, who, sampler in bench.cases():
        if not endpoint.startswith("API"):
            continue
        sampler.take(0)  # the warm-up, unrecorded
        event.listen(engine, "before_cursor_execute", remember)
        seen.clear()
        sampler.take(1)
        event.remove(engine, "before_cursor_execute", remember)
        print(f"\n=== {target.label}: {endpoint} as {who}")
        with engine.connect() as conn:
            for statement, parameters in seen.items():
                best = min(_timed(conn, statement, parameters) for _ in range(5))
                print(f"{best:8.2f} ms  {' '.join(statement.split())[:600]}")
                prefix = "EXPLAIN QUERY PLAN " if target.backend == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
                for row in conn.exec_driver_sql(prefix + statement, parameters):
                    print("            ", row[-1] if target.backend == "sqlite" else row[0])
    bench.close()


def _timed(conn, statement: str, parameters: Any) -> float:
    started = time.perf_counter()
    conn.exec_driver_sql(statement, parameters).fetchall()
    return (time.perf_counter() - started) * 1000


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,1m", help="comma-separated: 10k, 100k, 1m (default 10k,1m)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite (the default unless --pg is given alone)")
    parser.add_argument("--pg", action="store_true", default=bool(os.environ.get("MOSAIC_BENCH_PG")),
                        help="PostgreSQL too (or MOSAIC_BENCH_PG=1)")
    parser.add_argument("--pg-url", default=os.environ.get("MOSAIC_BENCH_PG_URL", "postgresql://127.0.0.1:5432/postgres"),
                        help="a database to connect to for creating mosaic_bench_<size>")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached data sets")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--report", action="store_true", help="print the stored results and stop")
    parser.add_argument("--explain", action="store_true", help="print the query plans of the measured requests")
    parser.add_argument("--only", default="", help="measure only the cases whose name holds this text (e.g. 'search')")
    args = parser.parse_args()
    if args.report:
        report()
        return
    backends = (["sqlite"] if args.sqlite or not args.pg else []) + (["postgresql"] if args.pg else [])
    targets = [Target(b, size.strip().lower(), args.pg_url) for b in backends for size in args.sizes.split(",")]
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; plugins: {', '.join(PLUGINS)}", flush=True)
    for target in targets:
        ensure(target, args.regenerate)
    if args.generate_only:
        return
    if args.explain:
        for target in targets:
            explain(target)
        return
    for backend in backends:
        store(run_paired([Bench(t, args.runs) for t in targets if t.backend == backend], args.runs, only=args.only))
    report()


if __name__ == "__main__":
    main()
