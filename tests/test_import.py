"""Importing contacts, interactions and tasks from CSV and XLSX through the
API and the ``core.import`` job: dry run, commit, re-import by external id,
bad files, formula cells, record scope, and a plugin's import target."""

from __future__ import annotations

import csv
import io
import os

import pytest
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import func, select

from hooks import ImportTarget, Permission, hookimpl
from host import jobs
from host.core import imports, services
from host.core.models import Contact, Interaction, Task
from host.models import OutboxEvent, Setting
from host.security.models import AuditEntry
from host.testing import api_token, bearer, make_user, plugin_candidate

from .core_support import make_contact, principal_of, row, run_as, state

ADMIN = "admin@example.com"


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], jobs_inline=True)


@pytest.fixture
def admin(app):
    make_user(app, ADMIN, roles=("admin",))
    return bearer(api_token(app, ADMIN))


def csv_bytes(rows: list[list[str]], *, delimiter: str = ",", bom: bool = False) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def post_import(client, headers, content: bytes, filename: str = "people.csv", **form):
    data = {"type": "contacts", **{k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
            "file": (io.BytesIO(content), filename)}
    return client.post("/api/v1/imports", data=data, headers=headers, content_type="multipart/form-data")


def run_import(client, headers, content: bytes, filename: str = "people.csv", **form) -> dict:
    """Post, check the 202, poll the job (inline: already done); its JSON."""
    response = post_import(client, headers, content, filename, **form)
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{response.get_json()['job_id']}"
    job = client.get(response.headers["Location"], headers=headers)
    assert job.status_code == 200
    return job.get_json()


def count(app, model=Contact) -> int:
    with state(app).db.Session() as session:
        return session.scalar(select(func.count()).select_from(model))


def written(app) -> dict[str, int]:
    """Everything a write leaves behind: records, audit entries, events."""
    return {"contacts": count(app), "audit": count(app, AuditEntry), "outbox": count(app, OutboxEvent),
            "interactions": count(app, Interaction), "tasks": count(app, Task)}


def size_field(app) -> None:
    run_as(app, ADMIN, lambda session: services.create_custom_field(
        session, {"key": "size", "label": "Company size", "type": "number"}))


BAD_FILE = [
    ["First name", "Last name", "E-mail", "Lifecycle stage", "Company size", "Favourite colour"],
    ["Иван", "Петров", "ivan@example.com", "lead", "12", "blue"],
    ["Žofia", "Nováková", "not-an-address", "customer", "", ""],
    ["Ann", "Lee", "ann@example.com", "royalty", "", ""],
    ["", "", "nobody@example.com", "", "", ""],
    ["Bob", "Stone", "bob@example.com", "lead", "many", ""],
]

BAD_ROWS = [
    {"row": 3, "column": "E-mail", "message": "Not a valid email address."},
    {"row": 4, "column": "Lifecycle stage", "message": "Must be one of: lead, prospect, customer, loyal, churned."},
    {"row": 5, "column": "name", "message": "Give a name, or a first or last name."},
    {"row": 6, "column": "Company size", "message": "Not a valid number."},
]


def test_dry_run_writes_nothing_and_reports_every_bad_row(app, admin):
    size_field(app)
    before = written(app)
    job = run_import(app.test_client(), admin, csv_bytes(BAD_FILE), dry_run=True)
    assert job["status"] == "done"
    result = job["result"]
    assert result["dry_run"] is True
    assert (result["total"], result["created"], result["rejected"]) == (5, 1, 4)
    assert result["rejected_rows"] == BAD_ROWS
    assert result["unknown_columns"] == ["Favourite colour"]
    assert result["columns"]["Company size"] == "custom_fields.size"
    assert written(app) == before


def test_commit_writes_good_rows_rejects_bad_ones_and_serves_the_rejected_file(app, admin):
    size_field(app)
    client = app.test_client()
    job = run_import(client, admin, csv_bytes(BAD_FILE, delimiter=";", bom=True))
    result = job["result"]
    assert (result["created"], result["rejected"]) == (1, 4)
    with state(app).db.Session() as session:
        ivan = session.scalars(select(Contact)).one()
        assert (ivan.name, ivan.email, ivan.custom_fields) == ("Иван Петров", "ivan@example.com", {"size": 12})
        audit = session.scalars(select(AuditEntry).where(AuditEntry.object_type == "core.contact")).all()
        assert [(entry.action, entry.object_id) for entry in audit] == [("create", str(ivan.id))]
        events = [e.type for e in session.scalars(select(OutboxEvent))]
    assert "contact.created" in events
    from host.core import search

    # Closed at once: a session left open holds its transaction's locks,
    # and the PostgreSQL fixture's DROP SCHEMA would wait for them.
    with state(app).db.Session() as session:
        hits = search.search_contacts(session, principal_of(app, ADMIN), "иван")
    assert [hit.id for hit in hits] == [ivan.id]

    download = client.get(f"/api/v1/imports/{job['id']}/rejected", headers=admin)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    text = download.get_data().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == BAD_FILE[0] + ["error"]
    assert [r[:6] for r in rows[1:]] == BAD_FILE[2:]
    assert [r[-1] for r in rows[1:]] == [f"{bad['column']}: {bad['message']}" for bad in BAD_ROWS]


def test_rejected_rows_files_go_after_a_week_and_crashed_uploads_after_a_day(app, admin):
    """They hold customers' data nobody imported; an erasure cannot find it."""
    client = app.test_client()
    job = run_import(client, admin, csv_bytes(BAD_FILE, delimiter=";"))
    rejected = imports.stored_path(app.instance_path, job["result"]["rejected_file"])
    crashed = imports.stored_path(app.instance_path, imports.new_upload_name("left.csv"))
    fresh = imports.stored_path(app.instance_path, imports.new_upload_name("running.csv"))
    draft = imports.folder(app.instance_path) / ("wizard-1-" + "0" * 32)  # the wizard sweeps its own
    for path in (crashed, fresh, draft):
        path.write_bytes(b"name\nIvan\n")
    now = os.stat(rejected).st_mtime
    os.utime(crashed, (now - 25 * 3600, now - 25 * 3600))
    os.utime(draft, (now - 30 * 24 * 3600, now - 30 * 24 * 3600))
    definition = state(app).jobs[imports.PURGE_JOB_NAME]
    assert definition.every == 3600

    assert imports.purge_old_files(app.instance_path, now=now + 2 * 3600) == {"rejected": 0, "upload": 1}
    assert rejected.exists() and fresh.exists() and draft.exists() and not crashed.exists()
    assert imports.purge_old_files(app.instance_path, now=now + 6 * 24 * 3600) == {"rejected": 0, "upload": 1}
    assert rejected.exists() and not fresh.exists() and draft.exists()
    assert client.get(f"/api/v1/imports/{job['id']}/rejected", headers=admin).status_code == 200

    assert imports.purge_old_files(app.instance_path, now=now + 8 * 24 * 3600) == {"rejected": 1, "upload": 0}
    assert not rejected.exists() and draft.exists()
    gone = client.get(f"/api/v1/imports/{job['id']}/rejected", headers=admin)
    assert gone.status_code == 404 and gone.get_json()["message"] == "This job has no rejected rows file."


def test_reimport_with_external_id_updates_instead_of_duplicating(app, admin):
    client = app.test_client()
    rows = [["external_id", "name", "email", "city"],
            ["crm-1", "Acme Ltd", "office@acme.example", "Sofia"],
            ["crm-2", "Beta GmbH", "info@beta.example", "Wien"]]
    first = run_import(client, admin, csv_bytes(rows))["result"]
    assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
    again = run_import(client, admin, csv_bytes(rows))["result"]
    assert (again["created"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 2, 0)
    rows[2][3] = "Graz"
    changed = run_import(client, admin, csv_bytes(rows))["result"]
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 1)
    assert count(app) == 2
    with state(app).db.Session() as session:
        assert session.scalar(select(Contact.city).where(Contact.external_id == "crm-2")) == "Graz"


def test_external_id_of_a_record_out_of_scope_is_neither_overwritten_nor_revealed(app, admin):
    make_user(app, "mia@example.com", roles=("manager",), teams=("north",))
    make_user(app, "max@example.com", roles=("manager",), teams=("south",))
    hidden = make_contact(app, "mia@example.com", name="Mia's client", external_id="ext-7", city="Plovdiv")
    max_headers = bearer(api_token(app, "max@example.com"))
    result = run_import(app.test_client(), max_headers, csv_bytes([["external_id", "name", "city"], ["ext-7", "Taken over", "Varna"]]))["result"]
    assert result["rejected_rows"] == [{"row": 2, "column": "external_id", "message": "Another record already has this external id."}]
    assert row(app, Contact, hidden)["name"] == "Mia's client"
    assert row(app, Contact, hidden)["city"] == "Plovdiv"
    assert count(app) == 1


def test_explicit_mapping_beats_header_names(app, admin):
    rows = [["Full name", "Mail", "email"], ["Petar Petrov", "petar@example.com", "ignored@example.com"]]
    result = run_import(app.test_client(), admin, csv_bytes(rows), mapping='{"Full name": "name", "Mail": "email", "email": null}')["result"]
    assert result["columns"] == {"Full name": "name", "Mail": "email"}
    assert result["unknown_columns"] == []
    with state(app).db.Session() as session:
        assert session.execute(select(Contact.name, Contact.email)).one() == ("Petar Petrov", "petar@example.com")


def test_duplicates_are_reported_or_rejected(app, admin):
    existing = make_contact(app, ADMIN, name="Old Ann", email="ann@example.com", phone="+359 88 123 4567")
    rows = [["name", "email", "phone"], ["Ann Lee", "ANN@example.com", ""], ["Bob", "", "00359881234567"], ["Cleo", "cleo@example.com", ""]]
    reported = run_import(app.test_client(), admin, csv_bytes(rows), dry_run=True)["result"]
    assert reported["possible_duplicates"] == [{"row": 2, "ids": [existing]}, {"row": 3, "ids": [existing]}]
    assert reported["created"] == 3
    rejected = run_import(app.test_client(), admin, csv_bytes(rows), on_duplicate="reject")["result"]
    assert rejected["rejected_rows"] == [
        {"row": 2, "column": "email", "message": f"Possible duplicate of contact {existing} (the same e-mail)."},
        {"row": 3, "column": "phone", "message": f"Possible duplicate of contact {existing} (the same phone)."},
    ]
    assert count(app) == 2


def test_formula_cells_are_stored_as_text(app, admin):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["name", "notes", "city"])
    sheet.append(["=HYPERLINK(\"http://evil.example\",\"x\")", "=1+2", "@SUM(A1)"])
    sheet.append(["'=2+2", "+359 88", "-minus"])
    content = io.BytesIO()
    workbook.save(content)
    result = run_import(app.test_client(), admin, content.getvalue(), "people.xlsx")["result"]
    assert result["created"] == 2, result
    with state(app).db.Session() as session:
        stored = session.execute(select(Contact.name, Contact.notes, Contact.city).order_by(Contact.id)).all()
    # The formula's text, never its value; an export's escaping is undone.
    assert stored == [('=HYPERLINK("http://evil.example","x")', "=1+2", "@SUM(A1)"), ("=2+2", "+359 88", "-minus")]


def test_xlsx_rows_keep_spreadsheet_numbers_and_types(app, admin):
    import datetime as dt

    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Name", "Birthday", "Marketing consent", "Phone"])
    sheet.append(["Ann Lee", dt.datetime(1990, 5, 17), True, 359881234567])
    sheet.append([])
    sheet.append(["Bad Date", "someday", False, None])
    content = io.BytesIO()
    workbook.save(content)
    result = run_import(app.test_client(), admin, content.getvalue(), "people.xlsx")["result"]
    assert result["rejected_rows"] == [{"row": 4, "column": "Birthday", "message": "Not a valid date."}]
    with state(app).db.Session() as session:
        ann = session.scalars(select(Contact)).one()
    assert (str(ann.birthday), ann.marketing_consent, ann.phone_digits) == ("1990-05-17", True, "359881234567")


BAD_FILES = {
    "wrong encoding": ("people.csv", "name\nИван Петров\n".encode("cp1251"), "The file is not UTF-8 text"),
    "missing required column": ("people.csv", b"email,city\nann@example.com,Sofia\n",
                                "The file has no column for the required field 'name' (or first_name, last_name)."),
    "10 MB of random bytes": ("people.csv", os.urandom(10 * 1024 * 1024), "The file is not"),
    "xlsx that is not a zip": ("people.xlsx", b"name\nAnn\n", "The file is not a valid XLSX workbook"),
    "damaged xlsx": ("people.xlsx", b"PK\x03\x04" + os.urandom(2000), "The file is not a valid XLSX workbook"),
    "empty": ("people.csv", b"", "The file is empty."),
    "header only": ("people.csv", b"\xef\xbb\xbf\r\n", "The file is empty."),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_as_a_whole(app, admin, case):
    filename, content, message = BAD_FILES[case]
    before = written(app)
    response = post_import(app.test_client(), admin, content, filename)
    assert response.status_code == 422
    errors = response.get_json()["errors"]["files"]["file"]
    assert errors[0].startswith(message), errors
    assert written(app) == before
    assert jobs.list_jobs(app, name=imports.JOB_NAME) == []
    assert [p.name for p in imports.folder(app.instance_path).iterdir()] == []


def test_the_job_itself_refuses_a_bad_file_and_writes_nothing(app, admin):
    """The CLI and other callers reach the job without the API's check."""
    name = imports.new_upload_name("people.csv")
    imports.stored_path(app.instance_path, name).write_bytes("name\nАнна\n".encode("utf-16"))
    before = written(app)
    with app.app_context():
        job_id = jobs.enqueue(imports.JOB_NAME, {"type": "contacts", "stored_name": name, "filename": "people.csv"},
                              user_id=principal_of(app, ADMIN).user_id)
    job = jobs.get_job(job_id, app)
    assert job["status"] == "failed"
    assert "The file is not UTF-8 text" in job["error"]
    assert written(app) == before
    assert not imports.stored_path(app.instance_path, name).exists()


def test_a_file_over_the_upload_limit_is_413(make_app):
    app = make_app(plugins=[], jobs_inline=True, max_content_length=64 * 1024)
    make_user(app, ADMIN, roles=("admin",))
    response = post_import(app.test_client(), bearer(api_token(app, ADMIN)), b"name\n" + b"x" * 100_000 + b"\n")
    assert response.status_code == 413
    assert count(app) == 0


def test_interactions_and_tasks_link_contacts_by_external_id(app, admin):
    make_contact(app, ADMIN, name="Acme Ltd", kind="company", external_id="acct-1")
    client = app.test_client()
    interactions = csv_bytes([["contact_external_id", "channel", "subject", "occurred_at", "external_id"],
                              ["acct-1", "phone", "Called about the offer", "2024-03-01T10:00:00", "call-1"],
                              ["acct-404", "email", "Lost", "", ""],
                              ["acct-1", "pigeon", "Odd", "", ""]])
    result = run_import(client, admin, interactions, "calls.csv", type="interactions")["result"]
    assert result["created"] == 1
    assert result["rejected_rows"] == [
        {"row": 3, "column": "contact_external_id", "message": "No such contact."},
        {"row": 4, "column": "channel", "message": "Must be one of: phone, email, meeting, chat, web_form, social, event, visit, letter."},
    ]
    again = run_import(client, admin, interactions, "calls.csv", type="interactions")["result"]
    assert (again["created"], again["unchanged"]) == (0, 1)
    tasks = csv_bytes([["Title", "Due at", "Priority", "contact_external_id"], ["Send the offer", "2030-01-02T09:00:00+02:00", "high", "acct-1"]])
    assert run_import(client, admin, tasks, "tasks.csv", type="tasks")["result"]["created"] == 1
    with state(app).db.Session() as session:
        task = session.scalars(select(Task)).one()
        assert (task.title, task.priority, task.due_at.isoformat()) == ("Send the offer", "high", "2030-01-02T07:00:00+00:00")
    assert count(app, Interaction) == 1


def test_missing_required_interaction_columns_are_a_file_error(app, admin):
    response = post_import(app.test_client(), admin, b"channel,subject\nphone,Hi\n", "calls.csv", type="interactions")
    assert response.status_code == 422
    assert response.get_json()["errors"]["files"]["file"] == [
        "The file has no column for the required field 'contact_id' (or contact_external_id)."]


# --- the API: who may do what ----------------------------------------------------------


def test_api_errors(app, admin):
    client = app.test_client()
    good = csv_bytes([["name"], ["Ann"]])
    assert post_import(client, {}, good).status_code == 401
    make_user(app, "rep@example.com", roles=("staff",))
    rep = bearer(api_token(app, "rep@example.com"))
    denied = post_import(client, rep, good)
    assert denied.status_code == 403
    assert client.post("/api/v1/imports", json={"type": "contacts"}, headers=admin).status_code == 415
    unknown = post_import(client, admin, good, type="planets")
    assert unknown.status_code == 422
    assert unknown.get_json()["errors"]["form"]["type"][0].startswith("Not an importable type: 'planets'")
    bad_mapping = post_import(client, admin, good, mapping="{not json")
    assert bad_mapping.status_code == 422 and "mapping" in bad_mapping.get_json()["errors"]["form"]
    wrong_field = post_import(client, admin, good, mapping='{"name": "shoe_size"}')
    assert wrong_field.get_json()["errors"]["form"]["mapping"] == [
        "The mapping maps 'name' to 'shoe_size', which is not a field of this type."]
    no_file = client.post("/api/v1/imports", data={"type": "contacts"}, headers=admin, content_type="multipart/form-data")
    assert no_file.status_code == 422 and "file" in no_file.get_json()["errors"]["files"]
    assert count(app) == 0


def test_jobs_and_rejected_files_are_only_for_their_starter(app, admin):
    make_user(app, "mia@example.com", roles=("manager",), teams=("north",))
    mia = bearer(api_token(app, "mia@example.com"))
    client = app.test_client()
    job = run_import(client, mia, csv_bytes([["name", "email"], ["Ann", "bad"]]))
    assert job["result"]["rejected"] == 1
    assert client.get(f"/api/v1/imports/{job['id']}/rejected", headers=mia).status_code == 200
    make_user(app, "max@example.com", roles=("manager",), teams=("south",))
    max_headers = bearer(api_token(app, "max@example.com"))
    # Max holds core.job.read, but with team scope: the job stays hidden.
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=max_headers).status_code == 404
    assert client.get(f"/api/v1/imports/{job['id']}/rejected", headers=max_headers).status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/jobs/999999", headers=admin).status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 401
    clean = run_import(client, mia, csv_bytes([["name"], ["Bob"]]))
    assert clean["result"]["rejected_file"] is None
    assert client.get(f"/api/v1/imports/{clean['id']}/rejected", headers=mia).status_code == 404


# --- a plugin's import target ----------------------------------------------------------------


class CodeSchema(Schema):
    code = fields.String(required=True, metadata={"label": "Product code"})
    title = fields.String(required=True)


def write_codes(session, rows, user):
    """Stores rows as settings; refuses the code "bad" by raising, as a
    plain plugin writer would (the host then retries row by row)."""
    for data in rows:
        if data["code"] == "bad":
            raise ValidationError({"code": ["Acme refuses this code."]})
        session.add(Setting(key=f"acme:{data['code']}", value={"title": data["title"], "by": user.email}))
    session.flush()
    return len(rows)


class AcmeImports:
    @hookimpl
    def mosaic_permissions(self):
        return [Permission("acme.code.import", "Import codes", ("manager",))]

    @hookimpl
    def mosaic_import_targets(self):
        return [ImportTarget("acme.codes", "Codes", CodeSchema, write_codes, "acme.code.import")]


def test_a_plugins_import_target_through_the_hook(make_app):
    app = make_app(plugins=["acme"], extra_plugins=[plugin_candidate("acme", AcmeImports())], jobs_inline=True)
    make_user(app, ADMIN, roles=("admin",))
    headers = bearer(api_token(app, ADMIN))
    content = csv_bytes([["Product code", "title"], ["a1", "First"], ["bad", "Second"], ["c3", ""], ["d4", "Fourth"]])
    client = app.test_client()
    dry = run_import(client, headers, content, type="acme.codes", dry_run=True)["result"]
    assert dry["rejected_rows"] == [{"row": 3, "column": "Product code", "message": "Acme refuses this code."},
                                    {"row": 4, "column": "title", "message": "Missing data for required field."}]
    with state(app).db.Session() as session:
        assert session.scalars(select(Setting.key).where(Setting.key.like("acme:%"))).all() == []
    result = run_import(client, headers, content, type="acme.codes")["result"]
    assert (result["created"], result["rejected"]) == (2, 2)
    with state(app).db.Session() as session:
        stored = dict(session.execute(select(Setting.key, Setting.value).where(Setting.key.like("acme:%"))).all())
    assert stored == {"acme:a1": {"title": "First", "by": ADMIN}, "acme:d4": {"title": "Fourth", "by": ADMIN}}


# --- loading rows with the fields a file can fill (imports._row_schema) ---------------------------------------------


def _outcome_of(schema, data):
    """What loading gives, with the messages' order (dict equality ignores it)."""
    try:
        return "ok", list(schema.load(data).items())
    except ValidationError as exc:
        return "error", list(exc.messages.items())


def test_rows_load_as_the_whole_contact_schema_loads_them():
    """The schema rows are loaded with leaves out fields no column feeds;
    every row, good or bad (a column fed to a field the schema does not
    load included), gives the same data or the same messages in the same
    order as the whole ``ContactCreateSchema``."""
    from host.core.schemas import ContactCreateSchema

    target = next(t for t in imports.host_targets() if t.key == "contacts")
    header = ["Name", "E-mail", "Phones", "Tags", "Birthday", "Marketing consent", "Size", "Kind", "Owner"]
    column_map = imports.ColumnMap({0: "name", 1: "email", 2: "phones", 3: "tags", 4: "birthday",
                                    5: "marketing_consent", 6: "custom_fields.size", 7: "kind", 8: "owner_id"},
                                   [], header)
    whole = ContactCreateSchema()
    rows = imports._row_schema(target, whole, column_map)
    assert rows is not whole and len(rows.load_fields) < len(whole.load_fields)
    reader = imports.RowReader(column_map, whole)
    cells = [
        ["Ann", "ann@example.com", "+359 88 1; 0888", "vip; new", "1980-02-29", "true", "12", "person", ""],
        ["", "not-an-address", "", "", "1981-02-29", "maybe", "", "robot", ""],
        ["Bob", "", "", "x" * 101, "", "", "", "", "7"],
        ["", "", "", "", "", "", "", "", ""],
        ["B" * 301, "b@example.com", "", "", "tomorrow", "", "many", "company", "3"],
    ]
    for row in cells:
        data = reader.read(row)
        assert _outcome_of(rows, data) == _outcome_of(whole, data), row
    # loaded as a batch (one ``many`` call): each row as loaded alone
    batch = imports._load_rows(rows, [reader.read(row) for row in cells])
    assert [type(item) for item in batch] == [dict, ValidationError, ValidationError, dict, ValidationError]
    for row, loaded in zip(cells, batch):
        alone = _outcome_of(whole, reader.read(row))
        assert (("error", list(loaded.messages.items())) if isinstance(loaded, ValidationError)
                else ("ok", list(loaded.items()))) == alone, row


def test_rows_keep_required_and_defaulted_fields_and_hooks_keep_the_whole_schema():
    from types import SimpleNamespace

    from marshmallow import validates_schema

    class Sample(Schema):
        needed = fields.String(required=True)
        defaulted = fields.String(load_default="x")
        given = fields.String()
        other = fields.Integer()

    column_map = imports.ColumnMap({0: "given"}, [], ["Given"])
    whole = Sample()
    rows = imports._row_schema(SimpleNamespace(schema=Sample), whole, column_map)
    assert list(rows.load_fields) == ["needed", "defaulted", "given"]
    for data in ({"given": "g"}, {"given": "g", "needed": "n"}):
        assert _outcome_of(rows, data) == _outcome_of(whole, data)
    assert _outcome_of(rows, {"given": "g"}) == ("error", [("needed", ["Missing data for required field."])])
    # a schema instance (built with options of its own) is used as it is
    assert imports._row_schema(SimpleNamespace(schema=whole), whole, column_map) is whole

    class Checked(Sample):
        @validates_schema
        def check(self, data, **kwargs):
            pass

    checked = Checked()
    assert imports._row_schema(SimpleNamespace(schema=Checked), checked, column_map) is checked


def test_the_collector_pause_of_a_batch_restores_the_state_it_found():
    import gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with imports._collector_paused():
            assert not gc.isenabled()
            raise RuntimeError("a batch failed")
    assert gc.isenabled()
    gc.disable()  # someone else (a caller, another thread's batch) turned it off: stays off
    try:
        with imports._collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
