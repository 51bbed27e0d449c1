"""HTML forms rendered from the marshmallow schemas the API uses.

A page describes its form as ``FormField``s taken from a schema
(``schema_fields``) plus the custom fields' definitions
(``custom_fields``); ``read_form`` turns the submitted text into the data the
same schema loads, and the page calls the same service as the API. So a form
and an API client get the same rules and the same messages, and
``errors_by_input`` puts each message next to its input. On an error the
page re-renders with ``request.form`` as the values: nothing typed is lost.

Text from a form is not JSON, so ``read_form`` does what a client would:
an empty input is "no value" (null where the field allows it, else left
out so a required field says so), a checkbox present is true, tags are
comma-separated, and a ``datetime-local`` is the user's wall-clock time,
sent as an aware UTC time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from flask_babel import to_user_timezone, to_utc
from marshmallow import Schema, fields, validate

from host.core.schemas import FieldDefinition

from .validation import translate_text

#: Prefix of the inputs of custom fields: ``cf:<key>``.
CUSTOM_PREFIX = "cf:"


@dataclass(frozen=True)
class FormField:
    """One input. ``widget`` is text, email, number, date, datetime,
    checkbox, select, textarea or tags; ``path`` is where its value goes in
    the loaded data (and where its errors come back)."""

    name: str
    label: str
    widget: str = "text"
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    max_length: int | None = None
    allow_none: bool = True
    hint: str = ""
    path: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(":", "-")

    @property
    def target(self) -> tuple[str, ...]:
        return self.path or (self.name,)


@dataclass
class Form:
    """What a template needs: the fields, the values to show, the errors
    per input and those that belong to no input."""

    fields: list[FormField]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def field(self, name: str) -> FormField:
        return next(f for f in self.fields if f.name == name)


# --- describing a form ----------------------------------------------------------------------


def _max_length(schema_field: fields.Field) -> int | None:
    for validator in schema_field.validators:
        if isinstance(validator, validate.Length) and validator.max is not None:
            return validator.max
    return None


def _one_of(schema_field: fields.Field) -> tuple[str, ...]:
    for validator in schema_field.validators:
        if isinstance(validator, validate.OneOf):
            return tuple(str(choice) for choice in validator.choices)
    return ()


def _widget(schema_field: fields.Field) -> str:
    if _one_of(schema_field):
        return "select"
    if isinstance(schema_field, fields.Email):
        return "email"
    if isinstance(schema_field, fields.Boolean):
        return "checkbox"
    if isinstance(schema_field, (fields.Integer, fields.Float, fields.Decimal)):
        return "number"
    if isinstance(schema_field, (fields.AwareDateTime, fields.DateTime)):
        return "datetime"
    if isinstance(schema_field, fields.Date):
        return "date"
    if isinstance(schema_field, fields.List):
        return "tags"
    if isinstance(schema_field, fields.String) and not schema_field.validators:
        return "textarea"  # unbounded text: notes, bodies
    return "text"


def schema_fields(schema: Schema, names: Sequence[str], labels: Mapping[str, str], *,
                  choice_labels: Mapping[str, str] | None = None, widgets: Mapping[str, str] | None = None,
                  choices: Mapping[str, Sequence[tuple[str, str]]] | None = None,
                  required: Iterable[str] = (), hints: Mapping[str, str] | None = None) -> list[FormField]:
    """Inputs for the schema's fields ``names``: the widget, whether it is
    required, its choices and maximum length come from the schema; the page
    gives the (translated) labels, and may give choices that are not in the
    schema (users, companies) or mark a field required for the page."""
    made = []
    extra_required = set(required)
    for name in names:
        schema_field = schema.fields[name]
        widget = (widgets or {}).get(name) or _widget(schema_field)
        options = tuple((choices or {}).get(name) or ())
        if not options and _one_of(schema_field):
            options = tuple((value, (choice_labels or {}).get(value, value)) for value in _one_of(schema_field))
        made.append(FormField(
            name=name, label=labels.get(name, name), widget=widget,
            required=schema_field.required or name in extra_required, choices=options,
            max_length=_max_length(schema_field), allow_none=schema_field.allow_none,
            hint=(hints or {}).get(name, ""),
        ))
    return made


_CUSTOM_WIDGETS = {"text": "text", "number": "number", "date": "date", "bool": "checkbox", "choice": "select"}


def custom_fields(definitions: Mapping[str, FieldDefinition]) -> list[FormField]:
    """Inputs for custom fields, by their definitions (type, label, choices,
    required); their values go to ``custom_fields`` -> key."""
    return [
        FormField(
            name=CUSTOM_PREFIX + key, label=definition.label, widget=_CUSTOM_WIDGETS.get(definition.type, "text"),
            required=definition.required, choices=tuple((c, c) for c in definition.choices),
            allow_none=not definition.required, path=("custom_fields", key),
        )
        for key, definition in definitions.items()
    ]


# --- reading what was sent ----------------------------------------------------------------------


def local_to_utc(text: str) -> str:
    """A ``datetime-local`` value (the user's wall-clock time) as an aware
    UTC ISO string; anything else is passed on for the schema to refuse."""
    try:
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if naive.tzinfo is not None:
        return naive.isoformat()
    return to_utc(naive).replace(tzinfo=dt.timezone.utc).isoformat()


def utc_to_local(value: dt.datetime | None) -> str:
    """An aware datetime as a ``datetime-local`` value in the user's zone."""
    if value is None:
        return ""
    return to_user_timezone(value).strftime("%Y-%m-%dT%H:%M")


def _read_one(form_field: FormField, formdata: Mapping[str, Any]) -> tuple[bool, Any]:
    """(present, value) of one input as the schema should see it."""
    if form_field.widget == "checkbox":
        return True, form_field.name in formdata
    raw = formdata.get(form_field.name)
    if raw is None:
        return False, None
    text = raw.strip() if isinstance(raw, str) else raw
    if form_field.widget == "tags":
        return True, [part.strip() for part in text.split(",") if part.strip()]
    if text == "":
        return (True, None) if form_field.allow_none and not form_field.required else (False, None)
    if form_field.widget == "datetime":
        return True, local_to_utc(text)
    return True, text


def read_form(form_fields: Iterable[FormField], formdata: Mapping[str, Any]) -> dict[str, Any]:
    """The data for ``schema.load`` from a submitted form: only the fields
    the page shows (a field added to the request by hand is not read)."""
    data: dict[str, Any] = {}
    for form_field in form_fields:
        present, value = _read_one(form_field, formdata)
        if not present:
            continue
        target = data
        *parents, last = form_field.target
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return data


def errors_by_input(messages: Mapping[str, Any], form_fields: Iterable[FormField]) -> tuple[dict[str, list[str]], list[str]]:
    """A ``ValidationError``'s messages by input name, and those no input
    on the page shows (e.g. a service's rule about two fields), in the
    user's language (the API keeps them in English)."""
    by_input: dict[str, list[str]] = {}
    placed: set[tuple[str, ...]] = set()
    for form_field in form_fields:
        found: Any = messages
        for part in form_field.target:
            found = found.get(part) if isinstance(found, Mapping) else None
        if found:
            by_input[form_field.name] = _flat(found)
            placed.add(form_field.target)
    general = []
    for key, value in messages.items():
        if (key,) in placed or (key == "custom_fields" and isinstance(value, Mapping)
                                and all(("custom_fields", k) in placed for k in value)):
            continue
        general += [f"{key}: {message}" for message in _flat(value)]
    return by_input, general


def _flat(messages: Any) -> list[str]:
    if isinstance(messages, Mapping):
        return [f"{k}: {m}" for k, v in messages.items() for m in _flat(v)]
    if isinstance(messages, (list, tuple)):
        return [m for item in messages for m in _flat(item)]
    return [translate_text(str(messages))]


# --- showing values ------------------------------------------------------------------------------------


def display_value(form_field: FormField, value: Any) -> Any:
    """A stored value as its input shows it."""
    if form_field.widget == "checkbox":
        return bool(value)
    if value is None:
        return ""
    if form_field.widget == "datetime" and isinstance(value, dt.datetime):
        return utc_to_local(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if form_field.widget == "tags":
        return ", ".join(getattr(item, "name", str(item)) for item in value)
    return str(value)


def values_from_record(form_fields: Iterable[FormField], record: Any) -> dict[str, Any]:
    values = {}
    for form_field in form_fields:
        if form_field.path and form_field.path[0] == "custom_fields":
            value = (getattr(record, "custom_fields", None) or {}).get(form_field.path[1])
        else:
            value = getattr(record, form_field.name, None)
        values[form_field.name] = display_value(form_field, value)
    return values


def values_from_form(form_fields: Iterable[FormField], formdata: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs as the user sent them, to show again after an error."""
    values = {}
    for form_field in form_fields:
        if form_field.widget == "checkbox":
            values[form_field.name] = form_field.name in formdata
        else:
            values[form_field.name] = formdata.get(form_field.name, "")
    return values
