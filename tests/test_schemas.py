"""Mass assignment is impossible: server-set fields are dump-only and an
unknown field is a 422 naming it, through a real flask-smorest endpoint."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from host.schemas import load_form

from .records_support import Note, NoteSchema, NoteUpdateSchema, acme_plugin, add_note, create_note_table


@pytest.fixture
def app(make_app):
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_note_table(app)
    return app


def note_count(app):
    with app.extensions["mosaic"].db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(Note))


@pytest.mark.parametrize("field, value", [
    ("owner_id", 1), ("team_id", 1), ("id", 99), ("version", 5), ("created_by", 1), ("updated_by", 1),
    ("created_at", "2020-01-01T00:00:00+00:00"), ("colour", "red"),
])
def test_api_create_with_a_server_set_or_unknown_field_is_422_naming_it(app, field, value):
    response = app.test_client().post("/api/v1/acme/notes", json={"title": "x", field: value})
    assert response.status_code == 422
    body = response.get_json()
    assert (body["code"], body["status"]) == (422, "Unprocessable Entity")
    assert body["errors"] == {"json": {field: ["Unknown field."]}}
    assert note_count(app) == 0


def test_api_create_sets_server_fields_itself(app):
    response = app.test_client().post("/api/v1/acme/notes", json={"title": "x", "amount": "3.50", "due": "2026-02-01"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["title"], body["amount"], body["due"], body["version"], body["owner_id"]) == ("x", "3.50", "2026-02-01", 1, None)
    assert body["id"] > 0 and body["created_at"]


def test_api_update_cannot_take_over_a_record(app):
    note = add_note(app)
    response = app.test_client().patch(f"/api/v1/acme/notes/{note.id}", json={"version": 1, "owner_id": 1})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"owner_id": ["Unknown field."]}}


def test_a_missing_required_field_is_named_too(app):
    response = app.test_client().post("/api/v1/acme/notes", json={"body": "no title"})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"title": ["Missing data for required field."]}}


def test_version_is_loadable_only_in_update_schemas():
    assert NoteUpdateSchema().load({"title": "x", "version": 3}) == {"title": "x", "version": 3}
    with pytest.raises(ValidationError) as caught:
        NoteSchema().load({"title": "x", "version": 3})
    assert caught.value.messages == {"version": ["Unknown field."]}
    with pytest.raises(ValidationError) as caught:
        NoteUpdateSchema().load({"title": "x", "version": 0})
    assert "version" in caught.value.messages


def test_dump_only_fields_are_read_only_in_the_openapi_document(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    note = spec["components"]["schemas"]["AcmeNote"]["properties"]
    assert all(note[f].get("readOnly") for f in ("id", "owner_id", "version", "created_at"))
    assert not note["title"].get("readOnly")
    assert not spec["components"]["schemas"]["AcmeNoteUpdate"]["properties"]["version"].get("readOnly")


def test_forms_use_the_same_schema_without_the_csrf_token():
    form = MultiDict({"title": "From the form", "version": "4", "csrf_token": "abc"})
    assert load_form(NoteUpdateSchema, form) == {"title": "From the form", "version": 4}
    with pytest.raises(ValidationError) as caught:
        load_form(NoteSchema, MultiDict({"title": "x", "owner_id": "2", "csrf_token": "abc"}))
    assert caught.value.messages == {"owner_id": ["Unknown field."]}
