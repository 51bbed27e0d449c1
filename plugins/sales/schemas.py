from marshmallow import Schema, fields, validate

from .models import DEAL_STAGES


class DealSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    stage = fields.String(load_default="new", validate=validate.OneOf(DEAL_STAGES))
    amount = fields.Decimal(places=2, as_string=True, load_default="0", validate=validate.Range(min=0))
    created_at = fields.DateTime(dump_only=True)
