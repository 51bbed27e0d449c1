"""Exports of contacts, interactions and tasks: the list's filters, the
record scope, formula escaping, custom fields as columns, the security log,
streaming, and an XLSX export that re-imports as it was."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from host.core import services
from host.core.models import Contact
from host.security.models import SecurityEvent
from host.testing import api_token, bearer, make_user

from .core_support import make_contact, make_interaction, make_task, run_as, state

ADMIN = "admin@example.com"


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], jobs_inline=True)


@pytest.fixture
def admin(app):
    make_user(app, ADMIN, roles=("admin",))
    return bearer(api_token(app, ADMIN))


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff"), "a BOM, so Excel reads UTF-8"
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_contacts_export_honours_the_list_filters(app, admin):
    make_contact(app, ADMIN, name="Иван Петров", lifecycle_stage="customer", tags=["vip"], email="ivan@example.com")
    make_contact(app, ADMIN, name="Žofia Nováková", lifecycle_stage="customer")
    make_contact(app, ADMIN, name="Lead Person", lifecycle_stage="lead", tags=["vip"])
    client = app.test_client()
    everyone = csv_rows(client.get("/api/v1/contacts/export", headers=admin))
    assert [r["name"] for r in everyone] == ["Lead Person", "Žofia Nováková", "Иван Петров"]  # newest first, like the list
    customers = csv_rows(client.get("/api/v1/contacts/export?lifecycle_stage=customer&tag=vip", headers=admin))
    assert [(r["name"], r["tags"], r["emails"]) for r in customers] == [("Иван Петров", "vip", "ivan@example.com")]
    found = csv_rows(client.get("/api/v1/contacts/export?q=zofia", headers=admin))
    assert [r["name"] for r in found] == ["Žofia Nováková"]
    bad = client.get("/api/v1/contacts/export?lifecycle_stage=royalty&format=pdf", headers=admin)
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]["query"]) == {"lifecycle_stage", "format"}


def test_export_is_a_logged_streamed_download(app, admin):
    make_contact(app, ADMIN, name="Ann Lee")
    response = app.test_client().get("/api/v1/contacts/export?format=csv&kind=person", headers=admin)
    assert response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="contacts-')
    assert [r["name"] for r in csv_rows(response)] == ["Ann Lee"]
    with state(app).db.Session() as session:
        logged = session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "export")).one()
    assert logged.detail == {"type": "contacts", "format": "csv", "filters": {"kind": "person"}}
    assert logged.user_id is not None


def test_a_colleagues_own_scope_contact_never_appears(app, admin):
    make_user(app, "rep1@example.com", roles=("staff",))
    make_user(app, "rep2@example.com", roles=("staff",))
    declared = list(state(app).permissions)
    run_as(app, ADMIN, lambda session: _grant_export(session, declared))
    mine = make_contact(app, "rep1@example.com", name="Mine Only")
    theirs = make_contact(app, "rep2@example.com", name="Theirs Only")
    make_interaction(app, "rep2@example.com", theirs, subject="Their call")
    make_task(app, "rep2@example.com", title="Their task", contact_id=theirs)
    rep1 = bearer(api_token(app, "rep1@example.com"))
    client = app.test_client()
    assert [r["id"] for r in csv_rows(client.get("/api/v1/contacts/export", headers=rep1))] == [str(mine)]
    assert csv_rows(client.get("/api/v1/interactions/export", headers=rep1)) == []
    assert csv_rows(client.get("/api/v1/tasks/export", headers=rep1)) == []
    # Even naming the colleague's contact as a filter shows nothing of it.
    assert csv_rows(client.get(f"/api/v1/interactions/export?contact_id={theirs}", headers=rep1)) == []
    assert csv_rows(client.get("/api/v1/exports/contacts?q=theirs", headers=rep1)) == []
    names = [r["name"] for r in csv_rows(client.get("/api/v1/contacts/export", headers=admin))]
    assert names == ["Theirs Only", "Mine Only"]


def _grant_export(session, declared):
    from host.security import roles

    for permission in ("core.contact.export", "core.interaction.export", "core.task.export"):
        roles.grant(session, "staff", permission, declared=declared)


def test_export_needs_the_permission(app, admin):
    make_user(app, "rep@example.com", roles=("staff",))
    rep = bearer(api_token(app, "rep@example.com"))
    client = app.test_client()
    assert client.get("/api/v1/contacts/export").status_code == 401
    assert client.get("/api/v1/contacts/export", headers=rep).status_code == 403
    assert client.get("/api/v1/exports/contacts", headers=rep).status_code == 403
    assert client.get("/api/v1/exports/planets", headers=admin).status_code == 404
    with state(app).db.Session() as session:
        assert session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "export")).all() == []


def test_formula_cells_are_escaped(app, admin):
    make_contact(app, ADMIN, name="=HYPERLINK(\"http://evil.example\")", notes="@SUM(A1)", city="-2+3",
                 street="\tTabbed", phone="+359 88 123 4567")
    rows = csv_rows(app.test_client().get("/api/v1/contacts/export", headers=admin))
    assert rows[0]["name"] == "'=HYPERLINK(\"http://evil.example\")"
    assert (rows[0]["notes"], rows[0]["city"], rows[0]["phone"]) == ("'@SUM(A1)", "'-2+3", "'+359 88 123 4567")
    # Plain text and numbers are left alone.
    assert rows[0]["kind"] == "person" and rows[0]["id"].isdigit()


def test_xlsx_export_escapes_and_reimports_as_it_was(app, admin):
    import openpyxl

    run_as(app, ADMIN, lambda session: services.create_custom_field(
        session, {"key": "size", "label": "Company size", "type": "number"}))
    original = make_contact(app, ADMIN, first_name="Žofia", last_name="Nováková", email="zofia@example.com",
                            phones=[{"phone": "+421 900 111 222"}, {"phone": "+421 900 333 444"}], tags=["vip", "partner"],
                            notes="=1+2", custom_fields={"size": 40}, birthday=dt.date(1985, 2, 3), external_id="erp-9",
                            marketing_consent=True, country="SK")
    client = app.test_client()
    response = client.get("/api/v1/contacts/export?format=xlsx", headers=admin)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    content = response.get_data()
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=False).active
    header = [cell.value for cell in sheet[1]]
    values = dict(zip(header, [cell.value for cell in sheet[2]]))
    assert values["notes"] == "'=1+2" and sheet.cell(2, header.index("notes") + 1).data_type == "s"
    assert values["custom_fields.size"] == 40
    assert values["tags"] == "partner; vip"

    def stored(contact_id):
        with state(app).db.Session() as session:
            contact = session.get(Contact, contact_id)
            return {"name": contact.name, "email": contact.email, "phones": [p.phone for p in contact.phones],
                    "tags": sorted(t.name for t in contact.tags), "notes": contact.notes, "custom": contact.custom_fields,
                    "birthday": str(contact.birthday), "consent": contact.marketing_consent, "country": contact.country}

    before = stored(original)
    # Into an empty database as new records (external ids freed first) ...
    run_as(app, ADMIN, lambda session: services.update_contact(session, original, {"external_id": "moved"}))
    data = {"type": "contacts", "file": (io.BytesIO(content), "contacts.xlsx")}
    job = client.post("/api/v1/imports", data=data, headers=admin, content_type="multipart/form-data").get_json()
    result = client.get(f"/api/v1/jobs/{job['job_id']}", headers=admin).get_json()["result"]
    assert (result["created"], result["rejected"]) == (1, 0), result
    assert set(result["unknown_columns"]) == {"id", "owner_id", "team_id", "created_at", "updated_at", "last_activity_at",
                                              "consent_at", "phone_digits"} & set(header)
    with state(app).db.Session() as session:
        copy = session.scalar(select(Contact.id).where(Contact.external_id == "erp-9"))
    assert stored(copy) == before


def test_interaction_and_task_exports_use_their_filters(app, admin):
    contact = make_contact(app, ADMIN, name="Acme")
    make_interaction(app, ADMIN, contact, channel="email", subject="Mailed")
    make_interaction(app, ADMIN, contact, channel="phone", subject="Called")
    make_task(app, ADMIN, title="Done one", done=True)
    make_task(app, ADMIN, title="Open one", contact_id=contact)
    client = app.test_client()
    calls = csv_rows(client.get("/api/v1/interactions/export?channel=phone", headers=admin))
    assert [(r["subject"], r["contact_id"]) for r in calls] == [("Called", str(contact))]
    open_tasks = csv_rows(client.get("/api/v1/tasks/export?done=false", headers=admin))
    assert [(r["title"], r["done"]) for r in open_tasks] == [("Open one", "false")]
    assert open_tasks[0]["assignee_id"].isdigit()


def test_the_openapi_document_describes_the_file_answers(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    export = spec["paths"]["/api/v1/contacts/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    assert {p["name"] for p in export["parameters"]} >= {"format", "q", "lifecycle_stage", "tag"}
    started = spec["paths"]["/api/v1/imports"]["post"]
    assert "202" in started["responses"]
    assert "multipart/form-data" in started["requestBody"]["content"]
    assert "/api/v1/jobs/{job_id}" in spec["paths"]
    assert "/api/v1/imports/{job_id}/rejected" in spec["paths"]
