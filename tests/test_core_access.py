"""Object-level access over the core record (tests/access_check.py): a
colleague whose scope does not reach a contact, interaction, task or
attachment cannot read, change, delete, restore, merge, export, erase or
find it through the UI, the API, search, the timeline or exports; counts
leave it out; and an out-of-scope record answers 404, never 403.

Both users are staff (own scope) with every permission the routes need,
so scope alone keeps the record away. Interactions and tasks hang on a
contact both users see (contacts team-scoped): the contact's timeline,
files and exports must still hide a colleague's own-scope entries.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select, update

from host.core import search, services, timeline
from host.core.models import Attachment, Contact, Interaction, Task
from host.security import roles
from host.security.models import User
from host.testing import api_token, bearer, make_user

from .access_check import AccessRoutes, BinRoutes, ObjectAccessCase, check_binned_access, check_object_access
from .core_support import make_contact, make_interaction, make_task, state

#: Beyond the staff defaults, so that scope is the only thing in the way.
EXTRA_STAFF_PERMISSIONS = (
    "core.contact.delete", "core.contact.export", "core.contact.merge", "core.interaction.delete",
    "core.interaction.export", "core.task.delete", "core.task.export", "core.personal_data.export",
    "core.personal_data.erase",
)
OWNER, OTHER = "ann@example.com", "bob@example.com"


def _live(model):
    return model.deleted_at.is_(None)


@pytest.fixture
def core_app(make_app):
    app = make_app(plugins=[])
    with state(app).db.transaction() as session:
        for permission in EXTRA_STAFF_PERMISSIONS:
            roles.grant(session, "staff", permission, declared=state(app).permissions)
    make_user(app, OWNER, roles=("staff",), teams=("sales",))
    make_user(app, OTHER, roles=("staff",), teams=("sales",))
    return app


def _contact_search(session, principal):
    return search.search_contacts(session, principal, "zq.owner")


def _global_search(session, principal):
    return search.search_all(session, principal, "zq.owner")


def _counted_contacts(session, principal):
    return services.count_contacts(session, principal=principal)


def test_a_colleagues_contact(core_app):
    app = core_app
    contact = make_contact(app, OWNER, first_name="Zephyrine", last_name="Quill", email="zq.owner@example.com",
                           phone="+359 88 765 4321")
    make_interaction(app, OWNER, contact, subject="Called Zephyrine")
    upload = app.test_client().post(f"/api/v1/contacts/{contact}/attachments", headers=bearer(api_token(app, OWNER)),
                                    data={"file": (io.BytesIO(b"notes"), "notes.txt")}, content_type="multipart/form-data")
    assert upload.status_code == 201
    others = make_contact(app, OTHER, name="Bob's own customer")  # bob's lists are not simply empty
    routes = AccessRoutes(
        ui_detail="/contacts/{id}",
        ui_list="/contacts",
        ui_search="/search",
        ui_export="/contacts/export?format=csv",
        ui_reads=("/contacts/{id}/edit",),
        ui_listings=("/search/suggest?q=zq.owner",),
        api_list="/api/v1/contacts?limit=200",
        api_total=lambda body: len(body["items"]),
        api_item="/api/v1/contacts/{id}",
        api_patch={"notes": "patched by its owner"},
        api_reads=("/api/v1/contacts/{id}/timeline", "/api/v1/contacts/{id}/lifecycle",
                   "/api/v1/contacts/{id}/attachments"),
        api_listings=("/api/v1/contacts?q=zq.owner", "/api/v1/contacts?q=Zephyrine", "/api/v1/contacts?q=%2B359%2088%20765",
                      "/api/v1/contacts/export?format=csv", "/api/v1/exports/contacts?format=csv"),
        api_writes=(("POST", f"/api/v1/contacts/{{id}}/merge", {"merge_id": others}),
                    ("GET", "/api/v1/contacts/{id}/personal-data", None),  # the bin too: see test_core_personal_data
                    ("POST", "/api/v1/contacts/{id}/erase", None),
                    ("POST", "/api/v1/contacts/{id}/restore", None)),
    )
    case = ObjectAccessCase(app, Contact, contact, "Zephyrine Quill", OWNER, OTHER, routes, search_term="zq.owner",
                            live=_live, check_search_hook=False, finders=(_contact_search, _global_search),
                            counters=(_counted_contacts,))
    check_object_access(case)  # ends with the owner's DELETE: the contact is in the bin
    check_binned_access(case, BinRoutes(api_restore="/api/v1/contacts/{id}/restore", api_list="/api/v1/contacts/deleted"))


@pytest.fixture
def shared_contact(core_app):
    """A contact both see (contacts team-scoped for staff, both in "sales");
    interactions, tasks and files stay own-scoped."""
    app = core_app
    with state(app).db.transaction() as session:
        roles.set_scope(session, "staff", "core.contact", "team", declared=state(app).permissions)
    return make_contact(app, OTHER, name="Shared Customer Ltd", kind="company")


def _timeline_of(contact_id):
    def timeline_entries(session, principal):
        contact = timeline.visible_contact(session, principal, contact_id)
        assert contact is not None, "both see the shared contact"
        return timeline.contact_timeline(session, contact, principal, user=None, cursor=None, limit=50).items

    return timeline_entries


def test_a_colleagues_interaction_on_a_shared_contact(core_app, shared_contact):
    app = core_app
    interaction = make_interaction(app, OWNER, shared_contact, channel="meeting", subject="Quixotic Lantern meeting")
    make_interaction(app, OTHER, shared_contact, subject="Bob's own call")
    routes = AccessRoutes(
        ui_detail="/interactions/{id}",
        ui_list="/interactions",
        api_list="/api/v1/interactions?limit=200",
        api_total=lambda body: len(body["items"]),
        api_item="/api/v1/interactions/{id}",
        api_patch={"subject": "patched by its owner"},
        api_reads=("/api/v1/interactions/{id}/attachments",),
        api_listings=(f"/api/v1/contacts/{shared_contact}/timeline", f"/api/v1/interactions?contact_id={shared_contact}",
                      "/api/v1/interactions/export?format=csv"),
        api_writes=(("POST", "/api/v1/interactions/{id}/restore", None),),
    )
    case = ObjectAccessCase(app, Interaction, interaction, "Quixotic Lantern", OWNER, OTHER, routes, live=_live,
                            check_search_hook=False, finders=(_timeline_of(shared_contact),),
                            counters=(lambda s, p: len(services.list_interactions(s, limit=200, principal=p)[0]),))
    check_object_access(case)
    check_binned_access(case, BinRoutes(api_restore="/api/v1/interactions/{id}/restore"))


def test_a_colleagues_task_on_a_shared_contact(core_app, shared_contact):
    app = core_app
    task = make_task(app, OWNER, title="Xylophone Pledge follow up", contact_id=shared_contact)
    make_task(app, OTHER, title="Bob's own task", contact_id=shared_contact)
    routes = AccessRoutes(
        ui_detail="/tasks/{id}",
        ui_list="/tasks",
        api_list="/api/v1/tasks?limit=200",
        api_total=lambda body: len(body["items"]),
        api_item="/api/v1/tasks/{id}",
        api_patch={"title": "patched by its owner"},
        api_reads=("/api/v1/tasks/{id}/attachments",),
        api_listings=(f"/api/v1/contacts/{shared_contact}/timeline", f"/api/v1/tasks?contact_id={shared_contact}",
                      "/api/v1/tasks/export?format=csv"),
        api_writes=(("POST", "/api/v1/tasks/{id}/restore", None),),
    )
    case = ObjectAccessCase(app, Task, task, "Xylophone Pledge", OWNER, OTHER, routes, live=_live,
                            check_search_hook=False, finders=(_timeline_of(shared_contact),),
                            counters=(lambda s, p: len(services.list_tasks(s, limit=200, principal=p)[0]),))
    check_object_access(case)
    check_binned_access(case, BinRoutes(api_restore="/api/v1/tasks/{id}/restore"))


@pytest.mark.parametrize("parent_type", ["contact", "interaction", "task"])
def test_a_file_on_a_colleagues_record(core_app, shared_contact, parent_type):
    """An attachment is reached through its record: the record's scope decides."""
    app = core_app
    if parent_type == "contact":
        parent_model, parent_id = Contact, make_contact(app, OWNER, name="Ann's private customer")
        with state(app).db.transaction() as session:  # out of the team, so team scope does not reach it
            session.execute(update(Contact).where(Contact.id == parent_id).values(team_id=None))
    elif parent_type == "interaction":
        parent_model, parent_id = Interaction, make_interaction(app, OWNER, shared_contact, subject="Ann's call")
    else:
        parent_model, parent_id = Task, make_task(app, OWNER, title="Ann's task", contact_id=shared_contact)
    plural = {"contact": "contacts", "interaction": "interactions", "task": "tasks"}[parent_type]
    upload = app.test_client().post(f"/api/v1/{plural}/{parent_id}/attachments", headers=bearer(api_token(app, OWNER)),
                                    data={"file": (io.BytesIO(b"minutes of the meeting"), "Quokka Ledger.txt")},
                                    content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_json()
    routes = AccessRoutes(
        ui_detail="/attachments/{id}",
        api_item="/api/v1/attachments/{id}",
        api_reads=("/api/v1/attachments/{id}/content", f"/api/v1/{plural}/{{parent}}/attachments"),
    )
    case = ObjectAccessCase(app, Attachment, upload.get_json()["id"], "Quokka Ledger", OWNER, OTHER, routes,
                            parent=(parent_model, parent_id), check_search_hook=False, check_export_hook=False)
    check_object_access(case)  # the owner's DELETE moves the file to the bin


def test_a_binned_contact_takes_its_files_and_history_out_of_reach(core_app, shared_contact):
    """A contact in the recycle bin hides its children from everyone's live
    routes, its owner's too, and brings them back on restore."""
    app = core_app
    contact = make_contact(app, OWNER, name="Binned Customer")
    interaction = make_interaction(app, OWNER, contact, subject="Binned call")
    owner = bearer(api_token(app, OWNER))
    client = app.test_client()
    upload = client.post(f"/api/v1/interactions/{interaction}/attachments", headers=owner,
                         data={"file": (io.BytesIO(b"x"), "binned.txt")}, content_type="multipart/form-data")
    attachment = upload.get_json()["id"]
    assert client.delete(f"/api/v1/contacts/{contact}", headers=owner).status_code == 204
    for path in (f"/api/v1/interactions/{interaction}", f"/api/v1/attachments/{attachment}",
                 f"/api/v1/attachments/{attachment}/content", f"/api/v1/contacts/{contact}/timeline",
                 f"/api/v1/interactions/{interaction}/attachments"):
        assert client.get(path, headers=owner).status_code == 404, path
    listed = client.get("/api/v1/interactions", headers=owner).get_json()["items"]
    assert interaction not in [item["id"] for item in listed]
    assert client.post(f"/api/v1/contacts/{contact}/restore", headers=owner).status_code == 200
    assert client.get(f"/api/v1/attachments/{attachment}/content", headers=owner).status_code == 200


def test_an_interaction_cannot_be_logged_on_a_contact_out_of_scope(core_app):
    """A body naming a contact the user cannot see is a 422 on that field
    (it names no record in the URL), and nothing is written."""
    app = core_app
    hidden = make_contact(app, OWNER, name="Hidden Customer")
    other = bearer(api_token(app, OTHER))
    client = app.test_client()
    for path, body in (("/api/v1/interactions", {"contact_id": hidden, "channel": "phone", "subject": "x"}),
                       ("/api/v1/tasks", {"title": "x", "contact_id": hidden}),
                       ("/api/v1/contacts", {"kind": "person", "name": "x", "company_id": hidden})):
        response = client.post(path, json=body, headers=other)
        assert response.status_code == 422, (path, response.get_json())
    with state(app).db.Session() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 0
        assert session.scalar(select(func.count()).select_from(Task)) == 0


def test_moving_a_contact_to_a_colleague_moves_its_visibility(core_app):
    """Scope follows the owner: the same routes answer once ownership moves."""
    app = core_app
    contact = make_contact(app, OWNER, name="Handed Over Customer")
    other = bearer(api_token(app, OTHER))
    client = app.test_client()
    assert client.get(f"/api/v1/contacts/{contact}", headers=other).status_code == 404
    with state(app).db.transaction() as session:
        bob_id = session.scalar(select(User.id).where(User.email == OTHER))
        session.execute(update(Contact).where(Contact.id == contact).values(owner_id=bob_id))
    assert client.get(f"/api/v1/contacts/{contact}", headers=other).status_code == 200
    assert client.get(f"/api/v1/contacts/{contact}", headers=bearer(api_token(app, OWNER))).status_code == 404


def test_the_recycle_bin_pages_answer_only_within_scope(core_app):
    """The UI's page of a binned record: its owner sees it, a colleague gets 404."""
    from host.testing import login

    app = core_app
    contact = make_contact(app, OWNER, name="Binned Page Customer")
    interaction = make_interaction(app, OWNER, contact, subject="Binned page call")
    task = make_task(app, OWNER, title="Binned page task", contact_id=contact)
    owner_api = bearer(api_token(app, OWNER))
    client = app.test_client()
    for path in (f"/api/v1/interactions/{interaction}", f"/api/v1/tasks/{task}", f"/api/v1/contacts/{contact}"):
        assert client.delete(path, headers=owner_api).status_code == 204
    owner_ui, other_ui = app.test_client(), app.test_client()
    login(owner_ui, OWNER)
    login(other_ui, OTHER)
    for path in (f"/contacts/{contact}/deleted", f"/interactions/{interaction}/deleted", f"/tasks/{task}/deleted"):
        assert owner_ui.get(path).status_code == 200, path
        assert other_ui.get(path).status_code == 404, path
