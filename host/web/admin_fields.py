"""Admin: custom field definitions of contacts. Lists the enabled plugins'
fields (read-only here) and the admin-defined ones; creates and deletes the
latter through ``host.core.services`` with the API's schema, so the form and
``/api/v1/admin/custom-fields`` validate alike."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from marshmallow import ValidationError

from host.core import services
from host.core.schemas import CUSTOM_FIELD_TYPES, CustomFieldDefinitionCreateSchema
from host.db import session as db_session
from host.security.access import require

from .admin_common import first_errors

bp = Blueprint("admin_fields", __name__, url_prefix="/admin/custom-fields")

PERMISSION = "core.customfield.update"
EMPTY = {"key": "", "label": "", "type": "text", "choices": "", "required": False}


def _render(status: int = 200, errors: dict[str, str] | None = None, form: dict | None = None):
    definitions = list(services.custom_field_definitions(db_session()).values())
    return render_template("core/admin/custom_fields.html", definitions=definitions, types=CUSTOM_FIELD_TYPES,
                           errors=errors or {}, form=form or EMPTY), status


@bp.get("")
@require(PERMISSION)
def index():
    return _render()


@bp.post("")
@require(PERMISSION)
def create():
    form = {
        "key": (request.form.get("key") or "").strip(),
        "label": (request.form.get("label") or "").strip(),
        "type": request.form.get("type") or "",
        "choices": request.form.get("choices") or "",
        "required": request.form.get("required") == "1",
    }
    payload = {**form, "choices": [line.strip() for line in form["choices"].splitlines() if line.strip()]}
    session = db_session()
    try:
        data = CustomFieldDefinitionCreateSchema().load(payload)
        row = services.create_custom_field(session, data)
    except ValidationError as exc:
        session.rollback()
        return _render(422, first_errors(exc.messages), form)
    session.commit()
    flash(gettext("The field %(label)s was added.", label=row.label), "success")
    return redirect(url_for("admin_fields.index"), code=303)


@bp.post("/<int:definition_id>/delete")
@require(PERMISSION)
def delete(definition_id: int):
    session = db_session()
    try:
        services.delete_custom_field(session, definition_id)
    except services.RecordNotFound:
        abort(404)
    session.commit()
    flash(gettext("The field was deleted. Values already stored in contacts are kept."), "success")
    return redirect(url_for("admin_fields.index"), code=303)
