"""The contact timeline (host.core.timeline) through its API: one stream
merged from interactions, tasks and plugins, newest first; cursor pages
that neither skip nor repeat entries with equal timestamps, across sources;
a failing plugin degrades to a placeholder; scope and 404s.

Records are created with the ORM (the CRUD services are another module's);
plugins are real hook implementations serving entries from memory.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from hooks import TimelineEntry, hookimpl
from host.core.models import Contact, Interaction, Task
from host.testing import api_token, bearer, make_user, plugin_candidate

UTC = dt.timezone.utc
#: Microseconds on purpose: "up to and including T" must hold at full precision.
T = dt.datetime(2026, 3, 2, 10, 30, 15, 123456, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


# --- records (ORM; shared with the other core tests of this module's author) -------------------


def db_of(app):
    return app.extensions["mosaic"].db


def add_contact(app, name: str, owner_id: int | None, **values: Any) -> int:
    with db_of(app).transaction() as session:
        contact = Contact(name=name, owner_id=owner_id, **values)
        session.add(contact)
        session.flush()
        return contact.id


def add_interaction(app, contact_id: int, subject: str, when: dt.datetime, owner_id: int | None, **values: Any) -> int:
    with db_of(app).transaction() as session:
        row = Interaction(contact_id=contact_id, channel=values.pop("channel", "phone"), subject=subject,
                          occurred_at=when, owner_id=owner_id, **values)
        session.add(row)
        session.flush()
        return row.id


def add_task(app, contact_id: int | None, title: str, due_at: dt.datetime | None, owner_id: int | None, **values: Any) -> int:
    with db_of(app).transaction() as session:
        row = Task(contact_id=contact_id, title=title, due_at=due_at, owner_id=owner_id, **values)
        session.add(row)
        session.flush()
        return row.id


def set_values(app, model, record_id: int, **values: Any) -> None:
    with db_of(app).transaction() as session:
        row = session.get(model, record_id)
        for key, value in values.items():
            setattr(row, key, value)


# --- plugins ---------------------------------------------------------------------------------


class MemorySource:
    """A well-behaved plugin: honours ``before`` and ``limit``, newest first,
    equal timestamps by key descending (as the contract asks). Remembers
    what it was asked."""

    def __init__(self, entries: list[TimelineEntry]):
        self.entries = entries
        self.asked: list[tuple[Any, int]] = []
        self.users: list[Any] = []

    @hookimpl
    def mosaic_contact_timeline(self, contact, user, before, limit):
        self.asked.append((before, limit))
        self.users.append(user)
        rows = [e for e in self.entries if before is None or e.when < before]
        return sorted(rows, key=lambda e: (e.when, e.key), reverse=True)[:limit]


class Broken:
    @hookimpl
    def mosaic_contact_timeline(self, contact, user, before, limit):
        raise RuntimeError("the deals table is on fire")


class NaiveDates:
    @hookimpl
    def mosaic_contact_timeline(self, contact, user, before, limit):
        return [TimelineEntry(when=dt.datetime(2026, 1, 1), kind="x", title="naive", key="1")]


def entries(prefix: str, *whens: dt.datetime) -> list[TimelineEntry]:
    return [TimelineEntry(when=w, kind=f"{prefix}.thing", title=f"{prefix}{i}", summary=f"about {prefix}{i}", key=f"{i:03d}")
            for i, w in enumerate(whens)]


def app_with(make_app, **plugins: Any):
    return make_app(plugins=list(plugins), extra_plugins=[plugin_candidate(n, p) for n, p in plugins.items()])


# --- reading the API ----------------------------------------------------------------------------


def get_page(client, contact_id: int, headers, **params: Any):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/api/v1/contacts/{contact_id}/timeline?{query}", headers=headers)


def walk(client, contact_id: int, headers, limit: int) -> list[dict]:
    """Every item, following ``next`` to the end."""
    items, cursor = [], None
    for _ in range(500):
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = get_page(client, contact_id, headers, **params)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len([i for i in body["items"] if i["kind"] != "placeholder"]) <= limit
        items += body["items"]
        cursor = body["next"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


def titles(items: list[dict]) -> list[str]:
    return [item["title"] for item in items]


def staff(app, email: str = "ann@example.com", roles=("staff",)):
    user_id = make_user(app, email, roles=roles)
    return user_id, bearer(api_token(app, email))


# --- merging -----------------------------------------------------------------------------------


def test_one_stream_from_interactions_tasks_and_plugins_newest_first(make_app):
    deals = MemorySource(entries("deal", T - 2 * HOUR, T + HOUR))
    app = app_with(make_app, sales2=deals)
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    add_interaction(app, contact, "First call", T - 3 * HOUR, ann, body="Asked  for\na quote " + "x" * 400)
    add_interaction(app, contact, "Meeting", T, ann, channel="meeting")
    add_task(app, contact, "Send the quote", T - HOUR, ann, notes="with the discount")
    add_task(app, contact, "Old follow-up", T - 4 * HOUR, ann, done=True)

    body = get_page(app.test_client(), contact, headers).get_json()

    assert titles(body["items"]) == ["deal1", "Meeting", "Send the quote", "deal0", "First call", "Old follow-up"]
    assert body["next"] is None
    by_title = {item["title"]: item for item in body["items"]}
    assert by_title["Meeting"]["kind"] == "interaction.meeting" and by_title["Meeting"]["source"] == "core"
    assert by_title["deal1"] == {"when": (T + HOUR).isoformat(), "kind": "deal.thing", "title": "deal1",
                                 "summary": "about deal1", "url": None, "source": "sales2"}
    assert by_title["Send the quote"]["kind"] == "task" and by_title["Send the quote"]["summary"] == "Open: with the discount"
    assert by_title["Old follow-up"]["kind"] == "task.done" and by_title["Old follow-up"]["summary"] == "Done"
    summary = by_title["First call"]["summary"]
    assert summary.startswith("Asked for a quote xxx") and len(summary) == 280 and summary.endswith("…")
    assert by_title["First call"]["url"].startswith("/interactions/")


def test_a_task_without_due_date_stands_at_its_creation(make_app):
    app = make_app(plugins=[])
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    add_interaction(app, contact, "Call", T, ann)
    add_task(app, contact, "Undated", None, ann, created_at=T - HOUR)
    assert titles(get_page(app.test_client(), contact, headers).get_json()["items"]) == ["Call", "Undated"]


def test_deleted_interactions_and_tasks_and_other_contacts_entries_are_left_out(make_app):
    app = make_app(plugins=[])
    ann, headers = staff(app)
    contact, other = add_contact(app, "Ana Lima", ann), add_contact(app, "Bo Berg", ann)
    add_interaction(app, contact, "Kept", T, ann)
    add_interaction(app, contact, "Binned call", T, ann, deleted_at=T)
    add_task(app, contact, "Binned task", T, ann, deleted_at=T)
    add_interaction(app, other, "Someone else's call", T, ann)
    assert titles(get_page(app.test_client(), contact, headers).get_json()["items"]) == ["Kept"]


# --- pages and equal timestamps ----------------------------------------------------------------------


@pytest.fixture
def crowded(make_app):
    """A contact whose entries pile up at one instant ``T`` in every source:
    interactions, tasks, a plugin sorting before "core.*" (alpha) and one
    after (zulu), plus entries before and after ``T``."""
    alpha = MemorySource(entries("alpha", T, T, T, T, T - HOUR))
    zulu = MemorySource(entries("zulu", T, T, T, T + HOUR, T - 2 * HOUR, T - 2 * HOUR))
    app = app_with(make_app, alpha=alpha, zulu=zulu)
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    for i in range(4):
        add_interaction(app, contact, f"call{i}", T, ann)
    add_interaction(app, contact, "early call", T - 3 * HOUR, ann)
    for i in range(3):
        add_task(app, contact, f"task{i}", T, ann)
    add_task(app, contact, "later task", T + 2 * HOUR, ann)
    return app, contact, headers, {"alpha": alpha, "zulu": zulu}


def test_the_full_stream_is_ordered_and_complete(crowded):
    app, contact, headers, _plugins = crowded
    items = get_page(app.test_client(), contact, headers, limit=200).get_json()["items"]
    assert len(items) == 5 + 6 + 5 + 4
    whens = [dt.datetime.fromisoformat(i["when"]) for i in items]
    assert whens == sorted(whens, reverse=True)
    at_t = [i["source"] for i in items if dt.datetime.fromisoformat(i["when"]) == T]
    # ties: stream descending (zulu, core.task, core.interaction, alpha)
    assert at_t == ["zulu"] * 3 + ["core"] * 7 + ["alpha"] * 4


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 7, 11])
def test_pages_with_equal_timestamps_across_sources_neither_skip_nor_repeat(crowded, limit):
    app, contact, headers, plugins = crowded
    client = app.test_client()
    everything = titles(get_page(client, contact, headers, limit=200).get_json()["items"])
    for plugin in plugins.values():
        plugin.asked.clear()

    walked = titles(walk(client, contact, headers, limit))

    assert walked == everything
    assert len(set(walked)) == len(walked) == 20
    for plugin in plugins.values():
        # never the whole history: at most limit + 1, plus the ties already
        # shown of the cursor's own stream at the cursor's instant
        assert max(asked for _before, asked in plugin.asked) <= limit + 1 + 4


def test_a_cursor_that_is_not_ours_is_a_422_naming_it(crowded):
    app, contact, headers, _plugins = crowded
    for cursor in ("%%%", "WzFd", "WyJ4IiwiYSIsImIiLDFd"):  # garbage, [1], ["x","a","b",1]
        response = get_page(app.test_client(), contact, headers, cursor=cursor)
        assert response.status_code == 422, cursor
        assert "cursor" in response.get_json()["errors"]["query"]
    assert get_page(app.test_client(), contact, headers, limit=0).status_code == 422
    assert get_page(app.test_client(), contact, headers, limit=201).status_code == 422


def test_plugins_get_the_user_account_and_the_window(make_app):
    deals = MemorySource(entries("deal", T, T - HOUR, T - 2 * HOUR))
    app = app_with(make_app, deals=deals)
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    client = app.test_client()

    first = get_page(client, contact, headers, limit=1).get_json()
    get_page(client, contact, headers, limit=1, cursor=first["next"])

    assert [u.email for u in deals.users] == ["ann@example.com"] * 2
    assert deals.asked[0] == (None, 2)
    # the cursor's own stream: up to and including the cursor's instant, one more per tie shown
    assert deals.asked[1] == (T + dt.timedelta(microseconds=1), 3)


# --- failures ------------------------------------------------------------------------------------------


def test_a_raising_plugin_becomes_a_placeholder_and_the_stream_still_renders(make_app, caplog):
    deals = MemorySource(entries("deal", T - HOUR))
    app = app_with(make_app, broken=Broken(), deals=deals, naive=NaiveDates())
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    add_interaction(app, contact, "Call", T, ann)

    with caplog.at_level(logging.ERROR, logger="mosaic.timeline"):
        response = get_page(app.test_client(), contact, headers)

    assert response.status_code == 200
    items = response.get_json()["items"]
    placeholders = [i for i in items if i["kind"] == "placeholder"]
    assert [(p["source"], p["title"]) for p in placeholders] == [
        ("broken", "The broken plugin could not show its entries."),
        ("naive", "The naive plugin could not show its entries."),
    ]
    assert titles(items[2:]) == ["Call", "deal0"]
    whens = [dt.datetime.fromisoformat(i["when"]) for i in items]
    assert whens == sorted(whens, reverse=True), "placeholders stand at the page's top"
    failed = {r.getMessage() for r in caplog.records}
    assert failed == {"plugin broken failed in mosaic_contact_timeline", "plugin naive failed in mosaic_contact_timeline"}
    assert any("the deals table is on fire" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_failing_plugin_does_not_break_the_pages_after_it(make_app):
    app = app_with(make_app, broken=Broken())
    ann, headers = staff(app)
    contact = add_contact(app, "Ana Lima", ann)
    for i in range(3):
        add_interaction(app, contact, f"call{i}", T - i * HOUR, ann)
    client = app.test_client()
    items = walk(client, contact, headers, 2)
    assert titles([i for i in items if i["kind"] != "placeholder"]) == ["call0", "call1", "call2"]
    assert [i["source"] for i in items if i["kind"] == "placeholder"] == ["broken", "broken"]  # one per page


# --- scope and 404 --------------------------------------------------------------------------------------


def test_out_of_scope_missing_and_deleted_contacts_answer_404(make_app):
    app = make_app(plugins=[])
    ann, ann_headers = staff(app, "ann@example.com")
    _bob, bob_headers = staff(app, "bob@example.com")
    _admin, admin_headers = staff(app, "root@example.com", roles=("admin",))
    make_user(app, "nobody@example.com", roles=())
    nobody = bearer(api_token(app, "nobody@example.com"))
    contact = add_contact(app, "Ana Lima", ann)
    add_interaction(app, contact, "Secret call", T, ann)
    binned = add_contact(app, "Binned", ann, deleted_at=T)
    client = app.test_client()

    assert get_page(client, contact, ann_headers).status_code == 200
    assert get_page(client, contact, admin_headers).status_code == 200
    hidden = get_page(client, contact, bob_headers)
    assert hidden.status_code == 404 and "Secret call" not in hidden.get_data(as_text=True)
    assert get_page(client, 987654, ann_headers).status_code == 404
    assert get_page(client, binned, ann_headers).status_code == 404
    assert get_page(client, contact, nobody).status_code == 403, "without core.contact.read"
    assert client.get(f"/api/v1/contacts/{contact}/timeline").status_code == 401


def test_host_entries_are_filtered_by_the_readers_scope(make_app):
    """Ann sees her contact, but not the call a colleague logged on it (own
    scope for interactions); an admin sees both."""
    app = make_app(plugins=[])
    ann, ann_headers = staff(app, "ann@example.com")
    bob, _ = staff(app, "bob@example.com")
    _admin, admin_headers = staff(app, "root@example.com", roles=("admin",))
    contact = add_contact(app, "Ana Lima", ann)
    add_interaction(app, contact, "Ann's call", T, ann)
    add_interaction(app, contact, "Bob's call", T - HOUR, bob)
    add_task(app, contact, "Bob's task", T - HOUR, bob)
    client = app.test_client()
    assert titles(get_page(client, contact, ann_headers).get_json()["items"]) == ["Ann's call"]
    assert titles(get_page(client, contact, admin_headers).get_json()["items"]) == ["Ann's call", "Bob's task", "Bob's call"]
