"""Loading many flat rows with a plain marshmallow schema: the data
marshmallow's ``load`` would return, with less work per field; any row
this path is not sure of goes to marshmallow itself.

An import validates every row of a file with the API's schema (one
validation path for the API, forms and imports). Marshmallow spends about
ten calls per field on bookkeeping (a getter closure, the error store,
missing and None checks, the validators' error collection); for a
contact row that was the largest single part of an import. The rows an
import builds are narrow (text cells, lists of text, nested dicts for
custom fields), so each field gets a converter, built once per schema:

- text fields (``String`` and its validator-only subclasses such as
  ``Email``): a ``str`` is its own result; the field's validators run on
  it as marshmallow runs them;
- ``Boolean``: the field's own ``truthy``/``falsy`` sets;
- ``List`` of one of these: each item, then the list's validators;
- anything else: the field's own ``deserialize``, as marshmallow calls it.

A row is handed back to marshmallow (``SLOW``) whenever anything fails or
is unusual: a validator raising or returning False, a value of another
type, a missing required field, a key the schema does not know. So a bad
row always gets marshmallow's own messages, and a good one the data
marshmallow would give (``tests/test_fast_load.py`` compares both on
generated rows). Schemas with hooks, field-level pre/post-load functions,
dotted attributes or ``unknown=INCLUDE`` get no plan, and are loaded by
marshmallow whole.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing

#: A row this path leaves to marshmallow.
SLOW = object()


class _Slow(Exception):
    """Raised inside a converter: the row goes to marshmallow."""


_loaders: weakref.WeakKeyDictionary[Schema, RowLoader] = weakref.WeakKeyDictionary()


def loader(schema: Schema) -> RowLoader:
    """The loader of ``schema`` (built once per schema instance)."""
    found = _loaders.get(schema)
    if found is None:
        found = _loaders[schema] = RowLoader(schema)
    return found


class RowLoader:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.plan = _plan(schema)
        self.known = frozenset(key for key, *_rest in self.plan) if self.plan is not None else frozenset()
        self.raise_unknown = schema.unknown == RAISE

    def load_each(self, rows: Iterable[Any]) -> list[Any]:
        """Each row's loaded data, or ``SLOW`` for a row marshmallow must
        load (every row when the schema has no plan)."""
        if self.plan is None:
            return [SLOW for _row in rows]
        return [self._load(row) for row in rows]

    def _load(self, row: Any) -> Any:
        if row.__class__ is not dict or (self.raise_unknown and not self.known.issuperset(row)):
            return SLOW
        out = self.schema.dict_class()
        try:
            for key, attribute, field, convert in self.plan:
                value = row.get(key, missing)
                if value is missing:  # rare in an import (an empty cell): the field decides
                    value = field.deserialize(missing, key, row)
                    if value is not missing:
                        out[attribute] = value
                else:
                    out[attribute] = convert(value, key, row)
        except (_Slow, ValidationError):
            return SLOW
        return out


def _plan(schema: Schema) -> list[tuple[str, str, fields.Field, Callable[..., Any]]] | None:
    if any(schema._hooks.values()) or schema.unknown not in (RAISE, EXCLUDE):
        return None
    plan = []
    for name, field in schema.load_fields.items():
        attribute = field.attribute or name
        if "." in attribute or field.pre_load or field.post_load:
            return None
        plan.append((field.data_key if field.data_key is not None else name, attribute, field, _converter(field)))
    return plan


def _converter(field: fields.Field) -> Callable[[Any, str, Any], Any]:
    kind = type(field)
    if (kind.deserialize is not fields.Field.deserialize or kind._validate is not fields.Field._validate
            or kind._validate_missing is not fields.Field._validate_missing):
        return _generic(field)
    if kind._deserialize is fields.String._deserialize:
        check = _validators(field)

        def text(value: Any, _key: str, _row: Any) -> Any:
            if value.__class__ is not str:
                raise _Slow
            check(value)
            return value
        return text
    if kind is fields.Boolean and field.truthy:
        truthy, falsy, check = field.truthy, field.falsy, _validators(field)

        def boolean(value: Any, _key: str, _row: Any) -> Any:
            if value.__class__ is not str:
                raise _Slow
            if value in truthy:
                result = True
            elif value in falsy:
                result = False
            else:
                raise _Slow
            check(result)
            return result
        return boolean
    if kind is fields.List and not isinstance(field.inner, fields.Nested):
        inner = _converter(field.inner)
        if inner.__name__ in ("text", "boolean"):
            check = _validators(field)

            def listed(value: Any, key: str, row: Any) -> Any:
                if value.__class__ is not list:
                    raise _Slow
                result = [inner(each, key, row) for each in value]
                check(result)
                return result
            return listed
    return _generic(field)


def _generic(field: fields.Field) -> Callable[[Any, str, Any], Any]:
    def generic(value: Any, key: str, row: Any) -> Any:
        return field.deserialize(value, key, row)
    return generic


def _validators(field: fields.Field) -> Callable[[Any], None]:
    """Run ``field``'s validators as marshmallow's ``Field._validate``
    does (``validate.And``: each is called, its return value ignored); a
    failure sends the row to marshmallow for its messages."""
    validators = tuple(field.validators)
    if not validators:
        return _nothing

    def check(value: Any) -> None:
        for validator in validators:
            validator(value)
    return check


def _nothing(_value: Any) -> None:
    return None
