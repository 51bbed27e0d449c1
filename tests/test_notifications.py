"""Notifications (host.core.notifications): created at most once per
dedupe key, listed and marked read only by their own user, through the API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from host.core.models import Notification
from host.core.notifications import NewNotification, add_notifications
from host.testing import api_token, bearer, make_user


def db_of(app):
    return app.extensions["mosaic"].db


def notify(app, user_id: int, title: str, key: str | None = None) -> dict[str, int]:
    with db_of(app).transaction() as session:
        return add_notifications(session, [NewNotification(user_id=user_id, kind="test", title=title, url="/x", dedupe_key=key)])


def users(app):
    ann = make_user(app, "ann@example.com")
    bob = make_user(app, "bob@example.com")
    return ann, bob, bearer(api_token(app, "ann@example.com")), bearer(api_token(app, "bob@example.com"))


def count(app) -> int:
    with db_of(app).Session() as session:
        return session.scalar(select(func.count()).select_from(Notification))


# --- the service --------------------------------------------------------------------------------


def test_a_dedupe_key_creates_one_notification_and_tells_who_created_it(make_app):
    app = make_app(plugins=[])
    ann, _bob, _a, _b = users(app)
    first = notify(app, ann, "Task due", "task:1:2026-01-01T00:00:00+00:00")
    again = notify(app, ann, "Task due (again)", "task:1:2026-01-01T00:00:00+00:00")
    assert list(first) == ["task:1:2026-01-01T00:00:00+00:00"] and again == {}
    assert count(app) == 1


def test_notifications_without_a_key_are_always_added(make_app):
    app = make_app(plugins=[])
    ann, _bob, _a, _b = users(app)
    assert notify(app, ann, "one") == {} and notify(app, ann, "two") == {}
    assert count(app) == 2


# --- listing --------------------------------------------------------------------------------------


def test_the_list_is_mine_newest_first_in_keyset_pages(make_app):
    app = make_app(plugins=[])
    ann, bob, ann_headers, _ = users(app)
    for i in range(5):
        notify(app, ann, f"ann {i}")
    notify(app, bob, "bob's secret")
    client = app.test_client()

    first = client.get("/api/v1/notifications?limit=3", headers=ann_headers).get_json()
    rest = client.get(f"/api/v1/notifications?limit=3&cursor={first['next']}", headers=ann_headers).get_json()

    assert [n["title"] for n in first["items"]] == ["ann 4", "ann 3", "ann 2"]
    assert [n["title"] for n in rest["items"]] == ["ann 1", "ann 0"] and rest["next"] is None
    item = first["items"][0]
    assert set(item) == {"id", "kind", "title", "url", "created_at", "read_at"} and item["read_at"] is None


def test_unread_filter_count_and_marking_read(make_app):
    app = make_app(plugins=[])
    ann, _bob, headers, _ = users(app)
    for i in range(3):
        notify(app, ann, f"n{i}")
    client = app.test_client()
    ids = [n["id"] for n in client.get("/api/v1/notifications", headers=headers).get_json()["items"]]
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 3}

    marked = client.post(f"/api/v1/notifications/{ids[0]}/read", headers=headers)
    assert marked.status_code == 200 and marked.get_json()["read_at"] is not None
    again = client.post(f"/api/v1/notifications/{ids[0]}/read", headers=headers).get_json()
    assert again["read_at"] == marked.get_json()["read_at"], "the first read time is kept"

    unread = client.get("/api/v1/notifications?unread=true", headers=headers).get_json()["items"]
    assert [n["id"] for n in unread] == ids[1:]
    assert client.get("/api/v1/notifications/unread-count", headers=headers).get_json() == {"unread": 2}


def test_another_users_notification_answers_404_and_stays_unread(make_app):
    app = make_app(plugins=[])
    _ann, bob, ann_headers, bob_headers = users(app)
    notify(app, bob, "bob's")
    client = app.test_client()
    [bobs] = client.get("/api/v1/notifications", headers=bob_headers).get_json()["items"]

    assert client.post(f"/api/v1/notifications/{bobs['id']}/read", headers=ann_headers).status_code == 404
    assert client.post("/api/v1/notifications/987654/read", headers=ann_headers).status_code == 404
    assert client.get("/api/v1/notifications/unread-count", headers=bob_headers).get_json() == {"unread": 1}


def test_read_all_marks_only_mine(make_app):
    app = make_app(plugins=[])
    ann, bob, ann_headers, bob_headers = users(app)
    notify(app, ann, "a1")
    notify(app, ann, "a2")
    notify(app, bob, "b1")
    client = app.test_client()
    assert client.post("/api/v1/notifications/read-all", headers=ann_headers).get_json() == {"marked": 2}
    assert client.get("/api/v1/notifications/unread-count", headers=ann_headers).get_json() == {"unread": 0}
    assert client.get("/api/v1/notifications/unread-count", headers=bob_headers).get_json() == {"unread": 1}


def test_read_only_tokens_read_but_do_not_mark_and_strangers_get_401(make_app):
    app = make_app(plugins=[])
    ann, _bob, _headers, _ = users(app)
    notify(app, ann, "n")
    read_only = bearer(api_token(app, "ann@example.com", read_only=True))
    client = app.test_client()
    [item] = client.get("/api/v1/notifications", headers=read_only).get_json()["items"]
    assert client.post(f"/api/v1/notifications/{item['id']}/read", headers=read_only).status_code == 403
    assert client.get("/api/v1/notifications").status_code == 401


def test_a_cursor_that_is_not_ours_is_a_422(make_app):
    app = make_app(plugins=[])
    _ann, _bob, headers, _ = users(app)
    client = app.test_client()
    for cursor in ("%%%", "WyJ4Il0", "WzEsMl0"):  # garbage, ["x"], [1,2]
        response = client.get(f"/api/v1/notifications?cursor={cursor}", headers=headers)
        assert response.status_code == 422 and "cursor" in response.get_json()["errors"]["query"], cursor


def test_mark_read_keeps_a_given_time(make_app):
    """The service takes ``now`` (jobs and tests pass their own clock)."""
    from host.core.notifications import mark_read

    app = make_app(plugins=[])
    ann, bob, _a, _b = users(app)
    notify(app, ann, "n")
    when = dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc)
    with db_of(app).transaction() as session:
        nid = session.scalar(select(Notification.id))
        assert mark_read(session, bob, nid, when) is None
        assert mark_read(session, ann, nid, when).read_at == when
