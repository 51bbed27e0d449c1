"""The staff UI in a real browser: what a sales rep does in a day, by clicks
and typing against a live server (issue 6, "Tests that must exist").

Each test builds its own small CRM through the host's services (a Bulgarian
company with its people, a Slovak contact with diacritics, interactions and
tasks; every built-in plugin enabled), so the tests stay independent and
quick; one Chromium serves the whole run (``tests/browser.py``).

The accessibility check (axe-core) lives in ``test_a11y.py``; the screenshots
of the dashboard and of the 360 page land in ``test-artifacts/``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from host.testing import make_user

from .browser import browser, live_server, sign_in  # noqa: F401  (fixtures)
from .core_support import make_company, make_contact, make_interaction, make_task

pytestmark = pytest.mark.browser

REP = "rep@example.com"
MANAGER = "manager@example.com"
ADMIN = "admin@example.com"
TEAM = "Field sales"
PHONE_WIDTH = {"width": 375, "height": 812}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Crm:
    """The ids of the records a test clicks its way to."""

    company: int
    ivan: int
    zofia: int
    rep: int
    manager: int


def seed_crm(app) -> Crm:
    """A small, demo-like CRM owned by the rep's team: names in Cyrillic and
    with diacritics, a company with its people, history and open tasks."""
    rep = make_user(app, REP, roles=("staff",), teams=(TEAM,), display_name="Rita Rep")
    manager = make_user(app, MANAGER, roles=("manager",), teams=(TEAM,), display_name="Milan Manager")
    make_user(app, ADMIN, roles=("admin",), teams=(TEAM,), display_name="Ada Admin")
    company = make_company(app, REP, name="Балкан Софтуер ООД", city="София", country="BG",
                           lifecycle_stage="customer", tags=["VIP"])
    ivan = make_contact(app, REP, first_name="Иван", last_name="Петров", company_id=company,
                        email="ivan.petrov@balkan.example", phone="+359 88 123 4567", city="София",
                        lifecycle_stage="prospect", notes="Prefers calls in the morning.")
    make_contact(app, REP, first_name="Мария", last_name="Иванова", company_id=company,
                 email="maria.ivanova@balkan.example", lifecycle_stage="customer")
    tatra = make_company(app, REP, name="Tatra s.r.o.", city="Žilina", country="SK")
    zofia = make_contact(app, REP, first_name="Žofia", last_name="Kováčová", company_id=tatra,
                         email="zofia.kovacova@tatra.example", city="Žilina", lifecycle_stage="lead")
    now = dt.datetime.now(dt.timezone.utc)
    make_interaction(app, REP, ivan, channel="meeting", subject="Kick-off in Sofia",
                     occurred_at=now - dt.timedelta(days=9))
    make_interaction(app, REP, ivan, channel="email", direction="in", subject="Asked for a quote",
                     occurred_at=now - dt.timedelta(days=2))
    make_task(app, REP, title="Send the offer", contact_id=ivan, due_at=now - dt.timedelta(days=1),
              priority="high")
    make_task(app, REP, title="Call Žofia about the pilot", contact_id=zofia,
              due_at=now + dt.timedelta(days=5))
    return Crm(company=company, ivan=ivan, zofia=zofia, rep=rep, manager=manager)


@pytest.fixture
def crm(app) -> Crm:
    return seed_crm(app)


@pytest.fixture
def context_factory(browser):  # noqa: F811  (the fixture imported above)
    """``new(**options)``: a fresh browser context (own cookies), closed afterwards."""
    made = []

    def new(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield new
    for context in made:
        context.close()


@pytest.fixture
def page(context_factory):
    return context_factory().new_page()


def open_contact(page, base: str, contact_id: int) -> None:
    page.goto(f"{base}/contacts/{contact_id}")
    assert page.url == f"{base}/contacts/{contact_id}"


def contact_names(app) -> set[str]:
    from sqlalchemy import select

    from host.core.models import Contact

    with app.extensions["mosaic"].db.Session() as session:
        return set(session.scalars(select(Contact.name)))


def flash_text(page) -> str:
    return page.inner_text(".flashes")


# --- 1. signing in -------------------------------------------------------------------------------


def test_log_in_through_the_form(live_server, crm, page):  # noqa: F811
    base = live_server.url
    page.goto(base + "/contacts")
    assert page.url.startswith(base + "/login?next="), "signed out: sent to the login page"

    page.fill("#email", REP)
    page.fill("#password", "not the password")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "did not match" in page.inner_text("[role=alert]")
    assert page.input_value("#email") == REP, "the e-mail survives a failed attempt"

    page.fill("#password", "correct horse battery staple")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == base + "/contacts", "back to the page that asked for a sign-in"
    assert "Rita Rep" in page.inner_text("header")
    assert "Иван Петров" in page.inner_text("main"), "the rep's contacts are listed"

    page.click(".brand")
    assert page.inner_text("h1") == "Dashboard"


# --- 2. finding a contact from the top bar -------------------------------------------------------


def test_find_a_contact_from_the_search_box_and_open_its_page(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, REP)

    # Typed on an English keyboard, submitted with Enter: the search page.
    box = page.locator("#global-search-q")
    box.fill("zofia kovacova")
    with page.expect_navigation():
        box.press("Enter")
    assert page.url.startswith(base + "/search?q=zofia")
    result = page.locator(".results a", has_text="Žofia Kováčová")
    with page.expect_navigation():
        result.click()
    assert page.url == f"{base}/contacts/{crm.zofia}"
    assert "Žofia Kováčová" in page.inner_text("h1")

    # In Cyrillic, picking the suggestion the box offers as one types.
    box = page.locator("#global-search-q")
    box.click()
    box.press_sequentially("Петр", delay=40)
    suggestion = page.locator("#global-search-q-suggestions [role=option]", has_text="Иван Петров")
    suggestion.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    with page.expect_navigation():
        suggestion.click()
    assert page.url == f"{base}/contacts/{crm.ivan}"
    assert "Иван Петров" in page.inner_text("h1")
    about = page.inner_text("#about-heading + dl")
    assert "Балкан Софтуер ООД" in about and "ivan.petrov@balkan.example" in about
    assert "Kick-off in Sofia" in page.inner_text("#timeline")


# --- 3. logging a call ----------------------------------------------------------------------------


def test_log_a_call_from_the_360_page_and_see_it_in_the_timeline(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, REP)
    open_contact(page, base, crm.ivan)

    form = page.locator("#log-interaction form")
    assert not form.is_visible(), "the form waits folded until asked for"
    page.click("#log-interaction summary")  # click one: the form opens in place
    assert form.is_visible()
    assert page.input_value("#f-channel") == "phone", "a call is the default"
    page.fill("#f-subject", "Agreed on the pilot scope")
    page.fill("#f-body", "Ivan wants 20 seats from March.")
    with page.expect_navigation():
        page.click("#log-interaction button[type=submit]")  # click two: logged

    assert page.url == f"{base}/contacts/{crm.ivan}#timeline", "still on the same page"
    assert "Interaction logged." in flash_text(page)
    newest = page.locator("#timeline .timeline-item").first
    assert "Agreed on the pilot scope" in newest.inner_text(), "newest first"
    assert "Phone" in newest.locator(".source").inner_text()
    assert page.locator("#timeline .kind-interaction").count() == 3


def test_a_call_without_a_subject_keeps_the_typed_input(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, REP)
    open_contact(page, base, crm.ivan)
    page.click("#log-interaction summary")
    page.fill("#f-subject", "")
    page.fill("#f-body", "Notes worth keeping")
    page.fill("#f-occurred_at", "")
    with page.expect_navigation():
        page.click("#log-interaction button[type=submit]")
    assert page.locator("#log-interaction").get_attribute("open") is not None, "the form stays open on an error"
    assert page.input_value("#f-body") == "Notes worth keeping"
    assert page.locator("#log-interaction .field-error").count() >= 1, "the error sits next to its field"
    assert page.locator("#timeline .kind-interaction").count() == 2, "nothing was logged"


# --- 4. a follow-up task --------------------------------------------------------------------------


def test_create_a_task_from_the_360_page_and_see_it_on_my_tasks(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, REP)
    open_contact(page, base, crm.ivan)

    page.click("#plan-task summary")
    page.fill("#f-title", "Send the pilot contract")
    due = (dt.date.today() + dt.timedelta(days=3)).isoformat() + "T10:00"
    page.fill("#f-due_at", due)
    page.select_option("#f-priority", "high")
    assert page.input_value("#f-assignee_id") == str(crm.rep), "assigned to oneself by default"
    with page.expect_navigation():
        page.click("#plan-task button[type=submit]")
    assert "Follow-up planned." in flash_text(page)
    assert "Send the pilot contract" in page.inner_text("#tasks")

    page.click("nav a:text-is('Tasks')")
    page.wait_for_url(base + "/tasks")
    assert page.inner_text("h1") == "My tasks"
    upcoming = page.locator("section.group-upcoming")
    planned = upcoming.locator("li.task", has_text="Send the pilot contract")
    assert planned.count() == 1
    assert "Иван Петров" in planned.inner_text(), "the task links its contact"
    assert "High" in planned.inner_text()
    assert "Send the offer" in page.inner_text("section.group-overdue")

    # Done with one click: it leaves the list.
    with page.expect_navigation():
        planned.get_by_role("button", name="Mark Send the pilot contract done").click()
    assert page.locator("li.task", has_text="Send the pilot contract").count() == 0


# --- 5. two people editing one contact -------------------------------------------------------------


def test_a_stale_edit_shows_the_other_change_and_keeps_the_input(live_server, crm, context_factory):  # noqa: F811
    base = live_server.url
    rita = context_factory().new_page()
    milan = context_factory().new_page()
    sign_in(rita, base, REP)
    sign_in(milan, base, MANAGER)
    for page in (rita, milan):
        page.goto(f"{base}/contacts/{crm.ivan}/edit")
        assert page.input_value("#f-city") == "София"

    milan.fill("#f-city", "Пловдив")
    with milan.expect_navigation():
        milan.click("form.record-form button[type=submit]")
    assert "Contact saved." in flash_text(milan)

    rita.fill("#f-notes", "Call him after 10 o'clock.")
    rita.fill("#f-phone", "+359 88 765 4321")
    with rita.expect_navigation():
        rita.click("form.record-form button[type=submit]")
    assert rita.url == f"{base}/contacts/{crm.ivan}/edit", "the stale save stays on the form"
    assert "Someone else saved this contact" in rita.inner_text(".conflict")
    assert rita.input_value("#f-notes") == "Call him after 10 o'clock.", "her input is kept"
    assert rita.input_value("#f-phone") == "+359 88 765 4321"
    assert "Пловдив" in rita.inner_text("#f-city-theirs"), "the other person's change is shown at its field"
    assert rita.get_attribute("#f-city", "aria-describedby").split().count("f-city-theirs") == 1

    # Saving again is deliberate: her version wins, with her notes.
    with rita.expect_navigation():
        rita.click("form.record-form button[type=submit]")
    assert rita.url == f"{base}/contacts/{crm.ivan}"
    about = rita.inner_text("#about-heading + dl")
    assert "+359 88 765 4321" in about
    assert "Call him after 10 o'clock." in rita.inner_text(".notes")


# --- 6. an import with a bad row -------------------------------------------------------------------

IMPORT_CSV = (
    "First name,Last name,E-mail,City\n"
    "Стоян,Тодоров,stoyan.todorov@rodopi.example,Пловдив\n"
    "Jana,Hríbová,not an e-mail address,Košice\n"
    "Piotr,Woźniak,piotr.wozniak@wisla.example,Gdańsk\n"
).encode("utf-8")


def test_import_with_a_bad_row_through_the_wizard(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, MANAGER)  # importing is for team leads by default
    page.click("nav a:text-is('Import')")
    page.wait_for_url(base + "/import")

    page.select_option("#import-type", "contacts")
    page.set_input_files("#import-file", {"name": "trade fair.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV})
    with page.expect_navigation():
        page.click("form.record-form button[type=submit]")
    assert "3 rows to import as" in page.inner_text("main")
    chosen = {label: page.get_by_label(label, exact=True).input_value() for label in ("First name", "Last name", "E-mail", "City")}
    assert chosen == {"First name": "first_name", "Last name": "last_name", "E-mail": "email", "City": "city"}, \
        "the columns are matched by their names"

    with page.expect_navigation():
        page.click("form.import-mapping button[type=submit]")
    page.get_by_role("heading", name="What the import would do").wait_for(timeout=30_000)  # the page refreshes itself
    assert "Nothing has been written yet." in page.inner_text("main")
    counts = page.inner_text(".import-counts")
    assert re.search(r"Would be created\s+2", counts) and re.search(r"Rejected\s+1", counts), counts
    rejected = page.inner_text(".rejected-rows tbody")
    assert "E-mail" in rejected or "email" in rejected, rejected
    assert "Piotr Woźniak" not in contact_names(live_server.app), "the check wrote nothing"

    with page.expect_navigation():
        page.click(".import-commit button[type=submit]")
    page.get_by_text("The import is finished.").wait_for(timeout=30_000)
    counts = page.inner_text(".import-counts")
    assert re.search(r"Created\s+2", counts) and re.search(r"Rejected\s+1", counts), counts

    with page.expect_download() as download_info:
        page.click("text=Download the rejected rows")
    rejected_file = Path(download_info.value.path()).read_text("utf-8-sig")
    assert "not an e-mail address" in rejected_file and "Hríbová" in rejected_file
    assert "Woźniak" not in rejected_file, "only the bad row comes back"

    page.click("text=See the imported records")
    listed = page.inner_text("main")
    assert "Стоян Тодоров" in listed and "Piotr Woźniak" in listed
    assert "Jana Hríbová" not in listed


# --- 7. Bulgarian -----------------------------------------------------------------------------------


def test_switch_the_language_to_bulgarian_from_the_user_menu(live_server, crm, page):  # noqa: F811
    base = live_server.url
    sign_in(page, base, REP)
    page.goto(base + "/tasks")
    assert page.inner_text("h1") == "My tasks"

    page.click(".user-menu summary")
    page.select_option("#shell-language", "bg")
    with page.expect_navigation():
        page.click(".language-form button[type=submit]")

    assert page.url == base + "/tasks", "back on the same page"
    assert page.inner_text("h1") == "Моите задачи"
    assert page.get_attribute("html", "lang") == "bg"
    assert "Езикът вече е Български." in flash_text(page)
    assert page.inner_text("#group-overdue").startswith("Просрочени")
    page.click(".brand")
    assert page.inner_text("h1") == "Табло"
    page.click(".user-menu summary")
    assert page.inner_text(".user-menu button.wide") == "Изход"

    # The choice is the profile's: a new sign-in elsewhere keeps it.
    other = page.context.browser.new_context(locale="en-GB")
    try:
        fresh = other.new_page()
        sign_in(fresh, base, REP)
        assert fresh.inner_text("h1") == "Табло"
    finally:
        other.close()


# --- 8. a phone's width -----------------------------------------------------------------------------


def test_the_main_pages_fit_a_phone_without_horizontal_scrolling(live_server, crm, context_factory):  # noqa: F811
    base = live_server.url
    page = context_factory(viewport=PHONE_WIDTH, is_mobile=True, has_touch=True).new_page()
    sign_in(page, base, REP)
    pages = ["/", "/contacts", f"/contacts/{crm.ivan}", f"/contacts/{crm.company}", "/tasks", "/search?q=%D0%B8%D0%B2%D0%B0%D0%BD"]
    overflowing = {}
    for path in pages:
        page.goto(base + path)
        assert page.url == base + path, f"{path} answered with a redirect"
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        if widths[0] > widths[1]:
            overflowing[path] = (widths, _widest(page))
    assert overflowing == {}, f"pages wider than 375 px: {overflowing}"

    # The menu folds away at this width and still opens.
    page.goto(base + "/")
    nav = page.locator("header nav")
    assert not nav.is_visible()
    page.click(".nav-toggle summary")
    assert nav.is_visible()


def _widest(page) -> list[str]:
    """The elements sticking out of the viewport, to say what to fix."""
    return page.evaluate("""() => {
        const limit = document.documentElement.clientWidth;
        return [...document.querySelectorAll('body *')]
          .filter(e => e.getBoundingClientRect().right > limit + 0.5)
          .slice(0, 5)
          .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') + ' ' + Math.round(e.getBoundingClientRect().right));
    }""")


# --- 10. screenshots ---------------------------------------------------------------------------------


def test_screenshots_of_the_dashboard_and_the_360_page(live_server, crm, context_factory):  # noqa: F811
    base = live_server.url
    page = context_factory(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, base, REP)
    ARTIFACTS.mkdir(exist_ok=True)
    shots = {}
    for name, path in (("dashboard", "/"), ("contact-360", f"/contacts/{crm.ivan}"),
                       ("contact-360-phone", f"/contacts/{crm.ivan}")):
        if name.endswith("-phone"):
            page.set_viewport_size(PHONE_WIDTH)
        page.goto(base + path)
        target = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        shots[name] = target
    for name, target in shots.items():
        data = target.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{name} is not a real screenshot"
        print(f"screenshot: {target}")
