from marshmallow import Schema, fields, validate


class SavedReportSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    report_key = fields.String(load_default="overview", validate=validate.Length(max=20))
    status = fields.String(load_default="active", validate=validate.Length(max=20))
    created_at = fields.DateTime(dump_only=True)
