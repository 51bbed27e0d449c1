"""Creating and editing a contact (``/contacts/new``, ``/contacts/<id>/edit``).

The inputs come from ``ContactCreateSchema``/``ContactUpdateSchema`` and the
custom fields' definitions; the data goes through the same schema and
service as the API. Creating warns about likely duplicates (the API's
``find_duplicates``) and creates only once the user confirms.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from host.core import lists, services
from host.core.models import Contact
from host.core.schemas import ContactCreateSchema, ContactUpdateSchema
from host.db import session as db_session
from host.security.access import Principal, current_principal, require, scope_condition

from . import labels
from .editing import submit_edit
from .forms import Form, custom_fields, errors_by_input, read_form, schema_fields, values_from_form, values_from_record

bp = Blueprint("contact_edit", __name__)

FIELDS = ("kind", "name", "first_name", "last_name", "company_id", "email", "phone", "street", "postal_code", "city",
          "region", "country", "website", "tax_number", "lifecycle_stage", "source", "birthday", "language",
          "marketing_consent", "consent_source", "tags", "notes")
#: More companies than this and the company is chosen by its number.
MAX_COMPANY_CHOICES = 300


def _company_choices(session: Session, principal: Principal) -> list[tuple[str, str]] | None:
    condition = [Contact.kind == "company", Contact.deleted_at.is_(None), scope_condition(principal, Contact)]
    rows = session.execute(select(Contact.id, Contact.name).where(*condition).order_by(Contact.name, Contact.id)
                           .limit(MAX_COMPANY_CHOICES + 1)).all()
    if len(rows) > MAX_COMPANY_CHOICES:
        return None
    return [(str(row.id), row.name) for row in rows]


def contact_fields(session: Session, schema) -> list:
    principal = current_principal()
    companies = _company_choices(session, principal)
    hints = {"tags": _("Separate tags with commas."), "country": _("Two letters, e.g. BG, SK, DE."),
             "name": _("For a person, leave empty to use the first and last name.")}
    if companies is None:
        hints["company_id"] = _("The company's number (shown on its page).")
    made = schema_fields(schema, FIELDS, labels.contact_fields(), choice_labels=labels.choices(), hints=hints,
                         choices={"company_id": companies} if companies else None,
                         widgets={"company_id": "select"} if companies else None)
    return made + custom_fields(services.custom_field_definitions(session))


def _values(form_fields: list, contact: Contact) -> dict[str, Any]:
    return values_from_record(form_fields, contact)


# --- create ------------------------------------------------------------------------------------------


@bp.get("/contacts/new")
@require("core.contact.create")
def new():
    session = db_session()
    form_fields = contact_fields(session, ContactCreateSchema())
    values = {"kind": request.args.get("kind") if request.args.get("kind") in ("person", "company") else "person",
              "lifecycle_stage": "lead", "company_id": request.args.get("company_id", "")}
    return render_template("core/contacts/form.html", form=Form(form_fields, values), contact=None, duplicates={})


@bp.post("/contacts/new")
@require("core.contact.create")
def create():
    """Validate; warn about duplicates unless confirmed; create."""
    session = db_session()
    principal = current_principal()
    form_fields = contact_fields(session, ContactCreateSchema())
    submitted = values_from_form(form_fields, request.form)
    try:
        data = ContactCreateSchema().load(read_form(form_fields, request.form))
        duplicates = services.find_duplicates(session, principal, data)
        if duplicates and request.form.get("confirm_duplicates") != "1":
            names = lists.contact_names(session, principal, duplicates[:10])
            return render_template("core/contacts/form.html", form=Form(form_fields, submitted), contact=None,
                                   duplicates=names), 409
        contact = services.create_contact(session, data)
    except ValidationError as exc:
        session.rollback()
        errors, general = errors_by_input(exc.messages, form_fields)
        return render_template("core/contacts/form.html", form=Form(form_fields, submitted, errors, general),
                               contact=None, duplicates={}), 422
    session.commit()
    flash(_("Contact “%(name)s” created.", name=contact.name), "success")
    return redirect(url_for("contact_page.show", contact_id=contact.id), code=303)


# --- edit ----------------------------------------------------------------------------------------------------


@bp.get("/contacts/<int:contact_id>/edit")
@require("core.contact.update")
def edit(contact_id: int):
    session = db_session()
    contact = services.get_contact(session, contact_id)
    form_fields = contact_fields(session, ContactUpdateSchema())
    form = Form(form_fields, {**_values(form_fields, contact), "version": str(contact.version)})
    return render_template("core/contacts/form.html", form=form, contact=contact, duplicates={})


@bp.post("/contacts/<int:contact_id>/edit")
@require("core.contact.update")
def update(contact_id: int):
    session = db_session()
    services.get_contact(session, contact_id)  # 404 first, for a contact out of scope
    form_fields = contact_fields(session, ContactUpdateSchema())
    outcome = submit_edit(
        form_fields, ContactUpdateSchema(),
        lambda s, data, version: services.update_contact(s, contact_id, data, expected=version),
        lambda s: services.get_contact(s, contact_id),
    )
    if outcome.record is not None:
        flash(_("Contact saved."), "success")
        return redirect(url_for("contact_page.show", contact_id=contact_id), code=303)
    if outcome.gone:
        flash(_("Someone deleted this contact meanwhile."), "error")
        return redirect(url_for("contacts.index"), code=303)
    contact = services.get_contact(db_session(), contact_id)
    return render_template("core/contacts/form.html", form=outcome.form, contact=contact, duplicates={},
                           theirs=outcome.theirs), outcome.status
