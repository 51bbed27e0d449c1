"""Stored XSS, checked in a real browser over every page (see ``tests/xss.py``).

Also: the checker catches a page that really is unsafe (so a pass means
something), the CSP stops an injected script that escaping missed, and a
person can sign in through the real form in Chromium.
"""

from __future__ import annotations

import pytest
from flask import Blueprint, render_template_string
from flask_login import current_user

from hooks import hookimpl
from host.demo import seed_demo_data
from host.security.access import login_required
from host.testing import api_token, make_user, plugin_candidate

from .browser import browser, browser_page, serve, sign_in  # noqa: F401  (fixtures)
from .xss import PAYLOADS, check_stored_xss, column, get_pages

pytestmark = pytest.mark.browser

ADMIN = "admin@example.com"

#: Every text field a person can fill today. Later issues add theirs here or
#: call ``check_stored_xss`` over their own pages.
TEXT_COLUMNS = [
    ("user_account", "display_name"),
    ("api_token", "name"),
    ("role", "description"),
    ("team", "name"),
    ("sales_deal", "title"),
    ("marketing_campaign", "name"),
    ("service_ticket", "subject"),
    ("reports_saved_report", "title"),
]
#: Pages that list those records, where each payload must show as text.
LIST_PAGES = ["/", "/sales/", "/marketing/", "/service/", "/reports/", "/profile", "/admin/roles", "/admin/teams"]


@pytest.fixture
def csp_bypassed_page(browser):  # noqa: F811  (the fixture imported above)
    """A page whose context ignores the CSP: the test is about escaping."""
    context = browser.new_context(bypass_csp=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_stored_payloads_show_as_text_on_every_page(app, csp_bypassed_page):
    seed_demo_data(app)
    make_user(app, ADMIN, roles=("admin",), teams=("Field sales",))  # a team row, listed on /admin/teams
    api_token(app, ADMIN)  # a token row, listed on the profile page
    pages = get_pages(app)
    assert set(LIST_PAGES) <= set(pages), "the walk finds the list pages"
    with serve(app) as server:
        sign_in(csp_bypassed_page, server.url, ADMIN)
        findings = check_stored_xss(
            server, csp_bypassed_page,
            targets=[column(table, name) for table, name in TEXT_COLUMNS],
            urls=pages, text_urls=LIST_PAGES,
        )
    assert [str(f) for f in findings] == []


@pytest.mark.with_plugins()
def test_a_display_name_saved_through_the_profile_form_stays_text(app, csp_bypassed_page):
    """The same check with a storer that is a real form, not SQL (the
    payloads that target a form field's value attribute, and a script)."""
    make_user(app, ADMIN, roles=("admin",))
    page = csp_bypassed_page

    def through_the_profile_form(payload: str) -> None:
        page.goto(server.url + "/profile")
        page.fill("#display_name", payload)
        with page.expect_navigation():
            page.click("text=Save details")
        assert page.url == server.url + "/profile", f"the form refused {payload!r}"

    with serve(app) as server:
        sign_in(page, server.url, ADMIN)
        findings = check_stored_xss(
            server, page, targets=[through_the_profile_form], urls=["/", "/profile"], text_urls=["/", "/profile"],
            payloads=[p for p in PAYLOADS if p.startswith(('"', "'", "<script", "</textarea"))],
        )
    assert [str(f) for f in findings] == []


# --- the checker and the CSP against a page that really is unsafe ---------------------


class UnsafeHooks:
    """A plugin page that marks the user's display name safe: the bug the
    check exists to find."""

    @hookimpl
    def mosaic_blueprints(self):
        bp = Blueprint("unsafe", __name__)

        @bp.get("/")
        @login_required
        def index():
            return render_template_string(
                "<!doctype html><title>unsafe</title><p>{{ name|safe }}</p>", name=current_user.display_name
            )

        return [bp]


@pytest.fixture
def unsafe_app(make_app):
    app = make_app(plugins=["unsafe"], extra_plugins=[plugin_candidate("unsafe", UnsafeHooks())])
    make_user(app, ADMIN, roles=("admin",))
    return app


def test_the_checker_finds_a_page_that_does_not_escape(unsafe_app, csp_bypassed_page):
    with serve(unsafe_app) as server:
        sign_in(csp_bypassed_page, server.url, ADMIN)
        findings = check_stored_xss(
            server, csp_bypassed_page, targets=[column("user_account", "display_name")],
            urls=["/unsafe/"], text_urls=["/unsafe/"],
        )
    problems = {(f.payload, f.problem.split(":")[0]) for f in findings}
    script = PAYLOADS[0]
    assert (script, "script ran") in problems
    assert (script, "injected into the DOM") in problems
    assert (script, "the payload is not shown as text") in problems
    assert ("<details open ontoggle=alert(10)>", "a dialog opened") in problems
    assert all(f.url == "/unsafe/" for f in findings), "the safe pages around it are not blamed"


def test_the_csp_stops_an_injected_script_that_escaping_missed(unsafe_app, browser_page):  # noqa: F811
    violations = []
    browser_page.on("console", lambda message: violations.append(message.text))
    with serve(unsafe_app) as server:
        sign_in(browser_page, server.url, ADMIN)
        column("user_account", "display_name").store(unsafe_app, "<script>window.__xss=1</script>")
        browser_page.goto(server.url + "/unsafe/")
        assert browser_page.evaluate("() => window.__xss") is None
    assert any("Content Security Policy" in text for text in violations), violations


# --- signing in with a real browser ---------------------------------------------------


@pytest.mark.with_plugins("sales")
def test_sign_in_through_the_form_reaches_the_dashboard(app, browser_page):  # noqa: F811
    make_user(app, ADMIN, roles=("admin",), display_name="Ada Admin")
    page = browser_page
    with serve(app) as server:
        page.goto(server.url + "/sales/")
        assert page.url.startswith(server.url + "/login?next="), "signed out: sent to the login page"
        page.fill("#email", ADMIN)
        page.fill("#password", "not the password")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "did not match" in page.inner_text("[role=alert]")

        sign_in(page, server.url, ADMIN)
        assert page.url == server.url + "/"
        assert page.inner_text("h1") == "Dashboard"
        assert "Ada Admin" in page.inner_text("header")
        assert "Pipeline" in page.inner_text("main")
        assert "mosaic_session" not in page.evaluate("() => document.cookie"), "the session cookie is HttpOnly"

        page.click("details.user-menu > summary")  # sign-out lives in the user menu
        page.click("text=Sign out")
        page.wait_for_url(server.url + "/login")
        page.goto(server.url + "/")
        assert page.url.startswith(server.url + "/login"), "signed out for real"
