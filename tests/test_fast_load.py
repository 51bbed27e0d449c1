"""``host.fast_load``: the data marshmallow's ``load`` gives, or the row is
left to marshmallow; never a row marshmallow would refuse."""

from __future__ import annotations

import random

import pytest
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, post_load, validate

from host import fast_load
from host.core.imports import InteractionImportSchema, TaskImportSchema, _load_rows
from host.core.schemas import ContactCreateSchema

TEXTS = ("Иван", "Žofia Nováková", "  padded  ", "x" * 151, "x" * 300, "", "a@b.co", "not-an-email", "ivan@example.com",
         "customer", "lead", "nobody", "person", "company", "BG", "bgr", "true", "False", "1", "0", "yes", "maybe",
         "2026-11-20", "2026-13-40", "2026-11-20T10:00:00Z", "12", "-3", "1.5", "phone", "email", "in", "out", "sideways")


def _value(rng: random.Random, field: fields.Field):
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.1:
        return 7  # not text: a type marshmallow refuses or converts
    if isinstance(field, fields.List):
        return [rng.choice(TEXTS) for _ in range(rng.randint(0, 3))] if roll < 0.9 else "vip"
    if isinstance(field, fields.Dict):
        return {rng.choice(("size", "rank")): rng.choice(TEXTS)} if roll < 0.9 else "flat"
    return rng.choice(TEXTS)


def _rows(schema: Schema, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    names = [field.data_key or name for name, field in schema.load_fields.items()]
    rows = []
    for _ in range(count):
        row = {name: _value(rng, schema.load_fields.get(name) or schema.fields[name])
               for name in rng.sample(names, rng.randint(0, len(names)))}
        if rng.random() < 0.05:
            row["unknown_column"] = "x"
        rows.append(row)
    return rows


def _marshmallow(schema: Schema, row: dict):
    try:
        return schema.load(row)
    except ValidationError as exc:
        return exc


@pytest.mark.parametrize("schema", [
    ContactCreateSchema(),
    ContactCreateSchema(only=["first_name", "last_name", "email", "phone", "city", "lifecycle_stage", "tags",
                              "marketing_consent", "external_id"]),
    InteractionImportSchema(),
    TaskImportSchema(),
], ids=["contact", "contact-only", "interaction", "task"])
def test_fast_rows_are_marshmallows_data_and_bad_rows_go_to_marshmallow(schema):
    loader = fast_load.loader(schema)
    assert loader.plan is not None
    rows = _rows(schema, 3000, seed=len(schema.load_fields))
    fast = loader.load_each(rows)
    taken = accepted = 0
    for row, loaded in zip(rows, fast):
        expected = _marshmallow(schema, row)
        accepted += not isinstance(expected, ValidationError)
        if loaded is fast_load.SLOW:
            continue
        assert not isinstance(expected, ValidationError), row  # never accepts a row marshmallow refuses
        assert loaded == expected and list(loaded) == list(expected), row
        taken += 1
    # The fast path takes most rows marshmallow accepts (not those with a
    # None, which it leaves to marshmallow).
    assert accepted and taken >= 0.8 * accepted
    # And through the import's own loading: each row's data or its own messages.
    loaded_rows = _load_rows(schema, rows)
    for row, loaded in zip(rows, loaded_rows):
        expected = _marshmallow(schema, row)
        if isinstance(expected, ValidationError):
            assert isinstance(loaded, ValidationError) and loaded.messages == expected.messages
        else:
            assert loaded == expected


def test_typical_contact_rows_take_the_fast_path():
    schema = ContactCreateSchema(only=["first_name", "last_name", "email", "tags", "marketing_consent", "lifecycle_stage"])
    row = {"first_name": "Иван", "last_name": "Петров", "email": "ivan@example.com", "tags": ["vip", "b2b"],
           "marketing_consent": "true", "lifecycle_stage": "customer"}
    [loaded] = fast_load.loader(schema).load_each([row])
    assert loaded == schema.load(row)
    assert loaded["marketing_consent"] is True


def test_a_validator_failure_leaves_the_row_to_marshmallow():
    schema = ContactCreateSchema(only=["email", "first_name"])
    [bad_email, too_long] = fast_load.loader(schema).load_each([{"email": "not-an-email"}, {"first_name": "x" * 151}])
    assert bad_email is fast_load.SLOW and too_long is fast_load.SLOW


class Hooked(Schema):
    name = fields.String()

    @post_load
    def shout(self, data, **kwargs):
        return {key: value.upper() for key, value in data.items()}


class Including(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String()


class Excluding(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(validate=validate.Length(max=5))


def test_schemas_it_cannot_copy_get_no_plan():
    assert fast_load.loader(Hooked()).plan is None
    assert fast_load.loader(Including()).plan is None
    assert fast_load.loader(Hooked()).load_each([{"name": "a"}]) == [fast_load.SLOW]


def test_unknown_keys_are_dropped_only_where_marshmallow_drops_them():
    schema = Excluding()
    [loaded] = fast_load.loader(schema).load_each([{"name": "Ivan", "other": "x"}])
    assert loaded == schema.load({"name": "Ivan", "other": "x"}) == {"name": "Ivan"}
    strict = ContactCreateSchema(only=["first_name"])
    assert fast_load.loader(strict).load_each([{"first_name": "Ivan", "other": "x"}]) == [fast_load.SLOW]
