"""The audit trail and security log are readable, read-only and permissioned,
in the UI and the API, with keyset pages."""

from __future__ import annotations

from host.security.access import Principal, acting_as
from host.testing import api_token, bearer, client_for, login, make_user

from .records_support import Note, create_note_table


def seed_notes(app, count: int, user_id: int) -> None:
    create_note_table(app)
    with acting_as(Principal(user_id=user_id)):
        with app.extensions["mosaic"].db.transaction() as session:
            notes = [Note(title=f"note {i}", owner_id=user_id) for i in range(count)]
            session.add_all(notes)
        with app.extensions["mosaic"].db.transaction() as session:
            first = session.get(Note, notes[0].id)
            first.title = "renamed <b>bold</b>"


def test_audit_api_pages_and_filters(make_app):
    app = make_app(plugins=[])
    admin = make_user(app, "admin@example.com", roles=("admin",))
    seed_notes(app, 5, admin)
    headers = bearer(api_token(app, "admin@example.com"))
    client = app.test_client()

    first = client.get("/api/v1/audit?limit=4", headers=headers).get_json()
    assert len(first["items"]) == 4 and first["next"]
    assert first["items"][0]["action"] == "update"
    assert first["items"][0]["changes"]["title"] == ["note 0", "renamed <b>bold</b>"]
    rest = client.get(f"/api/v1/audit?limit=4&cursor={first['next']}", headers=headers).get_json()
    assert rest["next"] is None
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == 6

    one = client.get(f"/api/v1/audit?object_type=acme.note&object_id={first['items'][0]['object_id']}", headers=headers)
    assert [e["action"] for e in one.get_json()["items"]] == ["update", "create"]
    nobody = client.get("/api/v1/audit?user_id=999", headers=headers).get_json()
    assert nobody == {"items": [], "next": None}


def test_audit_is_read_only_and_needs_its_permission(make_app):
    app = make_app(plugins=[])
    make_user(app, "admin@example.com", roles=("admin",))
    make_user(app, "lead@example.com", roles=("manager",))
    admin, lead = bearer(api_token(app, "admin@example.com")), bearer(api_token(app, "lead@example.com"))
    client = app.test_client()
    assert client.get("/api/v1/audit", headers=lead).status_code == 403, "managers do not read everyone's history"
    assert client.get("/api/v1/security-events", headers=lead).status_code == 403
    assert client.post("/api/v1/audit", json={}, headers=admin).status_code == 405
    assert client.delete("/api/v1/audit", headers=admin).status_code == 405
    bad = client.get("/api/v1/audit?cursor=%%%", headers=admin)
    assert bad.status_code == 422 and "cursor" in str(bad.get_json()["errors"])


def test_security_log_api_filters_by_kind_prefix_and_user(make_app):
    app = make_app(plugins=[])
    make_user(app, "admin@example.com", roles=("admin",))
    make_user(app, "ed@example.com")
    login(app.test_client(), "ed@example.com", "wrong password!")
    login(app.test_client(), "ed@example.com")
    headers = bearer(api_token(app, "admin@example.com"))
    events = app.test_client().get("/api/v1/security-events?kind=login.", headers=headers).get_json()["items"]
    assert [e["kind"] for e in events] == ["login.success", "login.failure"]
    assert all("password" not in str(e["detail"]).lower() for e in events)


def test_audit_and_security_pages_escape_and_filter(make_app):
    app = make_app(plugins=[])
    admin_id = make_user(app, "admin@example.com", roles=("admin",))
    seed_notes(app, 2, admin_id)
    client = client_for(app, "boss@example.com", roles=("admin",))
    html = client.get("/admin/audit?object_type=acme.note").get_data(as_text=True)
    assert "renamed &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert html.count("acme.note #") == 3
    assert "admin@example.com" in html, "who, by e-mail"
    assert client.get("/admin/audit?user=nobody@example.com").get_data(as_text=True).count("acme.note #") == 0
    security = client.get("/admin/security-log?kind=login.").get_data(as_text=True)
    assert "login.success" in security and "boss@example.com" in security
    staff = client_for(app, "rep@example.com", roles=("staff",))
    assert staff.get("/admin/audit").status_code == 403
    assert staff.get("/admin/security-log").status_code == 403
