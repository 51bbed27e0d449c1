"""Signing in and out through the real form (``/login``, ``/logout``).

What a browser, an attacker and an operator each rely on: one message for
every failed sign-in, a ``next`` that can only lead back into this site, a
fresh session at sign-in, sessions that end at logout, deactivation, password
change and after idle or absolute timeouts, cookie flags, CSRF on both forms,
and sign-in limits that hold across processes (database or Redis) while the
real user can still get in from elsewhere.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from host.security import views_auth
from host.security.views_auth import ADDRESS_LIMIT, LOGIN_WINDOW_S, PAIR_LIMIT
from host.testing import TEST_PASSWORD, csrf_token, login, make_user

EMAIL = "user@example.com"
COOKIE = "mosaic_session"
_ALERT = re.compile(r'<p class="form-error" role="alert">(.*?)</p>', re.S)


@pytest.fixture(autouse=True)
def still_clock(monkeypatch):
    """The sign-in limits' clock stands still mid-window, so no count is cut
    in two by a window ending during a test (a fixed window starts again)."""
    start = (time.time() // LOGIN_WINDOW_S) * LOGIN_WINDOW_S + LOGIN_WINDOW_S / 2
    monkeypatch.setattr(views_auth, "clock", lambda: start)


@pytest.fixture
def lapp(make_app):
    """The host alone: sign-in needs no plugin, and it keeps every test fast."""
    app = make_app(plugins=[])
    make_user(app, EMAIL, roles=("staff",))
    return app


def post_login(client, email: str, password: str, address: str = "127.0.0.1", **extra):
    """The login form as a browser at ``address`` posts it."""
    environ = {"REMOTE_ADDR": address}
    token = csrf_token_at(client, address)
    data = {"email": email, "password": password, "csrf_token": token, **extra}
    return client.post("/login", data=data, environ_base=environ)


def csrf_token_at(client, address: str) -> str:
    html = client.get("/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def alerts(response) -> list[str]:
    return [" ".join(text.split()) for text in _ALERT.findall(response.get_data(as_text=True))]


def is_signed_in(client) -> bool:
    response = client.get("/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and response.headers["Location"].startswith("/login"), response.status_code
    return False


def session_cookie(client) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie"
    return cookie.value


def replay(app, cookie_value: str):
    """A new client (another tab, an attacker with a stolen cookie) that sends
    only the given cookie."""
    client = app.test_client()
    client.set_cookie(COOKIE, cookie_value)
    return client


# --- failed and successful sign-ins ---------------------------------------------------


def test_every_failed_sign_in_says_the_same_thing(lapp):
    """No hint whether the account exists, the password was wrong or the account is disabled."""
    make_user(lapp, "gone@example.com", roles=("staff",))
    _deactivate(lapp, "gone@example.com")
    answers = {}
    for case, (email, password) in {
        "unknown e-mail": ("nobody@example.com", TEST_PASSWORD),
        "wrong password": (EMAIL, "not the password"),
        "disabled account": ("gone@example.com", TEST_PASSWORD),
        "empty form": ("", ""),
    }.items():
        client = lapp.test_client()
        response = post_login(client, email, password)
        assert response.status_code == 200, case
        assert 'name="password"' in response.get_data(as_text=True), f"{case}: the form is shown again"
        assert not is_signed_in(client), case
        answers[case] = alerts(response)
    messages = set(map(tuple, answers.values()))
    assert len(messages) == 1, answers
    (only,) = messages
    assert len(only) == 1, "exactly one message"
    assert not re.search(r"password|e-mail|email|unknown|disabled|inactive", only[0].split(".")[0], re.I)


def test_the_form_keeps_the_email_but_never_the_password(lapp):
    response = post_login(lapp.test_client(), EMAIL, "not the password")
    html = response.get_data(as_text=True)
    assert f'value="{EMAIL}"' in html
    assert "not the password" not in html


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [
        ("/sales/?stage=won#top", "/sales/?stage=won#top"),
        ("/profile", "/profile"),
        ("", "/"),
        ("//evil.com", "/"),
        ("//evil.com/path", "/"),
        ("https://evil.com", "/"),
        ("http://localhost/", "/"),
        ("/\\evil", "/"),
        ("/\\/evil.com", "/"),
        ("\\\\evil.com", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.com", "/"),
        ("https:evil.com", "/"),
        ("/\t/evil.com", "/"),  # browsers drop tabs and newlines: "//evil.com"
        ("/\n/evil.com", "/"),
        (" //evil.com", "/"),
        ("/%2F%2Fevil.com", "/%2F%2Fevil.com"),  # encoded: a path on this site
    ],
)
def test_success_redirects_303_to_next_only_within_the_site(lapp, next_value, expected):
    response = post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, next=next_value)
    assert response.status_code == 303
    assert response.headers["Location"] == expected


def test_a_page_asked_for_while_signed_out_is_reached_after_sign_in(lapp):
    client = lapp.test_client()
    asked = client.get("/profile?tab=tokens")
    assert asked.status_code == 302
    assert asked.headers["Location"] == "/login?next=%2Fprofile%3Ftab%3Dtokens"
    form = client.get(asked.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/profile?tab=tokens"' in form
    response = post_login(client, EMAIL, TEST_PASSWORD, next="/profile?tab=tokens")
    assert response.headers["Location"] == "/profile?tab=tokens"


# --- CSRF on both forms --------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged-token"], ids=["missing", "empty", "forged"])
def test_login_post_without_a_valid_csrf_token_is_refused(lapp, token):
    client = lapp.test_client()
    client.get("/login")
    data = {"email": EMAIL, "password": TEST_PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
    assert not is_signed_in(client)


def test_a_csrf_token_of_another_session_is_refused(lapp):
    """A token lifted from the attacker's own session does not fit the victim's."""
    attacker, victim = lapp.test_client(), lapp.test_client()
    stolen = csrf_token(attacker)
    victim.get("/login")
    response = victim.post("/login", data={"email": EMAIL, "password": TEST_PASSWORD, "csrf_token": stolen})
    assert response.status_code == 400


def test_logout_without_a_csrf_token_is_refused_and_keeps_the_session(lapp):
    """Otherwise any site could sign our users out with a hidden form."""
    client = lapp.test_client()
    assert login(client, EMAIL).status_code == 303
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert is_signed_in(client)


# --- the session's life ----------------------------------------------------------------------


def test_sign_in_starts_a_fresh_session(lapp):
    """Session fixation: whatever the session held before sign-in is gone."""
    client = lapp.test_client()
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = session_cookie(client)
    assert login(client, EMAIL).status_code == 303
    after = session_cookie(client)
    assert after != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"].startswith(f"{_user_id(lapp, EMAIL)}:")
    assert not is_signed_in(replay(lapp, before)), "the pre-login cookie opens nothing"


def test_logout_ends_the_session(lapp):
    client = lapp.test_client()
    login(client, EMAIL)
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert not is_signed_in(client)


def test_a_cookie_copied_before_logout_is_dead_after_it(lapp):
    client = lapp.test_client()
    login(client, EMAIL)
    stolen = session_cookie(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert not is_signed_in(replay(lapp, stolen))


def test_deactivation_ends_every_session(lapp):
    client = lapp.test_client()
    login(client, EMAIL)
    cookie = session_cookie(client)
    assert is_signed_in(replay(lapp, cookie))
    _deactivate(lapp, EMAIL)
    assert not is_signed_in(replay(lapp, cookie))
    assert not is_signed_in(client)


def test_a_password_change_ends_every_session(lapp):
    from host.security.users import find_user, set_password

    client = lapp.test_client()
    login(client, EMAIL)
    cookie = session_cookie(client)
    state = lapp.extensions["mosaic"]
    with lapp.app_context(), state.db.transaction() as session:
        set_password(find_user(session, EMAIL), "a brand new passphrase")
    assert not is_signed_in(replay(lapp, cookie))
    assert post_login(lapp.test_client(), EMAIL, "a brand new passphrase").status_code == 303


def test_idle_timeout(lapp):
    lapp.config["MOSAIC_IDLE_TIMEOUT"] = 60
    client = lapp.test_client()
    login(client, EMAIL)
    _age(client, seen=50)
    assert is_signed_in(client), "activity within the idle limit keeps the session"
    with client.session_transaction() as session:
        assert time.time() - session["seen"] < 5, "each request counts as activity"
    _age(client, seen=61)
    assert not is_signed_in(client)


def test_absolute_timeout_even_when_active(lapp):
    lapp.config["MOSAIC_ABSOLUTE_TIMEOUT"] = 3600
    client = lapp.test_client()
    login(client, EMAIL)
    _age(client, started=3500, seen=0)
    assert is_signed_in(client)
    _age(client, started=3601, seen=0)
    assert not is_signed_in(client)


def _age(client, *, seen: int | None = None, started: int | None = None) -> None:
    """Pretend the session was last used ``seen`` and started ``started`` seconds ago."""
    now = int(time.time())
    with client.session_transaction() as session:
        if seen is not None:
            session["seen"] = now - seen
        if started is not None:
            session["started"] = now - started


# --- cookies ----------------------------------------------------------------------------


def session_set_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{COOKIE}=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def cookie_flags(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


def test_session_cookie_is_httponly_and_samesite_lax_over_http(lapp):
    client = lapp.test_client()
    flags = cookie_flags(session_set_cookie(login(client, EMAIL)))
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags, "a Secure cookie would never come back over plain HTTP"
    assert not any(flag.startswith(("expires", "max-age")) for flag in flags), "ends with the browser"


def test_session_cookie_is_secure_when_served_over_https(make_app):
    app = make_app(plugins=[], base_url="https://crm.example.com")
    make_user(app, EMAIL)
    client = app.test_client()
    https = {"base_url": "https://crm.example.com"}
    html = client.get("/login", **https).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    form = {"email": EMAIL, "password": TEST_PASSWORD, "csrf_token": token}
    assert client.post("/login", data=form, **https).status_code == 400, (
        "over HTTPS a POST must also come with a same-site Referer (Flask-WTF's strict check)"
    )
    response = client.post("/login", data=form, headers={"Referer": "https://crm.example.com/login"}, **https)
    assert response.status_code == 303
    assert {"secure", "httponly", "samesite=lax"} <= cookie_flags(session_set_cookie(response))


# --- sign-in limits ---------------------------------------------------------------------


def fail(app, email: str, times: int, address: str = "10.0.0.1") -> None:
    client = app.test_client()
    for attempt in range(times):
        response = post_login(client, email, f"wrong guess {attempt}", address)
        assert response.status_code == 200, f"attempt {attempt + 1} was already limited"


def assert_limited(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= LOGIN_WINDOW_S
    assert alerts(response) == ["Too many failed sign-ins. Wait a few minutes and try again."]


def test_failures_per_account_and_address_are_limited(lapp):
    fail(lapp, EMAIL, PAIR_LIMIT, "10.0.0.1")
    client = lapp.test_client()
    limited = post_login(client, EMAIL, TEST_PASSWORD, "10.0.0.1")
    assert_limited(limited)
    assert not is_signed_in(client), "even the right password waits"
    assert post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, "10.9.9.9").status_code == 303, (
        "the real user still signs in from another address"
    )
    other = post_login(lapp.test_client(), "other@example.com", "x", "10.0.0.1")
    assert other.status_code == 200, "other accounts from the same address are not yet limited"


def test_failures_per_address_are_limited_across_accounts(lapp):
    """A guesser spraying many accounts from one address is stopped at 50."""
    client = lapp.test_client()
    for attempt in range(ADDRESS_LIMIT):
        email = f"spray{attempt}@example.com"
        assert post_login(client, email, "Password1", "10.0.0.2").status_code == 200, attempt
    assert_limited(post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.2"))
    assert post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.3").status_code == 303


def test_a_burst_of_guesses_gets_no_more_tries_than_the_limit(lapp):
    """Twice the limit at once, from one address: each request is counted
    before its (slow) password check, so exactly the limit get a try and the
    rest wait, however the requests interleave."""
    attempts = 2 * PAIR_LIMIT
    clients = [lapp.test_client() for _ in range(attempts)]
    tokens = [csrf_token_at(client, "10.0.0.7") for client in clients]
    start = threading.Barrier(attempts)

    def guess(n: int) -> int:
        start.wait()
        data = {"email": EMAIL, "password": f"wrong guess {n}", "csrf_token": tokens[n]}
        return clients[n].post("/login", data=data, environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code

    with ThreadPoolExecutor(attempts) as pool:
        statuses = sorted(pool.map(guess, range(attempts)))
    assert statuses == [200] * PAIR_LIMIT + [429] * PAIR_LIMIT
    assert post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.8").status_code == 303


def test_a_right_password_does_not_count_as_a_failure(lapp):
    for _ in range(PAIR_LIMIT + 2):
        client = lapp.test_client()
        assert post_login(client, EMAIL, TEST_PASSWORD, "10.0.0.1").status_code == 303
    fail(lapp, EMAIL, PAIR_LIMIT)  # every failure still has its try


def test_a_successful_sign_in_clears_the_pair_count(lapp):
    fail(lapp, EMAIL, PAIR_LIMIT - 1)
    assert post_login(lapp.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.1").status_code == 303
    fail(lapp, EMAIL, PAIR_LIMIT - 1)  # would hit 429 had the count been kept


def test_limits_count_across_app_processes_in_the_database(make_app):
    """Two app instances on one database: each sees the other's failures."""
    first = make_app(plugins=[])
    make_user(first, EMAIL)
    second = make_app(plugins=[])
    half = PAIR_LIMIT // 2
    fail(first, EMAIL, half)
    fail(second, EMAIL, PAIR_LIMIT - half)
    assert_limited(post_login(first.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.1"))
    assert_limited(post_login(second.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.1"))
    assert _counter_rows(first) > 0


def test_limits_count_across_app_processes_in_redis(make_app, redis_url):
    import redis

    first = make_app(plugins=[], redis_url=redis_url)
    make_user(first, EMAIL)
    second = make_app(plugins=[], redis_url=redis_url)
    half = PAIR_LIMIT // 2
    fail(first, EMAIL, half)
    fail(second, EMAIL, PAIR_LIMIT - half)
    assert_limited(post_login(second.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.1"))
    assert post_login(first.test_client(), EMAIL, TEST_PASSWORD, "10.0.0.9").status_code == 303
    assert _counter_rows(first) == 0, "with Redis configured the database keeps no counters"
    keys = redis.Redis.from_url(redis_url).keys("mosaic:rl:login:*")
    assert any(f":{EMAIL}:10.0.0.1:".encode() in key for key in keys), keys


# --- helpers -----------------------------------------------------------------------------


def _deactivate(app, email: str) -> None:
    from host.security.users import deactivate_user, find_user

    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        deactivate_user(session, find_user(session, email), None)


def _user_id(app, email: str) -> int:
    from host.security.users import find_user

    state = app.extensions["mosaic"]
    with app.app_context(), state.db.Session() as session:
        return find_user(session, email).id


def _counter_rows(app) -> int:
    from host.security.models import RateLimitCounter

    with app.extensions["mosaic"].db.Session() as session:
        return session.scalar(select(func.count()).select_from(RateLimitCounter))
