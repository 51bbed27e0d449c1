from marshmallow import Schema, fields, validate


class TicketSchema(Schema):
    id = fields.Integer(dump_only=True)
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200))
    priority = fields.String(load_default="normal", validate=validate.Length(max=20))
    status = fields.String(load_default="open", validate=validate.Length(max=20))
    created_at = fields.DateTime(dump_only=True)
