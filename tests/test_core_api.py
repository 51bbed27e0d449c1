"""The core record's REST API (``/api/v1/contacts``, ``/interactions``,
``/tasks``, ``/admin/custom-fields``) through real bearer tokens, on SQLite
and PostgreSQL: every endpoint, and the answers 401, 403, 404, 409, 412,
415, 422 and 428 where they apply.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from host.core.models import Contact, Interaction, Task
from host.testing import api_token, bearer, make_user

from .core_support import days_ago, make_company, make_contact, make_interaction, make_task, row

pytestmark = pytest.mark.with_plugins()

MISSING = 987654321


class Api:
    """A test client speaking as one user through a bearer token."""

    def __init__(self, app, email: str, *, read_only: bool = False):
        self.client = app.test_client()
        self.headers = bearer(api_token(app, email, read_only=read_only))

    def get(self, path, **params):
        return self.client.get(path, query_string=params, headers=self.headers)

    def post(self, path, body=None, **kwargs):
        return self.client.post(path, json=body, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def patch(self, path, body, **headers):
        return self.client.patch(path, json=body, headers={**self.headers, **headers})

    def delete(self, path, **headers):
        return self.client.delete(path, headers={**self.headers, **headers})


@pytest.fixture
def users(app):
    """ann, bob: staff (own scope; north, south); max: manager of south
    (team scope, may delete and merge); boss: admin."""
    return SimpleNamespace(
        ann=make_user(app, "ann@example.com", teams=("north",)),
        bob=make_user(app, "bob@example.com", teams=("south",)),
        max=make_user(app, "max@example.com", roles=("manager",), teams=("south",)),
        boss=make_user(app, "boss@example.com", roles=("admin",)),
    )


@pytest.fixture
def as_(app, users):
    """``as_("ann")``: an API client for that user (tokens made once)."""
    made = {}

    def factory(name: str) -> Api:
        if name not in made:
            made[name] = Api(app, f"{name}@example.com")
        return made[name]

    return factory


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def json_errors(response, location: str = "json") -> dict:
    assert response.status_code == 422, (response.status_code, response.get_json())
    return response.get_json()["errors"][location]


def query_errors(response) -> dict:
    return json_errors(response, "query")


ITEM_ROUTES = [
    ("GET", "/api/v1/contacts/{id}"), ("PATCH", "/api/v1/contacts/{id}"), ("DELETE", "/api/v1/contacts/{id}"),
    ("POST", "/api/v1/contacts/{id}/restore"), ("POST", "/api/v1/contacts/{id}/merge"), ("GET", "/api/v1/contacts/{id}/lifecycle"),
    ("GET", "/api/v1/interactions/{id}"), ("PATCH", "/api/v1/interactions/{id}"), ("DELETE", "/api/v1/interactions/{id}"),
    ("POST", "/api/v1/interactions/{id}/restore"), ("GET", "/api/v1/tasks/{id}"), ("PATCH", "/api/v1/tasks/{id}"),
    ("DELETE", "/api/v1/tasks/{id}"), ("POST", "/api/v1/tasks/{id}/restore"), ("DELETE", "/api/v1/admin/custom-fields/{id}"),
]
LIST_ROUTES = [("GET", "/api/v1/contacts"), ("POST", "/api/v1/contacts"), ("GET", "/api/v1/contacts/deleted"),
               ("GET", "/api/v1/interactions"), ("POST", "/api/v1/interactions"), ("GET", "/api/v1/tasks"),
               ("POST", "/api/v1/tasks"), ("GET", "/api/v1/admin/custom-fields"), ("POST", "/api/v1/admin/custom-fields")]


# --- 401 / 403 / 415 ------------------------------------------------------------------------------------


def test_every_endpoint_answers_401_json_without_a_token(app, users):
    contact_id = make_contact(app, users.ann, name="Ann")
    client = app.test_client()
    for method, path in LIST_ROUTES + ITEM_ROUTES:
        response = client.open(path.format(id=contact_id), method=method, json={} if method != "GET" else None)
        assert response.status_code == 401 and response.get_json()["code"] == 401, f"{method} {path}"


def test_permissions_are_checked_before_the_record_403(app, users, as_):
    contact_id = make_contact(app, users.ann, name="Ann")
    ann = as_("ann")
    refused = [
        ann.delete(f"/api/v1/contacts/{contact_id}"),  # deleting is for managers and admins
        ann.post(f"/api/v1/contacts/{contact_id}/restore"),
        ann.post(f"/api/v1/contacts/{contact_id}/merge", {"merge_id": contact_id}),
        ann.get("/api/v1/contacts/deleted"),
        ann.get("/api/v1/admin/custom-fields"),
        ann.post("/api/v1/admin/custom-fields", {"key": "x", "label": "X", "type": "text"}),
        ann.delete("/api/v1/admin/custom-fields/1"),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    make_user(app, "nobody@example.com", roles=())
    nobody = Api(app, "nobody@example.com")
    assert [nobody.get(path).status_code for path in ("/api/v1/contacts", "/api/v1/interactions", "/api/v1/tasks")] == [403] * 3
    read_only = Api(app, "ann@example.com", read_only=True)
    assert read_only.post("/api/v1/contacts", {"name": "X"}).status_code == 403
    assert read_only.get(f"/api/v1/contacts/{contact_id}").status_code == 200
    assert row(app, Contact, contact_id)["deleted_at"] is None


def test_a_body_that_is_not_json_is_415(app, users, as_):
    contact_id = make_contact(app, users.ann, name="Ann")
    ann = as_("ann")
    for method, path in (("POST", "/api/v1/contacts"), ("PATCH", f"/api/v1/contacts/{contact_id}"),
                         ("POST", "/api/v1/interactions"), ("POST", "/api/v1/tasks")):
        response = ann.client.open(path, method=method, data="name=Ann", content_type="application/x-www-form-urlencoded",
                                   headers=ann.headers)
        assert response.status_code == 415, f"{method} {path}"


# --- contacts: the full round ---------------------------------------------------------------------------------


def test_a_contact_is_created_read_updated_deleted_and_restored(app, users, as_):
    ann, boss = as_("ann"), as_("boss")
    created = ann.post("/api/v1/contacts", {"first_name": "Ann", "last_name": "Lee", "email": "ann@lee.example",
                                            "phones": [{"phone": "+359 88 123 4567", "label": "mobile"}], "tags": ["vip"]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert isinstance(body["id"], int) and body["version"] == 1 and created.headers["ETag"] == '"1"'
    assert (body["name"], body["owner_id"], body["tags"], body["phones"][0]["number_digits"]) == (
        "Ann Lee", users.ann, ["vip"], "+359881234567")
    path = f"/api/v1/contacts/{body['id']}"
    got = ann.get(path)
    assert got.status_code == 200 and got.headers["ETag"] == '"1"' and got.get_json()["email"] == "ann@lee.example"

    changed = ann.patch(path, {"version": 1, "city": "Sofia", "lifecycle_stage": "customer"})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"2"'
    assert (changed.get_json()["city"], changed.get_json()["version"]) == ("Sofia", 2)
    by_etag = ann.patch(path, {"notes": "met at the fair"}, **{"If-Match": changed.headers["ETag"]})
    assert by_etag.status_code == 200 and by_etag.get_json()["version"] == 3
    lifecycle = ann.get(f"{path}/lifecycle").get_json()["items"]
    assert [(c["from_stage"], c["to_stage"], c["changed_by"]) for c in lifecycle] == [(None, "lead", users.ann), ("lead", "customer", users.ann)]

    assert boss.delete(path).status_code == 204
    assert ann.get(path).status_code == 404 and ids(ann.get("/api/v1/contacts")) == []
    assert ids(boss.get("/api/v1/contacts/deleted")) == [body["id"]]
    restored = boss.post(f"{path}/restore")
    assert restored.status_code == 200 and restored.get_json()["id"] == body["id"]
    assert ann.get(path).status_code == 200 and ids(boss.get("/api/v1/contacts/deleted")) == []
    assert boss.post(f"{path}/restore").status_code == 404, "only what is in the bin can be restored"


def test_an_update_must_name_the_version_it_edits_409_412_428(app, users, as_):
    contact_id = make_contact(app, users.ann, name="Ann")
    ann = as_("ann")
    path = f"/api/v1/contacts/{contact_id}"
    assert ann.patch(path, {"city": "Sofia"}).status_code == 428
    assert ann.patch(path, {"city": "Sofia"}, **{"If-Match": "*"}).status_code == 428
    assert ann.patch(path, {"version": 1, "city": "Sofia"}).status_code == 200
    stale = ann.patch(path, {"version": 1, "city": "Plovdiv"})
    assert stale.status_code == 409 and stale.headers["ETag"] == '"2"' and "version 2" in stale.get_json()["message"]
    mismatch = ann.patch(path, {"city": "Plovdiv"}, **{"If-Match": '"1"'})
    assert mismatch.status_code == 412 and mismatch.headers["ETag"] == '"2"'
    assert ann.patch(path, {"version": 2, "city": "Plovdiv"}, **{"If-Match": '"1"'}).status_code == 400
    assert json_errors(ann.patch(path, {"version": "two"})) == {"version": ["Not a valid integer."]}
    assert row(app, Contact, contact_id)["city"] == "Sofia", "nothing refused was written"
    for kind, make in (("interactions", lambda: make_interaction(app, users.ann, contact_id)),
                       ("tasks", lambda: make_task(app, users.ann))):
        record_path = f"/api/v1/{kind}/{make()}"
        assert ann.patch(record_path, {"notes" if kind == "tasks" else "outcome": "x"}).status_code == 428
        assert ann.patch(record_path, {"version": 5}).status_code == 409
        assert ann.patch(record_path, {}, **{"If-Match": '"7"'}).status_code == 412


def test_a_record_out_of_scope_is_404_like_a_missing_one_never_403(app, users, as_):
    contact_id = make_contact(app, users.ann, name="Ann")
    interaction_id = make_interaction(app, users.ann, contact_id)
    task_id = make_task(app, users.ann, contact_id=contact_id)
    bob, maxi = as_("bob"), as_("max")
    for client in (bob, maxi):
        for record_id in (contact_id, MISSING):
            answers = [
                client.get(f"/api/v1/contacts/{record_id}"),
                client.patch(f"/api/v1/contacts/{record_id}", {"version": 1, "city": "X"}),
                client.get(f"/api/v1/contacts/{record_id}/lifecycle"),
            ]
            assert [(r.status_code, r.is_json) for r in answers] == [(404, True)] * 3
        assert ids(client.get("/api/v1/contacts")) == []
    assert [r.status_code for r in (maxi.delete(f"/api/v1/contacts/{contact_id}"), maxi.post(f"/api/v1/contacts/{contact_id}/restore"),
                                    maxi.post(f"/api/v1/contacts/{contact_id}/merge", {"merge_id": MISSING}))] == [404] * 3
    for kind, record_id in (("interactions", interaction_id), ("tasks", task_id)):
        assert bob.get(f"/api/v1/{kind}/{record_id}").status_code == 404
        assert bob.patch(f"/api/v1/{kind}/{record_id}", {"version": 1}).status_code == 404
        assert maxi.delete(f"/api/v1/{kind}/{record_id}").status_code == 404
        assert maxi.post(f"/api/v1/{kind}/{record_id}/restore").status_code == 404
        assert ids(bob.get(f"/api/v1/{kind}")) == []
    assert row(app, Contact, contact_id)["deleted_at"] is None and row(app, Task, task_id)["deleted_at"] is None
    assert as_("ann").get(f"/api/v1/contacts/{contact_id}").status_code == 200


# --- 422 ---------------------------------------------------------------------------------------------------------------


def test_invalid_contacts_are_422_naming_each_field(app, users, as_):
    boss = as_("boss")
    created = boss.post("/api/v1/admin/custom-fields", {"key": "size", "label": "Size", "type": "choice", "choices": ["S", "L"]})
    assert created.status_code == 201
    person = make_contact(app, users.boss, name="A Person")
    errors = json_errors(boss.post("/api/v1/contacts", {"name": "X", "owner_id": 1, "id": 5, "version": 3, "kind": "robot",
                                                        "email": "not-an-email", "lifecycle_stage": "friend"}))
    assert errors == {"owner_id": ["Unknown field."], "id": ["Unknown field."], "version": ["Unknown field."],
                      "kind": ["Must be one of: person, company."], "email": ["Not a valid email address."],
                      "lifecycle_stage": ["Must be one of: lead, prospect, customer, loyal, churned."]}
    errors = json_errors(boss.post("/api/v1/contacts", {"first_name": "Ivo", "company_id": person,
                                                        "custom_fields": {"size": "XL", "colour": "red"}}))
    assert errors == {"company_id": ["No such company."], "custom_fields": {"size": ["Must be one of: S, L."],
                                                                             "colour": ["Unknown field."]}}
    contact_id = make_contact(app, users.boss, name="Valid")
    errors = json_errors(boss.patch(f"/api/v1/contacts/{contact_id}", {"version": 1, "owner_id": users.ann, "name": ""}))
    assert set(errors) == {"owner_id", "name"}
    assert row(app, Contact, contact_id)["owner_id"] == users.boss, "mass assignment refused"


def test_invalid_interactions_and_tasks_are_422_naming_each_field(app, users, as_):
    ann = as_("ann")
    hidden = make_contact(app, users.bob, name="Bob's")
    assert set(json_errors(ann.post("/api/v1/interactions", {"channel": "pigeon"}))) == {"contact_id", "channel", "subject"}
    assert json_errors(ann.post("/api/v1/interactions", {"contact_id": hidden, "channel": "phone", "subject": "x"})) == {
        "contact_id": ["No such contact."]}
    assert set(json_errors(ann.post("/api/v1/tasks", {"priority": "whenever", "done": "perhaps"}))) == {"title", "priority", "done"}
    assert json_errors(ann.post("/api/v1/tasks", {"title": "x", "assignee_id": MISSING})) == {"assignee_id": ["No such active user."]}
    assert query_errors(ann.get("/api/v1/contacts", limit=201)) == {"limit": ["Must be greater than or equal to 1 and less than or equal to 200."]}
    assert set(query_errors(ann.get("/api/v1/contacts", cursor="!!"))) == {"cursor"}
    assert set(query_errors(ann.get("/api/v1/tasks", cursor="WyJ4Il0"))) == {"cursor"}  # ["x"]: decodes, but is no id


# --- lists ---------------------------------------------------------------------------------------------------------------


def test_contact_lists_filter_and_page_newest_first(app, users, as_):
    boss = as_("boss")
    acme = make_company(app, users.boss, "Acme")
    people = [make_contact(app, users.boss, first_name=f"P{i}", company_id=acme, lifecycle_stage="customer" if i % 2 else "lead",
                           tags=["vip"] if i < 2 else []) for i in range(5)]
    between = dt.datetime.now(dt.timezone.utc)
    anns = make_contact(app, users.ann, name="Ann's", email="ann.contact@example.com")
    make_interaction(app, users.ann, anns, occurred_at=days_ago(2))
    everyone = [anns, *reversed(people), acme]

    assert ids(boss.get("/api/v1/contacts")) == everyone
    walked, cursor = [], None
    while True:
        page = boss.get("/api/v1/contacts", limit=3, **({"cursor": cursor} if cursor else {})).get_json()
        walked += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert walked == everyone, "pages neither skip nor repeat"
    assert ids(boss.get("/api/v1/contacts", kind="company")) == [acme]
    assert ids(boss.get("/api/v1/contacts", company_id=acme)) == list(reversed(people))
    assert ids(boss.get("/api/v1/contacts", lifecycle_stage="customer")) == [people[3], people[1]]
    assert ids(boss.get("/api/v1/contacts", tag="vip")) == [people[1], people[0]]
    assert ids(boss.get("/api/v1/contacts", owner_id=users.ann)) == [anns]
    assert ids(boss.get("/api/v1/contacts", team_id=row(app, Contact, anns)["team_id"])) == [anns]
    assert ids(boss.get("/api/v1/contacts", created_after=between.isoformat())) == [anns]
    assert ids(boss.get("/api/v1/contacts", created_before=between.isoformat())) == everyone[1:]
    assert ids(boss.get("/api/v1/contacts", last_activity_after=days_ago(3).isoformat())) == [anns]
    assert ids(boss.get("/api/v1/contacts", last_activity_before=days_ago(3).isoformat())) == []
    assert ids(boss.get("/api/v1/contacts", q="ann.contact")) == [anns]
    assert ids(as_("ann").get("/api/v1/contacts")) == [anns], "own scope"


# --- interactions and tasks ------------------------------------------------------------------------------------------------


def test_interactions_are_logged_listed_edited_and_binned(app, users, as_):
    ann, boss = as_("ann"), as_("boss")
    contact_id = make_contact(app, users.ann, name="Client")
    other_id = make_contact(app, users.ann, name="Other")
    created = ann.post("/api/v1/interactions", {"contact_id": contact_id, "channel": "email", "direction": "in",
                                                "subject": "Question", "occurred_at": "2025-03-01T10:00:00"})
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    body = created.get_json()
    assert (body["occurred_at"], body["owner_id"], body["version"]) == ("2025-03-01T10:00:00+00:00", users.ann, 1)
    visit = make_interaction(app, users.ann, other_id, channel="visit")
    assert ids(ann.get("/api/v1/interactions")) == [visit, body["id"]]
    assert ids(ann.get("/api/v1/interactions", contact_id=contact_id)) == [body["id"]]
    assert ids(ann.get("/api/v1/interactions", channel="visit")) == [visit]
    assert ids(ann.get("/api/v1/interactions", occurred_before="2025-06-01T00:00:00Z")) == [body["id"]]
    path = f"/api/v1/interactions/{body['id']}"
    edited = ann.patch(path, {"version": 1, "outcome": "answered"})
    assert edited.status_code == 200 and edited.headers["ETag"] == '"2"' and edited.get_json()["outcome"] == "answered"
    assert ann.get(path).headers["ETag"] == '"2"'
    assert ann.delete(path).status_code == 403, "deleting is for managers and admins"
    assert boss.delete(path).status_code == 204
    assert ann.get(path).status_code == 404 and row(app, Interaction, body["id"])["deleted_at"] is not None
    assert boss.post(f"{path}/restore").status_code == 200 and ann.get(path).status_code == 200
    assert boss.delete(f"/api/v1/interactions/{MISSING}").status_code == 404


def test_tasks_are_planned_assigned_completed_and_binned(app, users, as_):
    ann, bob, maxi = as_("ann"), as_("bob"), as_("max")
    contact_id = make_contact(app, users.ann, name="Client")
    created = ann.post("/api/v1/tasks", {"title": "Send offer", "contact_id": contact_id, "due_at": "2025-01-10T09:00:00Z",
                                         "priority": "high", "assignee_id": users.bob})
    assert created.status_code == 201
    task = created.get_json()
    assert (task["assignee_id"], task["owner_id"], task["created_by"], task["done"]) == (users.bob, users.bob, users.ann, False)
    assert ann.get(f"/api/v1/tasks/{task['id']}").status_code == 404, "assigned away: the assignee owns it"
    assert maxi.get(f"/api/v1/tasks/{task['id']}").status_code == 200, "in the assignee's team, for their manager"
    later = make_task(app, users.bob, title="Later", due_at=days_ago(-30))
    assert ids(bob.get("/api/v1/tasks")) == [later, task["id"]]
    assert ids(bob.get("/api/v1/tasks", due_before="2025-02-01T00:00:00Z")) == [task["id"]]
    assert ids(bob.get("/api/v1/tasks", contact_id=contact_id)) == [task["id"]]
    done = bob.patch(f"/api/v1/tasks/{task['id']}", {"version": 1, "done": True})
    assert done.status_code == 200 and done.get_json()["done"] and done.get_json()["done_at"] is not None
    assert ids(bob.get("/api/v1/tasks", done="true")) == [task["id"]]
    assert ids(bob.get("/api/v1/tasks", done="false")) == [later]
    assert maxi.delete(f"/api/v1/tasks/{later}").status_code == 204, "bob's manager, in his team"
    assert ids(bob.get("/api/v1/tasks")) == [task["id"]]
    assert maxi.post(f"/api/v1/tasks/{later}/restore").status_code == 200
    assert ids(bob.get("/api/v1/tasks", priority="high")) == [task["id"]]


# --- custom field definitions ---------------------------------------------------------------------------------------------------


def test_admins_define_list_and_delete_custom_fields(app, users, as_):
    boss = as_("boss")
    created = boss.post("/api/v1/admin/custom-fields", {"key": "employees", "label": "Employees", "type": "number", "required": True})
    assert created.status_code == 201
    definition = created.get_json()
    assert {k: definition[k] for k in ("key", "type", "required", "source", "model")} == {
        "key": "employees", "type": "number", "required": True, "source": "admin", "model": "contact"}
    assert [d["key"] for d in boss.get("/api/v1/admin/custom-fields").get_json()["items"]] == ["employees"]
    assert json_errors(boss.post("/api/v1/admin/custom-fields", {"key": "employees", "label": "Again", "type": "text"})) == {
        "key": ["An admin-defined field already has this key."]}
    assert set(json_errors(boss.post("/api/v1/admin/custom-fields", {"key": "Bad Key", "label": "", "type": "colour"}))) == {
        "key", "label", "type"}
    assert json_errors(boss.post("/api/v1/contacts", {"name": "Acme", "kind": "company"})) == {
        "custom_fields": {"employees": ["Missing data for required field."]}}
    ok = boss.post("/api/v1/contacts", {"name": "Acme", "kind": "company", "custom_fields": {"employees": 40}})
    assert ok.status_code == 201 and ok.get_json()["custom_fields"] == {"employees": 40}
    assert boss.delete(f"/api/v1/admin/custom-fields/{definition['id']}").status_code == 204
    assert boss.get("/api/v1/admin/custom-fields").get_json()["items"] == []
    assert boss.delete(f"/api/v1/admin/custom-fields/{definition['id']}").status_code == 404
    assert boss.post("/api/v1/contacts", {"name": "Beta", "kind": "company"}).status_code == 201


# --- the OpenAPI document ---------------------------------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_core_record(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/contacts", "/api/v1/contacts/{contact_id}", "/api/v1/contacts/{contact_id}/merge",
                 "/api/v1/contacts/{contact_id}/restore", "/api/v1/contacts/deleted", "/api/v1/interactions",
                 "/api/v1/interactions/{interaction_id}", "/api/v1/tasks", "/api/v1/tasks/{task_id}",
                 "/api/v1/admin/custom-fields", "/api/v1/admin/custom-fields/{definition_id}"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    for name in ("Contact", "ContactCreate", "ContactUpdate", "ContactCreated", "Interaction", "Task", "TaskUpdate"):
        assert name in schemas, name
    assert schemas["Contact"]["properties"]["owner_id"]["readOnly"] is True
    assert "owner_id" not in schemas["ContactCreate"]["properties"] and "version" in schemas["ContactUpdate"]["properties"]
    create = spec["paths"]["/api/v1/contacts"]["post"]
    assert "201" in create["responses"] and "409" in create["responses"]

