"""Object-level access through every route of a record type, on the test
plugin "acme" (tests/access_check.py): user B cannot read, change, delete,
export or find user A's own-scope record through the UI, the API, search or
export, counts leave it out, and out of scope answers 404, not 403.

The core record and each plugin run ``check_object_access`` over their own
routes the same way.
"""

from __future__ import annotations

import re

import pytest
from flask import Response, jsonify, redirect, request
from sqlalchemy import func, select

from host import db as host_db
from host.security import roles as svc
from host.security.access import current_principal, policy_of, require, scope_condition
from host.testing import api_token, bearer, login, make_user

from .access_check import (
    AccessRoutes,
    AcmeRecord,
    ObjectAccessCase,
    acme_plugin,
    check_object_access,
    create_acme_table,
)

ROUTES = AccessRoutes(
    ui_detail="/acme/{id}",
    ui_list="/acme/",
    ui_update=("/acme/{id}/edit", {"title": "renamed by its owner"}),
    ui_delete="/acme/{id}/delete",
    ui_export="/acme/export.csv",
    ui_search="/acme/search",
    api_list="/api/v1/acme/records",
    api_item="/api/v1/acme/records/{id}",
    api_patch={"title": "patched by its owner"},
    ui_count=lambda html: int(re.search(r'<p id="count">(\d+) records</p>', html).group(1)),
)


@pytest.fixture
def acme_app(make_app):
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_acme_table(app)
    return app


def add_record(app, title: str, owner_id: int | None, team_id: int | None = None) -> int:
    with app.extensions["mosaic"].db.transaction() as session:
        record = AcmeRecord(title=title, owner_id=owner_id, team_id=team_id)
        session.add(record)
        session.flush()
        return record.id


def team_id(app, name: str) -> int:
    with app.extensions["mosaic"].db.Session() as session:
        return svc.get_team(session, name).id


def test_staff_cannot_reach_a_colleagues_own_scope_record(acme_app):
    ann = make_user(acme_app, "ann@example.com", roles=("staff",))
    bob = make_user(acme_app, "bob@example.com", roles=("staff",))
    record = add_record(acme_app, "ann secret deal", ann)
    add_record(acme_app, "bob's own deal", bob)  # so bob's lists are not simply empty
    case = ObjectAccessCase(acme_app, AcmeRecord, record, "ann secret deal", "ann@example.com", "bob@example.com", ROUTES, search_term="secret")
    check_object_access(case)


def test_team_scope_reaches_the_team_but_not_another_team(acme_app):
    """A manager (team scope) sees the team's records; the record of another
    team is out of reach through every route."""
    make_user(acme_app, "lead@example.com", roles=("manager",), teams=("north",))
    cat = make_user(acme_app, "cat@example.com", roles=("staff",), teams=("south",))
    south = team_id(acme_app, "south")
    record = add_record(acme_app, "south pipeline", cat, south)
    case = ObjectAccessCase(acme_app, AcmeRecord, record, "south pipeline", "cat@example.com", "lead@example.com", ROUTES)
    check_object_access(case, prove_owner_can_write=False)
    # moved into the team, the manager now reaches it: the same routes answer
    with acme_app.extensions["mosaic"].db.transaction() as session:
        svc.add_to_team(session, "lead@example.com", "south")
    client = acme_app.test_client()
    login(client, "lead@example.com")
    assert client.get(f"/acme/{record}").status_code == 200
    assert "south pipeline" in client.get("/acme/export.csv").get_data(as_text=True)


def test_a_record_without_owner_is_seen_only_with_all_scope(acme_app):
    make_user(acme_app, "ann@example.com", roles=("staff",))
    make_user(acme_app, "root@example.com", roles=("admin",))
    record = add_record(acme_app, "orphaned record", None)
    ann, root = (bearer(api_token(acme_app, e)) for e in ("ann@example.com", "root@example.com"))
    client = acme_app.test_client()
    assert client.get(f"/api/v1/acme/records/{record}", headers=ann).status_code == 404
    assert client.get(f"/api/v1/acme/records/{record}", headers=root).status_code == 200
    assert client.get("/api/v1/acme/records", headers=ann).get_json()["total"] == 0
    assert client.get("/api/v1/acme/records", headers=root).get_json()["total"] == 1


def _unscoped_detail(record_id):
    return host_db.session().get(AcmeRecord, record_id).title


def _unscoped_update(record_id):
    session = host_db.session()
    session.get(AcmeRecord, record_id).title = request.form["title"]
    session.commit()
    return redirect("/acme/", 303)


def _unscoped_export():
    return Response("\n".join(r.title for r in host_db.session().scalars(select(AcmeRecord))), mimetype="text/csv")


def _unscoped_api_get(record_id):
    return jsonify({"title": host_db.session().get(AcmeRecord, record_id).title})


def _unscoped_search():
    term = request.args["q"]
    return "".join(r.title for r in host_db.session().scalars(select(AcmeRecord).where(AcmeRecord.title.contains(term))))


def _list_counting_everything():
    """Rows scoped, but the count is not: a count must leave the record out too."""
    rows = host_db.session().scalars(select(AcmeRecord).where(scope_condition(current_principal(), AcmeRecord)))
    total = host_db.session().scalar(select(func.count()).select_from(AcmeRecord))
    return f'<p id="count">{total} records</p>' + "".join(f"<li>{r.title}</li>" for r in rows)


LEAKS = {
    "acme.detail": (_unscoped_detail, "must answer 404"),
    "acme.update": (_unscoped_update, "POST /acme/{id}/edit out of scope: 303"),
    "acme.export": (_unscoped_export, "export /acme/export.csv shows a record out of scope"),
    "api_acme.get_record": (_unscoped_api_get, "out of scope must answer 404 JSON, got 200"),
    "acme.search": (_unscoped_search, "search /acme/search?q=leaky shows a record out of scope"),
    "acme.index": (_list_counting_everything, "/acme/: count 1 for bob@example.com"),
}


@pytest.mark.parametrize("endpoint", sorted(LEAKS))
def test_the_helper_catches_a_route_that_ignores_scope(make_app, endpoint):
    """The helper itself: a route that forgets scope_condition must fail it
    (otherwise a passing run would prove nothing)."""
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_acme_table(app)
    ann = make_user(app, "ann@example.com", roles=("staff",))
    make_user(app, "bob@example.com", roles=("staff",))
    record = add_record(app, "leaky", ann)
    leaky, message = LEAKS[endpoint]
    original = app.view_functions[endpoint]
    app.view_functions[endpoint] = require(policy_of(original))(leaky)
    case = ObjectAccessCase(app, AcmeRecord, record, "leaky", "ann@example.com", "bob@example.com", ROUTES)
    with pytest.raises(AssertionError, match=re.escape(message.replace("{id}", str(record)))):
        check_object_access(case)
