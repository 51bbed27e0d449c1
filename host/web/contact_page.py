"""The 360-degree contact page (``/contacts/<id>``) and what is done from it
without leaving it: log an interaction, plan a follow-up, attach a file,
delete the contact (and restore it from the page that follows).

Plugins contribute panels (``mosaic_contact_panels``, through ``host.ui`` so
a failing plugin shows a placeholder) and timeline entries (merged by
``host.core.timeline``). The timeline pages with a plain "load more" link
carrying the cursor, so it works without script.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from host import ui
from host.core import lists, services, timeline
from host.core.schemas import InteractionCreateSchema, TaskCreateSchema
from host.db import session as db_session
from host.db import utcnow
from host.pagination import decode_cursor
from host.security.access import current_principal, require
from host.security.concurrency import StaleVersion

from . import files, labels
from .common import hook_user, user_names
from .forms import Form, errors_by_input, read_form, utc_to_local
from .interactions import interaction_fields
from .tasks import task_fields

bp = Blueprint("contact_page", __name__)

TIMELINE_PAGE = 20
OPEN_TASKS = 20

#: Fields shown in the details list, in this order (custom fields follow).
DETAIL_FIELDS = ("first_name", "last_name", "email", "phone", "street", "postal_code", "city", "region", "country",
                 "website", "tax_number", "source", "birthday", "language", "consent_source", "external_id")


def _timeline_cursor() -> timeline.Cursor | None:
    raw = request.args.get("timeline")
    if not raw:
        return None
    try:
        return timeline.Cursor.from_values(decode_cursor(raw))
    except ValidationError:
        return None  # an old or edited link: start from the newest


def _details(session: Any, contact: Any) -> list[tuple[str, Any]]:
    names = labels.contact_fields()
    shown = [(names[f], getattr(contact, f)) for f in DETAIL_FIELDS if getattr(contact, f) not in (None, "")]
    extra_emails = [row.email for row in contact.emails if row.email != contact.email]
    extra_phones = [row.phone for row in contact.phones if row.number_digits != contact.phone_digits]
    if extra_emails:
        shown.append((_("Other e-mails"), ", ".join(extra_emails)))
    if extra_phones:
        shown.append((_("Other phones"), ", ".join(extra_phones)))
    definitions = services.custom_field_definitions(session)
    for key, value in (contact.custom_fields or {}).items():
        label = definitions[key].label if key in definitions else key
        if isinstance(value, bool):
            value = _("Yes") if value else _("No")
        shown.append((label, value))
    return shown


def _duplicates(session: Any, principal: Any, contact: Any) -> dict[int, str]:
    """Contacts that look like this one, for those who may merge them."""
    if not principal.can("core.contact.merge"):
        return {}
    data = {"kind": contact.kind, "name": contact.name, "company_id": contact.company_id,
            "emails": [row.email for row in contact.emails], "phones": [row.phone for row in contact.phones]}
    ids = services.find_duplicates(session, principal, data, exclude_id=contact.id)
    return lists.contact_names(session, principal, ids[:10])


def default_interaction_values() -> dict[str, Any]:
    return {"channel": "phone", "direction": "out", "occurred_at": utc_to_local(utcnow())}


def default_task_values(user_id: int | None) -> dict[str, Any]:
    return {"priority": "normal", "assignee_id": str(user_id or "")}


def render_page(contact: Any, *, status: int = 200, interaction_form: Form | None = None,
                task_form: Form | None = None):
    session = db_session()
    principal = current_principal()
    user = hook_user(session)
    company = None
    if contact.company_id is not None:
        company_name = lists.contact_names(session, principal, [contact.company_id]).get(contact.company_id)
        company = (contact.company_id, company_name) if company_name else None
    people = lists.people_of(session, principal, contact.id) if contact.kind == "company" else []
    tasks = []
    if principal.can("core.task.read"):
        tasks, _next = services.list_tasks(session, {"contact_id": contact.id, "done": False}, limit=OPEN_TASKS)
        tasks.sort(key=lambda t: (t.due_at is None, t.due_at or dt.datetime.max.replace(tzinfo=dt.timezone.utc)))
    page = timeline.contact_timeline(session, contact, principal, user=user, cursor=_timeline_cursor(), limit=TIMELINE_PAGE)
    body = render_template(
        "core/contacts/page.html",
        contact=contact, company=company, people=people, tasks=tasks,
        details=_details(session, contact),
        panels=ui.sorted_contributions("mosaic_contact_panels", contact=contact, user=user),
        timeline=page,
        more_url=url_for("contact_page.show", contact_id=contact.id, timeline=page.next) + "#timeline" if page.next else None,
        attachments=files.listed(session, "contact", contact.id),
        owner=user_names(session, [contact.owner_id]).get(contact.owner_id),
        assignees=user_names(session, (t.owner_id for t in tasks)),
        duplicates=_duplicates(session, principal, contact),
        stages=labels.stages(), kinds=labels.kinds(), priorities=labels.priorities(),
        entry_kinds={**{f"interaction.{k}": v for k, v in labels.channels().items()},
                     "task": _("Task"), "task.done": _("Task done")},
        interaction_form=interaction_form or Form(interaction_fields(), default_interaction_values()),
        task_form=task_form or Form(task_fields(session), default_task_values(principal.user_id)),
    )
    return body, status


@bp.get("/contacts/<int:contact_id>")
@require("core.contact.read")
def show(contact_id: int):
    return render_page(services.get_contact(db_session(), contact_id))


# --- quick forms ------------------------------------------------------------------------------------


def _to_page(contact_id: int, anchor: str = "") -> Any:
    return redirect(url_for("contact_page.show", contact_id=contact_id) + anchor, code=303)


@bp.post("/contacts/<int:contact_id>/interactions")
@require("core.interaction.create")
def log_interaction(contact_id: int):
    """The page's "log an interaction" form: the API's schema and service."""
    session = db_session()
    contact = services.get_contact(session, contact_id)
    form_fields = interaction_fields()
    try:
        data = InteractionCreateSchema().load({**read_form(form_fields, request.form), "contact_id": contact.id})
        services.create_interaction(session, data)
    except ValidationError as exc:
        session.rollback()
        errors, general = errors_by_input(exc.messages, form_fields)
        form = Form(form_fields, {f.name: request.form.get(f.name, "") for f in form_fields}, errors, general)
        return render_page(services.get_contact(session, contact_id), status=422, interaction_form=form)
    session.commit()
    flash(_("Interaction logged."), "success")
    return _to_page(contact_id, "#timeline")


@bp.post("/contacts/<int:contact_id>/tasks")
@require("core.task.create")
def plan_task(contact_id: int):
    """The page's "plan a follow-up" form."""
    session = db_session()
    contact = services.get_contact(session, contact_id)
    form_fields = task_fields(session)
    try:
        data = TaskCreateSchema().load({**read_form(form_fields, request.form), "contact_id": contact.id})
        services.create_task(session, data)
    except ValidationError as exc:
        session.rollback()
        errors, general = errors_by_input(exc.messages, form_fields)
        form = Form(form_fields, {f.name: request.form.get(f.name, "") for f in form_fields}, errors, general)
        return render_page(services.get_contact(session, contact_id), status=422, task_form=form)
    session.commit()
    flash(_("Follow-up planned."), "success")
    return _to_page(contact_id, "#tasks")


@bp.post("/contacts/<int:contact_id>/attachments")
@require("core.contact.update")
def attach(contact_id: int):
    contact = services.get_contact(db_session(), contact_id)
    files.upload_from_form(contact)
    return _to_page(contact_id, "#attachments")


# --- delete and restore --------------------------------------------------------------------------


@bp.post("/contacts/<int:contact_id>/delete")
@require("core.contact.delete")
def delete(contact_id: int):
    session = db_session()
    try:
        services.delete_contact(session, contact_id, expected=request.form.get("version") or None)
    except StaleVersion:
        session.rollback()
        flash(_("Someone changed this contact meanwhile: look at it again before deleting it."), "error")
        return _to_page(contact_id)
    session.commit()
    return redirect(url_for("contact_page.in_recycle_bin", contact_id=contact_id), code=303)


@bp.get("/contacts/<int:contact_id>/deleted")
@require("core.contact.delete")
def in_recycle_bin(contact_id: int):
    """Right after a delete: what went to the bin, and the way back."""
    contact = services.get_contact(db_session(), contact_id, deleted=True)
    return render_template(
        "core/contacts/deleted.html", title=contact.name,
        message=_("The contact, with its interactions, tasks and files, is in the recycle bin for 30 days."),
        restore_url=url_for("contact_page.restore", contact_id=contact.id), back_url=url_for("contacts.index"),
        back_label=_("Back to contacts"),
    )


@bp.post("/contacts/<int:contact_id>/restore")
@require("core.contact.delete")
def restore(contact_id: int):
    session = db_session()
    try:
        services.restore_contact(session, contact_id)
    except services.MergedAway as exc:
        session.rollback()
        flash(_("This contact was merged into another one; here it is."), "error")
        return _to_page(exc.survivor_id)
    session.commit()
    flash(_("Contact restored."), "success")
    return _to_page(contact_id)
