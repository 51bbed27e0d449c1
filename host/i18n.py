"""Localisation: Flask-Babel with the user's language and time zone.

The language comes from the signed-in user's profile, else the browser's
``Accept-Language``, else the company's default language (admin settings),
else English; the time zone from the profile, else the company's default,
else UTC. Catalogues live in ``host/translations`` (``messages.po`` compiled
to ``messages.mo``, both shipped in the wheel; ``babel.cfg`` at the
repository root says what to extract). Each enabled plugin may ship its own
catalogues in ``translations`` beside its package; they are merged with the
host's, whose translations win for the msgids both have.

Templates format values with the filters registered here, never with
``strftime`` or ``str``: ``datetime`` (in the user's time zone), ``date``,
``number``, ``money`` (the company's base currency unless one is given).
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, format_currency, format_date, format_datetime, format_decimal, get_locale
from flask_babel import gettext, lazy_gettext

#: The languages the staff UI has catalogues for (English is the source).
LANGUAGES = ("en", "bg", "ru", "sk")
DEFAULT_LANGUAGE = "en"
#: Each language named in itself, for pickers.
LANGUAGE_NAMES = {"en": "English", "bg": "Български", "ru": "Русский", "sk": "Slovenčina"}


def N_(message: str) -> str:
    """Marks a string for extraction where it is translated later (menu
    labels, widget titles): the template or view calls ``_()`` on it."""
    return message


def _signed_in_user():
    """The signed-in ``User`` row (the session keeps it on ``current_user.user``)."""
    from flask_login import current_user

    if not getattr(current_user, "is_authenticated", False):
        return None
    return getattr(current_user, "user", current_user)


def company_defaults() -> dict[str, Any]:
    """The company settings, read once per request (the language and time
    zone selectors and the money filter all need them)."""
    if not has_request_context():
        return {}
    if "mosaic_company" not in g:
        from .company import load_company

        try:
            g.mosaic_company = load_company()
        except Exception:  # an unmigrated database must not break error pages
            g.mosaic_company = {}
    return g.mosaic_company


def select_locale() -> str:
    user = _signed_in_user()
    language = getattr(user, "language", None) if user is not None else None
    if language in LANGUAGES:
        return language
    if has_request_context():
        best = request.accept_languages.best_match(LANGUAGES)
        if best:
            return best
    default = company_defaults().get("default_language")
    return default if default in LANGUAGES else DEFAULT_LANGUAGE


def select_timezone() -> str | None:
    user = _signed_in_user()
    return getattr(user, "time_zone", None) or company_defaults().get("default_time_zone") or None


def current_language() -> str:
    return str(get_locale() or DEFAULT_LANGUAGE)


def role_description(role: Any) -> str:
    """A role's description for the admin pages: a built-in role's in the
    user's language while it is the text the host gave it; one an admin
    wrote (or changed) as written."""
    from .hookimpls import BUILTIN_ROLE_DESCRIPTIONS

    text = getattr(role, "description", None) or ""
    if getattr(role, "builtin", False) and text and BUILTIN_ROLE_DESCRIPTIONS.get(role.name) == text:
        return gettext(text)
    return text


# --- Jinja filters -----------------------------------------------------------------


def datetime_filter(value: dt.datetime | None, format: str = "medium") -> str:
    """A moment in the user's time zone and locale; "" for none."""
    if value is None:
        return ""
    if value.tzinfo is None:  # stored values are UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return format_datetime(value, format)


def date_filter(value: dt.date | dt.datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return format_date(value, format)


def number_filter(value: Any, format: str | None = None) -> str:
    if value is None or value == "":
        return ""
    return format_decimal(value, format)


def money_filter(value: Any, currency: str | None = None) -> str:
    """An amount in ``currency``, else the company's base currency."""
    if value is None or value == "":
        return ""
    currency = currency or company_defaults().get("base_currency") or "EUR"
    return format_currency(Decimal(str(value)), currency)


def plugin_translation_directories(app: Flask) -> list[str]:
    """The ``translations`` folder beside each enabled plugin's package, in
    plugin order; plugins without one are skipped. Only this app's enabled
    plugins: a disabled plugin's catalogue never loads."""
    state = app.extensions.get("mosaic")
    if state is None:
        return []
    found = []
    for plugin in state.pm.plugins:
        if plugin.path is not None and (plugin.path / "translations").is_dir():
            found.append(str(plugin.path / "translations"))
    return found


def init_app(app: Flask) -> Babel:
    translations = os.path.join(os.path.dirname(__file__), "translations")
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    babel = Babel()
    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=translations,
    )
    # Flask-Babel merges the catalogues of all its directories into one per
    # language, each later one overwriting the msgids it shares with earlier
    # ones: the host's comes last so a plugin cannot re-translate the host's
    # words. Set as a list on this app's Babel configuration rather than
    # through BABEL_TRANSLATION_DIRECTORIES, which is split at ";" (a legal
    # character in a path).
    config = app.extensions["babel"]
    config.translation_directories = [*plugin_translation_directories(app), *config.translation_directories]
    app.jinja_env.filters.update(
        datetime=datetime_filter, date=date_filter, number=number_filter, money=money_filter
    )
    app.jinja_env.globals.update(current_language=current_language, language_names=LANGUAGE_NAMES,
                                role_description=role_description)
    return babel


__all__ = ["LANGUAGES", "LANGUAGE_NAMES", "N_", "init_app", "lazy_gettext", "plugin_translation_directories", "select_locale", "select_timezone"]
