"""Contact forms rendered from the schemas: the same validation as the API,
errors next to their fields with the input kept, custom fields by their
definitions, the duplicate warning, and a stale edit (409) that keeps the
user's input and shows what the other person saved."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from host.core import services
from host.core.models import Contact
from host.security.access import SYSTEM
from host.testing import csrf_token

from .core_support import make_company, make_contact, row, rows, run_as

pytestmark = pytest.mark.with_plugins()

REP = "rep@example.com"


@pytest.fixture
def rep(app, signed_in):
    return signed_in(REP)


def post(client, path, data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/contacts"), **data})


def error_of(html: str, name: str) -> str:
    found = re.search(rf'id="f-{re.escape(name)}-error" class="field-error">([^<]*)<', html)
    return found.group(1) if found else ""


def define_fields(app):
    run_as(app, SYSTEM, lambda s: services.create_custom_field(
        s, {"key": "segment", "label": "Segment <b>", "type": "choice", "choices": ["retail", "wholesale"],
            "required": True}))
    run_as(app, SYSTEM, lambda s: services.create_custom_field(
        s, {"key": "seats", "label": "Seats", "type": "number"}))
    run_as(app, SYSTEM, lambda s: services.create_custom_field(
        s, {"key": "partner", "label": "Partner", "type": "bool"}))


def test_the_new_contact_form_is_rendered_from_the_schema(app, rep):
    response = rep.get("/contacts/new")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for name, kind in (("email", "email"), ("birthday", "date"), ("first_name", "text")):
        assert re.search(rf'<input id="f-{name}" name="{name}" type="{kind}"', html), name
    assert 'maxlength="150"' in html, "lengths come from the schema"
    assert '<select id="f-lifecycle_stage" name="lifecycle_stage"' in html
    assert '<textarea id="f-notes" name="notes"' in html
    assert '<label for="f-email">E-mail</label>' in html
    assert 'type="checkbox" id="f-marketing_consent"' in html


def test_create_validates_like_the_api_and_keeps_the_input(app, rep):
    response = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "email": "not-an-email",
                                           "country": "Bulgaria", "notes": "Met <at> the fair", "lifecycle_stage": "lead"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Not a valid email address." in error_of(html, "email")
    assert "two-letter" in error_of(html, "country")
    assert 'value="not-an-email"' in html and 'value="Bulgaria"' in html and "Met &lt;at&gt; the fair</textarea>" in html
    assert 'aria-invalid="true"' in html and 'aria-describedby="f-email-error"' in html
    assert rows(app, select(Contact.id)) == []
    api = app.test_client().post("/api/v1/contacts", json={"first_name": "Ann", "email": "not-an-email"},
                                 headers=_bearer(app))
    assert api.get_json()["errors"]["json"]["email"] == ["Not a valid email address."], "the API says the same"


def _bearer(app):
    from host.testing import api_token, bearer

    return bearer(api_token(app, REP))


def test_a_service_rule_shows_at_its_field(app, rep):
    response = post(rep, "/contacts/new", {"kind": "company", "name": "Firm", "birthday": "2000-01-01",
                                           "lifecycle_stage": "lead"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Only people have a birthday." in error_of(html, "birthday")


def test_create_with_tags_company_and_consent(app, rep):
    company = make_company(app, REP, name="Firm Ltd")
    response = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "last_name": "Lee",
                                           "company_id": str(company), "tags": "vip, spring ,", "lifecycle_stage": "prospect",
                                           "marketing_consent": "1", "consent_source": "fair"})
    assert response.status_code == 303
    contact_id = int(response.headers["Location"].rsplit("/", 1)[1])
    stored = row(app, Contact, contact_id)
    assert (stored["name"], stored["company_id"], stored["lifecycle_stage"], stored["marketing_consent"]) == (
        "Ann Lee", company, "prospect", True)
    html = rep.get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert "vip" in html and "spring" in html and "Firm Ltd" in html


def test_custom_fields_appear_by_their_definitions_and_validate(app, rep):
    define_fields(app)
    html = rep.get("/contacts/new").get_data(as_text=True)
    assert '<label for="f-cf-segment">Segment &lt;b&gt; <span class="required"' in html
    assert '<option value="wholesale">' in html
    assert re.search(r'<input id="f-cf-seats" name="cf:seats" type="number"', html)
    assert 'type="checkbox" id="f-cf-partner" name="cf:partner"' in html
    response = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "lifecycle_stage": "lead",
                                           "cf:seats": "lots"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error_of(html, "cf-seats") == "Not a valid number."
    assert "required" in error_of(html, "cf-segment").lower()
    assert 'value="lots"' in html
    response = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "lifecycle_stage": "lead",
                                           "cf:segment": "retail", "cf:seats": "12", "cf:partner": "1"})
    assert response.status_code == 303
    (stored,) = rows(app, select(Contact.custom_fields))
    assert stored.custom_fields == {"segment": "retail", "seats": 12, "partner": True}


def test_likely_duplicates_are_shown_and_creating_needs_a_confirmation(app, rep):
    existing = make_contact(app, REP, name="Ann Lee", email="ann@example.com")
    data = {"kind": "person", "first_name": "Anna", "email": "ANN@example.com", "lifecycle_stage": "lead"}
    response = post(rep, "/contacts/new", data)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f'href="/contacts/{existing}"' in html and "Ann Lee" in html
    assert 'value="Anna"' in html and 'name="confirm_duplicates"' in html
    assert len(rows(app, select(Contact.id))) == 1
    response = post(rep, "/contacts/new", {**data, "confirm_duplicates": "1"})
    assert response.status_code == 303 and len(rows(app, select(Contact.id))) == 2


def test_edit_saves_with_the_version(app, rep):
    contact_id = make_contact(app, REP, name="Ann Lee", city="Sofia")
    html = rep.get(f"/contacts/{contact_id}/edit").get_data(as_text=True)
    assert 'value="Sofia"' in html
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    response = post(rep, f"/contacts/{contact_id}/edit", {"kind": "person", "name": "Ann Lee", "city": "Varna",
                                                          "lifecycle_stage": "customer", "version": version})
    assert response.status_code == 303
    stored = row(app, Contact, contact_id)
    assert (stored["city"], stored["lifecycle_stage"]) == ("Varna", "customer")


def test_a_stale_edit_answers_409_keeps_the_input_and_shows_theirs(app, rep):
    contact_id = make_contact(app, REP, name="Ann Lee", city="Sofia", phone="+359 2 123")
    html = rep.get(f"/contacts/{contact_id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    run_as(app, REP, lambda s: services.update_contact(s, contact_id, {"city": "Plovdiv <b>"}))
    mine = {"kind": "person", "name": "Ann Lee", "city": "Burgas", "phone": "+359 2 123", "notes": "My long notes",
            "lifecycle_stage": "lead", "version": version}
    response = post(rep, f"/contacts/{contact_id}/edit", mine)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert 'value="Burgas"' in html and "My long notes</textarea>" in html, "the user's input is kept"
    theirs = re.search(r'id="f-city-theirs" class="theirs">.*?<strong>(.*?)</strong>', html, re.S).group(1)
    assert theirs == "Plovdiv &lt;b&gt;"
    assert 'id="f-name-theirs"' not in html, "fields nobody changed show nothing"
    assert row(app, Contact, contact_id)["city"] == "Plovdiv <b>"
    new_version = re.search(r'name="version" value="(\d+)"', html).group(1)
    assert post(rep, f"/contacts/{contact_id}/edit", {**mine, "version": new_version}).status_code == 303
    assert row(app, Contact, contact_id)["city"] == "Burgas"


def test_edit_without_a_version_is_refused(app, rep):
    contact_id = make_contact(app, REP, name="Ann")
    response = post(rep, f"/contacts/{contact_id}/edit", {"kind": "person", "name": "Other", "lifecycle_stage": "lead"})
    assert response.status_code == 428
    assert row(app, Contact, contact_id)["name"] == "Ann"


def test_a_hand_added_field_is_not_read(app, rep):
    """Only the inputs the page shows are read: no mass assignment."""
    response = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "lifecycle_stage": "lead",
                                           "owner_id": "999", "external_id": "X-1"})
    assert response.status_code == 303
    (stored,) = rows(app, select(Contact.owner_id, Contact.external_id))
    assert stored.owner_id != 999 and stored.external_id is None


def test_validation_messages_follow_the_users_language_and_the_api_stays_english(app, rep):
    """One validation path: the form shows the schema's messages translated
    next to their fields (values such as the allowed choices kept); the API
    answers the same request in English whatever the language."""
    define_fields(app)
    bulgarian = {"Accept-Language": "bg"}
    token = csrf_token(rep, "/contacts")
    response = rep.post("/contacts/new", headers=bulgarian, data={
        "csrf_token": token, "kind": "person", "first_name": "Ann", "email": "not-an-email", "country": "Bulgaria",
        "lifecycle_stage": "lead"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and '<html lang="bg">' in html
    assert error_of(html, "email") == "Невалиден имейл адрес."
    assert error_of(html, "country") == "Използвайте двубуквен код на държава."
    assert "Not a valid" not in html
    # Custom fields are checked by the service once the schema accepts the rest.
    response = rep.post("/contacts/new", headers=bulgarian, data={
        "csrf_token": token, "kind": "person", "first_name": "Ann", "lifecycle_stage": "lead",
        "cf:seats": "lots", "cf:segment": "export"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert error_of(html, "cf-seats") == "Невалидно число."
    assert error_of(html, "cf-segment") == "Трябва да е едно от: retail, wholesale."
    assert "Not a valid" not in html and "Must be one of" not in html
    missing = post(rep, "/contacts/new", {"kind": "person", "first_name": "Ann", "lifecycle_stage": "lead"})
    assert error_of(missing.get_data(as_text=True), "cf-segment") == "Missing data for required field."
    russian = rep.post("/contacts/new", headers={"Accept-Language": "ru"}, data={
        "csrf_token": token, "kind": "company", "name": "Firm", "birthday": "2000-01-01", "lifecycle_stage": "lead",
        "cf:segment": "retail"})
    assert error_of(russian.get_data(as_text=True), "birthday") == "День рождения бывает только у людей.", \
        "a service's message too"
    api = app.test_client().post("/api/v1/contacts", json={"first_name": "Ann", "email": "not-an-email"},
                                 headers={**_bearer(app), "Accept-Language": "bg"})
    errors = api.get_json()["errors"]["json"]
    assert api.status_code == 422 and errors["email"] == ["Not a valid email address."]
