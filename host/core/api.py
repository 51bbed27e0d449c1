"""REST API of the core record: contacts, interactions, tasks, merges and
custom field definitions, under ``/api/v1``.

Thin views over ``host.core.services`` (which hold every rule and every
scope check): parse with the schemas, call the service, commit, answer.

- Lists: filters as query parameters, keyset pages ``{"items", "next"}``,
  newest first; ``limit`` (default 50, at most 200) and ``cursor``.
- Get: 404 for a record that is missing, in the recycle bin or out of the
  caller's scope (the same answer, so none is confirmed); ``ETag`` header.
- Create: 201 with the record (``id``, ``version``) and its ``ETag``;
  contacts also carry ``possible_duplicates``, or answer 409 with them when
  asked ``?on_duplicate=reject``.
- Update (PATCH): the edited version in the body (``version``) or
  ``If-Match``: stale -> 409 / 412, none -> 428; ``ETag`` of the new version.
- Delete: to the recycle bin, 204 (``If-Match`` optional: checked if sent).
- Errors: the host's one JSON shape; validation 422 names each field under
  ``errors.json`` (a service's own checks, such as custom fields, answer in
  the same place).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from flask import jsonify, request
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError

from host.db import session as db_session
from host.pagination import PageArgsSchema
from host.security.access import current_principal, require
from host.security.concurrency import commit_or_conflict, etag, expected_version

from . import services
from .models import Interaction, Task
from .schemas import (
    ContactCreateArgsSchema,
    ContactCreatedSchema,
    ContactCreateSchema,
    ContactListArgsSchema,
    ContactMergeSchema,
    ContactPageSchema,
    ContactSchema,
    ContactUpdateSchema,
    CustomFieldDefinitionCreateSchema,
    CustomFieldDefinitionListSchema,
    CustomFieldDefinitionSchema,
    InteractionCreateSchema,
    InteractionListArgsSchema,
    InteractionPageSchema,
    InteractionSchema,
    InteractionUpdateSchema,
    LifecycleHistorySchema,
    TaskCreateSchema,
    TaskListArgsSchema,
    TaskPageSchema,
    TaskSchema,
    TaskUpdateSchema,
)

PREFIX = "/api/v1"

contacts_api = Blueprint("api_core_contacts", __name__, url_prefix=PREFIX,
                         description="Contacts: people and companies, their recycle bin, duplicates and merges.")
interactions_api = Blueprint("api_core_interactions", __name__, url_prefix=PREFIX,
                             description="Interactions: what happened with a contact, on any channel.")
tasks_api = Blueprint("api_core_tasks", __name__, url_prefix=PREFIX,
                      description="Tasks: planned follow-ups, assigned to a user.")
custom_fields_api = Blueprint("api_core_custom_fields", __name__, url_prefix=PREFIX,
                              description="Custom field definitions (admin): plugins' and admin-defined.")

BLUEPRINTS = (contacts_api, interactions_api, tasks_api, custom_fields_api)


# --- shared -----------------------------------------------------------------------------


@contextlib.contextmanager
def _domain_errors(location: str = "json") -> Iterator[None]:
    """A service's field errors answer like the schemas' (422, by field
    under ``location``); a missing permission found by a service, 403."""
    try:
        yield
    except ValidationError as exc:
        abort(422, message="The request's data is not valid.", messages={location: exc.messages})
    except PermissionError as exc:
        abort(403, message=str(exc))


def _tagged(record: Any, status: int = 200) -> tuple[Any, int, dict[str, str]]:
    return record, status, {"ETag": etag(record.version)}


def _optional_if_match() -> Any:
    """A delete may say which version it deletes; it need not."""
    if request.headers.get("If-Match", "").strip():
        return expected_version({}, if_match=request.headers["If-Match"])
    return None


def _page_args(args: dict[str, Any]) -> tuple[dict[str, Any], int, Any]:
    filters = dict(args)
    return filters, filters.pop("limit"), filters.pop("cursor", None)


def _page(items_and_next: tuple[list[Any], str | None]) -> dict[str, Any]:
    items, next_cursor = items_and_next
    return {"items": items, "next": next_cursor}


def _update(loaded: dict[str, Any], apply) -> Any:
    """The PATCH flow: the version the client edits (428 without one), the
    service (404, 409/412, 422), the commit (409 on a race in the flush)."""
    sent = expected_version(loaded)
    data = {key: value for key, value in loaded.items() if key != "version"}
    session = db_session()
    with _domain_errors():
        record = apply(session, data, sent)
    commit_or_conflict(session, record)
    return _tagged(record)


# --- contacts -------------------------------------------------------------------------------


@contacts_api.get("/contacts")
@require("core.contact.read")
@contacts_api.arguments(ContactListArgsSchema, location="query")
@contacts_api.response(200, ContactPageSchema)
def list_contacts(args):
    """Contacts you may see, newest first. ``q`` searches name, e-mail and
    phone; the other parameters filter exactly (dates: from ``*_after``
    inclusive, to ``*_before`` exclusive)."""
    filters, limit, cursor = _page_args(args)
    with _domain_errors("query"):
        return _page(services.list_contact_records(db_session(), filters, limit=limit, cursor=cursor))


@contacts_api.post("/contacts")
@require("core.contact.create")
@contacts_api.arguments(ContactCreateArgsSchema, location="query", as_kwargs=True)
@contacts_api.arguments(ContactCreateSchema)
@contacts_api.response(201, ContactCreatedSchema)
@contacts_api.alt_response(409, description="With on_duplicate=reject: possible duplicates exist (their ids in possible_duplicates).")
def create_contact(data, on_duplicate="report"):
    """Create a person or a company. The answer lists ``possible_duplicates``
    (same e-mail, same phone, a very similar name in the same company)."""
    session = db_session()
    duplicates = services.find_duplicates(session, current_principal(), data)
    if duplicates and on_duplicate == "reject":
        return _duplicates_conflict(duplicates)
    with _domain_errors():
        contact = services.create_contact(session, data)
    session.commit()
    contact.possible_duplicates = duplicates
    return _tagged(contact, 201)


def _duplicates_conflict(duplicates: list[int]):
    response = jsonify({
        "code": 409,
        "status": "Conflict",
        "message": "Possible duplicates exist; nothing was created.",
        "possible_duplicates": duplicates,
    })
    response.status_code = 409
    return response


@contacts_api.get("/contacts/deleted")
@require("core.contact.delete")
@contacts_api.arguments(PageArgsSchema, location="query")
@contacts_api.response(200, ContactPageSchema)
def recycle_bin(args):
    """The recycle bin: contacts you may see that were deleted and are purged
    30 days after; ``POST /contacts/{id}/restore`` brings one back."""
    with _domain_errors("query"):
        return _page(services.list_deleted_contacts(db_session(), limit=args["limit"], cursor=args.get("cursor")))


@contacts_api.get("/contacts/<int:contact_id>")
@require("core.contact.read")
@contacts_api.response(200, ContactSchema)
def get_contact(contact_id):
    return _tagged(services.get_contact(db_session(), contact_id))


@contacts_api.patch("/contacts/<int:contact_id>")
@require("core.contact.update")
@contacts_api.arguments(ContactUpdateSchema)
@contacts_api.response(200, ContactSchema)
def update_contact(data, contact_id):
    """Change the fields sent; ``emails``, ``phones`` and ``tags`` replace
    the lists; ``custom_fields`` replaces the keys it names."""
    return _update(data, lambda session, changes, sent: services.update_contact(session, contact_id, changes, expected=sent))


@contacts_api.delete("/contacts/<int:contact_id>")
@require("core.contact.delete")
@contacts_api.response(204)
def delete_contact(contact_id):
    """To the recycle bin, with its interactions, tasks and attachments."""
    session = db_session()
    services.delete_contact(session, contact_id, expected=_optional_if_match())
    session.commit()
    return ""


@contacts_api.post("/contacts/<int:contact_id>/restore")
@require("core.contact.delete")
@contacts_api.response(200, ContactSchema)
@contacts_api.alt_response(409, description="The contact was merged into another one.")
def restore_contact(contact_id):
    """Bring a contact back from the recycle bin, with what was deleted with it."""
    session = db_session()
    with _domain_errors():
        contact = services.restore_contact(session, contact_id)
    session.commit()
    return _tagged(contact)


@contacts_api.post("/contacts/<int:contact_id>/merge")
@require("core.contact.merge")
@contacts_api.arguments(ContactMergeSchema)
@contacts_api.response(200, ContactSchema)
def merge_contact(data, contact_id):
    """Merge contact ``merge_id`` into this one: interactions, tasks,
    attachments, e-mails, phones, tags and every plugin's references move
    here; empty fields are filled from it (``fields`` picks per field). The
    merged contact goes to the recycle bin. Answers the survivor."""
    session = db_session()
    with _domain_errors():
        survivor = services.merge_contacts(session, contact_id, data["merge_id"], fields=data["field_choices"])
    session.commit()
    return _tagged(survivor)


@contacts_api.get("/contacts/<int:contact_id>/lifecycle")
@require("core.contact.read")
@contacts_api.response(200, LifecycleHistorySchema)
def contact_lifecycle(contact_id):
    """Every lifecycle stage change of the contact (from, to, when, who), oldest first."""
    return {"items": services.lifecycle_history(db_session(), contact_id)}


# --- interactions ----------------------------------------------------------------------------------


@interactions_api.get("/interactions")
@require("core.interaction.read")
@interactions_api.arguments(InteractionListArgsSchema, location="query")
@interactions_api.response(200, InteractionPageSchema)
def list_interactions(args):
    """Interactions you may see, newest first."""
    filters, limit, cursor = _page_args(args)
    with _domain_errors("query"):
        return _page(services.list_interactions(db_session(), filters, limit=limit, cursor=cursor))


@interactions_api.post("/interactions")
@require("core.interaction.create")
@interactions_api.arguments(InteractionCreateSchema)
@interactions_api.response(201, InteractionSchema)
def create_interaction(data):
    """Log what happened with a contact (``occurred_at`` defaults to now)."""
    session = db_session()
    with _domain_errors():
        interaction = services.create_interaction(session, data)
    session.commit()
    return _tagged(interaction, 201)


@interactions_api.get("/interactions/<int:interaction_id>")
@require("core.interaction.read")
@interactions_api.response(200, InteractionSchema)
def get_interaction(interaction_id):
    return _tagged(services.get_interaction(db_session(), interaction_id))


@interactions_api.patch("/interactions/<int:interaction_id>")
@require("core.interaction.update")
@interactions_api.arguments(InteractionUpdateSchema)
@interactions_api.response(200, InteractionSchema)
def update_interaction(data, interaction_id):
    return _update(data, lambda session, changes, sent: services.update_interaction(session, interaction_id, changes, expected=sent))


@interactions_api.delete("/interactions/<int:interaction_id>")
@require("core.interaction.delete")
@interactions_api.response(204)
def delete_interaction(interaction_id):
    """To the recycle bin (purged after 30 days)."""
    session = db_session()
    services.delete_record(session, Interaction, interaction_id, expected=_optional_if_match())
    session.commit()
    return ""


@interactions_api.post("/interactions/<int:interaction_id>/restore")
@require("core.interaction.delete")
@interactions_api.response(200, InteractionSchema)
def restore_interaction(interaction_id):
    session = db_session()
    with _domain_errors():
        interaction = services.restore_record(session, Interaction, interaction_id)
    session.commit()
    return _tagged(interaction)


# --- tasks -------------------------------------------------------------------------------------------------


@tasks_api.get("/tasks")
@require("core.task.read")
@tasks_api.arguments(TaskListArgsSchema, location="query")
@tasks_api.response(200, TaskPageSchema)
def list_tasks(args):
    """Tasks you may see, newest first; ``owner_id`` is the assignee."""
    filters, limit, cursor = _page_args(args)
    with _domain_errors("query"):
        return _page(services.list_tasks(db_session(), filters, limit=limit, cursor=cursor))


@tasks_api.post("/tasks")
@require("core.task.create")
@tasks_api.arguments(TaskCreateSchema)
@tasks_api.response(201, TaskSchema)
def create_task(data):
    """Plan a follow-up, for you or for ``assignee_id``."""
    session = db_session()
    with _domain_errors():
        task = services.create_task(session, data)
    session.commit()
    return _tagged(task, 201)


@tasks_api.get("/tasks/<int:task_id>")
@require("core.task.read")
@tasks_api.response(200, TaskSchema)
def get_task(task_id):
    return _tagged(services.get_task(db_session(), task_id))


@tasks_api.patch("/tasks/<int:task_id>")
@require("core.task.update")
@tasks_api.arguments(TaskUpdateSchema)
@tasks_api.response(200, TaskSchema)
def update_task(data, task_id):
    """Change a task; ``done: true`` completes it (``done_at`` is set)."""
    return _update(data, lambda session, changes, sent: services.update_task(session, task_id, changes, expected=sent))


@tasks_api.delete("/tasks/<int:task_id>")
@require("core.task.delete")
@tasks_api.response(204)
def delete_task(task_id):
    """To the recycle bin (purged after 30 days)."""
    session = db_session()
    services.delete_record(session, Task, task_id, expected=_optional_if_match())
    session.commit()
    return ""


@tasks_api.post("/tasks/<int:task_id>/restore")
@require("core.task.delete")
@tasks_api.response(200, TaskSchema)
def restore_task(task_id):
    session = db_session()
    with _domain_errors():
        task = services.restore_record(session, Task, task_id)
    session.commit()
    return _tagged(task)


# --- custom field definitions (admin) --------------------------------------------------------------------


@custom_fields_api.get("/admin/custom-fields")
@require("core.customfield.update")
@custom_fields_api.response(200, CustomFieldDefinitionListSchema)
def list_custom_fields():
    """Every custom field of contacts: the enabled plugins' and the admin-defined ones."""
    return {"items": list(services.custom_field_definitions(db_session()).values())}


@custom_fields_api.post("/admin/custom-fields")
@require("core.customfield.update")
@custom_fields_api.arguments(CustomFieldDefinitionCreateSchema)
@custom_fields_api.response(201, CustomFieldDefinitionSchema)
def create_custom_field(data):
    """Define a custom field; contacts are validated against it from now on."""
    session = db_session()
    with _domain_errors():
        row = services.create_custom_field(session, data)
    session.commit()
    return services.custom_field_definitions(session)[row.key], 201


@custom_fields_api.delete("/admin/custom-fields/<int:definition_id>")
@require("core.customfield.update")
@custom_fields_api.response(204)
def delete_custom_field(definition_id):
    """Delete an admin-defined field (values already stored are kept)."""
    session = db_session()
    services.delete_custom_field(session, definition_id)
    session.commit()
    return ""
