"""The edit-form flow every record page shares: load the input with the
API's update schema, call the service with the version the form was
rendered with, commit; re-render on a validation error (422) or when
someone else saved first (409: the user's input stays, each field that
now differs shows the value saved meanwhile, and the form carries the new
version, so saving again is a deliberate overwrite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from flask import request
from marshmallow import Schema, ValidationError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from host.db import session as db_session
from host.security.concurrency import StaleVersion, commit_or_conflict

from .forms import Form, FormField, errors_by_input, read_form, values_from_form, values_from_record


@dataclass
class Outcome:
    """``record`` when saved; else the form to show again with ``status``
    and, after a conflict, ``theirs`` (input name -> value saved meanwhile)."""

    record: Any = None
    form: Form | None = None
    status: int = 200
    theirs: dict[str, str] | None = None
    gone: bool = False


def _shown(form_field: FormField, value: Any) -> str:
    for option, text in form_field.choices:
        if str(option) == str(value):
            return text
    if form_field.widget == "checkbox":
        return "✓" if value else "–"
    return "" if value is None else str(value)


def submit_edit(form_fields: Sequence[FormField], schema: Schema, update: Callable[[Session, dict[str, Any], Any], Any],
                reload: Callable[[Session], Any], values_of: Callable[[Any], dict[str, Any]] | None = None) -> Outcome:
    """Run one submitted edit form. ``update(session, data, version)`` is
    the service call; ``reload(session)`` fetches the record as it is now;
    ``values_of(record)`` gives its inputs' values (default: by field name)."""
    session = db_session()
    submitted = values_from_form(form_fields, request.form)
    try:
        data = schema.load(read_form(form_fields, request.form))
        record = update(session, data, request.form.get("version", ""))
        commit_or_conflict(session, record)
    except ValidationError as exc:
        session.rollback()
        errors, general = errors_by_input(exc.messages, form_fields)
        return Outcome(form=Form(list(form_fields), submitted, errors, general), status=422)
    except StaleVersion:
        session.rollback()
        try:
            fresh = reload(session)
        except NotFound:
            return Outcome(form=Form(list(form_fields), submitted), status=409, gone=True)
        current = values_of(fresh) if values_of else values_from_record(form_fields, fresh)
        theirs = {f.name: _shown(f, current[f.name]) for f in form_fields if current[f.name] != submitted.get(f.name)}
        form = Form(list(form_fields), {**submitted, "version": str(fresh.version)})
        return Outcome(form=form, status=409, theirs=theirs)
    return Outcome(record=record)
