"""Security headers on every kind of response: pages, JSON, errors, static files.

A header set only on the happy path protects nothing: an attacker frames the
404 page or sniffs a static file as well as the dashboard. So each kind is
checked, and the CSP is read directive by directive.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from host.testing import api_token, bearer, login, make_user

from .test_security_gate import gate_app

SAFE_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"no CSP on {response.request.path} ({response.status_code})"
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name.lower()] = values
    return directives


def assert_security_headers(response, *, https: bool = False) -> None:
    where = f"{response.request.path} ({response.status_code})"
    csp = csp_directives(response)
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts, f"{where}: no script-src or default-src"
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, where
    assert "*" not in scripts and "data:" not in scripts, where
    assert csp["default-src"] == ["'self'"], where
    assert csp["object-src"] == ["'none'"], where
    assert csp["frame-ancestors"] == ["'none'"], where
    assert csp["base-uri"] in (["'self'"], ["'none'"]), where
    assert csp["form-action"] == ["'self'"], where
    assert response.headers["X-Content-Type-Options"] == "nosniff", where
    assert response.headers["Referrer-Policy"] in SAFE_REFERRER_POLICIES, where
    assert response.headers["X-Frame-Options"] == "DENY", where
    hsts = response.headers.get("Strict-Transport-Security")
    if https:
        assert hsts, f"{where}: no HSTS over HTTPS"
        max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
        assert max_age >= 180 * 24 * 3600, where
    else:
        assert hsts is None, f"{where}: HSTS over plain HTTP would lock out a site that has no certificate"


@pytest.fixture
def happ(make_app):
    app = gate_app(make_app)
    make_user(app, "admin@example.com", roles=("admin",))
    make_user(app, "nobody@example.com", roles=())
    return app


def test_html_pages(happ):
    anonymous = happ.test_client()
    admin = client_for_existing(happ, "admin@example.com")
    for response in (anonymous.get("/login"), admin.get("/"), admin.get("/sales/"), admin.get("/profile")):
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert_security_headers(response)


def test_json_responses(happ):
    token = api_token(happ, "admin@example.com")
    client = happ.test_client()
    for response in (
        client.get("/api/v1/sales/deals", headers=bearer(token)),
        client.post("/api/v1/gatetest/items", json={"title": "x"}, headers=bearer(token)),
        client.get("/health"),
        client.get("/api/v1/openapi.json"),
    ):
        assert response.status_code in (200, 201) and response.mimetype == "application/json"
        assert_security_headers(response)


def test_error_responses(happ):
    anonymous = happ.test_client()
    nobody = client_for_existing(happ, "nobody@example.com")
    token = api_token(happ, "nobody@example.com")
    admin_token = api_token(happ, "admin@example.com")
    cases = {
        404: [anonymous.get("/no/such/page"), anonymous.get("/api/v1/no/such"), nobody.get("/sales/999")],
        403: [nobody.get("/sales/"), anonymous.get("/api/v1/gatetest/items", headers=bearer(token))],
        401: [anonymous.get("/api/v1/sales/deals")],
        400: [anonymous.post("/login", data={"email": "x"})],
        405: [nobody.get("/logout")],
        415: [anonymous.post("/api/v1/gatetest/items", data="x", content_type="text/plain", headers=bearer(admin_token))],
        302: [anonymous.get("/")],
    }
    for status, responses in cases.items():
        for response in responses:
            assert response.status_code == status, (response.request.path, response.status_code)
            assert_security_headers(response)


def test_production_500_responses(make_app):
    app = gate_app(make_app, testing=False)
    for path in ("/gatetest/boom", "/api/v1/gatetest/boom"):
        response = app.test_client().get(path)
        assert response.status_code == 500
        assert_security_headers(response)


def test_static_files(happ):
    client = happ.test_client()
    response = client.get("/static/mosaic.css")
    assert response.status_code == 200 and response.mimetype == "text/css"
    assert_security_headers(response)
    missing = client.get("/static/nothing-here.js")
    assert missing.status_code == 404
    assert_security_headers(missing)


def test_hsts_only_when_served_over_https(make_app):
    app = make_app(plugins=[], base_url="https://crm.example.com")
    client = app.test_client()
    for response in (client.get("/login"), client.get("/static/mosaic.css"), client.get("/nope"), client.get("/health")):
        assert_security_headers(response, https=True)


def test_pages_with_data_are_not_cached_but_static_files_may_be(happ):
    admin = client_for_existing(happ, "admin@example.com")
    token = api_token(happ, "admin@example.com")
    assert "no-store" in admin.get("/sales/").headers["Cache-Control"]
    assert "no-store" in happ.test_client().get("/api/v1/sales/deals", headers=bearer(token)).headers["Cache-Control"]
    assert "no-store" not in (admin.get("/static/mosaic.css").headers.get("Cache-Control") or "")


def test_no_template_needs_inline_script_or_style(happ):
    """The CSP blocks inline scripts, event-handler attributes and inline
    styles: a template that used one would silently break in the browser."""
    offenders = []
    for path in template_files(happ):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style\b", r"javascript:"):
            for match in re.finditer(pattern, text, re.I):
                offenders.append(f"{path}: {match.group(0)!r}")
    assert offenders == []


def template_files(app) -> list[Path]:
    """Every template of ours the app can render: the host's and each
    blueprint's (flask-smorest's docs pages are never served: api-docs only
    answers openapi.json)."""
    folders = {Path(app.root_path) / app.template_folder}
    for blueprint in app.blueprints.values():
        if blueprint.template_folder and blueprint.import_name.split(".")[0] in ("host", "plugins"):
            folders.add(Path(blueprint.root_path) / blueprint.template_folder)
    files = sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.html"))
    assert any(p.name == "base.html" for p in files) and any("sales" in p.parts for p in files)
    return files


def client_for_existing(app, email: str):
    client = app.test_client()
    assert login(client, email).status_code == 303
    return client
