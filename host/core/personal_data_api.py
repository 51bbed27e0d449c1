"""Data-subject requests over the REST API:

- ``GET  /api/v1/contacts/<id>/personal-data``: one JSON document with
  everything the host and every enabled plugin hold about the contact
  (``core.personal_data.export``);
- ``POST /api/v1/contacts/<id>/erase``: anonymise the contact everywhere,
  irreversibly (``core.personal_data.erase``).

The contact must be in the caller's scope, live or in the recycle bin (a
person may ask after their record was deleted, while it still exists);
otherwise 404, as for every record. Both are written to the security log and
the audit trail (``host.security.personal_data``), in the same transaction.
"""

from __future__ import annotations

from flask import abort
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select
from sqlalchemy.orm import Session

from host.db import session as db_session
from host.security import personal_data
from host.security.access import Principal, current_principal, require, scope_condition

from .models import Contact

api = Blueprint(
    "api_core_personal_data", __name__, url_prefix="/api/v1",
    description="Data-subject requests: export a person's data, erase it.",
)


class PersonalDataExportSchema(Schema):
    format = fields.String(metadata={"description": "mosaic.personal-data-export/1"})
    contact_id = fields.Integer()
    exported_at = fields.String(metadata={"description": "ISO 8601"})
    exported_by = fields.Integer(allow_none=True)
    data = fields.Dict(
        keys=fields.String(), values=fields.Raw(),
        metadata={"description": "Each part keyed by its source: host, then every enabled plugin that holds data."},
    )


class ErasureSchema(Schema):
    contact_id = fields.Integer()
    journal_id = fields.Integer(metadata={"description": "The erasure journal entry (plugins enabled later replay it)."})
    parts = fields.List(fields.String(), metadata={"description": "host and the plugins that erased their part"})


def reachable_contact(session: Session, principal: Principal, contact_id: int) -> Contact | None:
    """The contact if the principal's scope reaches it, live or in the bin."""
    return session.scalar(select(Contact).where(Contact.id == contact_id, scope_condition(principal, Contact)))


def _contact_or_404(session: Session, contact_id: int) -> Contact:
    contact = reachable_contact(session, current_principal(), contact_id)
    if contact is None:
        abort(404, description="No such contact.")
    return contact


@api.get("/contacts/<int:contact_id>/personal-data")
@require("core.personal_data.export")
@api.response(200, PersonalDataExportSchema)
def export_personal_data(contact_id: int):
    """Everything known about the contact (a data-subject access request):
    its record, e-mails, phones, custom fields, consent, lifecycle history,
    interactions, tasks, attachment metadata, audit history, and every
    enabled plugin's part. Recorded in the security log."""
    session = db_session()
    contact = _contact_or_404(session, contact_id)
    document = personal_data.export_person(session, contact)
    session.commit()
    return document


@api.post("/contacts/<int:contact_id>/erase")
@require("core.personal_data.erase")
@api.response(200, ErasureSchema)
def erase_personal_data(contact_id: int):
    """Anonymise the contact for good: personal fields, e-mails and phones,
    interaction and task texts, attachments (files deleted), the search
    index and the audit trail's old values, and every enabled plugin's data
    (a plugin enabled later erases its part then). The record stays, as
    "Erased contact <id>", so lifecycle figures still add up."""
    session = db_session()
    contact = _contact_or_404(session, contact_id)
    entry = personal_data.erase_person(session, contact)
    result = {"contact_id": contact_id, "journal_id": entry.id, "parts": list(entry.done_by)}
    session.commit()
    return result
