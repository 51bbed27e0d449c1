"""The staff UI's shell: the layout (menu, search box, bell, user menu,
flashes), the arrangeable dashboard and its host widgets, the notifications
page, search suggestions, the language switch and the SVG chart helper."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from host.core.models import Contact, Interaction, Notification, Task
from host.core.notifications import NewNotification, add_notifications
from host.db import utcnow
from host.security.access import SYSTEM, acting_as
from host.testing import csrf_token, make_user
from host.web import layout, svg

pytestmark = pytest.mark.with_plugins()  # the host alone: its own widgets and pages

XSS = '<script>alert("x")</script>'


def _html(response) -> str:
    return response.get_data(as_text=True)


def _in_db(app, fn):
    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session, acting_as(SYSTEM):
        return fn(session)


# --- the layout ---------------------------------------------------------------------------


def test_signed_out_pages_redirect_to_login(client):
    for path in ("/", "/notifications", "/search/suggest?q=ab"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_layout_has_menu_search_bell_and_user_menu(app, signed_in):
    client = signed_in("rep@example.com", roles=("staff",))
    html = _html(client.get("/"))
    assert '<details class="nav-toggle"' in html and 'aria-label="Main"' in html
    assert '<form class="global-search" role="search" method="get" action="/search">' in html
    assert 'name="q" type="search"' in html and 'data-suggest="/search/suggest"' in html
    assert 'href="/notifications"' in html and "Notifications: 0 unread" in html
    assert 'action="/logout"' in html and 'action="/language"' in html and 'href="/profile"' in html
    assert '<a href="/" aria-current="page">Dashboard</a>' in html
    # scripts are files from /static, never inline
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/shell.js" defer>', '<script src="/static/suggest.js" defer>']


def test_menu_hides_admin_entries_from_staff(app, signed_in):
    staff = _html(signed_in("rep@example.com", roles=("staff",)).get("/"))
    admin = _html(signed_in("boss@example.com", roles=("admin",)).get("/"))
    for label in ("Users", "Custom fields", "Webhooks", "Recycle bin", "Settings"):
        assert f">{label}</a>" in admin and f">{label}</a>" not in staff


def test_static_assets_are_served(client):
    for name, marker in (("mosaic.css", b".topbar"), ("shell.js", b"details"), ("suggest.js", b"combobox")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and marker in response.data


def test_flash_messages_show_once(app, signed_in):
    client = signed_in("rep@example.com")
    token = csrf_token(client, "/")
    response = client.post("/language", data={"language": "xx", "next": "/profile", "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/profile"
    html = _html(client.get("/profile"))
    assert html.count("Choose one of the listed languages.") == 1 and 'class="flash flash-error"' in html
    assert "Choose one of the listed languages." not in _html(client.get("/profile"))


# --- language ---------------------------------------------------------------------------------


def test_language_switch_sets_the_profile_and_translates(app, signed_in):
    client = signed_in("rep@example.com")
    token = csrf_token(client, "/")
    response = client.post("/language", data={"language": "bg", "next": "/notifications", "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/notifications"
    html = _html(client.get("/notifications"))
    assert '<html lang="bg">' in html and "Известия" in html
    from host.security.models import User

    assert _in_db(app, lambda s: s.query(User).filter_by(email="rep@example.com").one().language) == "bg"


def test_language_switch_needs_csrf_and_refuses_offsite_next(app, signed_in):
    client = signed_in("rep@example.com")
    assert client.post("/language", data={"language": "bg"}).status_code == 400
    token = csrf_token(client, "/")
    response = client.post("/language", data={"language": "sk", "next": "//evil.example/", "csrf_token": token})
    assert response.headers["Location"] == "/"


# --- dashboard ----------------------------------------------------------------------------------


def _widget_order(html: str) -> list[str]:
    return re.findall(r'<section class="widget" id="widget-([^"]+)"', html)


def test_dashboard_shows_host_widgets_with_numbers(app, signed_in):
    client = signed_in("rep@example.com")
    user_id = _in_db(app, lambda s: s.query(__import__("host.security.models", fromlist=["User"]).User)
                     .filter_by(email="rep@example.com").one().id)
    now = utcnow()

    def seed(session):
        contact = Contact(name="Ivan <b>Petrov</b>", kind="person", owner_id=user_id)
        session.add(contact)
        session.flush()
        session.add_all([
            Task(title="overdue", owner_id=user_id, contact_id=contact.id, due_at=now - dt.timedelta(days=2)),
            Task(title="later", owner_id=user_id, due_at=now + dt.timedelta(days=5)),
            Task(title="done", owner_id=user_id, done=True),
            Interaction(contact_id=contact.id, channel="phone", subject=XSS, owner_id=user_id, occurred_at=now),
        ])

    _in_db(app, seed)
    html = _html(client.get("/"))
    assert _widget_order(html) == ["core.my_tasks", "core.recent_interactions"]
    tasks = html.split('id="widget-core.my_tasks"')[1].split("</section>")[0]
    assert re.findall(r'class="stat[^"]*">(\d+)<', tasks) == ["2", "0", "1"]  # open, due today, overdue
    interactions = html.split('id="widget-core.recent_interactions"')[1].split("</section>")[0]
    assert "&lt;script&gt;" in interactions and XSS not in html
    assert "Ivan &lt;b&gt;Petrov&lt;/b&gt;" in interactions
    assert '<svg class="chart" role="img"' in interactions and "<title" in interactions


def test_widgets_keep_to_the_record_scope(app, signed_in):
    client = signed_in("rep@example.com")
    other = make_user(app, "other@example.com")

    def seed(session):
        contact = Contact(name="Secret customer", kind="person", owner_id=other)
        session.add(contact)
        session.flush()
        session.add(Interaction(contact_id=contact.id, channel="phone", subject="hidden call", owner_id=other))

    _in_db(app, seed)
    html = _html(client.get("/"))
    assert "hidden call" not in html and "Secret customer" not in html and "No interactions yet." in html


def _arrange(client, action, key=""):
    token = csrf_token(client, "/")
    return client.post("/dashboard/layout", data={"action": action, "key": key, "csrf_token": token})


def test_dashboard_arrangement_is_stored_per_user(app, signed_in):
    alice = signed_in("alice@example.com")
    bob = signed_in("bob@example.com")
    response = _arrange(alice, "down", "core.my_tasks")
    assert response.status_code == 303 and response.headers["Location"] == "/#widget-core.my_tasks"
    assert _widget_order(_html(alice.get("/"))) == ["core.recent_interactions", "core.my_tasks"]
    assert _widget_order(_html(bob.get("/"))) == ["core.my_tasks", "core.recent_interactions"]

    _arrange(alice, "hide", "core.recent_interactions")
    html = _html(alice.get("/"))
    assert _widget_order(html) == ["core.my_tasks"]
    assert "Hidden widgets" in html and 'aria-label="Show Recent interactions"' in html

    _arrange(alice, "show", "core.recent_interactions")
    assert _widget_order(_html(alice.get("/"))) == ["core.recent_interactions", "core.my_tasks"]
    _arrange(alice, "reset")
    assert _widget_order(_html(alice.get("/"))) == ["core.my_tasks", "core.recent_interactions"]


def test_dashboard_arrangement_refuses_bad_input(app, signed_in):
    client = signed_in("alice@example.com")
    assert client.post("/dashboard/layout", data={"action": "hide", "key": "core.my_tasks"}).status_code == 400
    assert _arrange(client, "explode", "core.my_tasks").status_code == 400
    assert _arrange(client, "hide", "no.such.widget").status_code == 404


def test_layout_change_keeps_unknown_widgets_and_moves_within_visible():
    saved = layout.Layout(order=["gone", "a"], hidden=["b"])
    moved = layout.change(saved, ["a", "b", "c"], "up", "c")
    # "c" swaps with "a", its visible neighbour; hidden "b" and absent "gone" keep their places
    assert moved.order == ["gone", "c", "b", "a"] and moved.hidden == ["b"]
    shown, hidden = layout.arrange([_W("a"), _W("b"), _W("c")], moved)
    assert [w.key for w in shown] == ["c", "a"] and [w.key for w in hidden] == ["b"]
    with pytest.raises(LookupError):
        layout.change(saved, ["a"], "hide", "zzz")


class _W:
    def __init__(self, key):
        self.key = key


# --- notifications -------------------------------------------------------------------------------


def _notify(app, user_id, title, url=None, key=None):
    _in_db(app, lambda s: add_notifications(s, [NewNotification(user_id=user_id, kind="task.reminder", title=title,
                                                                url=url, dedupe_key=key)]))


def test_notifications_page_lists_marks_and_escapes(app, signed_in):
    client = signed_in("rep@example.com")
    me = _in_db(app, lambda s: s.query(__import__("host.security.models", fromlist=["User"]).User)
                .filter_by(email="rep@example.com").one().id)
    other = make_user(app, "other@example.com")
    _notify(app, me, "Call back " + XSS, url="/tasks/1", key="a")
    _notify(app, me, "Evil link", url="javascript:alert(1)", key="b")
    _notify(app, other, "Not yours", key="c")
    html = _html(client.get("/"))
    assert "Notifications: 2 unread" in html and '<span class="badge" aria-hidden="true">2</span>' in html
    page = _html(client.get("/notifications"))
    assert "Not yours" not in page and XSS not in page and "Call back &lt;script&gt;" in page
    assert 'href="/tasks/1"' in page and "javascript:" not in page

    mine = _in_db(app, lambda s: [n.id for n in s.query(Notification).filter_by(user_id=me)])
    theirs = _in_db(app, lambda s: s.query(Notification).filter_by(user_id=other).one().id)
    token = csrf_token(client, "/notifications")
    assert client.post(f"/notifications/{theirs}/read", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/notifications/{mine[0]}/read").status_code == 400  # no CSRF token
    assert client.post(f"/notifications/{mine[0]}/read", data={"csrf_token": token}).status_code == 303
    assert "Notifications: 1 unread" in _html(client.get("/"))
    assert client.post("/notifications/read-all", data={"csrf_token": token}).status_code == 303
    assert "Notifications: 0 unread" in _html(client.get("/"))
    assert _in_db(app, lambda s: s.query(Notification).filter_by(user_id=other).one().read_at) is None


# --- suggestions ----------------------------------------------------------------------------------


def test_suggest_answers_json_within_the_scope(app, signed_in):
    client = signed_in("rep@example.com")
    nobody = signed_in("nobody@example.com", roles=())
    me = _in_db(app, lambda s: s.query(__import__("host.security.models", fromlist=["User"]).User)
                .filter_by(email="rep@example.com").one().id)
    other = make_user(app, "other@example.com")
    _in_db(app, lambda s: s.add_all([Contact(name="Petrova Maria", kind="person", owner_id=me),
                                      Contact(name="Petrov Hidden", kind="person", owner_id=other)]))
    body = client.get("/search/suggest?q=petro").get_json()
    assert [item["title"] for item in body["items"]] == ["Petrova Maria"]
    assert body["items"][0]["url"].startswith("/contacts/")
    assert client.get("/search/suggest?q=p").get_json()["items"] == []
    assert nobody.get("/search/suggest?q=petro").status_code == 403


# --- SVG charts ---------------------------------------------------------------------------------------


def test_svg_charts_escape_labels_and_describe_values():
    bar = str(svg.bar_chart('Deals <"won">', ["<b>Mon</b>", "Tue"], [3, 0]))
    assert bar.startswith('<svg class="chart" role="img"') and "xmlns" not in bar
    assert "<b>" not in bar and "&lt;b&gt;Mon&lt;/b&gt;: 3" in bar and "Deals &lt;&#34;won&#34;&gt;" in bar
    assert bar.count("<rect") == 2
    line = str(svg.line_chart("Trend", ["a", "b", "c"], [1, 5, 2]))
    assert "<polyline" in line and line.count("<circle") == 3 and "a: 1; b: 5; c: 2" in line
    with pytest.raises(ValueError):
        svg.bar_chart("x", ["a"], [1, 2])
