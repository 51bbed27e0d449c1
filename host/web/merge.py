"""The merge screen (``/contacts/<id>/merge?other=<id>``): both contacts
side by side, the user picks each field, and the merge service (the API's)
moves everything of ``other`` into ``<id>`` in one transaction."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from host.core import lists, services
from host.core.models import Contact
from host.core.schemas import ContactMergeSchema
from host.db import session as db_session
from host.security.access import current_principal, require

from . import labels
from .common import int_or_none
from .forms import errors_by_input

bp = Blueprint("merge", __name__)

#: Fields a merge never fills on its own (see ``services._AUTO_FILL``): a
#: consent or a stage is a decision, so the survivor's stays unless picked.
_DECISIONS = ("marketing_consent", "lifecycle_stage", "custom_fields")


def _shown(session: Any, field: str, contact: Contact) -> str:
    value = getattr(contact, field)
    if field == "company_id" and value is not None:
        return lists.contact_names(session, current_principal(), [value]).get(value, f"#{value}")
    if field == "lifecycle_stage":
        return labels.stages().get(value, value)
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def _rows(session: Any, survivor: Contact, merged: Contact) -> list[dict[str, Any]]:
    names = labels.contact_fields()
    rows = []
    for field in services.MERGE_FIELDS:
        mine, theirs = _shown(session, field, survivor), _shown(session, field, merged)
        default = "merged" if (not mine and theirs and field not in _DECISIONS) else "survivor"
        rows.append({"field": field, "label": names.get(field, field), "survivor": mine, "merged": theirs,
                     "same": mine == theirs, "default": request.form.get(f"choice:{field}", default)})
    return rows


def _pair(contact_id: int, other_id: int | None) -> tuple[Contact, Contact]:
    session = db_session()
    if other_id is None:
        abort(404)
    return services.get_contact(session, contact_id), services.get_contact(session, other_id)


def _render(survivor: Contact, merged: Contact, errors: list[str] | None = None, status: int = 200):
    session = db_session()
    body = render_template("core/contacts/merge.html", survivor=survivor, merged=merged,
                           rows=_rows(session, survivor, merged), errors=errors or [], kinds=labels.kinds())
    return body, status


@bp.get("/contacts/<int:contact_id>/merge")
@require("core.contact.merge")
def compare(contact_id: int):
    other = int_or_none(request.args.get("other"))
    survivor, merged = _pair(contact_id, other)
    errors = []
    if survivor.id == merged.id:
        errors.append(_("A contact cannot be merged into itself."))
    elif survivor.kind != merged.kind:
        errors.append(_("A person and a company cannot be merged."))
    return _render(survivor, merged, errors)


@bp.post("/contacts/<int:contact_id>/merge")
@require("core.contact.merge")
def merge(contact_id: int):
    session = db_session()
    other = int_or_none(request.form.get("other"))
    survivor, merged = _pair(contact_id, other)
    choices = {field: request.form[f"choice:{field}"] for field in services.MERGE_FIELDS if f"choice:{field}" in request.form}
    try:
        data = ContactMergeSchema().load({"merge_id": merged.id, "fields": choices})
        services.merge_contacts(session, survivor.id, data["merge_id"], fields=data["field_choices"])
    except ValidationError as exc:
        session.rollback()
        _none, errors = errors_by_input(exc.messages, ())  # no inputs: every message as "field: message"
        return _render(*_pair(contact_id, other), errors=errors, status=422)
    session.commit()
    flash(_("Merged. Everything of the other contact is now here; the other one is in the recycle bin."), "success")
    return redirect(url_for("contact_page.show", contact_id=contact_id), code=303)
