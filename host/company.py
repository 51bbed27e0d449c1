"""Company settings: name, base currency, default language and time zone.

Kept as one JSON value in the ``setting`` table (key ``core.company``) with a
``version`` of its own, so two admins saving at once do not overwrite each
other silently: a save names the version it started from, and a stale one is
refused (``StaleSettings``) with nothing written.

Domain logic only: a session in, no Flask request.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Any, Mapping

from babel.numbers import list_currencies
from sqlalchemy.orm import Session

from .models import Setting

KEY = "core.company"
DEFAULTS: dict[str, Any] = {
    "name": "",
    "base_currency": "EUR",
    "default_language": "en",
    "default_time_zone": "UTC",
    "version": 0,
}
FIELDS = ("name", "base_currency", "default_language", "default_time_zone")
MAX_NAME = 200


class StaleSettings(Exception):
    """Someone saved the settings since the form was loaded."""

    def __init__(self, current: Mapping[str, Any]):
        super().__init__("The settings were changed by someone else meanwhile.")
        self.current = dict(current)


@lru_cache(maxsize=1)
def currencies() -> tuple[str, ...]:
    return tuple(sorted(list_currencies()))


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def get_company(session: Session) -> dict[str, Any]:
    row = session.get(Setting, KEY)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    return {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}


def load_company() -> dict[str, Any]:
    """The settings through the request's session (for the i18n selectors)."""
    from .db import session as db_session

    return get_company(db_session())


def validate(data: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(cleaned values, errors by field name)."""
    from .i18n import LANGUAGES

    cleaned = {name: str(data.get(name) or "").strip() for name in FIELDS}
    cleaned["base_currency"] = cleaned["base_currency"].upper()
    errors: dict[str, str] = {}
    if len(cleaned["name"]) > MAX_NAME:
        errors["name"] = f"Use at most {MAX_NAME} characters."
    if cleaned["base_currency"] not in currencies():
        errors["base_currency"] = "Choose an ISO 4217 currency code such as EUR or BGN."
    if cleaned["default_language"] not in LANGUAGES:
        errors["default_language"] = "Choose one of the listed languages."
    if cleaned["default_time_zone"] not in time_zones():
        errors["default_time_zone"] = "Choose a time zone from the list, such as Europe/Sofia."
    return cleaned, errors


def save_company(session: Session, cleaned: Mapping[str, str], expected_version: int) -> dict[str, Any]:
    """Store validated values when ``expected_version`` is still current.
    The row is locked first, so of two concurrent saves only one wins."""
    from sqlalchemy import select

    row = session.scalars(select(Setting).where(Setting.key == KEY).with_for_update()).one_or_none()
    current = get_company(session)
    if int(current["version"]) != int(expected_version):
        raise StaleSettings(current)
    value = {**current, **{name: cleaned[name] for name in FIELDS}, "version": int(current["version"]) + 1}
    if row is None:
        session.add(Setting(key=KEY, value=value))
    else:
        row.value = value
    session.flush()
    from .security import audit

    changes = {name: [current[name], value[name]] for name in FIELDS if current[name] != value[name]}
    if changes:
        audit.record(session, "update", "core.company_settings", KEY, changes)
    return value
