"""Duplicates and merges of contacts (issue 5, item 6), on SQLite and
PostgreSQL.

Duplicates: the same e-mail, the same normalised phone, or a very similar
name in the same company, among the contacts the asking user may see.

Merges: everything on the merged contact moves to the survivor in one
transaction, including a test plugin's rows (``zeta``, a table of its own
created directly in the test database, like ``tests/test_personal_data.py``);
merges are journaled, so a plugin disabled at the time replays them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from marshmallow import ValidationError
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hooks import hookimpl
from host.core import services
from host.core.models import Attachment, Contact, ContactEmail, ContactPhone, Interaction, LifecycleChange, Task
from host.errors import PluginError
from host.security.models import AuditEntry, PersonalDataJournal
from host.testing import api_token, bearer, make_user, plugin_candidate

from .core_support import (
    add_attachment,
    events,
    make_company,
    make_contact,
    make_interaction,
    make_task,
    principal_of,
    row,
    rows,
    run_as,
    state,
)


class PluginBase(DeclarativeBase):
    """Not the host's base: the test plugin's table belongs to no migration."""


class LoyaltyCard(PluginBase):
    __tablename__ = "zeta_loyalty_card"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(index=True)
    number: Mapped[str] = mapped_column(String(50))


class ZetaHooks:
    """Moves its cards on a merge; records each call (a replay must reach
    it exactly once)."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        self.calls.append((survivor.id, merged.id))
        for card in session.scalars(select(LoyaltyCard).where(LoyaltyCard.contact_id == merged.id)):
            card.contact_id = survivor.id


class BrokenHooks:
    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        raise RuntimeError("disk full")


@pytest.fixture
def zeta():
    return ZetaHooks()


@pytest.fixture
def build(make_app, zeta):
    """``build("zeta")``: an app on the test's database with those test
    plugins (and none of the built-ins), migrated (which replays the journal)."""
    candidates = {"zeta": lambda: plugin_candidate("zeta", zeta), "broken": lambda: plugin_candidate("broken", BrokenHooks())}

    def factory(*names: str):
        app = make_app(plugins=list(names), extra_plugins=[candidates[n]() for n in names])
        PluginBase.metadata.create_all(state(app).db.engine)
        return app

    return factory


def add_users(app) -> SimpleNamespace:
    return SimpleNamespace(
        ann=make_user(app, "ann@example.com", teams=("north",)),
        bob=make_user(app, "bob@example.com", teams=("south",)),
        mia=make_user(app, "mia@example.com", roles=("manager",), teams=("north",)),
        boss=make_user(app, "boss@example.com", roles=("admin",)),
    )


@pytest.fixture
def people(app):
    return add_users(app)


def duplicates(app, who, **data):
    return run_as(app, who, lambda s: services.find_duplicates(s, principal_of(app, who), data))


def merge(app, who, survivor_id, merged_id, **kwargs):
    return run_as(app, who, lambda s: services.merge_contacts(s, survivor_id, merged_id, **kwargs).id)


def cards(app):
    with state(app).db.Session() as session:
        return [(card.contact_id, card.number) for card in session.scalars(select(LoyaltyCard).order_by(LoyaltyCard.id))]


def add_card(app, contact_id, number):
    with state(app).db.transaction() as session:
        session.add(LoyaltyCard(contact_id=contact_id, number=number))


# --- duplicates ------------------------------------------------------------------------------------


@pytest.mark.with_plugins()
def test_the_same_email_is_a_duplicate_whichever_of_its_addresses_matches(app, people):
    existing = make_contact(app, people.ann, name="Ann", email="ann@example.com", emails=[{"email": "ann@home.example"}])
    assert duplicates(app, people.ann, name="New", email="ANN@HOME.example") == [existing]
    assert duplicates(app, people.ann, name="New", email="x@example.com", emails=[{"email": "Ann@example.com"}]) == [existing]
    assert duplicates(app, people.ann, name="New", email="ann@example.org") == []


@pytest.mark.with_plugins()
@pytest.mark.parametrize(("typed", "same"), [
    ("00359881234567", True),
    ("+359 (0)88 123 4567", True),
    ("+359-88-123-45-67", True),
    ("0881234567", False),  # a national number: no default country to expand it with
    ("+359 88 123 4568", False),
])
def test_the_same_normalised_phone_is_a_duplicate(app, people, typed, same):
    existing = make_contact(app, people.ann, name="Ann", phone="+359 88 123 4567")
    other = make_contact(app, people.ann, name="Bob", phones=[{"phone": "+44 20 7946 0958"}])
    assert duplicates(app, people.ann, name="New", phone=typed) == ([existing] if same else [])
    assert duplicates(app, people.ann, name="New", phones=[{"phone": typed}, {"phone": "0044 20 7946 0958"}]) == \
        sorted([existing, other] if same else [other])


@pytest.mark.with_plugins()
def test_a_very_similar_name_in_the_same_company_is_a_duplicate(app, people):
    acme, other_company = make_company(app, people.ann, "Acme"), make_company(app, people.ann, "Other")
    ivan = make_contact(app, people.ann, first_name="Ivan", last_name="Petrov", company_id=acme)
    maria = make_contact(app, people.ann, name="Мария Иванова", company_id=acme)
    zofia = make_contact(app, people.ann, name="Žofia Nováková", company_id=acme)
    make_contact(app, people.ann, first_name="Ivan", last_name="Petrov", company_id=other_company)

    def similar(**data):
        return duplicates(app, people.ann, company_id=acme, **data)

    assert similar(name="ivan  petrov") == [ivan]
    assert similar(name="Petrov, Ivan") == [ivan], "word order and punctuation do not matter"
    assert similar(first_name="IVAN", last_name="Petrov") == [ivan]
    assert similar(name="мария иванова") == [maria]
    assert similar(name="Мариа Иванова") == [maria], "one letter off in Cyrillic"
    assert similar(name="Zofia Novakova") == [zofia], "accents stripped"
    assert similar(name="Ivan Ivanov") == [] and similar(name="Мария Петрова") == []
    assert duplicates(app, people.ann, name="Ivan Petrov") == [], "no company: names are not compared"
    assert similar(name="Ivan Petrov", kind="company") == [], "companies are not compared by name"


@pytest.mark.with_plugins()
def test_deleted_and_excluded_contacts_are_not_duplicates(app, people):
    binned = make_contact(app, people.ann, name="Ann", email="ann@example.com")
    run_as(app, people.ann, lambda s: services.delete_contact(s, binned))
    live = make_contact(app, people.ann, name="Ann", email="ann@example.com")
    assert duplicates(app, people.ann, email="ann@example.com") == [live]
    assert run_as(app, people.ann, lambda s: services.find_duplicates(
        s, principal_of(app, people.ann), {"email": "ann@example.com"}, exclude_id=live)) == []


@pytest.mark.parametrize(("a", "b"), [("Ivan Petrov", " IVAN   petrov "), ("Žofia Nováková", "zofia novakova"),
                                      ("Йордан Йорданов", "йордан йорданов"), ("O'Brien-Smith", "o brien smith")])
def test_names_normalise_case_accents_punctuation_and_spaces(a, b):
    assert services.normalise_name(a) == services.normalise_name(b)


@pytest.mark.with_plugins()
def test_the_api_reports_possible_duplicates_or_refuses_them_on_request(app, people):
    existing = make_contact(app, people.ann, name="Ann", email="ann@example.com")
    headers = bearer(api_token(app, "ann@example.com"))
    client = app.test_client()
    response = client.post("/api/v1/contacts", json={"name": "Ann L.", "email": "Ann@Example.com"}, headers=headers)
    assert response.status_code == 201 and response.get_json()["possible_duplicates"] == [existing]
    created = response.get_json()["id"]
    response = client.post("/api/v1/contacts?on_duplicate=reject", json={"name": "Ann Again", "email": "ann@example.com"}, headers=headers)
    assert response.status_code == 409
    body = response.get_json()
    assert (body["code"], body["possible_duplicates"]) == (409, sorted([existing, created]))
    assert rows(app, select(Contact.id).where(Contact.name == "Ann Again")) == [], "nothing was created"
    response = client.post("/api/v1/contacts?on_duplicate=reject", json={"name": "Unique", "email": "u@example.com"}, headers=headers)
    assert response.status_code == 201 and response.get_json()["possible_duplicates"] == []
    assert client.post("/api/v1/contacts?on_duplicate=maybe", json={"name": "X"}, headers=headers).status_code == 422


# --- merge -----------------------------------------------------------------------------------------------------


def test_a_merge_moves_every_reference_including_a_plugins_and_fills_the_survivor(build, zeta):
    app = build("zeta")
    p = add_users(app)
    with app.app_context(), state(app).db.transaction() as session:
        services.create_custom_field(session, {"key": "size", "label": "Size", "type": "text"})
        services.create_custom_field(session, {"key": "tier", "label": "Tier", "type": "text"})
    survivor = make_contact(app, p.ann, name="Ivan Petrov", email="ivan@a.example", phone="+359 88 1", tags=["vip"],
                            custom_fields={"tier": "gold"})
    merged = make_contact(app, p.ann, name="I. Petrov", email="ivan@b.example", emails=[{"email": "IVAN@a.example"}],
                          phone="00359 88 1", phones=[{"phone": "+44 1234", "label": "uk"}], tags=["vip", "new"],
                          city="Sofia", website="ivan.example", external_id="erp-1", lifecycle_stage="customer",
                          marketing_consent=True, consent_source="fair", custom_fields={"size": "big", "tier": "silver"})
    merged_consent_at = row(app, Contact, merged)["consent_at"]
    own = make_interaction(app, p.ann, merged)
    colleagues = make_interaction(app, p.boss, merged)
    binned = make_interaction(app, p.ann, merged, subject="binned")
    run_as(app, p.ann, lambda s: services.delete_record(s, Interaction, binned))
    task_id = make_task(app, p.ann, contact_id=merged)
    on_contact, on_interaction = add_attachment(app, "contact", merged), add_attachment(app, "interaction", own)
    add_card(app, merged, "Z-1")
    add_card(app, survivor, "Z-0")

    assert merge(app, p.mia, survivor, merged, fields={"lifecycle_stage": "merged", "marketing_consent": "merged"}) == survivor

    assert [row(app, Interaction, i)["contact_id"] for i in (own, colleagues, binned)] == [survivor] * 3
    assert row(app, Task, task_id)["contact_id"] == survivor
    assert (row(app, Attachment, on_contact)["object_id"], row(app, Attachment, on_interaction)["object_id"]) == (survivor, own)
    assert cards(app) == [(survivor, "Z-1"), (survivor, "Z-0")] and zeta.calls == [(survivor, merged)]
    assert sorted(e for (e,) in rows(app, select(ContactEmail.email).where(ContactEmail.contact_id == survivor))) == [
        "ivan@a.example", "ivan@b.example"]
    assert sorted(d for (d,) in rows(app, select(ContactPhone.number_digits).where(ContactPhone.contact_id == survivor))) == [
        "+359881", "+441234"]
    kept = row(app, Contact, survivor)
    assert {k: kept[k] for k in ("name", "email", "city", "website", "external_id", "lifecycle_stage", "marketing_consent",
                                 "consent_at", "consent_source", "custom_fields")} == {
        "name": "Ivan Petrov", "email": "ivan@a.example", "city": "Sofia", "website": "ivan.example", "external_id": "erp-1",
        "lifecycle_stage": "customer", "marketing_consent": True, "consent_at": merged_consent_at, "consent_source": "fair",
        "custom_fields": {"size": "big", "tier": "gold"}}
    with state(app).db.Session() as session:
        tags = sorted(tag.name for tag in session.get(Contact, survivor).tags)
        merged_tags = session.get(Contact, merged).tags
    assert tags == ["new", "vip"] and merged_tags == []
    assert rows(app, select(LifecycleChange.from_stage, LifecycleChange.to_stage, LifecycleChange.changed_by)
                .where(LifecycleChange.contact_id == survivor).order_by(LifecycleChange.id)) == [
        (None, "lead", p.ann), ("lead", "customer", p.mia)]

    gone = row(app, Contact, merged)
    assert gone["deleted_at"] is not None and gone["external_id"] is None
    assert f"Merged into contact {survivor}" in gone["notes"]
    assert rows(app, select(ContactEmail.id).where(ContactEmail.contact_id == merged)) == []
    with state(app).db.Session() as session:
        journal = [(j.kind, j.contact_id, j.other_contact_id, j.user_id, j.done_by) for j in session.scalars(select(PersonalDataJournal))]
        entries = {(e.action, e.object_id): e.changes for e in session.scalars(select(AuditEntry).where(AuditEntry.action.in_(("merge", "merged_into"))))}
    assert journal == [("merge", survivor, merged, p.mia, ["zeta"])]
    assert entries[("merge", str(survivor))]["merged_id"] == merged
    assert entries[("merged_into", str(merged))] == {"survivor_id": survivor}
    (kind, data), = [e for e in events(app) if e[0] == "contact.merged"]
    assert (data["id"], data["survivor_id"], data["merged_id"]) == (survivor, survivor, merged)
    assert {"city", "lifecycle_stage", "emails", "phones", "tags"} <= set(data["changed"])
    with pytest.raises(services.MergedAway) as caught:
        run_as(app, p.mia, lambda s: services.restore_contact(s, merged))
    assert caught.value.code == 409


@pytest.mark.with_plugins()
def test_by_default_the_survivor_keeps_its_values_stage_and_consent(app, people):
    survivor = make_contact(app, people.boss, name="Keep", city="Ruse")
    merged = make_contact(app, people.boss, name="Drop", city="Sofia", street="Main 1", lifecycle_stage="loyal", marketing_consent=True)
    merge(app, people.boss, survivor, merged)
    kept = row(app, Contact, survivor)
    assert (kept["name"], kept["city"], kept["street"], kept["lifecycle_stage"], kept["marketing_consent"]) == (
        "Keep", "Ruse", "Main 1", "lead", False)
    other = make_contact(app, people.boss, name="Other", city="Varna")
    merge(app, people.boss, survivor, other, fields={"city": "merged", "street": "survivor"})
    assert (row(app, Contact, survivor)["city"], row(app, Contact, survivor)["street"]) == ("Varna", "Main 1")
    with pytest.raises(ValidationError) as caught:
        merge(app, people.boss, survivor, make_contact(app, people.boss, name="X"), fields={"owner_id": "merged", "city": "both"})
    assert set(caught.value.messages["fields"]) == {"owner_id", "city"}


@pytest.mark.with_plugins()
def test_merging_companies_moves_the_merged_companys_people(app, people):
    keep, drop = make_company(app, people.boss, "Acme"), make_company(app, people.boss, "ACME Ltd")
    employee = make_contact(app, people.boss, first_name="Ivo", company_id=drop)
    merge(app, people.boss, keep, drop)
    assert row(app, Contact, employee)["company_id"] == keep
    with pytest.raises(ValidationError, match="Cannot merge a person into a company"):
        merge(app, people.boss, keep, employee)


@pytest.mark.with_plugins()
def test_a_merge_needs_the_permission_and_both_contacts_in_scope(app, people):
    anns, anns_other = make_contact(app, people.ann, name="A1"), make_contact(app, people.ann, name="A2")
    bobs = make_contact(app, people.bob, name="B1")
    with pytest.raises(PermissionError):
        merge(app, people.ann, anns, anns_other)  # staff: no core.contact.merge
    with pytest.raises(ValidationError) as caught:
        merge(app, people.mia, anns, bobs)  # a manager of north does not see south's contact
    assert caught.value.messages == {"merge_id": ["No such contact."]}
    with pytest.raises(services.RecordNotFound):
        merge(app, people.mia, bobs, anns)
    with pytest.raises(ValidationError, match="into itself"):
        merge(app, people.mia, anns, anns)
    assert all(row(app, Contact, i)["deleted_at"] is None for i in (anns, anns_other, bobs))


def test_a_failing_plugin_rolls_the_whole_merge_back(build, zeta):
    app = build("zeta", "broken")
    p = add_users(app)
    survivor, merged = make_contact(app, p.boss, name="Keep"), make_contact(app, p.boss, name="Drop", city="Sofia")
    interaction = make_interaction(app, p.boss, merged)
    add_card(app, merged, "Z-9")
    with pytest.raises(PluginError, match="broken"):
        merge(app, p.boss, survivor, merged)
    assert row(app, Interaction, interaction)["contact_id"] == merged
    assert row(app, Contact, merged)["deleted_at"] is None and row(app, Contact, survivor)["city"] is None
    assert cards(app) == [(merged, "Z-9")]
    assert rows(app, select(PersonalDataJournal.id)) == []


def test_a_plugin_disabled_during_a_merge_moves_its_rows_when_enabled_again(build, zeta):
    app = build("zeta")
    p = add_users(app)
    survivor, merged = make_contact(app, p.boss, name="Keep"), make_contact(app, p.boss, name="Drop")
    add_card(app, merged, "Z-1")
    without = build()
    merge(without, p.boss, survivor, merged)
    assert cards(without) == [(merged, "Z-1")] and zeta.calls == []
    assert rows(without, select(PersonalDataJournal.done_by)) == [([],)]

    again = build("zeta")  # migrating replays the journal

    assert cards(again) == [(survivor, "Z-1")]
    assert zeta.calls == [(survivor, merged)]
    assert rows(again, select(PersonalDataJournal.done_by)) == [(["zeta"],)]
    build("zeta")
    assert zeta.calls == [(survivor, merged)], "replayed once"


# --- merge through the API ---------------------------------------------------------------------------------------


@pytest.mark.with_plugins()
def test_the_merge_endpoint_answers_the_survivor(app, people):
    survivor = make_contact(app, people.boss, name="Keep")
    merged = make_contact(app, people.boss, name="Drop", city="Sofia")
    client = app.test_client()
    boss = bearer(api_token(app, "boss@example.com"))
    staff = bearer(api_token(app, "ann@example.com"))
    assert client.post(f"/api/v1/contacts/{survivor}/merge", json={"merge_id": merged}, headers=staff).status_code == 403
    response = client.post(f"/api/v1/contacts/{survivor}/merge", json={"merge_id": merged, "fields": {"city": "merged"}}, headers=boss)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["city"], response.headers["ETag"]) == (survivor, "Sofia", f'"{body["version"]}"')
    assert client.get(f"/api/v1/contacts/{merged}", headers=boss).status_code == 404
    restore = client.post(f"/api/v1/contacts/{merged}/restore", headers=boss)
    assert restore.status_code == 409 and str(survivor) in restore.get_json()["message"]
    missing = client.post(f"/api/v1/contacts/{survivor}/merge", json={"merge_id": 987654}, headers=boss)
    assert missing.status_code == 422 and missing.get_json()["errors"]["json"] == {"merge_id": ["No such contact."]}
    assert client.post("/api/v1/contacts/987654/merge", json={"merge_id": survivor}, headers=boss).status_code == 404
    unknown = client.post(f"/api/v1/contacts/{survivor}/merge", json={"merge_id": merged, "fields": {"city": "both"}}, headers=boss)
    assert unknown.status_code == 422 and "fields" in unknown.get_json()["errors"]["json"]
    assert client.post(f"/api/v1/contacts/{survivor}/merge", json={}, headers=boss).get_json()["errors"]["json"] == {
        "merge_id": ["Missing data for required field."]}
