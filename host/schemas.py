"""Base marshmallow schemas: the one validation path for the API and forms.

``BaseSchema`` refuses unknown fields (``unknown = RAISE``). With
``OwnedSchema`` the ownership, integrity and timestamp columns are dump-only,
and marshmallow treats a dump-only field in the input as unknown: a request
that tries to set ``owner_id``, ``id`` or ``version`` on create (mass
assignment) fails with 422 naming the field, e.g. through flask-smorest::

    {"code": 422, "status": "Unprocessable Entity", "message": ...,
     "errors": {"json": {"owner_id": ["Unknown field."]}}}

Changing the owner is an action of its own (with its permission), never a
side effect of an edit.

Updates say which version they edit: ``UpdateSchemaMixin`` makes ``version``
loadable (optional in the schema: ``host.security.concurrency.expected_version``
answers 428 when neither the body nor ``If-Match`` gives it)::

    class NoteSchema(OwnedSchema):
        title = fields.String(required=True)

    class NoteUpdateSchema(UpdateSchemaMixin, NoteSchema):
        pass

Forms: ``load_form(schema, request.form)`` drops the CSRF token (which the
schema does not know) and reads list fields with ``getlist``.
"""

from __future__ import annotations

from typing import Any, Mapping

from marshmallow import RAISE, Schema, fields, validate

#: Form fields that belong to the page, not to the record.
FORM_ONLY_FIELDS = frozenset({"csrf_token"})


class BaseSchema(Schema):
    """Every Mosaic schema: unknown input fields are an error, not ignored."""

    class Meta:
        unknown = RAISE


class OwnedSchema(BaseSchema):
    """A record using ``OwnedMixin``: the columns the server sets are shown
    but never taken from the client."""

    id = fields.Integer(dump_only=True)
    owner_id = fields.Integer(dump_only=True, allow_none=True)
    team_id = fields.Integer(dump_only=True, allow_none=True)
    created_by = fields.Integer(dump_only=True, allow_none=True)
    updated_by = fields.Integer(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)
    version = fields.Integer(dump_only=True)


class UpdateSchemaMixin:
    """Put first in the bases of an update schema: ``version`` becomes a
    load field (a positive integer; forms send it as text)."""

    version = fields.Integer(validate=validate.Range(min=1), metadata={
        "description": "The version you are editing (or send it as If-Match). A stale one answers 409.",
    })


def formdata_to_dict(schema: Schema, formdata: Any) -> dict[str, Any]:
    """``request.form`` (a MultiDict) -> the dict the schema loads: list
    fields take every value, others the first; page-only fields are dropped."""
    out: dict[str, Any] = {}
    for key in formdata.keys():
        if key in FORM_ONLY_FIELDS:
            continue
        field = schema.fields.get(key)
        if isinstance(field, fields.List) and hasattr(formdata, "getlist"):
            out[key] = formdata.getlist(key)
        else:
            out[key] = formdata.get(key) if hasattr(formdata, "get") else formdata[key]
    return out


def load_form(schema: Schema | type[Schema], formdata: Mapping[str, Any], **kwargs: Any) -> Any:
    """Validate a submitted form with the same schema as the API; raises
    ``marshmallow.ValidationError`` with the same messages."""
    instance = schema() if isinstance(schema, type) else schema
    return instance.load(formdata_to_dict(instance, formdata), **kwargs)
