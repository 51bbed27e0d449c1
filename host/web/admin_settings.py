"""Admin: company settings (name, base currency, default language and time
zone), stored by ``host.company``. The form carries the version it was
loaded at; a save over someone else's newer one answers 409 with the other
values shown and the admin's input kept in the form."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from host import company
from host.db import session as db_session
from host.i18n import LANGUAGE_NAMES
from host.security.access import require

from .validation import translate_messages

bp = Blueprint("admin_settings", __name__, url_prefix="/admin/settings")

PERMISSION = "core.settings.update"


def _render(status: int = 200, *, form: dict | None = None, errors: dict[str, str] | None = None,
            theirs: dict | None = None):
    current = company.get_company(db_session())
    values = form or {name: current[name] for name in company.FIELDS}
    version = theirs["version"] if theirs else (form.get("version") if form else current["version"])
    return render_template("core/admin/settings.html", form=values, version=version, errors=errors or {},
                           theirs=theirs, languages=LANGUAGE_NAMES, currencies=company.currencies(),
                           time_zones=company.time_zones()), status


@bp.get("")
@require(PERMISSION)
def index():
    return _render()


@bp.post("")
@require(PERMISSION)
def save():
    cleaned, errors = company.validate(request.form)
    try:
        expected = int(request.form.get("version", ""))
    except ValueError:
        expected = -1
    if errors:
        return _render(422, form={**cleaned, "version": expected}, errors=translate_messages(errors))
    session = db_session()
    try:
        company.save_company(session, cleaned, expected)
    except company.StaleSettings as stale:
        session.rollback()
        # The version of theirs goes into the form: saving again overwrites knowingly.
        return _render(409, form=cleaned, theirs=stale.current)
    session.commit()
    flash(gettext("The company settings were saved."), "success")
    return redirect(url_for("admin_settings.index"), code=303)
