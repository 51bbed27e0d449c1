"""Tasks: "My tasks" (``/tasks``: overdue, today, upcoming, undated; done
with one click, snooze), others' tasks within the user's scope
(``?assignee=<id>`` or ``all``), a new task, and one task's page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import get_timezone
from flask_babel import gettext as _
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from host.core import lists, services
from host.core.models import Task
from host.core.schemas import TaskCreateSchema, TaskUpdateSchema
from host.db import session as db_session
from host.db import utcnow
from host.security.access import current_principal, require

from . import files, labels
from .common import back_to, int_or_none, user_choices, user_names
from .editing import submit_edit
from .forms import Form, errors_by_input, read_form, schema_fields, values_from_form, values_from_record
from .validation import translate_text

bp = Blueprint("tasks", __name__)

SNOOZES = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7)}
EDIT_FIELDS = ("title", "due_at", "assignee_id", "priority", "notes")


def task_fields(session: Session, names=("title", "due_at", "assignee_id", "priority")) -> list:
    return schema_fields(TaskCreateSchema(), names, labels.task_fields(), choice_labels=labels.choices(),
                         choices={"assignee_id": user_choices(session)}, widgets={"assignee_id": "select"},
                         required=("assignee_id",))


def end_of_today(now: dt.datetime) -> dt.datetime:
    """The next midnight in the user's time zone, as UTC."""
    zone = get_timezone()
    local = now.astimezone(zone)
    midnight = zone.localize(dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time()))
    return midnight.astimezone(dt.timezone.utc)


@bp.get("/tasks")
@require("core.task.read")
def index():
    """My tasks; ``assignee`` shows a colleague's (``all``: everyone's), as
    far as the user's scope reaches."""
    session = db_session()
    principal = current_principal()
    chosen = request.args.get("assignee", "")
    assignee_id = None if chosen == "all" else (int_or_none(chosen) or principal.user_id)
    now = utcnow()
    groups = lists.task_groups(session, principal, assignee_id=assignee_id, now=now, end_of_today=end_of_today(now))
    shown = [t for group in (groups.overdue, groups.today, groups.upcoming, groups.undated) for t in group]
    return render_template(
        "core/tasks/list.html", groups=groups, now=now, assignee_id=assignee_id, chosen=chosen,
        users=user_choices(session), mine=assignee_id == principal.user_id,
        contacts=lists.contact_names(session, principal, (t.contact_id for t in shown)),
        assignees=user_names(session, (t.owner_id for t in shown)),
        priorities=labels.priorities(),
    )


# --- new task ---------------------------------------------------------------------------------------


def _new_fields(session: Session) -> list:
    return task_fields(session, ("title", "due_at", "assignee_id", "priority", "notes", "contact_id"))


@bp.get("/tasks/new")
@require("core.task.create")
def new():
    session = db_session()
    form_fields = _new_fields(session)
    values = {"priority": "normal", "assignee_id": str(current_principal().user_id),
              "contact_id": request.args.get("contact_id", "")}
    return render_template("core/tasks/new.html", form=Form(form_fields, values))


@bp.post("/tasks/new")
@require("core.task.create")
def create():
    session = db_session()
    form_fields = _new_fields(session)
    try:
        task = services.create_task(session, TaskCreateSchema().load(read_form(form_fields, request.form)))
    except ValidationError as exc:
        session.rollback()
        errors, general = errors_by_input(exc.messages, form_fields)
        form = Form(form_fields, values_from_form(form_fields, request.form), errors, general)
        return render_template("core/tasks/new.html", form=form), 422
    session.commit()
    flash(_("Task planned."), "success")
    return redirect(url_for("tasks.show", task_id=task.id), code=303)


# --- one task ---------------------------------------------------------------------------------------------


def _values(form_fields: list, task: Task) -> dict[str, Any]:
    return {**values_from_record(form_fields, task), "assignee_id": str(task.owner_id or "")}


def _edit_form(session: Session, task: Task) -> Form:
    form_fields = task_fields(session, EDIT_FIELDS)
    return Form(form_fields, {**_values(form_fields, task), "version": str(task.version)})


def _render(task: Task, form: Form, status: int = 200, theirs: Any = None):
    session = db_session()
    principal = current_principal()
    body = render_template(
        "core/tasks/show.html", task=task, form=form, theirs=theirs,
        contact_name=lists.contact_names(session, principal, [task.contact_id]).get(task.contact_id),
        assignee=user_names(session, [task.owner_id]).get(task.owner_id),
        attachments=files.listed(session, "task", task.id), priorities=labels.priorities(),
    )
    return body, status


@bp.get("/tasks/<int:task_id>")
@require("core.task.read")
def show(task_id: int):
    session = db_session()
    task = services.get_task(session, task_id)
    return _render(task, _edit_form(session, task))


@bp.post("/tasks/<int:task_id>")
@require("core.task.update")
def update(task_id: int):
    session = db_session()
    services.get_task(session, task_id)
    form_fields = task_fields(session, EDIT_FIELDS)
    outcome = submit_edit(
        form_fields, TaskUpdateSchema(),
        lambda s, data, version: services.update_task(s, task_id, data, expected=version),
        lambda s: services.get_task(s, task_id),
        lambda fresh: _values(form_fields, fresh),
    )
    if outcome.record is not None:
        flash(_("Task saved."), "success")
        return redirect(url_for("tasks.show", task_id=task_id), code=303)
    if outcome.gone:
        flash(_("Someone deleted this task meanwhile."), "error")
        return redirect(url_for("tasks.index"), code=303)
    return _render(services.get_task(db_session(), task_id), outcome.form, outcome.status, outcome.theirs)


@bp.post("/tasks/<int:task_id>/done")
@require("core.task.update")
def mark_done(task_id: int):
    """One click: done (or, with ``done=0``, open again). Marking done
    overwrites nothing anyone else typed, so it needs no version."""
    session = db_session()
    done = request.form.get("done", "1") != "0"
    task = services.update_task(session, task_id, {"done": done})
    session.commit()
    flash(_("“%(title)s” is done.", title=task.title) if done else _("“%(title)s” is open again.", title=task.title), "success")
    return redirect(back_to(url_for("tasks.index")), code=303)


@bp.post("/tasks/<int:task_id>/snooze")
@require("core.task.update")
def snooze(task_id: int):
    """Out of sight (and reminders) for a day or a week; the due date
    stays what was agreed."""
    session = db_session()
    delta = SNOOZES.get(request.form.get("for", ""))
    if delta is None:
        flash(_("Choose how long to snooze."), "error")
        return redirect(back_to(url_for("tasks.index")), code=303)
    task = services.update_task(session, task_id, {"snoozed_until": utcnow() + delta})
    session.commit()
    flash(_("“%(title)s” is snoozed.", title=task.title), "success")
    return redirect(back_to(url_for("tasks.index")), code=303)


@bp.post("/tasks/<int:task_id>/attachments")
@require("core.task.update")
def attach(task_id: int):
    files.upload_from_form(services.get_task(db_session(), task_id))
    return redirect(url_for("tasks.show", task_id=task_id) + "#attachments", code=303)


@bp.post("/tasks/<int:task_id>/delete")
@require("core.task.delete")
def delete(task_id: int):
    session = db_session()
    services.delete_record(session, Task, task_id, expected=request.form.get("version") or None)
    session.commit()
    return redirect(url_for("tasks.in_recycle_bin", task_id=task_id), code=303)


@bp.get("/tasks/<int:task_id>/deleted")
@require("core.task.delete")
def in_recycle_bin(task_id: int):
    task = services._load(db_session(), Task, task_id, current_principal(), deleted=True)
    return render_template(
        "core/contacts/deleted.html", title=task.title, message=_("The task is in the recycle bin for 30 days."),
        restore_url=url_for("tasks.restore", task_id=task.id), back_url=url_for("tasks.index"),
        back_label=_("Back to my tasks"),
    )


@bp.post("/tasks/<int:task_id>/restore")
@require("core.task.delete")
def restore(task_id: int):
    session = db_session()
    try:
        services.restore_record(session, Task, task_id)
    except ValidationError as exc:
        session.rollback()
        flash(" ".join(translate_text(m) for v in exc.messages.values() for m in v), "error")
        return redirect(url_for("tasks.in_recycle_bin", task_id=task_id), code=303)
    session.commit()
    flash(_("Task restored."), "success")
    return redirect(url_for("tasks.show", task_id=task_id), code=303)
