"""Optimistic concurrency: a stale edit is refused (409/412/428) and nothing
already saved is lost; directly and through a flask-smorest API of a test
plugin, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from host import errors_http
from host.security.concurrency import (
    IfMatchFailed,
    SentVersion,
    StaleVersion,
    VersionRequired,
    check_version,
    commit_or_conflict,
    conflict_form,
    expected_version,
    parse_if_match,
)

from .records_support import Note, acme_plugin, add_note, create_note_table


@pytest.fixture
def app(make_app):
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_note_table(app)
    return app


def db(app):
    return app.extensions["mosaic"].db


def title_of(app, note_id):
    with db(app).transaction(write=False) as session:
        return session.get(Note, note_id).title


def save_title(app, note_id, title):
    with db(app).transaction() as session:
        session.get(Note, note_id).title = title


# --- the version the client sent ----------------------------------------------------


def test_a_stale_sent_version_is_refused_with_the_current_values(app):
    note = add_note(app, title="Alice's")
    save_title(app, note.id, "Bob's")  # now version 2
    with db(app).transaction() as session:
        stored = session.get(Note, note.id)
        with pytest.raises(StaleVersion) as caught:
            check_version(stored, 1)
    conflict = caught.value
    assert conflict.code == 409
    assert conflict.description == "This record was changed by someone else (now version 2, you sent 1)"
    assert (conflict.current_version, conflict.current["title"], conflict.current["version"]) == (2, "Bob's", 2)
    assert conflict.object_type == "acme.note" and conflict.object_id == note.id
    assert title_of(app, note.id) == "Bob's"


def test_the_current_version_passes_and_none_is_428(app):
    note = add_note(app)
    check_version(note, 1)
    check_version(note, "1")  # a form's hidden field
    with pytest.raises(VersionRequired) as caught:
        check_version(note, None)
    assert caught.value.code == 428


# --- the flush guard (version_id_col) ---------------------------------------------------


def test_two_sessions_updating_the_same_row_the_second_flush_becomes_409(app):
    note = add_note(app, title="v1")
    first, second = db(app).WriteSession(), db(app).WriteSession()
    try:
        mine = first.get(Note, note.id)
        first.commit()  # loaded at version 1, as for an edit form
        theirs = second.get(Note, note.id)
        check_version(theirs, 1)
        theirs.title = "theirs"
        commit_or_conflict(second, theirs)

        check_version(mine, 1)  # passes: this session still sees version 1 ...
        mine.title = "mine"
        with pytest.raises(StaleVersion) as caught:
            commit_or_conflict(first, mine)  # ... but the UPDATE ... WHERE version = 1 matches no row
        assert caught.value.code == 409
        assert caught.value.current["title"] == "theirs" and caught.value.current_version == 2
        assert "now version 2, you sent 1" in caught.value.description
        assert first.get(Note, note.id).title == "theirs", "the session is usable after the conflict"
    finally:
        first.close()
        second.close()
    assert title_of(app, note.id) == "theirs"


def test_an_edit_of_a_record_deleted_meanwhile_is_a_409_saying_so(app):
    note = add_note(app)
    editor = db(app).WriteSession()
    try:
        held = editor.get(Note, note.id)
        editor.commit()
        with db(app).transaction() as session:
            session.delete(session.get(Note, note.id))
        held.title = "too late"
        with pytest.raises(StaleVersion) as caught:
            commit_or_conflict(editor, held)
    finally:
        editor.close()
    assert caught.value.deleted and caught.value.description == "This record was deleted by someone else"


def test_a_conflict_renders_as_the_json_error_shape_with_the_current_etag(app):
    note = add_note(app)
    with app.test_request_context("/api/v1/acme/notes/1", method="PATCH"):
        with pytest.raises(StaleVersion) as caught:
            check_version(note, 7)
        response = errors_http.handle_http_exception(caught.value)
    assert response.status_code == 409
    assert response.headers["ETag"] == '"1"'
    body = response.get_json()
    assert {k: body[k] for k in ("code", "status", "message")} == {
        "code": 409,
        "status": "Conflict",
        "message": "This record was changed by someone else (now version 1, you sent 7)",
    }


# --- reading the version from a request ---------------------------------------------------


@pytest.mark.parametrize("header, versions", [
    ('"3"', (3,)), ('W/"3"', (3,)), ("3", (3,)), (' W/"3", "4" ', (3, 4)), ('"abc"', ()), ("*", None),
])
def test_if_match_forms(header, versions):
    assert parse_if_match(header) == versions


def test_expected_version_sources_and_errors():
    assert expected_version({"version": 3}, if_match="") == SentVersion((3,), "body")
    assert expected_version({}, if_match='W/"4"') == SentVersion((4,), "if-match")
    assert expected_version({"version": 4}, if_match='"4"').via == "if-match"
    for body, header, status in [({}, None, 428), ({"title": "x"}, "*", 428), ({"version": 3}, '"4"', 400), ({"version": "three"}, None, 422), ({"version": True}, None, 422)]:
        with pytest.raises(Exception) as caught:
            expected_version(body, if_match=header)
        assert caught.value.code == status, (body, header)


def test_an_if_match_mismatch_is_412_and_still_a_stale_version(app):
    note = add_note(app)
    with pytest.raises(IfMatchFailed) as caught:
        check_version(note, expected_version({}, if_match='W/"9"'))
    assert caught.value.code == 412 and isinstance(caught.value, StaleVersion)


# --- through the API -------------------------------------------------------------------------


def patch(client, note_id, body, **headers):
    return client.patch(f"/api/v1/acme/notes/{note_id}", json=body, headers=headers)


def test_api_update_without_a_version_is_428(app):
    note = add_note(app, title="keep")
    response = patch(app.test_client(), note.id, {"title": "no version"})
    assert response.status_code == 428
    assert response.get_json()["code"] == 428 and response.get_json()["status"] == "Precondition Required"
    assert "If-Match" in response.get_json()["message"]
    assert title_of(app, note.id) == "keep"


def test_api_stale_body_version_is_409_and_nothing_is_lost(app):
    client = app.test_client()
    note = add_note(app, title="start")
    first = patch(client, note.id, {"title": "Bob's", "version": 1})
    assert first.status_code == 200 and first.get_json()["version"] == 2 and first.headers["ETag"] == '"2"'

    stale = patch(client, note.id, {"title": "Alice's", "version": 1})
    assert stale.status_code == 409
    assert stale.get_json()["message"] == "This record was changed by someone else (now version 2, you sent 1)"
    assert stale.headers["ETag"] == '"2"'
    assert title_of(app, note.id) == "Bob's"


def test_api_if_match_mismatch_is_412_and_a_match_in_any_form_saves(app):
    client = app.test_client()
    note = add_note(app, title="start")
    refused = patch(client, note.id, {"title": "x"}, **{"If-Match": 'W/"9"'})
    assert refused.status_code == 412 and refused.get_json()["status"] == "Precondition Failed"
    assert "now version 1, you sent W/\"9\"" in refused.get_json()["message"]
    assert title_of(app, note.id) == "start"
    for version, header in enumerate(['W/"1"', '"2"', "3"], start=1):
        response = patch(client, note.id, {"title": f"saved {version}"}, **{"If-Match": header})
        assert response.status_code == 200, response.get_json()
        assert response.headers["ETag"] == f'"{version + 1}"'
    assert title_of(app, note.id) == "saved 3"


def test_api_version_that_is_not_a_number_is_422(app):
    note = add_note(app)
    response = patch(app.test_client(), note.id, {"title": "x", "version": "three"})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"version": ["Not a valid integer."]}}


# --- the UI side -------------------------------------------------------------------------------


def test_conflict_form_keeps_the_users_input_and_shows_what_differs(app):
    note = add_note(app, title="start", body="same")
    save_title(app, note.id, "Bob's")
    submitted = MultiDict({"title": "Alice's", "body": "same", "amount": "", "version": "1", "csrf_token": "t"})
    with db(app).transaction(write=False) as session:
        with pytest.raises(StaleVersion) as caught:
            check_version(session.get(Note, note.id), submitted["version"])
    form = conflict_form(caught.value, submitted)
    assert form.submitted == {"title": "Alice's", "body": "same", "amount": "", "version": "2"}
    assert form.current["title"] == "Bob's" and form.current_version == 2
    assert form.differing == ("title",)
    assert "now version 2, you sent 1" in form.message
