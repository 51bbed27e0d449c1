"""Tasks and interactions in the staff UI: "My tasks" in groups, done with
one click, snooze, others' tasks within scope, a task's page, and the
interactions list and page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from host.core.models import Interaction, Task
from host.testing import csrf_token, make_user

from .core_support import days_ago, make_contact, make_interaction, make_task, row, rows

pytestmark = pytest.mark.with_plugins()

REP = "rep@example.com"
OTHER = "other@example.com"


@pytest.fixture
def rep(app, signed_in):
    return signed_in(REP)


def html_of(client, path):
    response = client.get(path)
    return response.status_code, response.get_data(as_text=True)


def post(client, path, data=None, **kwargs):
    return client.post(path, data={"csrf_token": csrf_token(client, "/tasks"), **(data or {})}, **kwargs)


def group(html: str, key: str) -> str:
    found = re.search(rf'<section class="task-group group-{key}".*?</section>', html, re.S)
    return found.group(0) if found else ""


# --- access -------------------------------------------------------------------------------


def test_signed_out_and_without_permission(app, client, signed_in):
    for path in ("/tasks", "/tasks/new", "/tasks/1", "/interactions", "/interactions/1"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), path
    nobody = signed_in("nobody@example.com", roles=())
    for path in ("/tasks", "/tasks/new", "/interactions"):
        assert nobody.get(path).status_code == 403, path


def test_tasks_and_interactions_out_of_scope_answer_404(app, rep):
    make_user(app, OTHER)
    contact = make_contact(app, OTHER, name="Theirs")
    task = make_task(app, OTHER, title="Their task", contact_id=contact)
    interaction = make_interaction(app, OTHER, contact, subject="Their call")
    for path in (f"/tasks/{task}", f"/interactions/{interaction}"):
        assert rep.get(path).status_code == 404, path
    for path in (f"/tasks/{task}/done", f"/tasks/{task}/snooze", f"/tasks/{task}"):
        assert post(rep, path, {"for": "day", "title": "Mine now", "version": "1"}).status_code == 404, path
    assert row(app, Task, task)["done"] is False and row(app, Task, task)["title"] == "Their task"
    assert "Their call" not in html_of(rep, "/interactions")[1]
    assert "Their task" not in html_of(rep, "/tasks?assignee=all")[1]


# --- my tasks ---------------------------------------------------------------------------------------


def test_my_tasks_are_grouped_by_when_they_are_due(app, rep):
    now = dt.datetime.now(dt.timezone.utc)
    make_task(app, REP, title="Late one", due_at=now - dt.timedelta(days=2))
    make_task(app, REP, title="Soon today", due_at=now + dt.timedelta(minutes=1))
    make_task(app, REP, title="Next month", due_at=now + dt.timedelta(days=30))
    make_task(app, REP, title="Some day")
    make_task(app, REP, title="Finished", due_at=now - dt.timedelta(days=1), done=True)
    status, html = html_of(rep, "/tasks")
    assert status == 200 and "My tasks" in html
    assert "Late one" in group(html, "overdue")
    assert "Next month" in group(html, "upcoming")
    assert "Some day" in group(html, "undated")
    assert "Finished" not in html
    # "Soon today" is today unless the test runs a minute before the user's midnight
    assert "Soon today" in group(html, "today") + group(html, "upcoming")


def test_done_with_one_click(app, rep):
    task = make_task(app, REP, title="Call Ann", due_at=days_ago(1))
    response = post(rep, f"/tasks/{task}/done", {"next": "/tasks"})
    assert response.status_code == 303 and response.headers["Location"] == "/tasks"
    assert row(app, Task, task)["done"] is True and row(app, Task, task)["done_at"] is not None
    html = html_of(rep, "/tasks")[1]
    assert "Call Ann" in html  # the flash names it
    assert "Call Ann" not in group(html, "overdue")
    post(rep, f"/tasks/{task}/done", {"done": "0"})
    assert row(app, Task, task)["done"] is False


def test_snooze_moves_an_overdue_task_out_of_overdue(app, rep):
    task = make_task(app, REP, title="Chase invoice", due_at=days_ago(3))
    assert "Chase invoice" in group(html_of(rep, "/tasks")[1], "overdue")
    assert post(rep, f"/tasks/{task}/snooze", {"for": "week"}).status_code == 303
    stored = row(app, Task, task)
    assert stored["snoozed_until"] > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=6)
    assert stored["due_at"] < dt.datetime.now(dt.timezone.utc), "the agreed due date stays"
    html = html_of(rep, "/tasks")[1]
    assert "Chase invoice" in group(html, "upcoming") and "snoozed until" in group(html, "upcoming")
    response = post(rep, f"/tasks/{task}/snooze", {"for": "forever"}, follow_redirects=True)
    assert "Choose how long" in response.get_data(as_text=True)


def test_others_tasks_within_scope(app, signed_in):
    make_user(app, REP, teams=("North",))
    make_user(app, "south@example.com", teams=("South",))
    manager = signed_in("manager@example.com", roles=("manager",), teams=("North",))
    make_task(app, REP, title="North task")
    make_task(app, "south@example.com", title="South task")
    rep_id = row(app, Task, 1)["owner_id"]
    assert "North task" not in html_of(manager, "/tasks")[1], "my tasks are mine"
    html = html_of(manager, f"/tasks?assignee={rep_id}")[1]
    assert "North task" in html
    everyone = html_of(manager, "/tasks?assignee=all")[1]
    assert "North task" in everyone and "South task" not in everyone


def test_stored_html_is_escaped_in_the_task_list(app, rep):
    payload = "<img src=x onerror=alert(1)>"
    contact = make_contact(app, REP, name=payload)
    make_task(app, REP, title=payload, contact_id=contact, due_at=days_ago(1))
    html = html_of(rep, "/tasks")[1]
    assert payload not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_done_needs_csrf(app, rep):
    task = make_task(app, REP, title="Call")
    assert rep.post(f"/tasks/{task}/done").status_code == 400
    assert row(app, Task, task)["done"] is False


# --- a task's page, new task -------------------------------------------------------------------------


def test_new_task_form_creates_and_keeps_input_on_error(app, rep):
    status, html = html_of(rep, "/tasks/new")
    assert status == 200 and 'name="title"' in html and 'name="due_at"' in html and 'type="datetime-local"' in html
    rep_id = make_user(app, "helper@example.com")
    response = post(rep, "/tasks/new", {"title": "", "notes": "Keep <this>", "priority": "high", "assignee_id": str(rep_id)})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="f-title-error"' in html and "Keep &lt;this&gt;</textarea>" in html
    response = post(rep, "/tasks/new", {"title": "Prepare offer", "priority": "high", "assignee_id": str(rep_id),
                                        "due_at": "2031-03-04T08:15"})
    assert response.status_code == 303
    (task,) = rows(app, select(Task.title, Task.owner_id, Task.priority))
    assert tuple(task) == ("Prepare offer", rep_id, "high")


def test_stale_task_edit_is_409_and_keeps_the_input(app, rep):
    task = make_task(app, REP, title="Original")
    html = html_of(rep, f"/tasks/{task}")[1]
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    from host.core import services

    from .core_support import run_as

    run_as(app, REP, lambda s: services.update_task(s, task, {"title": "Changed by a colleague"}))
    owner = str(row(app, Task, task)["owner_id"])
    response = post(rep, f"/tasks/{task}", {"title": "My edit", "priority": "normal", "assignee_id": owner,
                                           "version": version})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert 'value="My edit"' in html and "Changed by a colleague" in html
    assert row(app, Task, task)["title"] == "Changed by a colleague"
    new_version = re.search(r'name="version" value="(\d+)"', html).group(1)
    assert int(new_version) > int(version)
    response = post(rep, f"/tasks/{task}", {"title": "My edit", "priority": "normal", "assignee_id": owner,
                                           "version": new_version})
    assert response.status_code == 303 and row(app, Task, task)["title"] == "My edit"


def test_delete_and_restore_a_task(app, admin_client):
    task = make_task(app, "admin@example.com", title="Binned task")
    response = post(admin_client, f"/tasks/{task}/delete", {"version": str(row(app, Task, task)["version"])})
    assert response.headers["Location"] == f"/tasks/{task}/deleted"
    assert admin_client.get(f"/tasks/{task}").status_code == 404
    assert post(admin_client, f"/tasks/{task}/restore").status_code == 303
    assert row(app, Task, task)["deleted_at"] is None


# --- interactions ---------------------------------------------------------------------------------------


def test_interactions_list_filters_and_pages(app, rep, monkeypatch):
    from host.web import interactions as view

    monkeypatch.setattr(view, "PAGE_SIZE", 2)
    contact = make_contact(app, REP, name="Ann")
    make_interaction(app, REP, contact, subject="Phone one", channel="phone")
    make_interaction(app, REP, contact, subject="Mail one", channel="email")
    make_interaction(app, REP, contact, subject="Phone two", channel="phone")
    status, html = html_of(rep, "/interactions")
    assert status == 200 and "Phone two" in html and "Mail one" in html and "Phone one" not in html
    more = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "Phone one" in html_of(rep, more)[1]
    html = html_of(rep, "/interactions?channel=email")[1]
    assert "Mail one" in html and "Phone" not in re.sub(r"<option.*?</option>|<th.*?</th>|<label.*?</label>", "", html, flags=re.S)
    status, html = html_of(rep, "/interactions?from=not-a-date")
    assert status == 422 and "from" in html


def test_interaction_page_edit_and_stale_edit(app, rep):
    contact = make_contact(app, REP, name="Ann")
    interaction = make_interaction(app, REP, contact, subject="First call", body="<b>hello</b>")
    status, html = html_of(rep, f"/interactions/{interaction}")
    assert status == 200 and "&lt;b&gt;hello&lt;/b&gt;" in html
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    response = post(rep, f"/interactions/{interaction}", {"channel": "phone", "direction": "out", "subject": "Second call",
                                                         "occurred_at": "2024-01-01T10:00", "version": version})
    assert response.status_code == 303 and row(app, Interaction, interaction)["subject"] == "Second call"
    response = post(rep, f"/interactions/{interaction}", {"channel": "phone", "direction": "out", "subject": "Stale",
                                                         "occurred_at": "2024-01-01T10:00", "version": version})
    assert response.status_code == 409 and 'value="Stale"' in response.get_data(as_text=True)
    assert row(app, Interaction, interaction)["subject"] == "Second call"
