"""Marshmallow schemas of the core record: the one validation path for the
REST API, the staff UI's forms and imports.

Three kinds per record type, named so the OpenAPI document has no collisions
(``MosaicApi`` drops the ``Schema`` suffix of host schemas):

- ``ContactSchema``: what the API answers (dump). Server-set fields
  (``id``, owner, ``version``, timestamps) come from ``OwnedSchema``.
- ``ContactCreateSchema``: what a client may send on create. It derives from
  ``BaseSchema``, not ``OwnedSchema``: ``owner_id``, ``id`` or ``version``
  in a create body are unknown fields (422 naming them), never assigned.
- ``ContactUpdateSchema``: the same fields, all optional, plus ``version``.

Custom fields are validated by a schema built from the field definitions
(``custom_fields_schema``); ``host.core.services`` runs it for every create
and update, so an API client, a form and an import get the same messages,
nested under ``custom_fields`` (``{"custom_fields": {"size": [...]}}``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from marshmallow import Schema, fields, missing, utils, validate
from marshmallow.decorators import POST_DUMP, PRE_DUMP

from host.pagination import PageArgsSchema
from host.schemas import BaseSchema, OwnedSchema, UpdateSchemaMixin

from .models import CHANNELS, CONTACT_KINDS, DIRECTIONS, LIFECYCLE_STAGES, PRIORITIES

CUSTOM_FIELD_TYPES = ("text", "number", "date", "bool", "choice")
#: Models that carry ``custom_fields`` (only the contact has the column).
CUSTOM_FIELD_MODELS = ("contact",)
CUSTOM_TEXT_MAX = 2000
MERGE_CHOICES = ("survivor", "merged")
#: A date-time sent without an offset is taken as UTC.
UTC = dt.timezone.utc


def _text(max_length: int, **kwargs: Any) -> fields.String:
    """An optional text column: None clears it; longer than the column is a
    422 rather than a database error (PostgreSQL refuses, SQLite would not)."""
    return fields.String(allow_none=True, validate=validate.Length(max=max_length), **kwargs)


# --- dumping lists fast -------------------------------------------------------------


class FastDumpSchema(Schema):
    """A schema whose ``dump`` gives what marshmallow's would, with less work per field.

    A page of 50 contacts is about 2,200 field serialisations; marshmallow
    spends eight calls on each (accessor, ``get_value``, text coercion...),
    about 4 ms of a request's CPU. Here each field becomes one converter,
    built once per schema instance: plain values of the expected type pass
    through as marshmallow would return them, anything else (another
    type, a field class this does not know, hooks, a custom accessor) goes
    through marshmallow's own code, so the result is the same dict.
    ``tests/test_api_pg_cost.py`` compares both on every kind of value."""

    _fast_plan: list[tuple[str, str, Any, Callable[..., Any]]] | None

    def dump(self, obj: Any, *, many: bool | None = None):
        plan = self.__dict__.get("_fast_plan", False)
        if plan is False:
            plan = self._fast_plan = _fast_plan(self)
        if plan is None:
            return super().dump(obj, many=many)
        many = self.many if many is None else bool(many)
        if many and obj is not None:
            return [_dump_one(plan, self.dict_class, item) for item in obj]
        return _dump_one(plan, self.dict_class, obj)


def _dump_one(plan, dict_class, obj: Any) -> dict[str, Any]:
    out = dict_class()
    # marshmallow's accessor: the key of a mapping, else (or when absent) the attribute
    kind = 0 if not hasattr(obj, "__getitem__") else 1 if type(obj) is dict else 2
    for key, attribute, field, convert in plan:
        if kind == 0:
            value = getattr(obj, attribute, missing)
        elif kind == 1:
            value = obj[attribute] if attribute in obj else getattr(obj, attribute, missing)
        else:
            value = utils.get_value(obj, attribute, missing)
        if value is missing:
            default = field.dump_default
            value = default() if callable(default) else default
            if value is missing:
                continue
        out[key] = convert(value, attribute, obj)
    return out


def _fast_plan(schema: Schema) -> list[tuple[str, str, Any, Callable[..., Any]]] | None:
    """(output key, attribute, field, converter) per dump field, or None
    when the schema does something this path does not copy."""
    if (schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP]
            or type(schema).get_attribute is not Schema.get_attribute):
        return None
    plan = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute if field.attribute is not None else name
        if ("." in attribute or not field._CHECK_ATTRIBUTE or type(field).serialize is not fields.Field.serialize
                or type(field).get_value is not fields.Field.get_value):
            return None
        plan.append((field.data_key if field.data_key is not None else name, attribute, field, _converter(field)))
    return plan


def _converter(field: fields.Field) -> Callable[[Any, str, Any], Any]:
    """``field._serialize`` for one value, shortened for the common types."""
    kind = type(field)
    slow = field._serialize
    if kind._serialize is fields.Field._serialize:  # Boolean, Raw: the value as it is
        return lambda value, attr, obj: value
    if kind._serialize is fields.String._serialize:
        return lambda value, attr, obj: value if type(value) is str else slow(value, attr, obj)
    if kind._serialize is fields.Number._serialize and field.num_type is int and not field.as_string:
        return lambda value, attr, obj: value if type(value) is int else slow(value, attr, obj)
    if kind._serialize is fields._TemporalField._serialize:
        iso = field.SERIALIZATION_FUNCS.get(field.format or field.DEFAULT_FORMAT)
        wanted = getattr(dt, field.OBJ_TYPE)
        if iso in (dt.datetime.isoformat, dt.date.isoformat):
            return lambda value, attr, obj: iso(value) if type(value) is wanted else slow(value, attr, obj)
    if kind._serialize is fields.Mapping._serialize and not field.key_field and not field.value_field:
        mapping = field.mapping_type
        return lambda value, attr, obj: None if value is None else mapping(value)
    if kind._serialize is fields.List._serialize:
        inner = _converter(field.inner)
        return lambda value, attr, obj: None if value is None else [inner(each, attr, obj) for each in value]
    if kind._serialize in (fields.Nested._serialize, fields.Pluck._serialize) and isinstance(field.schema, FastDumpSchema):
        nested = field.schema
        many = nested.many or field.many
        if kind._serialize is fields.Nested._serialize:
            return lambda value, attr, obj: None if value is None else nested.dump(value, many=many)
        key = field._field_data_key
        if field.many:
            return lambda value, attr, obj: None if value is None else [row[key] for row in nested.dump(value, many=many)]
        return lambda value, attr, obj: None if value is None else nested.dump(value, many=many)[key]
    return slow


# --- custom fields -------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDefinition:
    """A custom field as validation sees it, whoever defined it: ``source``
    is the plugin's name (``mosaic_custom_fields``) or ``"admin"`` (a
    ``CustomFieldDefinitionRow``, which then also has an ``id``)."""

    model: str
    key: str
    label: str
    type: str
    choices: tuple[str, ...] = ()
    required: bool = False
    source: str = "admin"
    id: int | None = None


class _Number(fields.Field):
    """A JSON number, or its text from a form ("12", "12.5"). Integers stay
    integers; booleans, NaN and infinity are refused."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = _parse_number(value.strip())
        if not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            raise self.make_error("invalid")
        return value


def _parse_number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


class _IsoDate(fields.Date):
    """A date kept as ``YYYY-MM-DD`` text: the values live in a JSON column."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).isoformat()


def _custom_field(definition: FieldDefinition) -> fields.Field:
    options: dict[str, Any] = {"required": definition.required, "allow_none": not definition.required,
                               "metadata": {"description": definition.label}}
    if definition.type == "number":
        return _Number(**options)
    if definition.type == "date":
        return _IsoDate(**options)
    if definition.type == "bool":
        return fields.Boolean(**options)
    if definition.type == "choice":
        return fields.String(validate=validate.OneOf(definition.choices), **options)
    return fields.String(validate=validate.Length(max=CUSTOM_TEXT_MAX), **options)


def custom_fields_schema(definitions: Mapping[str, FieldDefinition]) -> Schema:
    """A schema with one field per definition (type, choices, required);
    unknown keys are refused (``BaseSchema``). Built per call: definitions
    change when an admin adds one or a plugin is enabled."""
    built = {key: _custom_field(definition) for key, definition in definitions.items()}
    return BaseSchema.from_dict(built, name="CustomFieldValues")()


class CustomFieldDefinitionSchema(Schema):
    id = fields.Integer(allow_none=True, metadata={"description": "Set for admin-defined fields (deletable)."})
    model = fields.String()
    key = fields.String()
    label = fields.String()
    type = fields.String()
    choices = fields.List(fields.String())
    required = fields.Boolean()
    source = fields.String(metadata={"description": '"admin", or the plugin that declares the field.'})


class CustomFieldDefinitionCreateSchema(BaseSchema):
    model = fields.String(load_default="contact", validate=validate.OneOf(CUSTOM_FIELD_MODELS))
    key = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z][a-z0-9_]{0,99}$", error="Use lower-case letters, digits and _, starting with a letter (at most 100)."))
    label = fields.String(required=True, validate=validate.Length(min=1, max=200))
    type = fields.String(required=True, validate=validate.OneOf(CUSTOM_FIELD_TYPES))
    choices = fields.List(fields.String(validate=validate.Length(min=1, max=200)), load_default=list)
    required = fields.Boolean(load_default=False)


class CustomFieldDefinitionListSchema(Schema):
    items = fields.List(fields.Nested(CustomFieldDefinitionSchema))


# --- contacts ------------------------------------------------------------------------


class ContactEmailSchema(FastDumpSchema, BaseSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    label = _text(50)


class ContactPhoneSchema(FastDumpSchema, BaseSchema):
    phone = fields.String(required=True, validate=validate.Length(min=1, max=50))
    label = _text(50)
    number_digits = fields.String(dump_only=True, metadata={
        "description": "The number as matched for duplicates: digits, with a leading + when it has a country code."})


class ContactTagSchema(FastDumpSchema):
    name = fields.String()


class ContactCreateSchema(BaseSchema):
    """A new contact. People: ``name`` defaults to "first last". ``email``
    and ``phone`` are the primary ones; ``emails``/``phones`` list every one
    (the primary is added when missing). ``tags`` are names, created on demand."""

    kind = fields.String(validate=validate.OneOf(CONTACT_KINDS))
    name = fields.String(validate=validate.Length(min=1, max=300))
    first_name = _text(150)
    last_name = _text(150)
    company_id = fields.Integer(allow_none=True, metadata={"description": "A company contact (people only)."})
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    emails = fields.List(fields.Nested(ContactEmailSchema))
    phone = _text(50)
    phones = fields.List(fields.Nested(ContactPhoneSchema))
    street = _text(300)
    city = _text(150)
    postal_code = _text(30)
    region = _text(150)
    country = fields.String(allow_none=True, validate=validate.Regexp(r"^[A-Za-z]{2}$", error="Use a two-letter country code."))
    website = _text(300)
    tax_number = _text(50)
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    source = _text(100)
    birthday = fields.Date(allow_none=True)
    language = _text(10)
    marketing_consent = fields.Boolean()
    consent_source = _text(100)
    notes = fields.String(allow_none=True)
    custom_fields = fields.Dict(keys=fields.String(), metadata={
        "description": "Values of the defined custom fields (GET /api/v1/admin/custom-fields); on update, "
                       "the keys sent replace those stored and null removes one."})
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=100)))
    external_id = _text(200)


class ContactUpdateSchema(UpdateSchemaMixin, ContactCreateSchema):
    """Only the fields sent change; ``emails``, ``phones`` and ``tags``, when
    sent, replace the lists."""


class ContactSchema(FastDumpSchema, OwnedSchema):
    kind = fields.String()
    name = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    company_id = fields.Integer(allow_none=True)
    email = fields.String(allow_none=True)
    emails = fields.List(fields.Nested(ContactEmailSchema))
    phone = fields.String(allow_none=True)
    phone_digits = fields.String(allow_none=True)
    phones = fields.List(fields.Nested(ContactPhoneSchema))
    street = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    postal_code = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    tax_number = fields.String(allow_none=True)
    lifecycle_stage = fields.String()
    source = fields.String(allow_none=True)
    birthday = fields.Date(allow_none=True)
    language = fields.String(allow_none=True)
    marketing_consent = fields.Boolean()
    consent_at = fields.AwareDateTime(allow_none=True)
    consent_source = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    custom_fields = fields.Dict()
    tags = fields.Pluck(ContactTagSchema, "name", many=True)
    external_id = fields.String(allow_none=True)
    last_activity_at = fields.AwareDateTime(allow_none=True)


class ContactCreatedSchema(ContactSchema):
    possible_duplicates = fields.List(fields.Integer(), metadata={
        "description": "Contacts you may see that look like this one (same e-mail, phone, or a very similar "
                       "name in the same company)."})


class ContactCreateArgsSchema(Schema):
    on_duplicate = fields.String(load_default="report", validate=validate.OneOf(("report", "reject")), metadata={
        "description": "reject: answer 409 with the possible duplicates instead of creating."})


class ContactListArgsSchema(PageArgsSchema):
    q = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "Search by name, e-mail, phone."})
    kind = fields.String(validate=validate.OneOf(CONTACT_KINDS))
    owner_id = fields.Integer()
    team_id = fields.Integer()
    company_id = fields.Integer()
    lifecycle_stage = fields.String(validate=validate.OneOf(LIFECYCLE_STAGES))
    tag = fields.String(validate=validate.Length(min=1, max=100))
    created_after = fields.AwareDateTime(default_timezone=UTC)
    created_before = fields.AwareDateTime(default_timezone=UTC)
    last_activity_after = fields.AwareDateTime(default_timezone=UTC)
    last_activity_before = fields.AwareDateTime(default_timezone=UTC)


class ContactPageSchema(FastDumpSchema):
    items = fields.List(fields.Nested(ContactSchema))
    next = fields.String(allow_none=True, metadata={"description": "The cursor of the next page, or null."})


class ContactMergeSchema(BaseSchema):
    merge_id = fields.Integer(required=True, metadata={"description": "The contact merged into this one (it goes to the recycle bin)."})
    # "fields" in the body; not the attribute name, which Schema itself uses.
    field_choices = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(MERGE_CHOICES)),
        load_default=dict,
        metadata={"description": 'Per field, whose value the survivor keeps: "survivor" or "merged". '
                                 "Unlisted fields keep the survivor's value, filled from the merged one when empty."},
    )


class LifecycleChangeSchema(Schema):
    id = fields.Integer()
    from_stage = fields.String(allow_none=True)
    to_stage = fields.String()
    changed_at = fields.AwareDateTime()
    changed_by = fields.Integer(allow_none=True)


class LifecycleHistorySchema(Schema):
    items = fields.List(fields.Nested(LifecycleChangeSchema))


# --- interactions -------------------------------------------------------------------


class _InteractionFields(BaseSchema):
    contact_id = fields.Integer()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    direction = fields.String(validate=validate.OneOf(DIRECTIONS))
    subject = fields.String(validate=validate.Length(min=1, max=300))
    body = fields.String(allow_none=True)
    occurred_at = fields.AwareDateTime(default_timezone=UTC)
    outcome = _text(200)
    external_id = _text(200)


class InteractionCreateSchema(_InteractionFields):
    contact_id = fields.Integer(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300))


class InteractionUpdateSchema(UpdateSchemaMixin, _InteractionFields):
    pass


class InteractionSchema(OwnedSchema):
    contact_id = fields.Integer()
    channel = fields.String()
    direction = fields.String()
    subject = fields.String()
    body = fields.String(allow_none=True)
    occurred_at = fields.AwareDateTime()
    outcome = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)


class InteractionListArgsSchema(PageArgsSchema):
    contact_id = fields.Integer()
    owner_id = fields.Integer()
    team_id = fields.Integer()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    direction = fields.String(validate=validate.OneOf(DIRECTIONS))
    occurred_after = fields.AwareDateTime(default_timezone=UTC)
    occurred_before = fields.AwareDateTime(default_timezone=UTC)


class InteractionPageSchema(Schema):
    items = fields.List(fields.Nested(InteractionSchema))
    next = fields.String(allow_none=True)


# --- tasks --------------------------------------------------------------------------------


class _TaskFields(BaseSchema):
    contact_id = fields.Integer(allow_none=True)
    title = fields.String(validate=validate.Length(min=1, max=300))
    notes = fields.String(allow_none=True)
    due_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    done = fields.Boolean()
    snoozed_until = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    assignee_id = fields.Integer(metadata={"description": "The user who must do it (default: you)."})
    external_id = _text(200)


class TaskCreateSchema(_TaskFields):
    title = fields.String(required=True, validate=validate.Length(min=1, max=300))


class TaskUpdateSchema(UpdateSchemaMixin, _TaskFields):
    pass


class TaskSchema(OwnedSchema):
    contact_id = fields.Integer(allow_none=True)
    title = fields.String()
    notes = fields.String(allow_none=True)
    due_at = fields.AwareDateTime(allow_none=True)
    priority = fields.String()
    done = fields.Boolean()
    done_at = fields.AwareDateTime(allow_none=True)
    snoozed_until = fields.AwareDateTime(allow_none=True)
    assignee_id = fields.Integer(attribute="owner_id", dump_only=True, allow_none=True)
    external_id = fields.String(allow_none=True)


class TaskListArgsSchema(PageArgsSchema):
    contact_id = fields.Integer()
    owner_id = fields.Integer(metadata={"description": "The assignee."})
    team_id = fields.Integer()
    done = fields.Boolean()
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    due_before = fields.AwareDateTime(default_timezone=UTC)
    due_after = fields.AwareDateTime(default_timezone=UTC)


class TaskPageSchema(Schema):
    items = fields.List(fields.Nested(TaskSchema))
    next = fields.String(allow_none=True)
