"""The host's own part of a data-subject export and of an erasure: the
``mosaic_export_contact`` and ``mosaic_erase_contact`` implementations of
the plugin "host" (``host/hookimpls.py``), so the core record travels the
same path as every plugin's data (``host.security.personal_data`` calls them,
journals erasures and writes the security log and audit entries).

What the host holds about a contact, and what each operation does with it:

==========================  =======================  ===================================
data                        export                   erasure
==========================  =======================  ===================================
contact fields, custom      every column             personal columns cleared, the name
fields, consent, tags                                becomes "Erased contact <id>"
e-mails, phones             every row                rows deleted
lifecycle history           every change             kept: stages and dates only
interactions (incl. bin)    every column             subject, body, outcome cleared
tasks (incl. bin)           every column             title, notes cleared
attachments                 metadata (not files)     rows and files deleted
notifications on its tasks  title, kind, when        titles cleared
audit trail                 the record's entries     personal values -> "[erased]"
search index                derived from the fields  re-indexed by the database triggers
                                                     (``aee127614dcf``) as the fields change
event outbox, webhooks      ids only (none held)     nothing to do; ``contact.erased`` is
                                                     published so receivers can erase theirs
==========================  =======================  ===================================

Contacts merged into this one (the merge journal) are the same person:
their records and history are erased with it, and their ids are listed in
the export.

Both work by id only (``contact.id``): a replayed erasure receives a
``ContactRef``, and an id the host has no contact for is nothing to do
(the export then has no host part), so both are idempotent.

Access is the caller's: the API and CLI check ``core.personal_data.*`` and
the contact's scope, then reach every child record of the person whoever
owns it (an export or an erasure that skipped a colleague's call notes would
be incomplete).

Attachment files are removed only after the erasure's transaction commits
(a rolled-back erasure must not lose files whose rows come back).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from sqlalchemy import and_, delete, event, or_, select, update
from sqlalchemy.orm import Session

from hooks import Event
from host.events import publish
from host.security import audit
from host.security.access import object_type_of
from host.security.models import AuditEntry, PersonalDataJournal
from host.security.seclog import json_safe

from .models import (
    Attachment,
    Contact,
    ContactEmail,
    ContactPhone,
    Interaction,
    LifecycleChange,
    Notification,
    Task,
)

log = logging.getLogger("mosaic.personal_data")

ERASED = audit.ERASED
CONTACT_TYPE = object_type_of(Contact)
INTERACTION_TYPE = object_type_of(Interaction)
TASK_TYPE = object_type_of(Task)

#: Contact columns that describe the person; cleared by an erasure and
#: scrubbed from the audit trail ("emails", "phones", "tags" are the lists
#: the services audit through the contact).
CONTACT_PERSONAL = (
    "name", "first_name", "last_name", "company_id", "email", "phone", "phone_digits", "street", "city",
    "postal_code", "region", "country", "website", "tax_number", "source", "birthday", "language",
    "marketing_consent", "consent_at", "consent_source", "notes", "custom_fields", "external_id",
)
CONTACT_LISTS = ("emails", "phones", "tags")
INTERACTION_PERSONAL = ("subject", "body", "outcome", "external_id")
TASK_PERSONAL = ("title", "notes", "external_id")
#: Hand-written audit entries (attachment added/deleted) keep a file name.
ATTACHMENT_AUDIT_KEYS = ("filename",)

_FILES_PENDING = "mosaic_erased_attachment_files"
_FILES_LISTENING = "mosaic_erasure_files_listening"


# --- export -------------------------------------------------------------------------------------


def export_contact(session: Session, contact_id: int) -> dict[str, Any] | None:
    """Everything the host holds about the contact, JSON-ready; ``None``
    when there is no such contact (another part of the export may still
    know the id)."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return None
    merged = merged_contact_ids(session, contact_id)
    people = [contact_id, *merged]
    interactions = _all(session, Interaction, Interaction.contact_id.in_(people), Interaction.id)
    tasks = _all(session, Task, Task.contact_id.in_(people), Task.id)
    interaction_ids = [row.id for row in interactions]
    task_ids = [row.id for row in tasks]
    return json_safe({
        "contact": _contact_part(session, contact),
        "merged_contacts": [_contact_part(session, other) for other in _existing(session, merged)],
        "lifecycle": [
            {"from_stage": row.from_stage, "to_stage": row.to_stage, "changed_at": row.changed_at, "changed_by": row.changed_by}
            for row in _all(session, LifecycleChange, LifecycleChange.contact_id.in_(people), LifecycleChange.changed_at)
        ],
        "interactions": [_columns(row) for row in interactions],
        "tasks": [_columns(row) for row in tasks],
        "attachments": [
            {key: getattr(row, key) for key in ("id", "object_type", "object_id", "filename", "content_type", "size",
                                                 "created_at", "deleted_at")}
            for row in _all(session, Attachment, _attachments_of(people, interaction_ids, task_ids), Attachment.id)
        ],
        "notifications": [
            {"user_id": row.user_id, "kind": row.kind, "title": row.title, "created_at": row.created_at, "read_at": row.read_at}
            for row in _all(session, Notification, _task_notifications(task_ids), Notification.id)
        ],
        "history": [
            {"occurred_at": row.occurred_at, "user_id": row.user_id, "action": row.action, "object_type": row.object_type,
             "object_id": row.object_id, "changes": row.changes}
            for row in _all(session, AuditEntry, _audit_of(people, interaction_ids, task_ids), AuditEntry.id)
        ],
    })


def _contact_part(session: Session, contact: Contact) -> dict[str, Any]:
    part = _columns(contact)
    part["emails"] = [{"email": row.email, "label": row.label} for row in contact.emails]
    part["phones"] = [{"phone": row.phone, "label": row.label} for row in contact.phones]
    part["tags"] = [tag.name for tag in contact.tags]
    company = session.get(Contact, contact.company_id) if contact.company_id else None
    part["company"] = {"id": company.id, "name": company.name} if company is not None else None
    return part


def _existing(session: Session, contact_ids: list[int]) -> list[Contact]:
    """The contacts still there (a merged one is purged with the recycle
    bin after 30 days; the journal keeps its id)."""
    return [contact for contact in (session.get(Contact, i) for i in contact_ids) if contact is not None]


def _columns(record: Any) -> dict[str, Any]:
    return {column.key: getattr(record, column.key) for column in record.__mapper__.column_attrs}


def _all(session: Session, model: Any, condition: Any, order: Any) -> list[Any]:
    return list(session.scalars(select(model).where(condition).order_by(order)))


def merged_contact_ids(session: Session, contact_id: int) -> list[int]:
    """Contacts merged into this one, directly or through earlier merges
    (A into B into C: C's list holds B and A), from the merge journal."""
    found: list[int] = []
    frontier = [contact_id]
    while frontier:
        rows = session.scalars(select(PersonalDataJournal.other_contact_id).where(
            PersonalDataJournal.kind == "merge", PersonalDataJournal.contact_id.in_(frontier)))
        frontier = [other for other in rows if other is not None and other != contact_id and other not in found]
        found += frontier
    return sorted(found)


def _attachments_of(contact_ids: list[int], interaction_ids: list[int], task_ids: list[int]) -> Any:
    return or_(
        and_(Attachment.object_type == "contact", Attachment.object_id.in_(contact_ids)),
        and_(Attachment.object_type == "interaction", Attachment.object_id.in_(interaction_ids)),
        and_(Attachment.object_type == "task", Attachment.object_id.in_(task_ids)),
    )


def _task_notifications(task_ids: list[int]) -> Any:
    """Reminders name the task in their url (``/tasks/<id>``) and its title."""
    return Notification.url.in_([f"/tasks/{task_id}" for task_id in task_ids])


def _audit_of(contact_ids: list[int], interaction_ids: list[int], task_ids: list[int]) -> Any:
    def of(object_type: str, ids: list[int]) -> Any:
        return and_(AuditEntry.object_type == object_type, AuditEntry.object_id.in_([str(i) for i in ids]))

    return or_(of(CONTACT_TYPE, contact_ids), of(INTERACTION_TYPE, interaction_ids), of(TASK_TYPE, task_ids))


# --- erasure -------------------------------------------------------------------------------------


def erase_contact(session: Session, contact_id: int) -> bool:
    """Anonymise the contact (and the contacts merged into it) everywhere the
    host keeps them, in the caller's transaction; ``False`` when there is no
    such contact. Idempotent: erasing twice changes nothing more."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return False
    people = [contact_id, *merged_contact_ids(session, contact_id)]
    interaction_ids = list(session.scalars(select(Interaction.id).where(Interaction.contact_id.in_(people))))
    task_ids = list(session.scalars(select(Task.id).where(Task.contact_id.in_(people))))
    for person in _existing(session, people):
        _anonymise_contact(session, person)
    _anonymise_rows(session, Interaction, interaction_ids, {"subject": ERASED, "body": None, "outcome": None, "external_id": None})
    _anonymise_rows(session, Task, task_ids, {"title": ERASED, "notes": None, "external_id": None})
    session.execute(update(Notification).where(_task_notifications(task_ids)).values(title=ERASED)
                    .execution_options(synchronize_session=False))
    _delete_attachments(session, _attachments_of(people, interaction_ids, task_ids))
    session.flush()
    _scrub_history(session, people, interaction_ids, task_ids)
    publish(session, Event(type="contact.erased", data={"id": contact_id, "merged_ids": people[1:]}))
    return True


def _anonymise_contact(session: Session, contact: Contact) -> None:
    """Clear the personal columns through the ORM, so the audit listener
    (inside ``audit.erasing``) and the search triggers see the change."""
    for key in CONTACT_PERSONAL:
        setattr(contact, key, None)
    contact.name = f"Erased contact {contact.id}"
    contact.marketing_consent = False
    contact.custom_fields = {}
    contact.emails.clear()
    contact.phones.clear()
    contact.tags = []
    session.flush()
    # The services keep the primary address and number as rows too; any row
    # the relationship did not hold (another write path) goes as well.
    for model in (ContactEmail, ContactPhone):
        session.execute(delete(model).where(model.contact_id == contact.id).execution_options(synchronize_session=False))


def _anonymise_rows(session: Session, model: Any, ids: list[int], values: dict[str, Any]) -> None:
    """ORM updates (audited, versions bumped), whoever owns the rows."""
    for start in range(0, len(ids), 500):
        for row in session.scalars(select(model).where(model.id.in_(ids[start:start + 500]))):
            for key, value in values.items():
                setattr(row, key, value)
    session.flush()


def _delete_attachments(session: Session, condition: Any) -> None:
    rows = list(session.execute(select(Attachment.id, Attachment.stored_name).where(condition)))
    if not rows:
        return
    session.execute(delete(Attachment).where(Attachment.id.in_([row.id for row in rows]))
                    .execution_options(synchronize_session=False))
    _remove_files_after_commit(session, [row.stored_name for row in rows])


def _scrub_history(session: Session, contact_ids: list[int], interaction_ids: list[int], task_ids: list[int]) -> None:
    """The trail keeps who did what and when, but none of the erased values:
    also values that had already been changed or cleared before (which the
    erasure's own changes would not reach)."""
    for contact_id in contact_ids:
        audit.scrub_history(session, CONTACT_TYPE, contact_id, CONTACT_PERSONAL + CONTACT_LISTS)
    for object_type, ids, fields in ((INTERACTION_TYPE, interaction_ids, INTERACTION_PERSONAL),
                                     (TASK_TYPE, task_ids, TASK_PERSONAL)):
        for record_id in ids:
            audit.scrub_history(session, object_type, record_id, fields)
    _scrub_attachment_names(session, _audit_of(contact_ids, interaction_ids, task_ids))


def _scrub_attachment_names(session: Session, condition: Any) -> None:
    """Hand-written entries (``attachment.add``/``.delete``) hold the file
    name as a plain value, which ``scrub_history`` (old/new pairs) leaves.
    Rewritten with Core: the ORM guards entries as read-only, and this is
    the one rewrite an erasure is allowed."""
    entries = session.execute(select(AuditEntry.id, AuditEntry.changes).where(condition, AuditEntry.action.like("attachment.%")))
    for entry_id, changes in entries.all():
        if any(changes.get(key) not in (None, ERASED) for key in ATTACHMENT_AUDIT_KEYS):
            scrubbed = {**changes, **{key: ERASED for key in ATTACHMENT_AUDIT_KEYS if key in changes}}
            session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(changes=scrubbed)
                            .execution_options(synchronize_session=False))


# --- attachment files, after the commit -------------------------------------------------------------


def _remove_files_after_commit(session: Session, stored_names: Iterable[str]) -> None:
    """Remember the files; delete them when this session's transaction
    commits, forget them when it rolls back."""
    pending = session.info.setdefault(_FILES_PENDING, [])
    # Marked in session.info rather than asked of event.contains(), whose
    # registry keys on id() and can outlive what it describes.
    if not session.info.get(_FILES_LISTENING):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
        session.info[_FILES_LISTENING] = True
    pending.extend(stored_names)


def _after_commit(session: Session) -> None:
    names = session.info.pop(_FILES_PENDING, [])
    if names:
        remove_files(names)


def _after_rollback(session: Session) -> None:
    session.info.pop(_FILES_PENDING, None)


def remove_files(stored_names: list[str]) -> None:
    """Delete stored files through the attachment store, in the app's
    instance folder. Outside an app there is no folder to know: the files
    are logged, so an operator can remove them."""
    from flask import current_app, has_app_context

    from . import attachments

    if not has_app_context():
        log.warning("erasure: no app context, attachment files left to remove by hand: %s", ", ".join(stored_names))
        return
    attachments.remove_files(attachments.storage_root(current_app.instance_path), stored_names)
