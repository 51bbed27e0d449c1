from marshmallow import Schema, fields, validate


class CampaignSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    channel = fields.String(load_default="email", validate=validate.Length(max=20))
    status = fields.String(load_default="draft", validate=validate.Length(max=20))
    created_at = fields.DateTime(dump_only=True)
