"""The core record's services (``host.core.services``), on SQLite and
PostgreSQL: contacts with their e-mails, phones, tags, company, lifecycle
history, consent and custom fields; interactions and tasks; the recycle bin
and its purge job; record scope on every read and write; events.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select, text, update

from hooks import CustomFieldDefinition, hookimpl
from host import jobs
from host.core import services
from host.core.models import (
    Attachment,
    Contact,
    ContactEmail,
    ContactPhone,
    ContactTag,
    CustomFieldDefinitionRow,
    Interaction,
    LifecycleChange,
    Tag,
    Task,
)
from host.db import utcnow
from host.security.access import SYSTEM
from host.security.concurrency import StaleVersion
from host.security.models import AuditEntry, Team, User
from host.testing import make_user, plugin_candidate

from .access_check import check_scope_access
from .core_support import (
    add_attachment,
    days_ago,
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

pytestmark = pytest.mark.with_plugins()


@pytest.fixture
def people(app):
    """ann and bob: staff (own scope) in teams north and south; mia: a
    manager (team scope) in north; boss: an admin (all)."""
    return SimpleNamespace(
        ann=make_user(app, "ann@example.com", teams=("north",)),
        bob=make_user(app, "bob@example.com", teams=("south",)),
        mia=make_user(app, "mia@example.com", roles=("manager",), teams=("north",)),
        boss=make_user(app, "boss@example.com", roles=("admin",)),
    )


def team_id(app, name: str) -> int:
    return rows(app, select(Team.id).where(Team.name == name))[0][0]


def edit(app, who, contact_id, data, **kwargs):
    return run_as(app, who, lambda s: services.update_contact(s, contact_id, data, **kwargs).version)


# --- creating contacts -----------------------------------------------------------------------


def test_a_person_gets_a_derived_name_and_normalised_emails_phones_and_tags(app, people):
    contact_id = make_contact(
        app, people.ann, first_name=" Ann ", last_name="Lee", email="Ann.Lee@Example.COM",
        emails=[{"email": "ann@home.example", "label": "home"}, {"email": "ANN.LEE@example.com", "label": "work"}],
        phone="+359 88 123 4567", phones=[{"phone": "00 44 20 7946 0958", "label": "London"}],
        tags=["VIP", " key   account "],
    )
    stored = row(app, Contact, contact_id)
    assert (stored["name"], stored["first_name"], stored["email"]) == ("Ann Lee", "Ann", "ann.lee@example.com")
    assert (stored["phone"], stored["phone_digits"]) == ("+359 88 123 4567", "+359881234567")
    assert (stored["owner_id"], stored["created_by"], stored["team_id"]) == (people.ann, people.ann, team_id(app, "north"))
    assert rows(app, select(ContactEmail.email, ContactEmail.label).where(ContactEmail.contact_id == contact_id)
                .order_by(ContactEmail.id)) == [("ann.lee@example.com", "work"), ("ann@home.example", "home")]
    assert rows(app, select(ContactPhone.phone, ContactPhone.number_digits, ContactPhone.label)
                .where(ContactPhone.contact_id == contact_id).order_by(ContactPhone.id)) == [
        ("+359 88 123 4567", "+359881234567", None), ("00 44 20 7946 0958", "+442079460958", "London")]
    make_contact(app, people.bob, name="Other", tags=["VIP"])
    assert sorted(name for (name,) in rows(app, select(Tag.name))) == ["VIP", "key account"], "tags are reused by name"


@pytest.mark.parametrize(("typed", "digits"), [
    ("+359 88 123 4567", "+359881234567"),
    ("00359 88 123 4567", "+359881234567"),
    ("+359 (0)88 123-4567", "+359881234567"),
    ("088 123 4567", "0881234567"),
    ("(02) 987.65.43", "029876543"),
    ("＋３５９ ８８", "+35988"),  # full-width digits and plus
    ("ext", ""),
])
def test_phone_numbers_normalise_to_digits_with_the_country_code_marked(typed, digits):
    assert services.normalise_phone(typed) == digits


def test_a_name_is_required_and_a_company_link_must_name_a_visible_company(app, people):
    company = make_company(app, people.ann, "Acme Ltd")
    person = make_contact(app, people.ann, first_name="Ivo", company_id=company)
    assert row(app, Contact, person)["company_id"] == company
    bobs_company = make_company(app, people.bob, "Bob's Ltd")
    with pytest.raises(ValidationError) as caught:
        make_contact(app, people.ann, first_name=None, email="x@example.com", company_id=bobs_company)
    assert set(caught.value.messages) == {"name", "company_id"}
    with pytest.raises(ValidationError) as caught:
        make_contact(app, people.ann, name="Ivo", company_id=person)
    assert caught.value.messages == {"company_id": ["No such company."]}
    with pytest.raises(ValidationError) as caught:
        make_company(app, people.ann, "Sub Ltd", company_id=company)
    assert caught.value.messages == {"company_id": ["Only a person belongs to a company."]}
    with pytest.raises(ValidationError) as caught:
        edit(app, people.ann, company, {"kind": "person"})
    assert caught.value.messages == {"kind": ["This company has people; move them first."]}


def test_the_name_follows_first_and_last_name_until_one_is_given(app, people):
    contact_id = make_contact(app, people.ann, first_name="Ann", last_name="Lee")
    edit(app, people.ann, contact_id, {"last_name": "Lee-Smith"})
    assert row(app, Contact, contact_id)["name"] == "Ann Lee-Smith"
    edit(app, people.ann, contact_id, {"name": "Dr. Ann Lee-Smith"})
    edit(app, people.ann, contact_id, {"first_name": "Anna"})
    assert row(app, Contact, contact_id)["name"] == "Dr. Ann Lee-Smith"


# --- e-mails and phones on update ---------------------------------------------------------------


def emails_of(app, contact_id):
    return [e for (e,) in rows(app, select(ContactEmail.email).where(ContactEmail.contact_id == contact_id).order_by(ContactEmail.email))]


def test_changing_the_primary_email_replaces_it_and_a_list_replaces_them_all(app, people):
    contact_id = make_contact(app, people.ann, name="Ann", email="a@example.com", emails=[{"email": "b@example.com"}])
    edit(app, people.ann, contact_id, {"email": "C@example.com"})
    assert row(app, Contact, contact_id)["email"] == "c@example.com"
    assert emails_of(app, contact_id) == ["b@example.com", "c@example.com"]
    version = edit(app, people.ann, contact_id, {"emails": [{"email": "b@example.com"}, {"email": "d@example.com"}]})
    assert (row(app, Contact, contact_id)["email"], emails_of(app, contact_id)) == ("b@example.com", ["b@example.com", "d@example.com"])
    assert edit(app, people.ann, contact_id, {"emails": [{"email": "b@example.com"}, {"email": "e@example.com"}]}) == version + 1, \
        "a change of the secondary addresses alone still moves the version"
    with state(app).db.Session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.object_type == "core.contact", AuditEntry.object_id == str(contact_id))
                                .order_by(AuditEntry.id.desc())).first()
    assert entry.changes == {"emails": [["b@example.com", "d@example.com"], ["b@example.com", "e@example.com"]]}
    edit(app, people.ann, contact_id, {"email": None})
    assert (row(app, Contact, contact_id)["email"], emails_of(app, contact_id)) == ("e@example.com", ["e@example.com"])


def test_a_bad_phone_is_refused_naming_the_field(app, people):
    with pytest.raises(ValidationError) as caught:
        make_contact(app, people.ann, name="X", phone="12", phones=[{"phone": "call me"}])
    assert set(caught.value.messages) == {"phone", "phones"}


# --- lifecycle and consent ---------------------------------------------------------------------------


def history(app, who, contact_id):
    changes = run_as(app, who, lambda s: services.lifecycle_history(s, contact_id))
    return [(c.from_stage, c.to_stage, c.changed_by, c.changed_at) for c in changes]


def test_every_lifecycle_stage_change_is_kept_with_who_and_when(app, people):
    start = utcnow()
    contact_id = make_contact(app, people.ann, name="Ann")
    edit(app, people.mia, contact_id, {"lifecycle_stage": "prospect"})
    edit(app, people.ann, contact_id, {"lifecycle_stage": "prospect", "city": "Sofia"})
    edit(app, people.ann, contact_id, {"lifecycle_stage": "customer"})
    found = history(app, people.ann, contact_id)
    assert [change[:3] for change in found] == [(None, "lead", people.ann), ("lead", "prospect", people.mia),
                                                ("prospect", "customer", people.ann)]
    times = [change[3] for change in found]
    assert start <= times[0] <= times[1] <= times[2] <= utcnow()
    other = make_contact(app, people.ann, name="Bea", lifecycle_stage="customer")
    assert [change[:2] for change in history(app, people.ann, other)] == [(None, "customer")]


def test_consent_records_when_and_how_it_was_given_and_withdrawing_clears_both(app, people):
    before = utcnow()
    contact_id = make_contact(app, people.ann, name="Ann", marketing_consent=True, consent_source="web form")
    stored = row(app, Contact, contact_id)
    assert stored["marketing_consent"] and stored["consent_source"] == "web form"
    assert before <= stored["consent_at"] <= utcnow()
    edit(app, people.ann, contact_id, {"marketing_consent": True, "city": "Ruse"})
    assert row(app, Contact, contact_id)["consent_at"] == stored["consent_at"], "consent given again keeps its date"
    edit(app, people.ann, contact_id, {"marketing_consent": False})
    assert {k: row(app, Contact, contact_id)[k] for k in ("marketing_consent", "consent_at", "consent_source")} == {
        "marketing_consent": False, "consent_at": None, "consent_source": None}
    with pytest.raises(ValidationError) as caught:
        edit(app, people.ann, contact_id, {"consent_source": "fair"})
    assert caught.value.messages == {"consent_source": ["A consent source needs marketing_consent."]}
    assert make_contact(app, people.ann, name="No consent") and row(app, Contact, contact_id)["consent_at"] is None


# --- custom fields ---------------------------------------------------------------------------------------


class FieldHooks:
    @hookimpl
    def mosaic_custom_fields(self):
        return [
            CustomFieldDefinition("contact", "size", "Company size", "choice", ("small", "large")),
            CustomFieldDefinition("contact", "vat_checked", "VAT checked", "bool"),
            CustomFieldDefinition("deal", "colour", "Only on deals", "text"),
        ]


@pytest.fixture
def fields_app(make_app):
    """A plugin declares size (choice) and vat_checked (bool); an admin
    defined founded (date) and employees (number, required)."""
    app = make_app(plugins=["fieldy"], extra_plugins=[plugin_candidate("fieldy", FieldHooks())])
    with app.app_context(), state(app).db.transaction() as session:
        services.create_custom_field(session, {"key": "founded", "label": "Founded", "type": "date"})
        services.create_custom_field(session, {"key": "employees", "label": "Employees", "type": "number", "required": True})
    make_user(app, "ann@example.com")
    return app


def test_custom_fields_are_validated_against_plugin_and_admin_definitions(fields_app):
    good = {"size": "small", "vat_checked": True, "founded": "2001-02-03", "employees": 12}
    contact_id = make_contact(fields_app, "ann@example.com", name="Acme", custom_fields=good)
    assert row(fields_app, Contact, contact_id)["custom_fields"] == good
    bad = {"size": "huge", "vat_checked": "maybe", "founded": "last year", "employees": "many", "colour": "red"}
    with pytest.raises(ValidationError) as caught:
        make_contact(fields_app, "ann@example.com", name="Acme", custom_fields=bad)
    errors = caught.value.messages["custom_fields"]
    assert set(errors) == {"size", "vat_checked", "founded", "employees", "colour"}
    assert errors["colour"] == ["Unknown field."], "a field defined for another model is unknown here"
    with pytest.raises(ValidationError) as caught:
        make_contact(fields_app, "ann@example.com", name="Acme")
    assert caught.value.messages == {"custom_fields": {"employees": ["Missing data for required field."]}}


def test_form_text_validates_to_the_same_values_as_json(fields_app):
    with fields_app.app_context(), state(fields_app).db.Session() as session:
        typed = services.validate_custom_fields(session, {"vat_checked": "true", "founded": "2001-02-03", "employees": "12"})
        decimal = services.validate_custom_fields(session, {"employees": "12.5"})
    assert typed == {"vat_checked": True, "founded": "2001-02-03", "employees": 12}
    assert decimal == {"employees": 12.5}


def test_an_update_replaces_the_keys_it_names_and_keeps_values_of_deleted_definitions(fields_app):
    contact_id = make_contact(fields_app, "ann@example.com", name="Acme", custom_fields={"employees": 3, "size": "small", "founded": "1999-01-01"})
    edit(fields_app, "ann@example.com", contact_id, {"custom_fields": {"size": "large"}})
    edit(fields_app, "ann@example.com", contact_id, {"custom_fields": {"founded": None}})
    assert row(fields_app, Contact, contact_id)["custom_fields"] == {"employees": 3, "size": "large"}
    with pytest.raises(ValidationError) as caught:
        edit(fields_app, "ann@example.com", contact_id, {"custom_fields": {"employees": None}})
    assert caught.value.messages == {"custom_fields": {"employees": ["Field may not be null."]}}
    definition = rows(fields_app, select(CustomFieldDefinitionRow.id).where(CustomFieldDefinitionRow.key == "employees"))[0][0]
    run_as(fields_app, SYSTEM, services.delete_custom_field, definition)
    edit(fields_app, "ann@example.com", contact_id, {"custom_fields": {"size": "small"}})
    assert row(fields_app, Contact, contact_id)["custom_fields"] == {"employees": 3, "size": "small"}
    with pytest.raises(ValidationError) as caught:
        edit(fields_app, "ann@example.com", contact_id, {"custom_fields": {"employees": 4}})
    assert caught.value.messages == {"custom_fields": {"employees": ["Unknown field."]}}


def test_one_edit_is_one_update_one_audit_entry_and_one_version(fields_app):
    """The checks an edit runs read other rows (custom field definitions,
    the company, external ids); none of them may write what the edit has
    assigned so far as an UPDATE of its own."""
    company = make_company(fields_app, "ann@example.com", "Acme Group", custom_fields={"employees": 9})
    contact_id = make_contact(fields_app, "ann@example.com", name="Acme", custom_fields={"employees": 3})
    version = edit(fields_app, "ann@example.com", contact_id, {
        "city": "Brno", "custom_fields": {"size": "large"}, "external_id": "x-1", "name": "Acme Ltd"})
    person = make_contact(fields_app, "ann@example.com", first_name="Jana", last_name="Nová", custom_fields={"employees": 1})
    moved = edit(fields_app, "ann@example.com", person, {"city": "Praha", "company_id": company})
    assert (version, moved) == (2, 2)
    entries = rows(fields_app, select(AuditEntry.object_id, AuditEntry.changes)
                   .where(AuditEntry.action == "update", AuditEntry.object_type == "core.contact").order_by(AuditEntry.id))
    assert [(object_id, sorted(changes)) for object_id, changes in entries] == [
        (str(contact_id), ["city", "custom_fields", "external_id", "name"]), (str(person), ["city", "company_id"])]


def test_an_admin_field_may_not_take_a_plugins_key_and_choices_belong_to_choice_fields(fields_app):
    def create(data):
        return run_as(fields_app, SYSTEM, services.create_custom_field, data)

    with pytest.raises(ValidationError) as caught:
        create({"key": "size", "label": "Size", "type": "text"})
    assert caught.value.messages == {"key": ["The plugin 'fieldy' defines this key."]}
    with pytest.raises(ValidationError) as caught:
        create({"key": "tier", "label": "Tier", "type": "choice", "choices": []})
    assert "choices" in caught.value.messages
    with pytest.raises(ValidationError) as caught:
        create({"key": "tier", "label": "Tier", "type": "text", "choices": ["a"]})
    assert "choices" in caught.value.messages


# --- record scope -------------------------------------------------------------------------------------------


def test_own_scope_hides_a_colleagues_contact_from_every_read_write_and_count(app, people):
    contact_id = make_contact(app, people.ann, name="Hidden Person", email="hidden@example.com")
    before = row(app, Contact, contact_id)
    check_scope_access(app, model=Contact, record_id=contact_id, owner_email="ann@example.com", other_email="bob@example.com")
    attempts = [
        lambda s: services.get_contact(s, contact_id),
        lambda s: services.update_contact(s, contact_id, {"city": "Varna"}),
        lambda s: services.delete_contact(s, contact_id),
        lambda s: services.lifecycle_history(s, contact_id),
    ]
    for attempt in attempts:
        with pytest.raises(services.RecordNotFound):
            run_as(app, people.bob, attempt)
    for attempt in (lambda s: services.create_interaction(s, {"contact_id": contact_id, "channel": "phone", "subject": "x"}),
                    lambda s: services.create_task(s, {"title": "x", "contact_id": contact_id})):
        with pytest.raises(ValidationError, match="contact_id"):
            run_as(app, people.bob, attempt)
    assert row(app, Contact, contact_id) == before
    assert run_as(app, people.bob, services.count_contacts) == 0
    assert run_as(app, people.ann, services.count_contacts) == 1
    assert run_as(app, people.mia, services.count_contacts) == 1, "a manager sees the team's contacts"
    assert run_as(app, people.bob, lambda s: services.list_contacts(s)[0]) == []
    probe = {"name": "Someone", "email": "HIDDEN@example.com"}
    assert run_as(app, people.bob, lambda s: services.find_duplicates(s, principal_of(app, people.bob), probe)) == []
    assert run_as(app, people.ann, lambda s: services.find_duplicates(s, principal_of(app, people.ann), probe)) == [contact_id]


def test_own_scope_hides_a_colleagues_interactions_and_tasks(app, people):
    contact_id = make_contact(app, people.ann, name="Shared")
    interaction_id = make_interaction(app, people.ann, contact_id)
    task_id = make_task(app, people.ann, contact_id=contact_id)
    for model, record_id in ((Interaction, interaction_id), (Task, task_id)):
        check_scope_access(app, model=model, record_id=record_id, owner_email="ann@example.com", other_email="bob@example.com")
        with pytest.raises(services.RecordNotFound):
            run_as(app, people.bob, lambda s, m=model, i=record_id: services.delete_record(s, m, i))
        assert row(app, model, record_id)["deleted_at"] is None
    with pytest.raises(services.RecordNotFound):
        run_as(app, people.bob, lambda s: services.update_task(s, task_id, {"done": True}))
    with pytest.raises(services.RecordNotFound):
        run_as(app, people.bob, lambda s: services.update_interaction(s, interaction_id, {"subject": "mine now"}))
    assert run_as(app, people.bob, lambda s: services.list_interactions(s)[0]) == []
    assert [i.id for i in run_as(app, people.ann, lambda s: services.list_interactions(s)[0])] == [interaction_id]


def test_a_stale_version_is_refused(app, people):
    contact_id = make_contact(app, people.ann, name="Ann")
    edit(app, people.ann, contact_id, {"city": "Sofia"}, expected=1)
    with pytest.raises(StaleVersion) as caught:
        edit(app, people.ann, contact_id, {"city": "Plovdiv"}, expected=1)
    assert caught.value.code == 409 and caught.value.current_version == 2
    assert row(app, Contact, contact_id)["city"] == "Sofia"


# --- interactions and tasks ----------------------------------------------------------------------------------


def test_logging_an_interaction_moves_last_activity_forward_without_a_version_bump(app, people):
    contact_id = make_contact(app, people.ann, name="Ann")
    yesterday, last_week = days_ago(1), days_ago(7)
    interaction_id = make_interaction(app, people.ann, contact_id, occurred_at=yesterday, channel="meeting", direction="in")
    stored = row(app, Contact, contact_id)
    assert (stored["last_activity_at"], stored["version"]) == (yesterday, 1)
    make_interaction(app, people.ann, contact_id, occurred_at=last_week)
    assert row(app, Contact, contact_id)["last_activity_at"] == yesterday, "an older interaction does not move it back"
    make_interaction(app, people.ann, contact_id)
    assert row(app, Contact, contact_id)["last_activity_at"] > yesterday
    logged = row(app, Interaction, interaction_id)
    assert (logged["channel"], logged["direction"], logged["owner_id"]) == ("meeting", "in", people.ann)


def test_a_task_is_assigned_completed_and_reopened(app, people):
    contact_id = make_contact(app, people.ann, name="Client")
    task_id = make_task(app, people.ann, title="Call back", contact_id=contact_id, assignee_id=people.bob, priority="high")
    stored = row(app, Task, task_id)
    assert (stored["owner_id"], stored["created_by"], stored["done"], stored["done_at"]) == (people.bob, people.ann, False, None)
    run_as(app, people.bob, lambda s: services.update_task(s, task_id, {"done": True}))
    done_at = row(app, Task, task_id)["done_at"]
    assert done_at is not None and done_at <= utcnow()
    run_as(app, people.bob, lambda s: services.update_task(s, task_id, {"done": False, "snoozed_until": days_ago(-1)}))
    assert (row(app, Task, task_id)["done"], row(app, Task, task_id)["done_at"]) == (False, None)
    assert [data["id"] for kind, data in events(app, "task.") if kind == "task.completed"] == [task_id]
    with state(app).db.transaction() as session:
        session.get(User, people.mia).active = False
    for assignee in (people.mia, 999999):
        with pytest.raises(ValidationError) as caught:
            make_task(app, people.ann, assignee_id=assignee)
        assert caught.value.messages == {"assignee_id": ["No such active user."]}


def test_events_carry_ids_and_changed_field_names_only(app, people):
    contact_id = make_contact(app, people.ann, first_name="Ann", email="ann@example.com")
    edit(app, people.ann, contact_id, {"city": "Sofia", "tags": ["vip"]})
    interaction_id = make_interaction(app, people.ann, contact_id)
    task_id = make_task(app, people.ann, contact_id=contact_id, done=True)
    assert events(app) == [
        ("contact.created", {"id": contact_id}),
        ("contact.updated", {"id": contact_id, "changed": ["city", "tags"]}),
        ("interaction.created", {"id": interaction_id, "contact_id": contact_id}),
        ("task.created", {"id": task_id, "contact_id": contact_id}),
        ("task.completed", {"id": task_id, "contact_id": contact_id}),
    ]


# --- recycle bin -----------------------------------------------------------------------------------------------


def test_deleting_a_contact_bins_all_its_interactions_tasks_and_attachments_and_restore_brings_them_back(app, people):
    contact_id = make_contact(app, people.ann, name="Binned")
    mine = make_interaction(app, people.ann, contact_id)
    colleagues = make_interaction(app, people.boss, contact_id)
    task_id = make_task(app, people.ann, contact_id=contact_id)
    earlier = make_interaction(app, people.ann, contact_id, subject="deleted on its own")
    run_as(app, people.ann, lambda s: services.delete_record(s, Interaction, earlier))
    earlier_deleted = row(app, Interaction, earlier)["deleted_at"]
    other_contact = make_contact(app, people.ann, name="Other")
    other_interaction = make_interaction(app, people.ann, other_contact)
    files = {key: add_attachment(app, *target) for key, target in {
        "contact": ("contact", contact_id), "interaction": ("interaction", mine), "task": ("task", task_id),
        "other": ("contact", other_contact)}.items()}

    run_as(app, people.mia, lambda s: services.delete_contact(s, contact_id))

    when = row(app, Contact, contact_id)["deleted_at"]
    assert when is not None
    assert [row(app, model, i)["deleted_at"] for model, i in ((Interaction, mine), (Interaction, colleagues), (Task, task_id))] == [when] * 3
    assert [row(app, Attachment, files[k])["deleted_at"] for k in ("contact", "interaction", "task")] == [when] * 3
    assert row(app, Attachment, files["other"])["deleted_at"] is None
    assert row(app, Interaction, other_interaction)["deleted_at"] is None
    assert row(app, Interaction, earlier)["deleted_at"] == earlier_deleted
    with pytest.raises(services.RecordNotFound):
        run_as(app, people.ann, lambda s: services.get_contact(s, contact_id))
    with pytest.raises(services.RecordNotFound):
        run_as(app, people.ann, lambda s: services.get_interaction(s, mine))
    assert run_as(app, people.ann, services.count_contacts) == 1
    assert [c.id for c in run_as(app, people.ann, lambda s: services.list_contacts(s)[0])] == [other_contact]
    assert [c.id for c in run_as(app, people.ann, lambda s: services.list_deleted_contacts(s)[0])] == [contact_id]
    assert [i.id for i in run_as(app, people.ann, lambda s: services.list_interactions(s)[0])] == [other_interaction]

    run_as(app, people.mia, lambda s: services.restore_contact(s, contact_id))

    assert row(app, Contact, contact_id)["deleted_at"] is None
    assert [row(app, model, i)["deleted_at"] for model, i in ((Interaction, mine), (Interaction, colleagues), (Task, task_id))] == [None] * 3
    assert all(row(app, Attachment, files[k])["deleted_at"] is None for k in ("contact", "interaction", "task"))
    assert row(app, Interaction, earlier)["deleted_at"] == earlier_deleted, "deleted on its own: stays in the bin"
    assert [kind for kind, _ in events(app, "contact.")][-2:] == ["contact.deleted", "contact.restored"]


def test_an_interaction_of_a_binned_contact_is_restored_with_the_contact_only(app, people):
    contact_id = make_contact(app, people.ann, name="Binned")
    interaction_id = make_interaction(app, people.ann, contact_id)
    run_as(app, people.ann, lambda s: services.delete_contact(s, contact_id))
    with pytest.raises(ValidationError, match="restore the contact"):
        run_as(app, people.ann, lambda s: services.restore_record(s, Interaction, interaction_id))


def backdate(app, model, record_id, days):
    with state(app).db.transaction() as session:
        session.execute(update(model).where(model.id == record_id).values(deleted_at=days_ago(days)))


def test_the_purge_job_deletes_what_was_binned_over_30_days_ago_with_everything_on_it(make_app, tmp_path):
    app = make_app(plugins=[], jobs_inline=True)
    ann = make_user(app, "ann@example.com", roles=("admin",))
    definition = state(app).jobs["core.purge_recycle_bin"]
    assert definition.every == 3600

    company = make_company(app, ann, "Old Ltd")
    employee = make_contact(app, ann, first_name="Ivo", company_id=company)
    old = make_contact(app, ann, name="Old", email="old@example.com", phone="+359 2 1", tags=["t"], lifecycle_stage="customer")
    old_interaction = make_interaction(app, ann, old)
    old_task = make_task(app, ann, contact_id=old)
    stored_name = "ab" + "0" * 30
    file = tmp_path / "instance" / "attachments" / "ab" / stored_name
    file.parent.mkdir(parents=True)
    file.write_bytes(b"%PDF")
    attachment = add_attachment(app, "interaction", old_interaction, stored_name)
    young = make_contact(app, ann, name="Young")
    live = make_contact(app, ann, name="Live")
    lone_old, lone_young = make_interaction(app, ann, live), make_interaction(app, ann, live)
    for contact_id in (company, old, young):
        run_as(app, ann, lambda s, c=contact_id: services.delete_contact(s, c))
    for model, record_id in ((Contact, company), (Contact, old), (Interaction, old_interaction), (Task, old_task)):
        backdate(app, model, record_id, 31)
    backdate(app, Contact, young, 29)
    run_as(app, ann, lambda s: services.delete_record(s, Interaction, lone_old))
    run_as(app, ann, lambda s: services.delete_record(s, Interaction, lone_young))
    backdate(app, Interaction, lone_old, 31)
    employee_version = row(app, Contact, employee)["version"]

    job = jobs.get_job(jobs.enqueue("core.purge_recycle_bin", app=app), app=app)

    assert (job["status"], job["result"]) == ("done", {"contacts": 2, "skipped": 0, "interactions": 1, "tasks": 0})
    assert [row(app, Contact, i) for i in (company, old)] == [None, None]
    assert row(app, Interaction, old_interaction) is None and row(app, Task, old_task) is None
    assert row(app, Attachment, attachment) is None and not file.exists()
    for model in (ContactEmail, ContactPhone, ContactTag, LifecycleChange):
        assert rows(app, select(func.count()).select_from(model).where(model.contact_id == old)) == [(0,)]
    assert row(app, Contact, young)["deleted_at"] is not None
    assert row(app, Interaction, lone_old) is None and row(app, Interaction, lone_young) is not None
    assert (row(app, Contact, employee)["company_id"], row(app, Contact, employee)["version"]) == (None, employee_version + 1)
    purged = rows(app, select(AuditEntry.object_id, AuditEntry.changes).where(AuditEntry.action == "purge").order_by(AuditEntry.id))
    assert purged == [(str(company), {"interactions": 0, "tasks": 0, "attachments": 0}),
                      (str(old), {"interactions": 1, "tasks": 1, "attachments": 1})]


def test_a_contact_a_foreign_key_still_holds_is_kept_and_the_rest_purged(app, people):
    held, free = make_contact(app, people.boss, name="Held"), make_contact(app, people.boss, name="Free")
    with state(app).db.transaction() as session:
        session.execute(text("CREATE TABLE zz_reference (id INTEGER PRIMARY KEY, contact_id INTEGER REFERENCES contact(id))"))
        session.execute(text("INSERT INTO zz_reference (id, contact_id) VALUES (1, :c)"), {"c": held})
    for contact_id in (held, free):
        run_as(app, people.boss, lambda s, c=contact_id: services.delete_contact(s, c))
        backdate(app, Contact, contact_id, 40)
    report = run_as(app, SYSTEM, services.purge_recycle_bin)
    assert report.counts["contacts"] == 1 and report.counts["skipped"] == 1
    assert row(app, Contact, held) is not None and row(app, Contact, free) is None
