"""Settings for running behind a reverse proxy and on a public address:
``trusted_hosts``, ``proxies``, and SQL parameters kept out of errors.

Each is a way for a deployment to leak or be fooled: a forged Host header
(links built from it), a forged X-Forwarded-For (a client choosing the address
its failed logins count against), or an error message carrying the personal
data or password hash of the statement that failed.
"""

from __future__ import annotations

import logging
import re

import pytest
from flask import Blueprint, current_app
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from host.config import load_config
from host.errors import ConfigError
from host.security.models import SecurityEvent
from hooks import hookimpl
from host.security.access import public
from host.testing import make_user, plugin_candidate

from .test_security_gate import everything_logged

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_trusted_hosts_and_proxies_read_from_the_environment(tmp_path):
    env = {"MOSAIC_INSTANCE": str(tmp_path), "MOSAIC_TRUSTED_HOSTS": "crm.example.com, .example.org ,crm:8080",
           "MOSAIC_PROXIES": "1"}
    cfg = load_config(environ=env)
    assert cfg.trusted_hosts == ["crm.example.com", ".example.org", "crm:8080"]
    assert cfg.proxies == 1
    defaults = load_config(environ={"MOSAIC_INSTANCE": str(tmp_path)})
    assert (defaults.trusted_hosts, defaults.proxies) == (None, 0), "a client's forwarded headers are not believed by default"


@pytest.mark.parametrize("env, expected", [
    ({"MOSAIC_TRUSTED_HOSTS": "crm.example.com, evil/path"}, "MOSAIC_TRUSTED_HOSTS: Not a host name: 'evil/path'."),
    ({"MOSAIC_PROXIES": "9"}, "MOSAIC_PROXIES: Must be greater than or equal to 0 and less than or equal to 5."),
])
def test_bad_deployment_settings_name_the_variable(tmp_path, env, expected):
    with pytest.raises(ConfigError) as info:
        load_config(environ={"MOSAIC_INSTANCE": str(tmp_path), **env})
    assert str(info.value) == expected


def test_a_host_outside_trusted_hosts_is_refused(make_app):
    app = make_app(plugins=[], trusted_hosts=["crm.example.com", ".example.org"])
    client = app.test_client()
    assert client.get("/health", headers={"Host": "crm.example.com"}).status_code == 200
    assert client.get("/health", headers={"Host": "eu.example.org"}).status_code == 200
    forged = client.post("/password-reset", headers={"Host": "attacker.example"},
                         data={"email": "someone@example.com"})
    assert forged.status_code == 400
    assert client.get("/login", headers={"Host": "attacker.example"}).status_code == 400


def test_forwarded_headers_count_only_with_proxies(make_app):
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}

    direct = make_app(plugins=[]).test_client()
    response = direct.get("/login", headers=forwarded)
    assert "Strict-Transport-Security" not in response.headers, "a client's X-Forwarded-Proto is not believed"


def test_behind_one_proxy_the_client_address_and_https_come_from_it(make_app):
    app = make_app(plugins=[], proxies=1)
    make_user(app, "rep@example.com")
    client = app.test_client()
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Forwarded-Proto": "https"}

    page = client.get("/login", headers=headers, base_url="http://crm.example.com")
    assert "Strict-Transport-Security" in page.headers

    # (Over https from here: the session cookie is Secure now.)
    form = client.get("/login", headers=headers, base_url="https://crm.example.com")
    token = CSRF_FIELD.search(form.get_data(as_text=True)).group(1)
    failed = client.post("/login", headers={**headers, "Referer": "https://crm.example.com/login"},
                         base_url="https://crm.example.com",
                         data={"email": "rep@example.com", "password": "not the password at all", "csrf_token": token})
    assert failed.status_code == 200, failed.get_data(as_text=True)[:300]
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        ips = session.scalars(select(SecurityEvent.ip).where(SecurityEvent.kind == "login.failure")).all()
    # One proxy: its own X-Forwarded-For entry (the last) is the client; the
    # first was written by the client and could say anything.
    assert ips == ["203.0.113.9"]


SECRET = "argon2-hash-that-must-not-reach-a-log"


def _insert_duplicate_user(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO user_account (email, password_hash) VALUES (:email, :hash)"),
                     {"email": "rep@example.com", "hash": SECRET})


def test_sql_errors_do_not_carry_the_statement_parameters(make_app):
    app = make_app(plugins=[])
    make_user(app, "rep@example.com")
    with pytest.raises(IntegrityError) as info:
        _insert_duplicate_user(app.extensions["mosaic"].db.engine)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(info.value)
    if app.extensions["mosaic"].db.is_sqlite:
        assert SECRET not in str(info.value)
    # PostgreSQL's own message repeats the failing row (its DETAIL): the
    # log of an unexpected error leaves it out, below.


class _FailingWrite:
    @hookimpl
    def mosaic_blueprints(self):
        bp = Blueprint("failwrite", __name__)

        @bp.get("/boom")
        @public
        def fail():
            _insert_duplicate_user(current_app.extensions["mosaic"].db.engine)
            return "written"

        return [bp]


def test_a_failed_statement_is_logged_without_its_values(make_app, caplog):
    app = make_app(plugins=["failwrite"], testing=False, extra_plugins=[plugin_candidate("failwrite", _FailingWrite())])
    make_user(app, "rep@example.com")
    caplog.set_level(logging.DEBUG)

    response = app.test_client().get("/failwrite/boom")

    assert response.status_code == 500
    logged = everything_logged(caplog.records)
    assert "unhandled database error on GET /failwrite/boom: IntegrityError" in logged
    assert "INSERT INTO user_account" in logged, "what failed is still logged"
    assert SECRET not in logged and "rep@example.com" not in logged
