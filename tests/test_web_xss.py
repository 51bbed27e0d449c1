"""Stored XSS over the record pages (contacts, the 360-degree page, forms,
interactions, tasks, search, merge), in a real browser (``tests/xss.py``):
every text field of contacts, interactions, tasks and tags gets each
payload, and every page must show it as text and run nothing."""

from __future__ import annotations

import pytest

from host.testing import make_user

from .browser import browser, serve, sign_in  # noqa: F401  (fixtures)
from .core_support import make_contact, make_interaction, make_task
from .xss import check_stored_xss, column

pytestmark = [pytest.mark.browser, pytest.mark.with_plugins()]

ADMIN = "admin@example.com"

TEXT_COLUMNS = [
    ("contact", "name"), ("contact", "first_name"), ("contact", "city"), ("contact", "notes"), ("contact", "source"),
    ("contact", "website"), ("interaction", "subject"), ("interaction", "body"), ("interaction", "outcome"),
    ("task", "title"), ("task", "notes"), ("tag", "name"),
]


@pytest.fixture
def csp_bypassed_page(browser):  # noqa: F811
    context = browser.new_context(bypass_csp=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_stored_payloads_show_as_text_on_the_record_pages(app, csp_bypassed_page):
    make_user(app, ADMIN, roles=("admin",))
    company = make_contact(app, ADMIN, kind="company", name="Firm", tags=["vip"])
    person = make_contact(app, ADMIN, name="Ann", company_id=company, city="Sofia", notes="n", source="s",
                          website="w", first_name="Ann")
    interaction = make_interaction(app, ADMIN, person, subject="Call", body="b", outcome="o")
    task = make_task(app, ADMIN, title="Follow up", notes="n", contact_id=person)
    text_pages = ["/contacts", f"/contacts/{person}", "/interactions", f"/interactions/{interaction}", "/tasks",
                  f"/tasks/{task}"]
    other_pages = [f"/contacts/{company}", f"/contacts/{person}/edit", f"/contacts/{person}/merge?other={company}",
                   "/search?q=window", "/contacts?sort=name", "/tasks?assignee=all"]
    with serve(app) as server:
        sign_in(csp_bypassed_page, server.url, ADMIN)
        findings = check_stored_xss(
            server, csp_bypassed_page, targets=[column(table, name) for table, name in TEXT_COLUMNS],
            urls=text_pages + other_pages, text_urls=text_pages,
        )
    assert [str(f) for f in findings] == []
