"""The contact pages of the staff UI: the list (filters, sorting, keyset
pages, saved filters, bulk actions), the 360-degree page (panels, timeline,
quick forms, files), delete and restore, and the merge screen."""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from hooks import Panel, TimelineEntry, hookimpl
from host.core.models import Attachment, Contact, Interaction, LifecycleChange, Task
from host.testing import csrf_token, make_user, plugin_candidate

from .core_support import days_ago, make_company, make_contact, make_interaction, make_task, row, rows

pytestmark = pytest.mark.with_plugins()

REP = "rep@example.com"
OTHER = "other@example.com"


@pytest.fixture
def rep(app, signed_in):
    return signed_in(REP)


def page(client, path):
    response = client.get(path)
    return response, response.get_data(as_text=True)


def post(client, path, data=None, **kwargs):
    return client.post(path, data={"csrf_token": csrf_token(client, "/contacts"), **(data or {})}, **kwargs)


def names_in(html: str) -> list[str]:
    """The contact names of the list table, in order."""
    return re.findall(r'<td><a href="/contacts/\d+">([^<]+)</a></td>', html)


# --- access ------------------------------------------------------------------------------------


def test_signed_out_is_sent_to_sign_in(client):
    for path in ("/contacts", "/contacts/1", "/contacts/new", "/contacts/1/edit", "/contacts/1/merge?other=2"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), path


def test_without_the_permission_the_pages_answer_403(app, signed_in):
    make_user(app, REP)
    contact_id = make_contact(app, REP, name="Ann")
    client = signed_in("nobody@example.com", roles=())
    for path in ("/contacts", f"/contacts/{contact_id}", "/contacts/new", f"/contacts/{contact_id}/edit"):
        assert client.get(path).status_code == 403, path


def test_a_contact_out_of_scope_answers_404_everywhere(app, rep, signed_in):
    make_user(app, OTHER)
    theirs = make_contact(app, OTHER, name="Hidden Person")
    mine = make_contact(app, REP, name="Mine")
    for path in (f"/contacts/{theirs}", f"/contacts/{theirs}/edit"):
        assert rep.get(path).status_code == 404, path
    response = post(rep, f"/contacts/{theirs}/edit", {"name": "Taken", "version": "1"})
    assert response.status_code == 404
    response = post(rep, f"/contacts/{theirs}/interactions", {"channel": "phone", "direction": "out", "subject": "x"})
    assert response.status_code == 404
    assert "Hidden Person" not in page(rep, "/contacts")[1]
    assert row(app, Contact, theirs)["name"] == "Hidden Person"
    assert rep.get(f"/contacts/{mine}").status_code == 200


def test_posts_without_csrf_are_refused(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    response = rep.post(f"/contacts/{contact_id}/interactions", data={"channel": "phone", "subject": "x"})
    assert response.status_code == 400
    assert rows(app, select(Interaction.id)) == []


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_contacts_newest_first_and_pages_with_a_cursor(app, rep, monkeypatch):
    from host.web import contacts as view

    monkeypatch.setattr(view, "PAGE_SIZE", 2)
    for name in ("Alpha", "Bravo", "Charlie"):
        make_contact(app, REP, name=name)
    response, html = page(rep, "/contacts")
    assert response.status_code == 200
    assert names_in(html) == ["Charlie", "Bravo"]
    next_url = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "cursor=" in next_url
    assert names_in(page(rep, next_url)[1]) == ["Alpha"]


def test_sorting_by_name_pages_through_every_contact(app, rep, monkeypatch):
    from host.web import contacts as view

    monkeypatch.setattr(view, "PAGE_SIZE", 2)
    for name in ("Delta", "alpha", "Charlie", "Bravo", "Charlie"):
        make_contact(app, REP, name=name)
    seen, url = [], "/contacts?sort=name"
    while url:
        html = page(rep, url)[1]
        seen += names_in(html)
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert sorted(seen) == sorted(["Delta", "alpha", "Charlie", "Bravo", "Charlie"])
    assert len(seen) == 5 and seen[:2] == ["Bravo", "Charlie"]


def test_sorting_by_last_activity_puts_contacts_without_activity_last(app, rep):
    quiet = make_contact(app, REP, name="Quiet")
    old, recent = make_contact(app, REP, name="Old"), make_contact(app, REP, name="Recent")
    make_interaction(app, REP, old, occurred_at=days_ago(10))
    make_interaction(app, REP, recent, occurred_at=days_ago(1))
    assert quiet
    assert names_in(page(rep, "/contacts?sort=activity")[1]) == ["Recent", "Old", "Quiet"]


def test_filters_narrow_the_list(app, rep):
    make_contact(app, REP, name="Lead Person", lifecycle_stage="lead", tags=["vip"])
    make_contact(app, REP, name="Customer Person", lifecycle_stage="customer")
    make_company(app, REP, name="Firm Ltd", lifecycle_stage="customer")
    assert names_in(page(rep, "/contacts?lifecycle_stage=customer")[1]) == ["Firm Ltd", "Customer Person"]
    assert names_in(page(rep, "/contacts?lifecycle_stage=customer&kind=person")[1]) == ["Customer Person"]
    assert names_in(page(rep, "/contacts?tag=vip")[1]) == ["Lead Person"]
    assert names_in(page(rep, "/contacts?q=firm")[1]) == ["Firm Ltd"]


def test_date_filters_are_days_and_the_end_day_is_included(app, rep):
    import datetime as dt

    make_contact(app, REP, name="Today")
    today = dt.date.today().isoformat()
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert names_in(page(rep, f"/contacts?created_from={today}&created_to={today}")[1]) == ["Today"]
    assert names_in(page(rep, f"/contacts?created_from={tomorrow}")[1]) == []


def test_a_bad_filter_names_its_field_and_keeps_the_input(app, rep):
    response, html = page(rep, "/contacts?created_from=yesterday&lifecycle_stage=nonsense")
    assert response.status_code == 422
    assert "created_from" in html and "lifecycle_stage" in html
    assert 'value="yesterday"' in html


def test_custom_field_filters_use_the_definitions(app, rep, admin_client):
    token = csrf_token(admin_client, "/contacts")
    assert token
    from host.core import services

    from .core_support import run_as

    run_as(app, "admin@example.com", lambda s: services.create_custom_field(
        s, {"key": "size", "label": "Company size", "type": "choice", "choices": ["small", "large"]}))
    run_as(app, "admin@example.com", lambda s: services.create_custom_field(
        s, {"key": "employees", "label": "Employees", "type": "number"}))
    make_company(app, REP, name="Small Co", custom_fields={"size": "small", "employees": 5})
    make_company(app, REP, name="Large Co", custom_fields={"size": "large", "employees": 500})
    response, html = page(rep, "/contacts")
    assert "Company size" in html and 'name="cf:size"' in html
    assert names_in(page(rep, "/contacts?cf:size=large")[1]) == ["Large Co"]
    assert names_in(page(rep, "/contacts?cf:employees=5")[1]) == ["Small Co"]
    response, html = page(rep, "/contacts?cf:employees=many")
    assert response.status_code == 422 and "employees" in html


def test_every_stored_column_is_escaped_in_the_list(app, rep):
    payload = "<script>alert(1)</script>"
    company = make_company(app, REP, name=payload)
    make_contact(app, REP, name=payload, company_id=company, tags=[payload], source=payload)
    html = page(rep, "/contacts")[1]
    assert payload not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- saved filters ------------------------------------------------------------------------------


def test_saved_filters_belong_to_their_user(app, rep, signed_in):
    make_contact(app, REP, name="Vip One", tags=["vip"])
    make_contact(app, REP, name="Plain")
    response = post(rep, "/contacts/filters", {"name": "My VIPs", "params": "tag=vip&cursor=abc"})
    assert response.status_code == 302
    html = page(rep, "/contacts")[1]
    assert "My VIPs" in html
    opened = rep.get("/contacts?saved=My+VIPs")
    assert opened.status_code == 302 and parse_qs(urlsplit(opened.headers["Location"]).query) == {"tag": ["vip"]}
    assert names_in(page(rep, opened.headers["Location"])[1]) == ["Vip One"]
    other = signed_in(OTHER)
    assert "My VIPs" not in page(other, "/contacts")[1]
    assert post(rep, "/contacts/filters/delete", {"name": "My VIPs"}).status_code == 302
    assert "My VIPs" not in page(rep, "/contacts")[1]


def test_a_filter_without_a_name_is_not_saved(app, rep):
    post(rep, "/contacts/filters", {"name": "  ", "params": "tag=vip"})
    html = page(rep, "/contacts")[1]
    assert "saved=" not in html


# --- bulk actions ------------------------------------------------------------------------------------


def test_bulk_actions_change_only_contacts_in_scope(app, rep):
    make_user(app, OTHER)
    mine = [make_contact(app, REP, name=f"Mine {i}") for i in range(2)]
    theirs = make_contact(app, OTHER, name="Theirs", lifecycle_stage="lead")
    ids = [*mine, theirs]
    response = post(rep, "/contacts/bulk", {"action": "set_stage", "lifecycle_stage": "customer", "ids": ids})
    assert response.status_code == 302
    assert [row(app, Contact, i)["lifecycle_stage"] for i in mine] == ["customer", "customer"]
    assert row(app, Contact, theirs)["lifecycle_stage"] == "lead"
    history = rows(app, select(LifecycleChange.contact_id).where(LifecycleChange.to_stage == "customer"))
    assert sorted(r.contact_id for r in history) == sorted(mine)

    post(rep, "/contacts/bulk", {"action": "add_tag", "tag": "spring", "ids": ids})
    from .core_support import state

    with state(app).db.Session() as session:
        tagged = {c.id: [t.name for t in c.tags] for c in session.scalars(select(Contact))}
    assert tagged[mine[0]] == ["spring"] and tagged[theirs] == []


def test_bulk_assign_owner_moves_contacts_to_a_colleague(app, rep):
    colleague = make_user(app, "colleague@example.com")
    mine = make_contact(app, REP, name="Handed over")
    response = post(rep, "/contacts/bulk", {"action": "assign_owner", "owner_id": str(colleague), "ids": [mine],
                                            "next": "/contacts?sort=name"})
    assert response.headers["Location"] == "/contacts?sort=name"
    assert row(app, Contact, mine)["owner_id"] == colleague


def test_bulk_action_errors_name_the_field_and_change_nothing(app, rep):
    mine = make_contact(app, REP, name="Kept")
    response = post(rep, "/contacts/bulk", {"action": "assign_owner", "owner_id": "999999", "ids": [mine]},
                    follow_redirects=True)
    assert "Owner" in response.get_data(as_text=True)
    assert row(app, Contact, mine)["owner_id"] != 999999
    response = post(rep, "/contacts/bulk", {"action": "add_tag", "tag": "x", "next": "https://evil.example/"})
    assert response.headers["Location"] == "/contacts"


def test_bulk_actions_need_the_update_permission(app, signed_in):
    from host.security import roles as role_service

    from .core_support import state

    with app.app_context(), state(app).db.transaction() as session:
        role_service.create_role(session, "reader", "reads contacts")
        role_service.grant(session, "reader", "core.contact.read", declared=state(app).permissions)
    client = signed_in("reader@example.com", roles=("reader",))
    contact_id = make_contact(app, "reader@example.com", name="Read only")
    assert 'id="bulk-form"' not in page(client, "/contacts")[1]
    response = post(client, "/contacts/bulk", {"action": "add_tag", "tag": "x", "ids": [contact_id]})
    assert response.status_code == 403


# --- the 360-degree page ------------------------------------------------------------------------


class PanelHooks:
    @hookimpl
    def mosaic_contact_panels(self, contact, user):
        return [Panel(key="deals", title="Open deals", html=f"<b>{contact.name}</b>")]  # a plain str: escaped

    @hookimpl
    def mosaic_contact_timeline(self, contact, user, before, limit):
        import datetime as dt

        when = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        return [TimelineEntry(when=when, kind="deal.won", title="Deal won", url="javascript:alert(1)", key="1")]


class BrokenHooks:
    @hookimpl
    def mosaic_contact_panels(self, contact, user):
        raise RuntimeError("boom")

    @hookimpl
    def mosaic_contact_timeline(self, contact, user, before, limit):
        raise RuntimeError("boom")


@pytest.fixture
def plugin_app(make_app):
    return make_app(plugins=["acmepanel", "broken"], extra_plugins=[
        plugin_candidate("acmepanel", PanelHooks()), plugin_candidate("broken", BrokenHooks())])


def test_the_360_page_shows_everything_about_a_contact(plugin_app):
    app = plugin_app
    from host.testing import client_for

    client = client_for(app, REP, roles=("staff",))
    company = make_company(app, REP, name="Firm Ltd")
    person = make_contact(app, REP, first_name="Ann", last_name="Lee", company_id=company, email="ann@example.com",
                          tags=["vip"])
    make_interaction(app, REP, person, subject="Called about the offer")
    make_task(app, REP, title="Send the offer", contact_id=person)
    response, html = page(client, f"/contacts/{person}")
    assert response.status_code == 200
    for text in ("Ann Lee", "Firm Ltd", "ann@example.com", "vip", "Called about the offer", "Send the offer",
                 "Open deals", "&lt;b&gt;Ann Lee&lt;/b&gt;", "Deal won", "The broken plugin could not show"):
        assert text in html, text
    assert "javascript:alert" not in html, "a plugin's script URL is not a link"
    assert html.index("Called about the offer") < html.index("Deal won"), "newest first"
    company_html = page(client, f"/contacts/{company}")[1]
    assert "Ann Lee" in company_html and "People" in company_html


def test_the_timeline_loads_more_with_a_plain_link(app, rep, monkeypatch):
    from host.web import contact_page

    monkeypatch.setattr(contact_page, "TIMELINE_PAGE", 2)
    contact_id = make_contact(app, REP, name="Busy")
    for days in (3, 2, 1):
        make_interaction(app, REP, contact_id, subject=f"Call {days}", occurred_at=days_ago(days))
    html = page(rep, f"/contacts/{contact_id}")[1]
    assert "Call 1" in html and "Call 2" in html and "Call 3" not in html
    more = re.search(r'href="([^"]+)" rel="next">Load more', html).group(1).replace("&amp;", "&")
    html = page(rep, more)[1]
    assert "Call 3" in html and "Call 1" not in html


def test_log_an_interaction_from_the_page(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    response = post(rep, f"/contacts/{contact_id}/interactions", {
        "channel": "meeting", "direction": "in", "subject": "Met at the fair", "body": "Wants a demo",
        "occurred_at": "2024-05-02T10:30"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/contacts/{contact_id}#timeline")
    logged = rows(app, select(Interaction.channel, Interaction.direction, Interaction.subject, Interaction.occurred_at))
    assert [(r.channel, r.direction, r.subject) for r in logged] == [("meeting", "in", "Met at the fair")]
    assert logged[0].occurred_at.isoformat().startswith("2024-05-02T10:30")
    assert "Interaction logged." in page(rep, f"/contacts/{contact_id}")[1]


def test_a_bad_quick_form_shows_its_errors_and_keeps_the_input(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    response = post(rep, f"/contacts/{contact_id}/interactions", {
        "channel": "pigeon", "direction": "out", "subject": "", "body": "Typed <b>notes</b>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="f-channel-error"' in html and 'id="f-subject-error"' in html
    assert "Typed &lt;b&gt;notes&lt;/b&gt;</textarea>" in html
    assert '<details id="log-interaction" open>' in html
    assert rows(app, select(Interaction.id)) == []


def test_plan_a_follow_up_from_the_page(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    rep_id = row(app, Contact, contact_id)["owner_id"]
    response = post(rep, f"/contacts/{contact_id}/tasks", {
        "title": "Call back", "due_at": "2030-01-02T09:00", "assignee_id": str(rep_id), "priority": "high"})
    assert response.status_code == 303
    planned = rows(app, select(Task.title, Task.priority, Task.contact_id, Task.owner_id))
    assert [tuple(r) for r in planned] == [("Call back", "high", contact_id, rep_id)]
    assert "Call back" in page(rep, f"/contacts/{contact_id}")[1]


def test_attachments_upload_and_list_with_download_links(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    response = post(rep, f"/contacts/{contact_id}/attachments",
                    {"file": (io.BytesIO(b"%PDF-1.4 offer"), "offer <1>.pdf")}, content_type="multipart/form-data")
    assert response.status_code == 303
    (attachment_id,) = [r.id for r in rows(app, select(Attachment.id))]
    html = page(rep, f"/contacts/{contact_id}")[1]
    assert f'href="/attachments/{attachment_id}"' in html and "offer &lt;1&gt;.pdf" in html
    download = rep.get(f"/attachments/{attachment_id}")
    assert download.status_code == 200 and download.headers["Content-Disposition"].startswith("attachment")
    refused = post(rep, f"/contacts/{contact_id}/attachments",
                   {"file": (io.BytesIO(b"<html><script>x</script>"), "page.html")}, content_type="multipart/form-data",
                   follow_redirects=True)
    assert "not attached" in refused.get_data(as_text=True)


def test_stored_html_is_escaped_on_the_360_page(app, rep):
    payload = '"><img src=x onerror=alert(1)>'
    contact_id = make_contact(app, REP, name=payload, notes=payload, city=payload, tags=[payload])
    make_interaction(app, REP, contact_id, subject=payload, body=payload)
    make_task(app, REP, title=payload, contact_id=contact_id)
    html = page(rep, f"/contacts/{contact_id}")[1]
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# --- delete, restore ----------------------------------------------------------------------------------


def test_delete_and_restore(app, admin_client):
    contact_id = make_contact(app, "admin@example.com", name="Binned")
    make_interaction(app, "admin@example.com", contact_id)
    html = page(admin_client, f"/contacts/{contact_id}")[1]
    assert "Delete contact" in html
    response = post(admin_client, f"/contacts/{contact_id}/delete", {"version": str(row(app, Contact, contact_id)["version"])})
    assert response.status_code == 303 and response.headers["Location"] == f"/contacts/{contact_id}/deleted"
    assert row(app, Contact, contact_id)["deleted_at"] is not None
    assert admin_client.get(f"/contacts/{contact_id}").status_code == 404
    assert "Restore" in page(admin_client, f"/contacts/{contact_id}/deleted")[1]
    response = post(admin_client, f"/contacts/{contact_id}/restore")
    assert response.status_code == 303
    assert row(app, Contact, contact_id)["deleted_at"] is None
    assert all(r.deleted_at is None for r in rows(app, select(Interaction.deleted_at)))


def test_staff_see_no_delete_button_and_cannot_delete(app, rep):
    contact_id = make_contact(app, REP, name="Kept")
    assert "Delete contact" not in page(rep, f"/contacts/{contact_id}")[1]
    assert post(rep, f"/contacts/{contact_id}/delete", {"version": "1"}).status_code == 403
    assert row(app, Contact, contact_id)["deleted_at"] is None


# --- merge -------------------------------------------------------------------------------------------------


def test_the_merge_screen_compares_and_merges_with_picked_fields(app, admin_client):
    admin = "admin@example.com"
    keep = make_contact(app, admin, name="Ann Lee", city="Sofia", email="ann@example.com")
    other = make_contact(app, admin, name="Ann M. Lee", city="Plovdiv", phone="+359 88 123 4567")
    make_interaction(app, admin, other, subject="Old call")
    html = page(admin_client, f"/contacts/{keep}")[1]
    assert f"/contacts/{keep}/merge?other={other}" not in html or "Possible duplicates" in html
    response, html = page(admin_client, f"/contacts/{keep}/merge?other={other}")
    assert response.status_code == 200 and "Sofia" in html and "Plovdiv" in html
    response = post(admin_client, f"/contacts/{keep}/merge", {"other": str(other), "choice:city": "merged",
                                                              "choice:name": "survivor"})
    assert response.status_code == 303
    kept = row(app, Contact, keep)
    assert (kept["name"], kept["city"], kept["phone"]) == ("Ann Lee", "Plovdiv", "+359 88 123 4567")
    assert row(app, Contact, other)["deleted_at"] is not None
    assert [r.contact_id for r in rows(app, select(Interaction.contact_id))] == [keep]


def test_merge_needs_its_permission_and_both_contacts_in_scope(app, rep, admin_client):
    a, b = make_contact(app, REP, name="A"), make_contact(app, REP, name="B")
    assert rep.get(f"/contacts/{a}/merge?other={b}").status_code == 403
    make_user(app, OTHER)
    hidden = make_contact(app, OTHER, name="Hidden")
    manager = make_user(app, "manager@example.com", roles=("manager",))
    assert manager
    from host.testing import login

    client = app.test_client()
    login(client, "manager@example.com")
    mine = make_contact(app, "manager@example.com", name="Mine")
    assert client.get(f"/contacts/{mine}/merge?other={hidden}").status_code == 404
    assert post(client, f"/contacts/{mine}/merge", {"other": str(hidden)}).status_code == 404
    assert row(app, Contact, hidden)["deleted_at"] is None


# --- export ----------------------------------------------------------------------------------------------


def test_export_of_the_current_list_keeps_filters_sort_and_scope(app, signed_in):
    import csv

    manager = signed_in("manager@example.com", roles=("manager",))
    make_user(app, OTHER)
    make_contact(app, "manager@example.com", name="Zed Customer", lifecycle_stage="customer")
    make_contact(app, "manager@example.com", name="Ann Customer", lifecycle_stage="customer")
    make_contact(app, "manager@example.com", name="Lead Only", lifecycle_stage="lead")
    make_contact(app, OTHER, name="Not Mine", lifecycle_stage="customer")
    html = page(manager, "/contacts?lifecycle_stage=customer&sort=name")[1]
    link = re.search(r'href="(/contacts/export\?[^"]+format=csv)"', html).group(1).replace("&amp;", "&")
    response = manager.get(link)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["name"] for r in table] == ["Ann Customer", "Zed Customer"]
    xlsx = manager.get(link.replace("format=csv", "format=xlsx"))
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"


def test_export_needs_its_permission_and_refuses_a_bad_format(app, rep, admin_client):
    assert 'href="/contacts/export' not in page(rep, "/contacts")[1]
    assert rep.get("/contacts/export?format=csv").status_code == 403
    response = admin_client.get("/contacts/export?format=pdf")
    assert response.status_code == 302
    offer = admin_client.get("/contacts/export?tag=vip")
    html = offer.get_data(as_text=True)
    assert offer.status_code == 200 and "/contacts/export?tag=vip&amp;format=xlsx" in html
