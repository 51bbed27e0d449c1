"""The core record's part of data-subject export and erasure (the host's
``mosaic_export_contact`` / ``mosaic_erase_contact``), through the REST API
and the CLI, on SQLite and PostgreSQL.

After an erasure nothing of the person can be found again: not by search
(the full-text index of either database), not in the audit trail (also
values changed or cleared long before), not in interactions, tasks,
notifications or attachment files, not under a contact merged into it.
"""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from host.core import attachments, personal_data_cli
from host.core import search as search_service
from host.core.models import Attachment, Contact, Interaction, Notification, Task
from host.models import OutboxEvent
from host.security import roles
from host.security.access import SYSTEM
from host.security.models import AuditEntry, PersonalDataJournal, SecurityEvent
from host.testing import api_token, bearer, make_user

from .core_support import make_contact, make_interaction, make_task, principal_of, run_as, state

NAME = ("Žofia", "Kováčová")
EMAIL = "zofia.kovacova@example.sk"
PHONE = "+421 905 123 456"
SECRETS = ("Kováčová", "zofia.kovacova", "421905123456", "905 123 456", "Bratislava", "Hlavná 12",
           "told us about her illness", "old private note", "Call Žofia about the loan", "passport-scan.txt",
           "Žofka K.", "zofka@example.sk", "customer since 1999")


@pytest.fixture
def world(make_app):
    """The host alone; an admin (all scope) and two staff users (own scope)."""
    app = make_app(plugins=[])
    ids = {
        "admin": make_user(app, "admin@example.com", roles=("admin",)),
        "ann": make_user(app, "ann@example.com", roles=("staff",)),
        "bob": make_user(app, "bob@example.com", roles=("staff",)),
    }
    headers = {name: bearer(api_token(app, f"{name}@example.com")) for name in ids}
    return app, ids, headers


def _person_with_history(app, owner: str, headers) -> dict[str, int]:
    """Žofia, owned by ``owner``, with everything the host keeps about a
    person: fields, e-mails, phones, custom fields, consent, lifecycle
    history, an interaction, a task and its reminder, an attachment, a value
    cleared before the erasure, and a duplicate merged into her."""
    client = app.test_client()
    admin = headers["admin"]
    response = client.post("/api/v1/admin/custom-fields", headers=admin,
                           json={"key": "loyalty_note", "label": "Loyalty note", "type": "text"})
    assert response.status_code == 201, response.get_json()
    contact_id = make_contact(app, owner, first_name=NAME[0], last_name=NAME[1], email=EMAIL, phone=PHONE,
                              street="Hlavná 12", city="Bratislava", country="SK", notes="old private note",
                              emails=[EMAIL, "zofia@home.example"], marketing_consent=True, consent_source="web form",
                              custom_fields={"loyalty_note": "customer since 1999"}, tags=["VIP"])
    from host.core import services

    run_as(app, owner, lambda s: services.update_contact(s, contact_id, {"notes": None, "lifecycle_stage": "customer"}))
    interaction_id = make_interaction(app, owner, contact_id, subject="Call Žofia about the loan",
                                      body="She told us about her illness.", outcome="Kováčová will call back")
    task_id = make_task(app, owner, title="Call Žofia about the loan", notes="Kováčová prefers mornings", contact_id=contact_id)
    with state(app).db.transaction() as session:
        user_id = session.scalar(select(Task.owner_id).where(Task.id == task_id))
        session.add(Notification(user_id=user_id, kind="task.due", title="Task due: Call Žofia about the loan",
                                 url=f"/tasks/{task_id}"))
    upload = client.post(f"/api/v1/contacts/{contact_id}/attachments", headers=headers[owner.split("@")[0]],
                         data={"file": (io.BytesIO(b"Kovacova passport, Bratislava"), "passport-scan.txt")},
                         content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_json()
    duplicate = make_contact(app, owner, name="Žofka K.", email="zofka@example.sk")
    run_as(app, "admin@example.com", lambda s: services.merge_contacts(s, contact_id, duplicate))
    return {"contact": contact_id, "interaction": interaction_id, "task": task_id, "attachment": upload.get_json()["id"],
            "duplicate": duplicate}


def _search_hits(app, query: str) -> list[int]:
    with app.app_context(), state(app).db.Session() as session:
        return [hit.id for hit in search_service.search_contacts(session, SYSTEM, query)]


def _index_text(app, contact_id: int) -> str:
    """The contact's row of the full-text index, as stored (SQLite FTS5 or
    the PostgreSQL table the tsvector is generated from)."""
    with state(app).db.Session() as session:
        if session.get_bind().dialect.name == "sqlite":
            row = session.execute(text("SELECT name, emails, phones, company FROM contact_search WHERE rowid = :id"),
                                  {"id": contact_id}).one()
        else:
            row = session.execute(text("SELECT name, emails, phones, company, document::text FROM contact_search"
                                       " WHERE contact_id = :id"), {"id": contact_id}).one()
    return " ".join(str(part) for part in row)


def _everything_stored(app) -> str:
    """Every place the host keeps text about records, as one string."""
    with state(app).db.Session() as session:
        parts = [
            [e.changes for e in session.scalars(select(AuditEntry))],
            [(c.name, c.first_name, c.last_name, c.email, c.phone, c.street, c.city, c.notes, c.custom_fields)
             for c in session.scalars(select(Contact))],
            [(i.subject, i.body, i.outcome) for i in session.scalars(select(Interaction))],
            [(t.title, t.notes) for t in session.scalars(select(Task))],
            [n.title for n in session.scalars(select(Notification))],
            [a.filename for a in session.scalars(select(Attachment))],
            [o.data for o in session.scalars(select(OutboxEvent))],
            [s.detail for s in session.scalars(select(SecurityEvent))],
        ]
    return json.dumps(parts, ensure_ascii=False)


def test_export_holds_everything_the_host_knows(world):
    app, ids, headers = world
    made = _person_with_history(app, "ann@example.com", headers)
    response = app.test_client().get(f"/api/v1/contacts/{made['contact']}/personal-data", headers=headers["admin"])
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert (document["format"], document["contact_id"], document["exported_by"]) == (
        "mosaic.personal-data-export/1", made["contact"], ids["admin"])
    host = document["data"]["host"]
    contact = host["contact"]
    assert (contact["first_name"], contact["last_name"], contact["email"], contact["city"]) == (*NAME, EMAIL, "Bratislava")
    assert contact["custom_fields"] == {"loyalty_note": "customer since 1999"}
    assert contact["marketing_consent"] is True and contact["consent_source"] == "web form"
    assert {e["email"] for e in contact["emails"]} == {EMAIL, "zofia@home.example", "zofka@example.sk"}
    assert [p["phone"] for p in contact["phones"]] == [PHONE] and contact["tags"] == ["VIP"]
    assert [(c["from_stage"], c["to_stage"]) for c in host["lifecycle"]] == [(None, "lead"), ("lead", "customer"), (None, "lead")]
    assert [(i["id"], i["subject"], i["body"]) for i in host["interactions"]] == [
        (made["interaction"], "Call Žofia about the loan", "She told us about her illness.")]
    assert [(t["id"], t["title"], t["notes"]) for t in host["tasks"]] == [
        (made["task"], "Call Žofia about the loan", "Kováčová prefers mornings")]
    assert [(a["id"], a["filename"]) for a in host["attachments"]] == [(made["attachment"], "passport-scan.txt")]
    assert [n["title"] for n in host["notifications"]] == ["Task due: Call Žofia about the loan"]
    assert [m["id"] for m in host["merged_contacts"]] == [made["duplicate"]]
    assert "old private note" in json.dumps(host["history"], ensure_ascii=False), "the audit history is part of it"
    with state(app).db.Session() as session:
        (event,) = session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "export"))
        assert (event.user_id, event.detail) == (ids["admin"], {"contact_id": made["contact"], "parts": ["host"]})
        assert session.scalar(select(AuditEntry.action).where(AuditEntry.object_type == "core.contact",
                                                              AuditEntry.object_id == str(made["contact"]))
                              .order_by(AuditEntry.id.desc()).limit(1)) == "export"


def test_erasure_leaves_nothing_to_find(world):
    app, ids, headers = world
    made = _person_with_history(app, "ann@example.com", headers)
    with state(app).db.Session() as session:
        stored_name = session.get(Attachment, made["attachment"]).stored_name
    file = attachments.stored_path(attachments.storage_root(app.instance_path), stored_name)
    assert file.is_file()
    before = _everything_stored(app)
    assert all(secret in before for secret in SECRETS if secret not in ("421905123456",)), "the fixture holds each secret"
    assert _search_hits(app, "zofia") == [made["contact"]]

    response = app.test_client().post(f"/api/v1/contacts/{made['contact']}/erase", headers=headers["admin"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["contact_id"], body["parts"]) == (made["contact"], ["host"])

    for query in ("zofia", "Kováčová", "kovacova", EMAIL, "zofia.kovacova@", PHONE, "905123456", "zofka", "Bratislava"):
        assert _search_hits(app, query) == [], f"search still finds {query!r}"
        listed = app.test_client().get("/api/v1/contacts", query_string={"q": query}, headers=headers["admin"])
        assert listed.get_json()["items"] == [], f"the list's q= still finds {query!r}"
    index = _index_text(app, made["contact"]).lower()
    for secret in ("zofia", "kovacova", "kováčová", "421905123456", "zofka"):
        assert secret not in index, f"the index row still holds {secret!r}: {index}"
    stored = _everything_stored(app)
    for secret in SECRETS:
        assert secret not in stored, f"{secret!r} is still stored somewhere"
    assert not file.exists(), "the attachment's file is deleted"
    with state(app).db.Session() as session:
        contact = session.get(Contact, made["contact"])
        assert (contact.name, contact.email, contact.phone, contact.emails, contact.phones, contact.tags) == (
            f"Erased contact {made['contact']}", None, None, [], [], [])
        assert contact.lifecycle_stage == "customer", "non-personal facts stay for lifecycle figures"
        assert session.get(Attachment, made["attachment"]) is None
        interaction = session.get(Interaction, made["interaction"])
        assert (interaction.subject, interaction.body, interaction.outcome) == ("[erased]", None, None)
        (journal,) = session.scalars(select(PersonalDataJournal).where(PersonalDataJournal.kind == "erase"))
        assert (journal.contact_id, journal.done_by, journal.user_id) == (made["contact"], ["host"], ids["admin"])
        (event,) = session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "erasure"))
        assert event.detail["contact_id"] == made["contact"]
        kinds = [o.type for o in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
        assert kinds[-1] == "contact.erased"
        entries = session.scalars(select(AuditEntry).where(AuditEntry.object_type == "core.contact",
                                                           AuditEntry.object_id == str(made["contact"]))).all()
        assert {e.action for e in entries} >= {"create", "update", "erase", "attachment.add", "merge"}, "who did what stays"
    # The record itself still answers (as erased), and a second erasure is harmless.
    again = app.test_client().post(f"/api/v1/contacts/{made['contact']}/erase", headers=headers["admin"])
    assert again.status_code == 200


def test_permissions_and_scope(world):
    app, ids, headers = world
    anns = make_contact(app, "ann@example.com", name="Ann's customer")
    bobs = make_contact(app, "bob@example.com", name="Bob's customer")
    client = app.test_client()
    for path, method in ((f"/api/v1/contacts/{anns}/personal-data", client.get), (f"/api/v1/contacts/{anns}/erase", client.post)):
        assert method(path, headers=headers["ann"]).status_code == 403, f"staff may not use {path} by default"
        assert method(path).status_code == 401
    with state(app).db.transaction() as session:
        declared = state(app).permissions
        roles.grant(session, "staff", "core.personal_data.export", declared=declared)
        roles.grant(session, "staff", "core.personal_data.erase", declared=declared)
    ann = bearer(api_token(app, "ann@example.com"))
    assert client.get(f"/api/v1/contacts/{bobs}/personal-data", headers=ann).status_code == 404, "out of scope: 404"
    assert client.post(f"/api/v1/contacts/{bobs}/erase", headers=ann).status_code == 404
    assert client.get("/api/v1/contacts/999999/personal-data", headers=ann).status_code == 404
    with state(app).db.Session() as session:
        assert session.get(Contact, bobs).name == "Bob's customer"
        assert session.scalars(select(SecurityEvent).where(SecurityEvent.kind.in_(("export", "erasure")))).all() == []
    assert client.get(f"/api/v1/contacts/{anns}/personal-data", headers=ann).status_code == 200
    # A contact in the recycle bin is still the person's data: it can be erased.
    assert client.delete(f"/api/v1/contacts/{anns}", headers=headers["admin"]).status_code == 204
    assert client.post(f"/api/v1/contacts/{anns}/erase", headers=ann).status_code == 200
    with state(app).db.Session() as session:
        assert session.get(Contact, anns).name == f"Erased contact {anns}"


def test_a_rolled_back_erasure_keeps_the_files(world):
    """The file goes only when the erasure commits."""
    app, _ids, headers = world
    made = _person_with_history(app, "ann@example.com", headers)
    with state(app).db.Session() as session:
        file = attachments.stored_path(attachments.storage_root(app.instance_path),
                                       session.get(Attachment, made["attachment"]).stored_name)
    from host.security import personal_data

    with app.app_context():
        session = state(app).db.WriteSession()
        try:
            personal_data.erase_person(session, made["contact"], state=state(app))
            session.rollback()
            session.commit()  # a later commit of the same session must not remove them either
        finally:
            session.close()
    assert file.is_file()
    assert _search_hits(app, "zofia") == [made["contact"]]


def test_the_command_line_exports_and_erases(world):
    app, ids, headers = world
    contact_id = make_contact(app, "ann@example.com", first_name="Иван", last_name="Петров", email="ivan@example.bg")
    runner = CliRunner()
    with app.app_context():
        refused = runner.invoke(personal_data_cli.personal_data, ["erase", str(contact_id), "--as", "ann@example.com", "--yes"])
        assert refused.exit_code == 2 and "needs the permission core.personal_data.erase" in refused.output
        exported = runner.invoke(personal_data_cli.personal_data, ["export", str(contact_id), "--as", "admin@example.com"])
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.output)["data"]["host"]["contact"]["first_name"] == "Иван"
        unconfirmed = runner.invoke(personal_data_cli.personal_data, ["erase", str(contact_id), "--as", "admin@example.com"],
                                    input="n\n")
        assert unconfirmed.exit_code == 1 and _search_hits(app, "иван") == [contact_id]
        erased = runner.invoke(personal_data_cli.personal_data, ["erase", str(contact_id), "--as", "admin@example.com"],
                               input="y\n")
        assert erased.exit_code == 0, erased.output
        assert f"Erased contact {contact_id} (host)" in erased.output
        missing = runner.invoke(personal_data_cli.personal_data, ["export", "424242", "--as", "admin@example.com"])
        assert missing.exit_code == 1
    assert _search_hits(app, "иван") == [] and _search_hits(app, "ivan@example.bg") == []
    assert principal_of(app, "admin@example.com").can("core.personal_data.erase")


def test_a_merged_contact_purged_since_is_skipped(world):
    """The merge journal keeps the id of a contact purged with the recycle
    bin; export and erasure carry on without it."""
    app, _ids, headers = world
    import datetime as dt

    from host.core import services
    from host.db import utcnow

    keep = make_contact(app, "ann@example.com", name="Keep Person", email="keep@example.com")
    dup = make_contact(app, "ann@example.com", name="Dup Person", email="dup@example.com")
    run_as(app, "admin@example.com", lambda s: services.merge_contacts(s, keep, dup))
    report = run_as(app, SYSTEM, lambda s: services.purge_recycle_bin(s, now=utcnow() + dt.timedelta(days=31)))
    assert report.counts["contacts"] == 1
    client = app.test_client()
    exported = client.get(f"/api/v1/contacts/{keep}/personal-data", headers=headers["admin"])
    assert exported.status_code == 200 and exported.get_json()["data"]["host"]["merged_contacts"] == []
    assert client.post(f"/api/v1/contacts/{keep}/erase", headers=headers["admin"]).status_code == 200
    assert "dup@example.com" not in _everything_stored(app) and "Keep Person" not in _everything_stored(app)
