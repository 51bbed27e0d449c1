"""Attachments (host.core.attachments and its API): upload on contacts,
interactions and tasks, stored under generated names in the instance folder,
size and type limits by content, always served as a download to those who
may see the record (404 to anyone else), deleted to the recycle bin."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from host.core import attachments
from host.core.models import Attachment, Contact
from host.security import audit
from host.testing import api_token, bearer, login, make_user

from .test_timeline import T, add_contact, add_interaction, add_task, set_values

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"This program cannot be run in DOS mode"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
HTML = b"<!DOCTYPE html>\n<html><body><script>fetch('/api/v1/contacts')</script></body></html>\n"
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'


def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


# --- set-up -----------------------------------------------------------------------------------------


@pytest.fixture
def world(make_app):
    """An app with Ann (staff, owns a contact with an interaction and a task),
    Bob (staff, sees none of it) and Nobody (signed in, without roles)."""
    app = make_app(plugins=[])
    ann = make_user(app, "ann@example.com")
    make_user(app, "bob@example.com")
    make_user(app, "nobody@example.com", roles=())
    contact = add_contact(app, "Ana Lima", ann)
    ids = {
        "contact": contact,
        "interaction": add_interaction(app, contact, "Call", T, ann),
        "task": add_task(app, contact, "Follow up", T, ann),
    }
    headers = {email.split("@")[0]: bearer(api_token(app, f"{email}")) for email in
               ("ann@example.com", "bob@example.com", "nobody@example.com")}
    return app, ids, headers


def upload(client, record_path: str, data: bytes, filename: str, headers, content_type: str = "application/octet-stream"):
    return client.post(
        f"/api/v1/{record_path}/attachments", headers=headers,
        data={"file": (io.BytesIO(data), filename, content_type)}, content_type="multipart/form-data",
    )


def root_of(app) -> Path:
    return attachments.storage_root(app.instance_path)


def files_on_disk(app) -> list[Path]:
    root = root_of(app)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def row(app, attachment_id: int) -> Attachment:
    with app.extensions["mosaic"].db.Session() as session:
        return session.get(Attachment, attachment_id)


# --- storing ---------------------------------------------------------------------------------------------


def test_an_upload_is_stored_under_a_generated_name_with_its_sniffed_type(world):
    app, ids, headers = world
    response = upload(app.test_client(), f"contacts/{ids['contact']}", PDF, "Offer 2026.pdf", headers["ann"], "text/html")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert {k: body[k] for k in ("object_type", "object_id", "filename", "content_type", "size")} == {
        "object_type": "contact", "object_id": ids["contact"], "filename": "Offer 2026.pdf",
        "content_type": "application/pdf", "size": len(PDF)}, "the client's claimed type is ignored"
    assert body["content_url"] == f"/api/v1/attachments/{body['id']}/content"
    assert body["download_url"] == f"/attachments/{body['id']}"
    [stored] = files_on_disk(app)
    saved = row(app, body["id"])
    assert stored == root_of(app) / saved.stored_name[:2] / saved.stored_name
    assert len(saved.stored_name) == 32 and "Offer" not in str(stored)
    assert stored.read_bytes() == PDF
    assert stored.stat().st_mode & 0o077 == 0, "readable by the server's user only"


def test_a_hostile_filename_cannot_reach_the_file_system(world, tmp_path):
    app, ids, headers = world
    client = app.test_client()
    first = upload(client, f"contacts/{ids['contact']}", b"root:x:0:0\n", "../../etc/passwd", headers["ann"])
    second = upload(client, f"contacts/{ids['contact']}", b"notes\n", "/etc/cron.d/evil.txt", headers["ann"])
    third = upload(client, f"contacts/{ids['contact']}", b"notes\n", "../..", headers["ann"])

    assert [r.status_code for r in (first, second, third)] == [201, 201, 201]
    assert [r.get_json()["filename"] for r in (first, second, third)] == ["passwd", "evil.txt", "file"]
    stored = files_on_disk(app)
    assert len(stored) == 3 and all(p.parent.parent == root_of(app) for p in stored)
    assert not any(p.name in ("passwd", "evil.txt") for p in Path(tmp_path).rglob("*")), "no file by the user's name anywhere"


def test_a_stored_name_that_is_not_ours_never_becomes_a_path():
    with pytest.raises(ValueError):
        attachments.stored_path(Path("/srv/attachments"), "../../etc/passwd")
    with pytest.raises(ValueError):
        attachments.stored_path(Path("/srv/attachments"), "ab" * 16 + "/x")


def test_upload_on_interactions_and_tasks_and_listing_per_record(world):
    app, ids, headers = world
    client = app.test_client()
    assert upload(client, f"interactions/{ids['interaction']}", PNG, "photo.png", headers["ann"]).status_code == 201
    assert upload(client, f"tasks/{ids['task']}", docx_bytes(), "brief.docx", headers["ann"]).status_code == 201

    on_interaction = client.get(f"/api/v1/interactions/{ids['interaction']}/attachments", headers=headers["ann"]).get_json()
    on_task = client.get(f"/api/v1/tasks/{ids['task']}/attachments", headers=headers["ann"]).get_json()
    on_contact = client.get(f"/api/v1/contacts/{ids['contact']}/attachments", headers=headers["ann"]).get_json()

    assert [(a["filename"], a["content_type"]) for a in on_interaction["items"]] == [("photo.png", "image/png")]
    assert [(a["filename"], a["content_type"]) for a in on_task["items"]] == [
        ("brief.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]
    assert on_contact == {"items": [], "next": None}


def test_the_list_pages_newest_first(world):
    app, ids, headers = world
    client = app.test_client()
    for name in ("a.txt", "b.txt", "c.txt"):
        upload(client, f"contacts/{ids['contact']}", b"text\n", name, headers["ann"])
    path = f"/api/v1/contacts/{ids['contact']}/attachments"
    first = client.get(f"{path}?limit=2", headers=headers["ann"]).get_json()
    rest = client.get(f"{path}?limit=2&cursor={first['next']}", headers=headers["ann"]).get_json()
    assert [a["filename"] for a in first["items"] + rest["items"]] == ["c.txt", "b.txt", "a.txt"]
    assert rest["next"] is None


def test_the_upload_is_recorded_on_the_records_history(world):
    app, ids, headers = world
    body = upload(app.test_client(), f"contacts/{ids['contact']}", PDF, "offer.pdf", headers["ann"]).get_json()
    with app.extensions["mosaic"].db.Session() as session:
        entries = audit.history(session, object_type="core.contact", object_id=ids["contact"])
    [entry] = [e for e in entries if e.action == "attachment.add"]
    assert entry.changes == {"attachment_id": body["id"], "filename": "offer.pdf", "size": len(PDF)}


# --- limits ------------------------------------------------------------------------------------------------


def test_files_over_the_size_limit_are_refused_and_leave_nothing_behind(world):
    app, ids, headers = world
    app.config[attachments.MAX_BYTES_SETTING] = 1024
    client = app.test_client()
    path = f"contacts/{ids['contact']}"

    too_big = upload(client, path, b"x" * 1025, "big.txt", headers["ann"])
    just_fits = upload(client, path, b"x" * 1024, "fits.txt", headers["ann"])

    assert too_big.status_code == 413 and "larger than" in too_big.get_json()["message"]
    assert just_fits.status_code == 201
    assert len(files_on_disk(app)) == 1, "no partial file is left"


def test_the_default_limit_is_twenty_megabytes():
    assert attachments.MAX_BYTES == 20 * 1024 * 1024


def test_flasks_request_limit_applies_before_anything_is_read(make_app):
    app = make_app(plugins=[], max_content_length=4096)
    ann = make_user(app, "ann@example.com")
    contact = add_contact(app, "Ana Lima", ann)
    response = upload(app.test_client(), f"contacts/{contact}", b"x" * 5000, "big.txt", bearer(api_token(app, "ann@example.com")))
    assert response.status_code == 413 and files_on_disk(app) == []


@pytest.mark.parametrize(
    ("data", "filename", "why"),
    [
        (EXE, "invoice.pdf", "not accepted"),  # a Windows program, whatever its name
        (ELF, "report", "not accepted"),
        (HTML, "notes.txt", "Web pages"),  # markup inside a text file
        (SVG, "logo.png", "Web pages"),
        (b"hello\n", "page.html", ".html"),  # harmless text, dangerous name
        (b"console.log(1)\n", "tool.js", ".js"),
        (PNG, "logo.svg", ".svg"),
        (docx_bytes(), "macro.docm", ".docm"),
        (b"\x00\x01\x02\x03binary", "data.bin", ".bin"),
    ],
)
def test_programs_scripts_web_pages_and_unknown_binaries_are_refused(world, data, filename, why):
    app, ids, headers = world
    response = upload(app.test_client(), f"contacts/{ids['contact']}", data, filename, headers["ann"])
    assert response.status_code == 415, response.get_json()
    assert why in response.get_json()["message"]
    assert files_on_disk(app) == []


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        (PDF, "offer.pdf", "application/pdf"),
        (PNG, "photo.png", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "photo.jpg", "image/jpeg"),
        (docx_bytes(), "offer.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (docx_bytes(), "bundle.zip", "application/zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 24, "old.xls", "application/vnd.ms-excel"),
        ("Name;City\nŽofia;Praha\nИван;Москва\n".encode(), "list.csv", "text/csv"),
        ("Müller;Köln\n".encode("cp1252"), "export.csv", "text/csv"),
        ("Notes from the call\n".encode("utf-16"), "notes.txt", "text/plain"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "call.mp4", "video/mp4"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "call.mp3", "audio/mpeg"),
    ],
)
def test_documents_images_text_and_recordings_are_accepted_by_content(world, data, filename, content_type):
    app, ids, headers = world
    response = upload(app.test_client(), f"contacts/{ids['contact']}", data, filename, headers["ann"])
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["content_type"] == content_type


def test_an_empty_file_a_missing_field_and_a_json_body_are_refused(world):
    app, ids, headers = world
    client = app.test_client()
    path = f"/api/v1/contacts/{ids['contact']}/attachments"
    empty = upload(client, f"contacts/{ids['contact']}", b"", "empty.txt", headers["ann"])
    missing = client.post(path, headers=headers["ann"], data={"other": "x"}, content_type="multipart/form-data")
    as_json = client.post(path, headers=headers["ann"], json={"file": "aGVsbG8="})
    assert (empty.status_code, empty.get_json()["message"]) == (422, "The file is empty.")
    assert missing.status_code == 422 and "file" in missing.get_json()["errors"]["files"]
    assert as_json.status_code == 415
    assert files_on_disk(app) == []


# --- downloads ---------------------------------------------------------------------------------------------


def test_api_and_ui_downloads_are_always_attachments_with_a_safe_name(world):
    app, ids, headers = world
    client = app.test_client()
    body = upload(client, f"contacts/{ids['contact']}", PDF, "Отчёт Q1.pdf", headers["ann"]).get_json()
    assert body["filename"] == "Отчёт Q1.pdf"
    # A name no upload can produce (quotes, a line break): the header must still hold
    name = 'Отчёт "Q1"\r\nSet-Cookie: x=1; ä.pdf'
    set_values(app, Attachment, body["id"], filename=name)
    ui = app.test_client()
    assert login(ui, "ann@example.com").status_code == 303

    for response in (client.get(body["content_url"], headers=headers["ann"]), ui.get(body["download_url"])):
        assert response.status_code == 200
        assert response.data == PDF
        assert response.mimetype == "application/pdf"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith('attachment; filename="')
        assert "\r" not in disposition and "\n" not in disposition
        fallback = disposition.split('filename="')[1].split('"')[0]
        assert fallback == "_Q1___Set-Cookie_ x=1_ a.pdf"
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == name
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in response.headers["Cache-Control"]
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert "Set-Cookie" not in response.headers or "x=1" not in response.headers["Set-Cookie"]


def test_text_is_downloaded_too_never_shown_inline(world):
    app, ids, headers = world
    client = app.test_client()
    body = upload(client, f"contacts/{ids['contact']}", b"plain words\n", "notes.txt", headers["ann"]).get_json()
    response = client.get(body["content_url"], headers=headers["ann"])
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment;")


def test_a_missing_file_on_disk_answers_404(world):
    app, ids, headers = world
    client = app.test_client()
    body = upload(client, f"contacts/{ids['contact']}", PDF, "offer.pdf", headers["ann"]).get_json()
    for path in files_on_disk(app):
        path.unlink()
    assert client.get(body["content_url"], headers=headers["ann"]).status_code == 404


# --- who may see ------------------------------------------------------------------------------------------


@pytest.fixture
def uploaded(world):
    """One attachment on each of Ann's contact, interaction and task."""
    app, ids, headers = world
    client = app.test_client()
    made = {}
    for kind, plural in (("contact", "contacts"), ("interaction", "interactions"), ("task", "tasks")):
        made[kind] = upload(client, f"{plural}/{ids[kind]}", PDF, f"{kind}.pdf", headers["ann"]).get_json()
    return app, ids, headers, made


def test_out_of_scope_users_get_404_everywhere_and_the_owner_gets_through(uploaded):
    app, ids, headers, made = uploaded
    client = app.test_client()
    ui_bob = app.test_client()
    assert login(ui_bob, "bob@example.com").status_code == 303
    for kind, plural in (("contact", "contacts"), ("interaction", "interactions"), ("task", "tasks")):
        attachment = made[kind]
        reads = [f"/api/v1/attachments/{attachment['id']}", attachment["content_url"],
                 f"/api/v1/{plural}/{ids[kind]}/attachments"]
        for path in reads:
            assert client.get(path, headers=headers["ann"]).status_code == 200, path
            hidden = client.get(path, headers=headers["bob"])
            assert hidden.status_code == 404, path
            assert b"%PDF" not in hidden.data and f"{kind}.pdf" not in hidden.get_data(as_text=True)
        assert ui_bob.get(attachment["download_url"]).status_code == 404
        assert upload(client, f"{plural}/{ids[kind]}", PDF, "sneaky.pdf", headers["bob"]).status_code == 404
        assert client.delete(f"/api/v1/attachments/{attachment['id']}", headers=headers["bob"]).status_code == 404
    assert len(files_on_disk(app)) == 3, "Bob's uploads wrote nothing"
    assert all(row(app, a["id"]).deleted_at is None for a in made.values())


def test_without_the_read_permission_downloads_answer_404(uploaded):
    """A user with no roles holds no core.*.read: the by-id routes (which
    only need a sign-in) answer 404 rather than confirm the file exists."""
    app, _ids, headers, made = uploaded
    client = app.test_client()
    for attachment in made.values():
        assert client.get(attachment["content_url"], headers=headers["nobody"]).status_code == 404
        assert client.get(f"/api/v1/attachments/{attachment['id']}", headers=headers["nobody"]).status_code == 404
    assert client.get(made["contact"]["content_url"]).status_code == 401


def test_records_in_the_recycle_bin_hide_their_attachments_and_restoring_brings_them_back(uploaded):
    app, ids, headers, made = uploaded
    client = app.test_client()
    set_values(app, Contact, ids["contact"], deleted_at=T)
    for attachment in made.values():  # the interaction and task hang on the binned contact
        assert client.get(attachment["content_url"], headers=headers["ann"]).status_code == 404
    assert client.get(f"/api/v1/contacts/{ids['contact']}/attachments", headers=headers["ann"]).status_code == 404
    set_values(app, Contact, ids["contact"], deleted_at=None)
    assert client.get(made["task"]["content_url"], headers=headers["ann"]).status_code == 200


def test_missing_records_answer_404(world):
    app, _ids, headers = world
    client = app.test_client()
    assert client.get("/api/v1/contacts/987654/attachments", headers=headers["ann"]).status_code == 404
    assert upload(client, "tasks/987654", PDF, "x.pdf", headers["ann"]).status_code == 404
    assert client.get("/api/v1/attachments/987654/content", headers=headers["ann"]).status_code == 404


# --- deleting ------------------------------------------------------------------------------------------


def test_delete_moves_to_the_recycle_bin_and_keeps_the_file_until_purged(uploaded):
    app, ids, headers, made = uploaded
    client = app.test_client()
    attachment = made["contact"]
    read_only = bearer(api_token(app, "ann@example.com", read_only=True))
    assert client.delete(f"/api/v1/attachments/{attachment['id']}", headers=read_only).status_code == 403

    assert client.delete(f"/api/v1/attachments/{attachment['id']}", headers=headers["ann"]).status_code == 204

    assert client.get(attachment["content_url"], headers=headers["ann"]).status_code == 404
    listed = client.get(f"/api/v1/contacts/{ids['contact']}/attachments", headers=headers["ann"]).get_json()
    assert listed["items"] == []
    assert row(app, attachment["id"]).deleted_at is not None
    assert len(files_on_disk(app)) == 3

    with app.extensions["mosaic"].db.transaction() as session:
        names = attachments.purge_deleted(session, older_than=row(app, attachment["id"]).deleted_at)
        assert names == [], "deleted just now: not purged yet"
        names = attachments.purge_deleted(session, older_than=T.replace(year=2100))
    attachments.remove_files(root_of(app), names)
    assert row(app, attachment["id"]) is None and len(files_on_disk(app)) == 2


def test_purging_records_purges_their_attachments(uploaded):
    app, ids, _headers, made = uploaded
    with app.extensions["mosaic"].db.transaction() as session:
        names = attachments.purge_for_records(session, "task", [ids["task"]])
    attachments.remove_files(root_of(app), names)
    assert row(app, made["task"]["id"]) is None and row(app, made["contact"]["id"]) is not None
    assert len(files_on_disk(app)) == 2
    with app.extensions["mosaic"].db.Session() as session:
        assert session.scalars(select(Attachment.object_type)).all() == ["contact", "interaction"]


# --- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\Users\\ann\\Desktop\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("  .hidden.txt. ", "hidden.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # right-to-left override removed
        ("line\r\nbreak.txt", "linebreak.txt"),
        ("", "file"),
        (None, "file"),
        ("x" * 300 + ".pdf", "x" * 251 + ".pdf"),
    ],
)
def test_safe_filename(given, kept):
    assert attachments.safe_filename(given) == kept


@pytest.mark.parametrize(
    ("filename", "fallback"),
    [
        ("report.pdf", "report.pdf"),
        ("Žofia Nováková.docx", "Zofia Novakova.docx"),
        ("Отчёт.pdf", "download.pdf"),  # nothing readable in ASCII: a neutral name, the right extension
        ("日本", "download"),
        ('a"b\\c;d.txt', "a_b_c_d.txt"),
    ],
)
def test_content_disposition_has_an_ascii_fallback_and_the_exact_utf8_name(filename, fallback):
    header = attachments.content_disposition(filename)
    assert header.startswith(f'attachment; filename="{fallback}"; filename*=UTF-8\'\'')
    assert unquote(header.split("UTF-8''")[1]) == filename


def test_the_openapi_document_describes_the_multipart_upload_and_its_refusals(make_app):
    app = make_app(plugins=[], migrate=False)
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    for plural in ("contacts", "interactions", "tasks"):
        operation = spec["paths"][f"/api/v1/{plural}/{{record_id}}/attachments"]["post"]
        assert list(operation["requestBody"]["content"]) == ["multipart/form-data"]
        assert {"201", "404", "413", "415", "422"} <= set(operation["responses"])
    assert "/api/v1/attachments/{attachment_id}/content" in spec["paths"]
