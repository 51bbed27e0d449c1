"""Route x role matrix over every registered route (default deny, proven).

With every plugin enabled, ``app.url_map`` is walked, so a route added later
is checked without anyone writing a test for it:

- every endpoint but static files declares a policy;
- signed out, every non-public route sends a page to ``/login`` and answers
  the API with 401, whatever the method;
- a signed-in user whose roles hold no permission gets 403 from every route
  that requires one, whatever the method (the gate refuses before the view
  runs, so even POST routes are safe to call);
- holding exactly the route's permission (and, separately, as admin) every
  GET route answers 2xx, or 404 for a record id that does not exist.

And in each of the 16 plugin subsets, the disabled plugins' routes answer 404.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from werkzeug.routing import IntegerConverter, Rule

from host.security import roles as role_service
from host.security.access import AUTHENTICATED, PUBLIC, policy_of
from host.testing import api_token, bearer, csrf_token, login, make_user

from .conftest import BUILTIN_PLUGINS, PLUGIN_SUBSETS

MISSING_ID = 987654321
MISSING_TEXT = "no-such-thing"
HOLDER = "holder@example.com"
HOLDER_ROLE = "matrix-holder"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

#: GET routes that, for a user allowed to call them, answer with a redirect
#: rather than a page, and where to. Each entry is a decision, not a leak.
REDIRECT_WHEN_NOTHING_TO_SHOW = {
    # the two-factor set-up page only exists while an enrolment is pending
    "profile.two_factor": "/profile",
}


@dataclass(frozen=True)
class Route:
    rule: Rule
    policy: str | None

    @property
    def endpoint(self) -> str:
        return self.rule.endpoint

    @property
    def is_api(self) -> bool:
        return self.rule.rule.startswith("/api/")

    @property
    def methods(self) -> set[str]:
        return set(self.rule.methods or ()) - {"HEAD", "OPTIONS"}

    @property
    def path(self) -> str:
        """The rule with every argument filled by a value that names nothing."""
        values = {}
        for name in self.rule.arguments:
            converter = self.rule._converters.get(name)
            values[name] = MISSING_ID if isinstance(converter, IntegerConverter) else MISSING_TEXT
        return self.rule.build(values, append_unknown=False)[1]

    def __repr__(self) -> str:
        return f"{self.endpoint} {sorted(self.methods)} {self.rule.rule}"


def is_static(app, endpoint: str) -> bool:
    """Flask's static-file views (the app's, a blueprint's with a static
    folder); the gate lets only these through without a policy."""
    if endpoint == "static":
        return True
    blueprint, _, name = endpoint.rpartition(".")
    return name == "static" and blueprint in app.blueprints and app.blueprints[blueprint].has_static_folder


def routes(app) -> list[Route]:
    found = [
        Route(rule, policy_of(app.view_functions[rule.endpoint]))
        for rule in app.url_map.iter_rules()
        if not is_static(app, rule.endpoint)
    ]
    assert len(found) > 10, "the walk sees the app's routes"
    return found


def guarded(app) -> list[Route]:
    return [r for r in routes(app) if r.policy not in (PUBLIC, None)]


def by_permission(app) -> list[Route]:
    return [r for r in guarded(app) if r.policy != AUTHENTICATED]


# --- the app and its users ----------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """One app with every plugin, shared by the module's tests: the matrix
    only reads (the gate refuses writes before any view runs)."""
    from host import create_app
    from host import migrate as migrations

    folder = tmp_path_factory.mktemp("matrix")
    with _module_database(folder) as url:
        app = create_app(
            {"instance_path": str(folder / "instance"), "database_url": url, "testing": True,
             "secret_key": "test-secret-key-not-for-production"},
            environ={},
        )
        migrations.upgrade(app.extensions["mosaic"])
        make_user(app, "admin@example.com", roles=("admin",))
        make_user(app, HOLDER, roles=())
        with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
            role_service.create_role(session, HOLDER_ROLE, "holds one permission at a time")
            role_service.assign_role(session, HOLDER, HOLDER_ROLE)
        yield app
        app.extensions["mosaic"].db.dispose()


@contextlib.contextmanager
def _module_database(folder):
    """SQLite in the folder, or a schema of its own on PostgreSQL, dropped
    afterwards (module scope cannot use the per-test ``database_url``)."""
    base = os.environ.get("MOSAIC_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{folder / 'matrix.db'}"
        return
    schema = f"t_matrix_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def set_holder_permissions(app, *permissions: str) -> None:
    """Make the holder role hold exactly ``permissions``; access is resolved
    on every request, so signed-in clients and tokens see it at once."""
    from sqlalchemy import delete

    from host.security.models import RolePermission

    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        role = role_service.get_role(session, HOLDER_ROLE)
        session.execute(delete(RolePermission).where(RolePermission.role_id == role.id))
        for permission in permissions:
            role_service.grant(session, HOLDER_ROLE, permission, declared=state.permissions)


@pytest.fixture(scope="module")
def holder(matrix):
    """The holder signed in (UI client, CSRF token) and with a token (API)."""
    client = matrix.test_client()
    assert login(client, HOLDER).status_code == 303
    return client, csrf_token(client, "/profile"), api_token(matrix, HOLDER)


@pytest.fixture(scope="module")
def admin(matrix):
    client = matrix.test_client()
    assert login(client, "admin@example.com").status_code == 303
    return client, api_token(matrix, "admin@example.com")


def call(client, route: Route, method: str, *, token: str | None = None, csrf: str | None = None):
    """One request as a browser or an API client would send it."""
    headers = bearer(token) if token and route.is_api else {}
    kwargs = {"headers": headers}
    if method in WRITE_METHODS:
        kwargs.update({"json": {}} if route.is_api else {"data": {"csrf_token": csrf or ""}})
    return client.open(route.path, method=method, **kwargs)


# --- declared policies -----------------------------------------------------------------------


def test_every_route_declares_a_policy(matrix):
    undeclared = [r for r in routes(matrix) if r.policy is None]
    assert undeclared == []
    declared = {r.policy for r in routes(matrix)} - {PUBLIC, AUTHENTICATED}
    assert declared <= set(matrix.extensions["mosaic"].permissions), "a route requires a permission nobody declares"


def test_every_builtin_plugin_has_guarded_routes_in_the_matrix(matrix):
    owners = {owner_of(r.endpoint) for r in by_permission(matrix)}
    assert set(BUILTIN_PLUGINS) <= owners


# --- signed out -----------------------------------------------------------------------------


def test_signed_out_every_guarded_route_asks_for_sign_in(matrix):
    client = matrix.test_client()
    token = csrf_token(client, "/login")  # a valid form, so CSRF is not what stops it
    wrong = []
    for route in guarded(matrix):
        for method in sorted(route.methods):
            response = call(client, route, method, csrf=token)
            if not asks_for_sign_in(route, response):
                wrong.append(f"{route!r} {method}: {response.status_code} {response.headers.get('Location')}")
    assert wrong == []


def asks_for_sign_in(route: Route, response) -> bool:
    if route.is_api:
        return response.status_code == 401 and response.get_json()["code"] == 401
    return response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- signed in without the permission --------------------------------------------------------


def test_without_the_permission_every_route_answers_403(matrix, holder):
    client, csrf, token = holder
    set_holder_permissions(matrix)
    wrong = []
    for route in by_permission(matrix):
        for method in sorted(route.methods):
            response = call(client, route, method, token=token, csrf=csrf)
            if response.status_code != 403:
                wrong.append(f"{route!r} {method}: {response.status_code}")
    assert wrong == []


def test_a_user_without_roles_still_reaches_their_own_pages(matrix, holder):
    """``@login_required`` routes (the profile) need no permission."""
    client, _csrf, token = holder
    set_holder_permissions(matrix)
    own_pages = [r for r in guarded(matrix) if r.policy == AUTHENTICATED and "GET" in r.methods]
    assert own_pages, "the profile pages are in the walk"
    wrong = [f"{r!r}: {answer}" for r in own_pages if (answer := get_answer(client, r, token)) is not None]
    assert wrong == []


def test_another_permission_does_not_open_a_route(matrix, holder):
    """Holding every permission but the route's own is still 403."""
    client, _csrf, token = holder
    everything = set(matrix.extensions["mosaic"].permissions)
    wrong = []
    for route in [r for r in by_permission(matrix) if "GET" in r.methods]:
        set_holder_permissions(matrix, *(everything - {route.policy}))
        response = call(client, route, "GET", token=token)
        if response.status_code != 403:
            wrong.append(f"{route!r}: {response.status_code}")
    assert wrong == []


# --- with the permission ------------------------------------------------------------------


def get_answer(client, route: Route, token: str | None = None) -> str | None:
    """None when a GET answers as an allowed user should, else what it did."""
    response = call(client, route, "GET", token=token)
    status = response.status_code
    if route.rule.arguments:
        ok = status == 404 or 200 <= status < 300
    elif route.endpoint in REDIRECT_WHEN_NOTHING_TO_SHOW:
        ok = status in (302, 303) and response.headers["Location"] == REDIRECT_WHEN_NOTHING_TO_SHOW[route.endpoint]
    else:
        ok = 200 <= status < 300
    return None if ok else f"{status} {response.headers.get('Location', '')}".strip()


def test_holding_exactly_the_permission_opens_every_get_route(matrix, holder):
    client, _csrf, token = holder
    wrong = []
    for route in [r for r in by_permission(matrix) if "GET" in r.methods]:
        set_holder_permissions(matrix, route.policy)
        answer = get_answer(client, route, token)
        if answer is not None:
            wrong.append(f"{route!r}: {answer}")
    assert wrong == []


def test_admin_opens_every_get_route(matrix, admin):
    client, token = admin
    wrong = [
        f"{r!r}: {answer}"
        for r in guarded(matrix)
        if "GET" in r.methods and (answer := get_answer(client, r, token)) is not None
    ]
    assert wrong == []


# --- plugin subsets -------------------------------------------------------------------------


def owner_of(endpoint: str) -> str:
    """The plugin a route belongs to, by its blueprint's name (``sales``,
    ``sales_quotes``, ``api_sales``, ``api_sales_x``), or ``host``."""
    blueprint = endpoint.split(".")[0].removeprefix("api_")
    for plugin in BUILTIN_PLUGINS:
        if blueprint == plugin or blueprint.startswith(f"{plugin}_"):
            return plugin
    return "host"


def plugin_routes(app, plugin: str) -> list[Route]:
    all_rules = [Route(rule, policy_of(app.view_functions[rule.endpoint])) for rule in app.url_map.iter_rules()]
    return [r for r in all_rules if owner_of(r.endpoint) == plugin]


@pytest.mark.parametrize("enabled", PLUGIN_SUBSETS, ids=lambda s: "+".join(s) or "host-only")
def test_disabled_plugins_routes_answer_404(make_app, matrix, enabled):
    """Signed out, an existing guarded route asks for sign-in (302/401); a
    route of a disabled plugin does not exist at all (404), static files
    included. Without a database: nothing here needs one."""
    app = make_app(plugins=list(enabled), migrate=False)
    client = app.test_client()
    wrong = []
    for plugin in BUILTIN_PLUGINS:
        for route in plugin_routes(matrix, plugin):
            method = "GET" if "GET" in route.methods else sorted(route.methods)[0]
            response = call(client, route, method)
            if plugin in enabled:
                expected_ok = route.policy == PUBLIC or is_static(matrix, route.endpoint) or route.rule.arguments \
                    or asks_for_sign_in(route, response)
            else:
                expected_ok = response.status_code == 404
            if not expected_ok:
                wrong.append(f"{plugin} {'on' if plugin in enabled else 'off'}: {route!r} {method} {response.status_code}")
    assert wrong == []
