"""The shell's own actions: switching the language from the user menu and
arranging the dashboard (both plain forms posting with CSRF, no script)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import force_locale, gettext
from flask_login import current_user

from host.views import current_user as hook_user

from host import ui
from host.db import session as db_session
from host.i18n import LANGUAGE_NAMES, N_
from host.security.access import current_principal, login_required
from host.security.views_auth import safe_next

from . import layout as layouts

bp = Blueprint("shell", __name__)

#: Menu labels the host's pages contribute from other modules, marked here
#: for extraction (the menu translates every label with gettext).
MENU_LABELS = (N_("Contacts"), N_("Interactions"), N_("Tasks"), N_("Search"), N_("Import"))


@bp.post("/language")
@login_required
def set_language():
    """Store the chosen language in the user's profile, back to the page."""
    language = request.form.get("language", "")
    target = safe_next(request.form.get("next"))
    if language not in LANGUAGE_NAMES:
        flash(gettext("Choose one of the listed languages."), "error")
        return redirect(target, code=303)
    current_user.user.language = language
    db_session().commit()
    with force_locale(language):
        flash(gettext("The language is now %(language)s.", language=LANGUAGE_NAMES[language]), "success")
    return redirect(target, code=303)


@bp.post("/dashboard/layout")
@login_required
def arrange_dashboard():
    """Move a widget up or down, hide or show it, or reset the arrangement."""
    action = request.form.get("action", "")
    key = request.form.get("key", "")
    user_id = current_principal().user_id
    session = db_session()
    widgets = ui.sorted_contributions("mosaic_dashboard_widgets", user=hook_user())
    saved = layouts.load_layout(session, user_id)
    shown, hidden = layouts.arrange(widgets, saved)
    current_keys = [w.key for w in shown + hidden if isinstance(getattr(w, "key", None), str)]
    try:
        new = layouts.change(saved, current_keys, action, key)
    except ValueError:
        abort(400, description=gettext("Unknown dashboard action."))
    except LookupError:
        abort(404, description=gettext("No such widget on your dashboard."))
    layouts.save_layout(session, user_id, new)
    session.commit()
    anchor = f"#widget-{key}" if action in ("up", "down") else ""
    return redirect(url_for("core.index") + anchor, code=303)
