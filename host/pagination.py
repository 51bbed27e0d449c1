"""Keyset pagination for lists and the API: ``limit`` and an opaque ``cursor``.

A cursor encodes the sort key of the last item shown, so a page costs the same
however deep it is (no OFFSET), and rows added meanwhile never shift a page.
API bodies are ``{"items": [...], "next": cursor or null}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Sequence

from marshmallow import Schema, ValidationError, fields, validate

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationError("Not a valid cursor: use the `next` value of the previous page.", "cursor") from None
    if not isinstance(value, list):
        raise ValidationError("Not a valid cursor: use the `next` value of the previous page.", "cursor")
    return value


class CursorField(fields.String):
    """Decodes to the key list; a malformed cursor is a 422 naming ``cursor``."""

    def _deserialize(self, value, attr, data, **kwargs):
        return decode_cursor(super()._deserialize(value, attr, data, **kwargs))


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = CursorField(load_default=None)


def page(rows: Sequence[Any], limit: int, key: Callable[[Any], Sequence[Any]]) -> tuple[list[Any], str | None]:
    """Given up to ``limit + 1`` rows (ask the query for one more), the page
    and the cursor of the next one (None on the last page)."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return items, encode_cursor(key(items[-1])) if more and items else None
