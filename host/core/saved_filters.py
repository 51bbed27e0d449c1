"""Saved list filters, per user and per list ("contacts", "tasks" ...).

Kept in the ``setting`` table (key/JSON value) under one key per user and
list, ``saved_filters:<list>:<user id>``: a user has a handful, read and
written whole, and no other query needs them, so no table of their own (and
no migration) is warranted. A filter is a name and the list's query string
parameters; applying one is opening the list with them.
"""

from __future__ import annotations

from typing import Any, Mapping

from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from host.models import Setting

MAX_FILTERS = 30
MAX_NAME = 80
MAX_PARAMS = 40
MAX_VALUE = 500


def _key(area: str, user_id: int) -> str:
    return f"saved_filters:{area}:{user_id}"


def saved_filters(session: Session, area: str, user_id: int) -> dict[str, dict[str, str]]:
    """Name -> query parameters, in the order they were saved."""
    row = session.get(Setting, _key(area, user_id))
    value = row.value if row is not None else None
    return dict(value) if isinstance(value, dict) else {}


def _clean(params: Mapping[str, Any]) -> dict[str, str]:
    """Only non-empty text parameters (the page's cursor is not a filter)."""
    cleaned = {str(k): str(v) for k, v in params.items() if v not in (None, "") and k not in ("cursor", "csrf_token")}
    if len(cleaned) > MAX_PARAMS or any(len(v) > MAX_VALUE for v in cleaned.values()):
        raise ValidationError({"params": ["This filter is too long to save."]})
    return cleaned


def save_filter(session: Session, area: str, user_id: int, name: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Save (or replace) the filter ``name``; ``ValidationError`` naming
    ``name`` when it is empty, too long or one too many."""
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError({"name": ["Give the filter a name."]})
    if len(name) > MAX_NAME:
        raise ValidationError({"name": [f"Use at most {MAX_NAME} characters."]})
    cleaned = _clean(params)
    row = session.get(Setting, _key(area, user_id), with_for_update=True)
    current = dict(row.value) if row is not None and isinstance(row.value, dict) else {}
    if name not in current and len(current) >= MAX_FILTERS:
        raise ValidationError({"name": [f"You have {MAX_FILTERS} saved filters: delete one first."]})
    current[name] = cleaned
    if row is None:
        try:
            with session.begin_nested():
                session.add(Setting(key=_key(area, user_id), value=current))
        except IntegrityError:  # the same user saved in another tab meanwhile
            row = session.get(Setting, _key(area, user_id), with_for_update=True, populate_existing=True)
            row.value = {**(row.value or {}), name: cleaned}
    else:
        row.value = current
    session.flush()
    return cleaned


def delete_filter(session: Session, area: str, user_id: int, name: str) -> bool:
    row = session.get(Setting, _key(area, user_id), with_for_update=True)
    if row is None or not isinstance(row.value, dict) or name not in row.value:
        return False
    row.value = {k: v for k, v in row.value.items() if k != name}
    session.flush()
    return True
