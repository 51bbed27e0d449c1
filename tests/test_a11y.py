"""Accessibility of the staff UI's main pages, checked by axe-core in
Chromium (``axe-playwright-python`` bundles it): no serious or critical
violation on any of them (issue 6, "Look and access").

Pages are checked as people meet them: the 360 page with its quick forms
opened, a form showing a validation error, the top bar's suggestion list
open. Minor and moderate findings are printed, not failed.
"""

from __future__ import annotations

import pytest

from host.testing import TEST_PASSWORD

from .browser import browser, live_server, sign_in  # noqa: F401  (fixtures)
from .test_browser_staff import ADMIN, IMPORT_CSV, crm, seed_crm  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

FAILING_IMPACTS = ("serious", "critical")


def axe_violations(page) -> list[dict]:
    from axe_playwright_python.sync_playwright import Axe

    return Axe().run(page).response["violations"]


def describe(violations: list[dict]) -> list[str]:
    return [f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes'][:4]]}" for v in violations]


def check(page, label: str, failures: dict[str, list[str]], notes: dict[str, list[str]]) -> None:
    violations = axe_violations(page)
    bad = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    if bad:
        failures[label] = describe(bad)
    rest = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
    if rest:
        notes[label] = describe(rest)


def _has_route(app, path: str) -> bool:
    try:
        app.url_map.bind("localhost").match(path, method="GET")
    except Exception:  # noqa: BLE001  (NotFound or a redirect: not a page of its own)
        return False
    return True


@pytest.fixture
def a11y_page(browser):  # noqa: F811  (the fixture imported above)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_main_pages_have_no_serious_accessibility_violations(app, live_server, crm, a11y_page):  # noqa: F811
    base, page = live_server.url, a11y_page
    failures: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}

    page.goto(base + "/login")
    check(page, "/login", failures, notes)
    page.fill("#email", ADMIN)
    page.fill("#password", "wrong " + TEST_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    check(page, "/login (failed)", failures, notes)

    sign_in(page, base, ADMIN)
    pages = ["/", "/contacts", f"/contacts/{crm.company}", f"/contacts/{crm.ivan}/edit", "/contacts/new",
             "/tasks", "/interactions", "/search?q=%D0%B8%D0%B2%D0%B0%D0%BD", "/notifications", "/profile",
             "/admin/users", "/admin/settings", "/admin/custom-fields"]
    if _has_route(app, "/import"):
        pages.append("/import")
    checked = []
    for path in pages:
        response = page.goto(base + path)
        assert response.status == 200, f"{path} answered {response.status}"
        check(page, path, failures, notes)
        checked.append(path)

    # The 360 page with both quick forms open, as after the first click.
    page.goto(f"{base}/contacts/{crm.ivan}")
    page.click("#log-interaction summary")
    page.click("#plan-task summary")
    check(page, "/contacts/<id> (forms open)", failures, notes)

    # A form with errors at its fields.
    page.fill("#f-title", "")
    with page.expect_navigation():
        page.click("#plan-task button[type=submit]")
    assert page.locator("#plan-task .field-error").count() >= 1
    check(page, "/contacts/<id> (task error)", failures, notes)

    # The user menu and the search suggestions opened.
    page.click(".user-menu summary")
    page.locator("#global-search-q").press_sequentially("Петр", delay=40)
    page.locator("#global-search-q-suggestions [role=option]").first.wait_for()
    check(page, "/contacts/<id> (menus open)", failures, notes)

    # The import wizard's mapping and its check report with a rejected row.
    if "/import" in checked:
        page.goto(base + "/import")
        page.select_option("#import-type", "contacts")
        page.set_input_files("#import-file", {"name": "people.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV})
        with page.expect_navigation():
            page.click("form.record-form button[type=submit]")
        check(page, "/import (columns)", failures, notes)
        with page.expect_navigation():
            page.click("form.import-mapping button[type=submit]")
        page.locator(".rejected-rows").wait_for(timeout=30_000)
        check(page, "/import (check report)", failures, notes)
        checked += ["/import (columns)", "/import (check report)"]

    # At a phone's width the layout changes (the menu folds): the same rules hold.
    page.set_viewport_size({"width": 375, "height": 812})
    for path in ("/", f"/contacts/{crm.ivan}", "/contacts", "/tasks"):
        page.goto(base + path)
        check(page, f"{path} (375 px)", failures, notes)
    page.click(".nav-toggle summary")
    check(page, "/tasks (375 px, menu open)", failures, notes)

    for label, found in notes.items():
        print(f"a11y (minor) {label}: {found}")
    print(f"a11y: checked {len(checked) + 10} page states: {', '.join(checked)}")
    assert failures == {}, failures


def test_the_check_finds_a_page_with_serious_problems(a11y_page):
    """So that a pass above means something: an unlabelled input and grey
    on grey text are what axe must report as serious or worse."""
    a11y_page.set_content(
        '<!doctype html><html lang="en"><title>bad</title><main><h1>Bad</h1>'
        '<input type="text" name="q"><p style="color:#aaa;background:#bbb">faint</p></main></html>'
    )
    found = {v["id"]: v["impact"] for v in axe_violations(a11y_page)}
    assert found.get("label") in FAILING_IMPACTS
    assert found.get("color-contrast") in FAILING_IMPACTS
