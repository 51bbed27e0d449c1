"""Interactions: the list (``/interactions``) and one interaction's page
(``/interactions/<id>``: its details, edit form, files, delete)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import to_utc
from marshmallow import ValidationError

from host.core import lists, services
from host.core.models import Interaction
from host.core.schemas import InteractionCreateSchema, InteractionListArgsSchema, InteractionUpdateSchema
from host.db import session as db_session
from host.pagination import decode_cursor
from host.security.access import current_principal, require

from . import files, labels
from .common import user_choices, user_names
from .editing import submit_edit
from .forms import Form, schema_fields, values_from_record
from .validation import translate_messages, translate_text

bp = Blueprint("interactions", __name__)

PAGE_SIZE = 50
LIST_PARAMS = ("channel", "direction", "owner_id", "contact_id", "from", "to")
EDIT_FIELDS = ("channel", "direction", "subject", "body", "occurred_at", "outcome")


def interaction_fields(names=("channel", "direction", "subject", "body", "occurred_at")) -> list:
    return schema_fields(InteractionCreateSchema(), names, labels.interaction_fields(), choice_labels=labels.choices())


def _day(text: str, name: str, next_day: bool) -> str:
    try:
        day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if next_day else 0)
    except ValueError:
        raise ValidationError({name: [_("Not a valid date.")]}) from None
    return to_utc(dt.datetime.combine(day, dt.time())).replace(tzinfo=dt.timezone.utc).isoformat()


def _filters(params: dict[str, str]) -> dict[str, Any]:
    args: dict[str, Any] = {k: params[k] for k in ("channel", "direction", "owner_id", "contact_id") if k in params}
    if "from" in params:
        args["occurred_after"] = _day(params["from"], "from", False)
    if "to" in params:
        args["occurred_before"] = _day(params["to"], "to", True)
    if request.args.get("cursor"):
        args["cursor"] = request.args["cursor"]
    args["limit"] = PAGE_SIZE
    return InteractionListArgsSchema().load(args)


@bp.get("/interactions")
@require("core.interaction.read")
def index():
    session = db_session()
    principal = current_principal()
    params = {k: request.args.get(k, "").strip() for k in LIST_PARAMS if request.args.get(k, "").strip()}
    rows, next_cursor, errors = [], None, {}
    try:
        loaded = _filters(params)
        limit, cursor = loaded.pop("limit"), loaded.pop("cursor", None)
        rows, next_cursor = services.list_interactions(session, loaded, limit=limit, cursor=cursor)
    except ValidationError as exc:
        errors = translate_messages(exc.messages)
    body = render_template(
        "core/interactions/list.html", rows=rows, params=params, errors=errors,
        contacts=lists.contact_names(session, principal, (r.contact_id for r in rows)),
        owners=user_names(session, (r.owner_id for r in rows)), users=user_choices(session),
        channels=labels.channels(), directions=labels.directions(),
        next_url=url_for("interactions.index") + "?" + urlencode({**params, "cursor": next_cursor}) if next_cursor else None,
        paged=bool(request.args.get("cursor")),
    )
    return body, 422 if errors else 200


def _edit_form(record: Interaction) -> Form:
    form_fields = interaction_fields(EDIT_FIELDS)
    return Form(form_fields, {**values_from_record(form_fields, record), "version": str(record.version)})


def _render(record: Interaction, form: Form, status: int = 200, theirs=None):
    session = db_session()
    principal = current_principal()
    body = render_template(
        "core/interactions/show.html", record=record, form=form, theirs=theirs,
        contact_name=lists.contact_names(session, principal, [record.contact_id]).get(record.contact_id),
        owner=user_names(session, [record.owner_id]).get(record.owner_id),
        attachments=files.listed(session, "interaction", record.id),
        channels=labels.channels(), directions=labels.directions(),
    )
    return body, status


@bp.get("/interactions/<int:interaction_id>")
@require("core.interaction.read")
def show(interaction_id: int):
    record = services.get_interaction(db_session(), interaction_id)
    return _render(record, _edit_form(record))


@bp.post("/interactions/<int:interaction_id>")
@require("core.interaction.update")
def update(interaction_id: int):
    session = db_session()
    services.get_interaction(session, interaction_id)  # 404 before anything else
    outcome = submit_edit(
        interaction_fields(EDIT_FIELDS), InteractionUpdateSchema(),
        lambda s, data, version: services.update_interaction(s, interaction_id, data, expected=version),
        lambda s: services.get_interaction(s, interaction_id),
    )
    if outcome.record is not None:
        flash(_("Interaction saved."), "success")
        return redirect(url_for("interactions.show", interaction_id=interaction_id), code=303)
    if outcome.gone:
        flash(_("Someone deleted this interaction meanwhile."), "error")
        return redirect(url_for("interactions.index"), code=303)
    return _render(services.get_interaction(db_session(), interaction_id), outcome.form, outcome.status, outcome.theirs)


@bp.post("/interactions/<int:interaction_id>/attachments")
@require("core.interaction.update")
def attach(interaction_id: int):
    files.upload_from_form(services.get_interaction(db_session(), interaction_id))
    return redirect(url_for("interactions.show", interaction_id=interaction_id) + "#attachments", code=303)


@bp.post("/interactions/<int:interaction_id>/delete")
@require("core.interaction.delete")
def delete(interaction_id: int):
    session = db_session()
    services.delete_record(session, Interaction, interaction_id, expected=request.form.get("version") or None)
    session.commit()
    return redirect(url_for("interactions.in_recycle_bin", interaction_id=interaction_id), code=303)


@bp.get("/interactions/<int:interaction_id>/deleted")
@require("core.interaction.delete")
def in_recycle_bin(interaction_id: int):
    session = db_session()
    record = services._load(session, Interaction, interaction_id, current_principal(), deleted=True)
    return render_template(
        "core/contacts/deleted.html", title=record.subject,
        message=_("The interaction is in the recycle bin for 30 days."),
        restore_url=url_for("interactions.restore", interaction_id=record.id),
        back_url=url_for("contact_page.show", contact_id=record.contact_id), back_label=_("Back to the contact"),
    )


@bp.post("/interactions/<int:interaction_id>/restore")
@require("core.interaction.delete")
def restore(interaction_id: int):
    session = db_session()
    try:
        services.restore_record(session, Interaction, interaction_id)
    except ValidationError as exc:
        session.rollback()
        flash(" ".join(translate_text(m) for v in exc.messages.values() for m in v), "error")
        return redirect(url_for("interactions.in_recycle_bin", interaction_id=interaction_id), code=303)
    session.commit()
    flash(_("Interaction restored."), "success")
    return redirect(url_for("interactions.show", interaction_id=interaction_id), code=303)
