"""Pytest fixtures for Mosaic and for plugin authors (a ``pytest11`` plugin).

Installed with ``mosaic-crm``, so a third-party plugin's tests can say::

    @pytest.mark.with_plugins("acme")
    def test_acme_page(client):
        assert client.get("/acme/").status_code == 200

Fixtures:

- ``database_url``: a fresh, empty database for this test. SQLite in the
  test's temporary folder; PostgreSQL when ``MOSAIC_TEST_DATABASE_URL`` is set
  (each test gets its own schema, dropped afterwards).
- ``make_app(plugins=None, extra_plugins=(), migrate=True, **config)``: build
  an app on that database (all apps of one test share it, so a test can enable
  a plugin later and see the data that is already there).
- ``app`` / ``client``: an app with the plugins named by the ``with_plugins``
  marker (default: every installed plugin), migrated.
- ``redis_url``: a Redis database for the test (flushed), or a skip saying
  why when no Redis answers.

``plugin_candidate(name, hooks_object, ...)`` turns a module or class of hook
implementations into a plugin the tests can enable, without packaging it.

Signing in: ``make_user(app, email, roles=("staff",), teams=())`` creates an
account (password ``TEST_PASSWORD``); ``login(client, email)`` signs a test
client in through the real login form (CSRF included); ``api_token(app,
email, read_only=False)`` returns a bearer token and ``bearer(token)`` the
header for it. The ``signed_in`` fixture combines them::

    def test_deals_page(app, signed_in):
        client = signed_in("rep@example.com", roles=("staff",))
        assert client.get("/sales/").status_code == 200
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from typing import Any, Callable, Iterator, Sequence

import pytest

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


#: argon2id parameters for test runs: production's cost (~100 ms a hash) times
#: the hundreds of users a suite signs in would dominate its run time.
TEST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "with_plugins(*names): enable only these plugins in the app fixture (none: the host alone)"
    )
    from argon2 import PasswordHasher

    from host.security import passwords

    passwords.use_hasher(PasswordHasher(**TEST_ARGON2))


def plugin_candidate(
    name: str,
    hooks_object: Any,
    *,
    depends: Sequence[str] = (),
    hooks_api: str | None = None,
    version: str = "0.0.1",
    title: str | None = None,
):
    """A plugin made of ``hooks_object`` (a module, class or instance holding
    ``@hookimpl`` functions), for ``make_app(extra_plugins=[...])``."""
    from hooks import HOOKS_API_VERSION, Plugin
    from host.plugins import candidate_from_objects

    info = Plugin(
        name=name,
        title=title or name.title(),
        version=version,
        depends=tuple(depends),
        hooks_api=hooks_api or HOOKS_API_VERSION,
    )
    return candidate_from_objects(info, hooks_object)


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    base = os.environ.get("MOSAIC_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'mosaic.db'}"
        return
    yield from _postgres_schema(base)


def _postgres_schema(base: str) -> Iterator[str]:
    import sqlalchemy as sa

    from host.db import make_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        # The schema's name as application_name tags every connection of
        # the test, so the teardown can find the ones it left behind.
        yield f"{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with admin.begin() as conn:
            # A connection the test leaked inside a transaction holds locks
            # that DROP SCHEMA would wait for forever (a whole CI run once
            # stalled so). End such connections first, and say so.
            leftovers = conn.execute(sa.text(
                "SELECT pid, state, left(query, 200) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid() AND state <> 'idle'"
            ), {"name": schema}).all()
            for pid, state, query in leftovers:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                warnings.warn(f"test left a PostgreSQL connection {state!r} (ended it): {query}", stacklevel=1)
            conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def _migrated_sqlite_templates(tmp_path_factory):
    """A folder of migrated SQLite files, one per distinct plugin setup, so a
    test's fresh database is a file copy instead of a full migration run."""
    return tmp_path_factory.mktemp("mosaic-migrated")


def _setup_fingerprint(state) -> str:
    """What decides the migrated database's content: the enabled plugins,
    their migration files and the permissions granted by default."""
    import hashlib
    import json
    from pathlib import Path

    from host import migrate as migrations

    files = []
    for history in migrations.histories(state):
        for path in sorted(Path(history.versions_dir).glob("*.py")):
            files.append((history.name, path.name, hashlib.sha1(path.read_bytes()).hexdigest()))
    perms = sorted((p.name, tuple(p.default_roles)) for p in state.permissions.values())
    blob = json.dumps({"plugins": state.pm.plugin_names, "files": files, "perms": perms}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _migrate_fresh_sqlite(app, templates, database_file) -> None:
    """Migrate by copying a migrated file when one exists for this setup;
    otherwise migrate and keep a copy. Only for a database nothing has used."""
    import shutil
    import sqlite3

    from host import migrate as migrations

    state = app.extensions["mosaic"]
    template = templates / f"{_setup_fingerprint(state)}.db"
    if template.exists():
        state.db.dispose()
        shutil.copyfile(template, database_file)
        return
    migrations.upgrade(state)
    state.db.dispose()
    with sqlite3.connect(database_file) as conn:  # fold the WAL into the file before copying
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(database_file, template)


@pytest.fixture
def make_app(tmp_path, database_url, _migrated_sqlite_templates) -> Iterator[Callable[..., Any]]:
    from pathlib import Path

    from host import create_app
    from host import migrate as migrations

    apps = []
    instance = tmp_path / "instance"
    sqlite_file = Path(database_url.removeprefix("sqlite:///")) if database_url.startswith("sqlite:///") else None

    def factory(plugins: Sequence[str] | None = None, extra_plugins: Sequence[Any] = (), migrate: bool = True, **config: Any):
        settings = {
            "instance_path": str(instance),
            "database_url": database_url,
            "testing": True,
            "secret_key": "test-secret-key-not-for-production",
            **config,
        }
        if plugins is not None:
            settings["plugins"] = list(plugins)
        app = create_app(settings, extra_plugins=extra_plugins, environ={})
        fresh = not apps and sqlite_file is not None and not sqlite_file.exists()
        apps.append(app)
        if migrate and fresh and "database_url" not in config:
            _migrate_fresh_sqlite(app, _migrated_sqlite_templates, sqlite_file)
        elif migrate:
            migrations.upgrade(app.extensions["mosaic"])
        return app

    yield factory
    for app in apps:
        state = app.extensions["mosaic"]
        stop = getattr(state, "stop_background", None)
        if stop:
            stop()
        state.db.dispose()


@pytest.fixture
def app(request, make_app):
    marker = request.node.get_closest_marker("with_plugins")
    plugins = list(marker.args) if marker else None
    return make_app(plugins=plugins)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = os.environ.get("MOSAIC_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    try:
        import redis
    except ImportError:
        pytest.skip("needs the redis package: pip install 'mosaic-crm[redis]'")
    conn = redis.Redis.from_url(url)
    try:
        conn.ping()
    except Exception as exc:
        pytest.skip(f"needs Redis at {url} (set MOSAIC_TEST_REDIS_URL): {exc}")
    conn.flushdb()
    try:
        yield url
    finally:
        conn.flushdb()
        conn.close()


TEST_PASSWORD = "correct horse battery staple"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(app, email: str, *, roles: Sequence[str] = ("staff",), teams: Sequence[str] = (), password: str = TEST_PASSWORD, display_name: str = "") -> int:
    """Create an active user with ``roles`` in ``teams`` (created if missing); returns the id."""
    from host.security import roles as role_service
    from host.security.users import create_user

    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        user = create_user(session, email, password, roles=tuple(roles), display_name=display_name)
        for team in teams:
            try:
                role_service.get_team(session, team)
            except LookupError:
                role_service.create_team(session, team)
            role_service.add_to_team(session, email, team)
        return user.id


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of the form on ``path`` (tied to the client's session)."""
    html = client.get(path).get_data(as_text=True)
    found = _CSRF_FIELD.search(html)
    assert found, f"no CSRF token in the form at {path}"
    return found.group(1)


def login(client, email: str, password: str = TEST_PASSWORD):
    """Sign ``client`` in through the login form; returns the response."""
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def api_token(app, email: str, *, read_only: bool = False) -> str:
    from host.security.tokens import create_token
    from host.security.users import find_user

    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        _token, plain = create_token(session, find_user(session, email), name="test", read_only=read_only)
    return plain


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_for(app, email: str = "admin@example.com", roles: Sequence[str] = ("admin",)):
    """A test client of ``app`` signed in as a new user with ``roles``."""
    make_user(app, email, roles=roles)
    client = app.test_client()
    response = login(client, email)
    assert response.status_code == 303, f"login failed for {email}: {response.status_code}"
    return client


@pytest.fixture
def signed_in(app):
    """``signed_in(email, roles=("staff",), teams=())``: a new user's signed-in client."""

    def factory(email: str, roles: Sequence[str] = ("staff",), teams: Sequence[str] = ()):
        make_user(app, email, roles=roles, teams=teams)
        client = app.test_client()
        response = login(client, email)
        assert response.status_code == 303, f"login failed for {email}: {response.status_code}"
        return client

    return factory


@pytest.fixture
def admin_client(signed_in):
    return signed_in("admin@example.com", roles=("admin",))
