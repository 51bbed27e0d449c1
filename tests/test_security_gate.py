"""The per-request gate (``host.security.setup``) as a client meets it.

The REST API: bearer tokens only (a signed-in browser's cookie opens nothing
there), one 401 shape, read-only tokens refused on writes, a request limit per
token, JSON bodies only (415 before flask-smorest would answer a misleading
422), a body size limit. Pages: nothing changes state on GET. Production:
an exception gives a generic page, never the traceback. And no password or
token ever reaches the logs.

A small test plugin ``gatetest`` provides endpoints the built-in plugins do
not have yet (a POST API endpoint, an upload, views that raise).
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets

import pytest
from flask import Blueprint, current_app, request
from flask_smorest import Blueprint as ApiBlueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from hooks import Permission, hookimpl
from host.security.access import accepts, public, require
from host.testing import api_token, bearer, client_for, csrf_token, login, make_user, plugin_candidate

GATE = "gatetest"
ITEMS = "/api/v1/gatetest/items"
UPLOADS = "/api/v1/gatetest/uploads"
DEALS = "/api/v1/sales/deals"
#: Text only the exception knows: it must reach the log, never the client.
SECRET_DETAIL = "db-password-is-hunter2-do-not-show"
UNAUTHORIZED_MESSAGE_KEYS = {"code", "status", "message"}


class ItemSchema(Schema):
    title = fields.String(required=True)


def _calls() -> list:
    """What the gatetest views did, so a test can tell a refused request
    (the view never ran) from a failed one."""
    return current_app.extensions.setdefault("gatetest_calls", [])


def _api_blueprint() -> ApiBlueprint:
    bp = ApiBlueprint("api_gatetest", __name__, description="Endpoints for the gate tests.")

    @bp.get("/items")
    @require("gatetest.item.read")
    @bp.response(200, ItemSchema(many=True))
    def list_items():
        return [c for c in _calls() if "title" in c]

    @bp.post("/items")
    @require("gatetest.item.create")
    @bp.arguments(ItemSchema)
    @bp.response(201, ItemSchema)
    def create_item(data):
        _calls().append(data)
        return data

    @bp.post("/uploads")
    @require("gatetest.item.create")
    @accepts("multipart/form-data")
    def upload():
        sent = request.files["file"]
        _calls().append({"upload": sent.filename})
        return {"name": sent.filename, "size": len(sent.read())}, 201

    @bp.get("/boom")
    @public
    def api_boom():
        raise RuntimeError(SECRET_DETAIL)

    return bp


def _ui_blueprint() -> Blueprint:
    bp = Blueprint(GATE, __name__)

    @bp.get("/boom")
    @public
    def boom():
        raise RuntimeError(SECRET_DETAIL)

    @bp.get("/links/<token>")
    @public
    def link(token):
        raise RuntimeError("the link's page failed")

    @bp.get("/files")
    def static():  # named like Flask's static view, but declares no policy
        return "customer list"

    return bp


class GateHooks:
    @hookimpl
    def mosaic_permissions(self):
        return [
            Permission("gatetest.item.read", "See items", ("admin", "manager", "staff")),
            Permission("gatetest.item.create", "Create items", ("admin", "manager")),
        ]

    @hookimpl
    def mosaic_blueprints(self):
        return [_ui_blueprint()]

    @hookimpl
    def mosaic_api_blueprints(self):
        return [_api_blueprint()]


def gate_app(make_app, **config):
    """The sales plugin plus ``gatetest``; ``config`` as for ``make_app``."""
    return make_app(plugins=["sales", GATE], extra_plugins=[plugin_candidate(GATE, GateHooks())], **config)


@pytest.fixture
def gapp(make_app):
    return gate_app(make_app)


@pytest.fixture
def admin_token(gapp):
    make_user(gapp, "admin@example.com", roles=("admin",))
    return api_token(gapp, "admin@example.com")


# --- authentication: tokens only --------------------------------------------------


def assert_unauthorized(response) -> None:
    assert response.status_code == 401
    assert "Location" not in response.headers, "the API never redirects to the login page"
    body = response.get_json()
    assert set(body) == UNAUTHORIZED_MESSAGE_KEYS
    assert body["code"] == 401 and body["status"] == "Unauthorized"
    assert "token" in body["message"].lower()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_ignores_a_signed_in_session_cookie(gapp):
    """The API needs no CSRF token only because it never trusts cookies: a
    browser that is signed in to the UI opens nothing under /api/."""
    client = client_for(gapp)
    assert client.get("/sales/").status_code == 200  # the cookie works for pages
    assert_unauthorized(client.get(DEALS))
    assert_unauthorized(client.post(ITEMS, json={"title": "forged"}))
    assert _calls_of(gapp) == []


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer mos_not-a-real-token", "Basic YWRtaW46cGFzc3dvcmQ=", "mos_missing-scheme"],
    ids=["none", "empty-bearer", "unknown-token", "basic-auth", "no-scheme"],
)
def test_api_without_a_valid_token_answers_401_json(gapp, header):
    headers = {"Authorization": header} if header else {}
    assert_unauthorized(gapp.test_client().get(DEALS, headers=headers))


def test_revoked_and_deactivated_users_tokens_answer_401(gapp, admin_token):
    from host.security.models import ApiToken
    from host.security.tokens import hash_token, revoke_token
    from host.security.users import deactivate_user, find_user

    client = gapp.test_client()
    make_user(gapp, "leaver@example.com", roles=("staff",))
    leaver = api_token(gapp, "leaver@example.com")
    assert client.get(DEALS, headers=bearer(admin_token)).status_code == 200
    assert client.get(DEALS, headers=bearer(leaver)).status_code == 200

    state = gapp.extensions["mosaic"]
    with gapp.app_context(), state.db.transaction() as session:
        revoke_token(session, session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(admin_token))))
        deactivate_user(session, find_user(session, "leaver@example.com"), None)
    assert_unauthorized(client.get(DEALS, headers=bearer(admin_token)))
    assert_unauthorized(client.get(DEALS, headers=bearer(leaver)))


def test_an_expired_token_answers_401_and_the_lookup_is_one_statement(gapp, admin_token):
    import datetime as dt

    from sqlalchemy import event

    from host.security.models import ApiToken
    from host.security.tokens import find_token, hash_token

    state = gapp.extensions["mosaic"]
    statements = []
    with gapp.app_context(), state.db.Session() as session:
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(state.db.engine, "before_cursor_execute", listen)
        try:
            assert find_token(session, admin_token) is not None
        finally:
            event.remove(state.db.engine, "before_cursor_execute", listen)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements

    with gapp.app_context(), state.db.transaction() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(admin_token)))
        token.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    assert_unauthorized(gapp.test_client().get(DEALS, headers=bearer(admin_token)))


def test_an_api_request_reads_its_principal_in_one_statement(gapp):
    """After the token lookup, the token user's roles, permissions, scopes
    and teams come in one statement, without loading the user; the
    principal is the one ``load_principal`` resolves from the loaded user."""
    from sqlalchemy import event

    from host.db import session as db_session
    from host.security.access import load_principal
    from host.security.models import User
    from host.security.tokens import principal_for_request

    make_user(gapp, "two-roles@example.com", roles=("staff", "admin"), teams=("east", "west"))
    token = api_token(gapp, "two-roles@example.com")
    state = gapp.extensions["mosaic"]
    statements: list[str] = []
    listen = lambda *args: statements.append(" ".join(args[2].split()))  # noqa: E731
    with gapp.test_request_context("/api/v1/contacts", headers=bearer(token)):
        event.listen(state.db.engine, "before_cursor_execute", listen)
        try:
            principal = principal_for_request()
        finally:
            event.remove(state.db.engine, "before_cursor_execute", listen)
        session = db_session()
        user = session.scalar(select(User).where(User.email == "two-roles@example.com"))
        assert principal == load_principal(session, user)
    assert principal.email == "two-roles@example.com" and len(principal.team_ids) == 2 and principal.permissions
    assert len([s for s in statements if "user_role" in s]) == 1, statements
    assert not [s for s in statements if s.startswith("SELECT") and "FROM user_account" in s], statements


def test_a_bearer_token_needs_no_csrf_token(gapp, admin_token):
    response = gapp.test_client().post(ITEMS, json={"title": "via API"}, headers=bearer(admin_token))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json() == {"title": "via API"}
    assert "Set-Cookie" not in response.headers, "the API hands out no session"


# --- authorisation -------------------------------------------------------------------


def _calls_of(app) -> list:
    return app.extensions.get("gatetest_calls", [])


def test_read_only_token_reads_but_cannot_write(gapp):
    make_user(gapp, "reader@example.com", roles=("admin",))
    token = api_token(gapp, "reader@example.com", read_only=True)
    client = gapp.test_client()

    assert client.get(ITEMS, headers=bearer(token)).status_code == 200
    response = client.post(ITEMS, json={"title": "sneaky"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["message"] == "This API token is read-only."
    files = {"file": (io.BytesIO(b"x"), "a.txt")}
    assert client.post(UPLOADS, data=files, headers=bearer(token)).status_code == 403
    assert _calls_of(gapp) == [], "a refused write never reaches the view"


def test_token_of_a_user_without_the_permission_gets_403(gapp):
    """staff may read items but not create them (gatetest's declared defaults)."""
    make_user(gapp, "staff@example.com", roles=("staff",))
    token = api_token(gapp, "staff@example.com")
    client = gapp.test_client()
    assert client.get(ITEMS, headers=bearer(token)).status_code == 200
    response = client.post(ITEMS, json={"title": "no"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["code"] == 403
    assert _calls_of(gapp) == []


def test_each_token_has_its_own_request_limit(gapp):
    make_user(gapp, "busy@example.com", roles=("admin",))
    first, second = api_token(gapp, "busy@example.com"), api_token(gapp, "busy@example.com")
    gapp.config["MOSAIC_TOKEN_RATE_LIMIT"] = 3
    client = gapp.test_client()

    assert [client.get(DEALS, headers=bearer(first)).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get(DEALS, headers=bearer(first))
    assert limited.status_code == 429
    assert limited.get_json() == {
        "code": 429,
        "status": "Too Many Requests",
        "message": "Rate limit of 3 requests per 60 s exceeded.",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-Content-Type-Options"] == "nosniff", "a refusal still gets the headers"
    assert client.get(DEALS, headers=bearer(second)).status_code == 200, "another token is not slowed"


# --- request bodies: JSON only, within size -----------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("title=form", "application/x-www-form-urlencoded"),
        ('{"title": "json as text"}', "text/plain"),
        ("<item><title>x</title></item>", "application/xml"),
        ('{"title": "no type"}', None),
    ],
    ids=["form", "text", "xml", "no-content-type"],
)
def test_api_refuses_other_body_types_with_415(gapp, admin_token, body, content_type):
    """Without the gate flask-smorest would read these as "no JSON" and
    answer 422 "title: missing", which sends the client looking in the wrong place."""
    headers = bearer(admin_token)
    if content_type:
        headers["Content-Type"] = content_type
    response = gapp.test_client().post(ITEMS, data=body, headers=headers)
    assert response.status_code == 415
    payload = response.get_json()
    assert payload["code"] == 415 and payload["status"] == "Unsupported Media Type"
    assert "application/json" in payload["message"]
    assert _calls_of(gapp) == []


def test_json_with_a_charset_is_accepted(gapp, admin_token):
    headers = {**bearer(admin_token), "Content-Type": "application/json; charset=utf-8"}
    response = gapp.test_client().post(ITEMS, data='{"title": "ünïcode"}'.encode(), headers=headers)
    assert response.status_code == 201
    assert response.get_json() == {"title": "ünïcode"}


@pytest.mark.parametrize(
    ("body", "where"),
    [('{"title": "unfinished"', "line 1, column 23"), ("", "line 1, column 1"), ('{"title": }', "line 1, column 11")],
    ids=["truncated", "empty", "bad-value"],
)
def test_a_body_that_is_not_json_answers_400_naming_the_problem(gapp, admin_token, body, where):
    headers = {**bearer(admin_token), "Content-Type": "application/json"}
    response = gapp.test_client().post(ITEMS, data=body, headers=headers)
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["code"] == 400 and payload["status"] == "Bad Request"
    assert payload["message"].startswith("The body is not valid JSON:")
    assert where in payload["message"]


def test_a_body_that_is_not_utf8_answers_400(gapp, admin_token):
    headers = {**bearer(admin_token), "Content-Type": "application/json"}
    response = gapp.test_client().post(ITEMS, data=b'{"title": "\xff\xfe\xfa"}', headers=headers)
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["message"]


def test_valid_json_still_meets_the_schema(gapp, admin_token):
    """The gate only checks the envelope: field validation stays flask-smorest's 422."""
    response = gapp.test_client().post(ITEMS, json={"name": "wrong field"}, headers=bearer(admin_token))
    assert response.status_code == 422
    assert "title" in json.dumps(response.get_json()["errors"])


def test_authentication_is_checked_before_the_body(gapp):
    """An anonymous client learns nothing about an endpoint's body rules."""
    response = gapp.test_client().post(ITEMS, data="title=x", content_type="application/x-www-form-urlencoded")
    assert_unauthorized(response)


def test_a_view_may_accept_multipart_uploads_instead(gapp, admin_token):
    client = gapp.test_client()
    files = {"file": (io.BytesIO(b"hello"), "hello.txt")}
    response = client.post(UPLOADS, data=files, headers=bearer(admin_token))
    assert response.status_code == 201
    assert response.get_json() == {"name": "hello.txt", "size": 5}
    as_json = client.post(UPLOADS, json={"file": "hello"}, headers=bearer(admin_token))
    assert as_json.status_code == 415, "@accepts replaces the default JSON"
    assert "multipart/form-data" in as_json.get_json()["message"]


def test_a_body_over_max_content_length_answers_413(make_app):
    app = gate_app(make_app, max_content_length=2048)
    make_user(app, "admin@example.com", roles=("admin",))
    token = api_token(app, "admin@example.com")
    client = app.test_client()

    big = client.post(ITEMS, json={"title": "x" * 4096}, headers=bearer(token))
    assert big.status_code == 413
    assert big.get_json()["code"] == 413
    assert _calls_of(app) == []
    assert client.post(ITEMS, json={"title": "small"}, headers=bearer(token)).status_code == 201

    page = client.post("/login", data={"email": "a@example.com", "password": "x" * 4096, "csrf_token": csrf_token(client)})
    assert page.status_code == 413
    assert page.mimetype == "text/html"


# --- nothing changes state on GET ---------------------------------------------------------

#: Words in an endpoint name that say the view changes something.
STATE_CHANGING_WORDS = (
    "create", "update", "delete", "save", "change", "revoke", "disable", "enrol", "grant",
    "assign", "remove", "erase", "deactivate", "logout", "import", "merge", "send",
)


def state_changing_endpoints(app) -> list:
    return [
        rule for rule in app.url_map.iter_rules()
        if any(word in rule.endpoint.rsplit(".", 1)[-1] for word in STATE_CHANGING_WORDS)
    ]


def test_no_state_changing_endpoint_accepts_get(gapp):
    rules = state_changing_endpoints(gapp)
    endpoints = {rule.endpoint for rule in rules}
    assert {"auth.logout", "api_gatetest.create_item"} <= endpoints, "the walk sees the routes it must"
    offenders = [f"{rule.endpoint} ({rule.rule})" for rule in rules if "GET" in (rule.methods or ())]
    assert offenders == []


def test_logout_is_post_only(gapp):
    client = client_for(gapp)
    response = client.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert client.get("/").status_code == 200, "a GET (an <img src=/logout>) signs nobody out"


# --- production errors --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/gatetest/boom", "/api/v1/gatetest/boom"], ids=["page", "api"])
def test_production_error_is_generic_and_logged(make_app, caplog, path):
    app = gate_app(make_app, testing=False, debug=False)
    assert not app.testing and not app.debug
    response = app.test_client().get(path)
    text = response.get_data(as_text=True)

    assert response.status_code == 500
    for leak in (SECRET_DETAIL, "Traceback", "RuntimeError", "boom", ".py"):
        assert leak not in text, f"{leak!r} reached the client"
    if path.startswith("/api/"):
        payload = response.get_json()
        assert payload["code"] == 500 and payload["status"] == "Internal Server Error"
    else:
        assert response.mimetype == "text/html" and "Internal Server Error" in text
    assert response.headers["Content-Security-Policy"], "error pages get the headers too"

    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert any(SECRET_DETAIL in str(r.exc_info[1]) for r in logged), "the operator sees what went wrong"


def test_an_error_log_masks_a_token_in_the_path(make_app, caplog):
    """A password-reset link carries its token in the path; a failure on
    that page must not copy the token into the log."""
    app = gate_app(make_app, testing=False)
    token = secrets.token_urlsafe(32)
    assert app.test_client().get(f"/gatetest/links/{token}").status_code == 500
    messages = [r.getMessage() for r in caplog.records if r.name == "mosaic.http"]
    assert messages == ["unhandled error on GET /gatetest/links/[redacted]"]
    assert token not in everything_logged(caplog.records)


def test_a_view_named_static_gets_no_free_pass(gapp):
    """Only Flask's own static-file views are public without a policy; a
    plugin view that happens to be called ``static`` is default-denied."""
    assert gapp.test_client().get("/gatetest/files").status_code == 403
    assert client_for(gapp).get("/gatetest/files").status_code == 403
    assert gapp.test_client().get("/static/mosaic.css").status_code == 200


# --- no secret in the logs ----------------------------------------------------------------

_TOKEN_IN_PAGE = re.compile(r"mos_[A-Za-z0-9_\-]{20,}")


def everything_logged(records) -> str:
    """Every bit of every record: message, raw arguments, exception text."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts += [record.getMessage(), repr(record.args), repr(record.__dict__)]
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def test_passwords_and_tokens_never_reach_the_logs(gapp, caplog):
    """Sign-in failure and success, token creation and use, a password
    change: with every logger at DEBUG (SQLAlchemy then logs statements and
    their parameters), no plain password or token appears anywhere, in the
    logs or in the security log."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # it sets itself to WARNING on import
    password, wrong, new = (f"{tag}-{secrets.token_hex(10)}" for tag in ("pw", "wrong", "new"))
    email = "careful@example.com"
    make_user(gapp, email, roles=("admin",), password=password)
    client = gapp.test_client()

    assert login(client, email, wrong).status_code == 200
    assert login(client, email, password).status_code == 303
    created = client.post("/profile/tokens", data={"name": "erp", "csrf_token": csrf_token(client, "/profile")})
    assert created.status_code == 201
    token = _TOKEN_IN_PAGE.search(created.get_data(as_text=True)).group(0)
    assert client.get(DEALS, headers=bearer(token)).status_code == 200
    assert client.post(ITEMS, json={"title": "t"}, headers=bearer(token)).status_code == 201
    changed = client.post("/profile/password", data={
        "current_password": password, "new_password": new, "new_password_confirm": new,
        "csrf_token": csrf_token(client, "/profile"),
    })
    assert changed.status_code == 303
    assert login(gapp.test_client(), email, new).status_code == 303

    logged = everything_logged(caplog.records)
    assert len(caplog.records) > 20, "the capture really saw the requests (SQL at DEBUG)"
    assert "careful@example.com" in logged, "the capture would see request data"
    for secret in (password, wrong, new, token):
        assert secret not in logged
    assert all(secret not in security_log_text(gapp) for secret in (password, wrong, new, token))


def security_log_text(app) -> str:
    from host.security.models import SecurityEvent

    with app.app_context(), app.extensions["mosaic"].db.Session() as session:
        rows = session.scalars(select(SecurityEvent)).all()
        return json.dumps([[row.kind, row.detail] for row in rows], default=str)
