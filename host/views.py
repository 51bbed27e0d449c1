"""The host's own pages: the dashboard shell and the health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import text
from werkzeug.routing import BuildError

from . import ui
from .db import get_db
from .db import session as db_session
from .security.access import current_principal, login_required, public

core = Blueprint("core", __name__)


def current_user():
    """The signed-in user for hook calls (``None`` when signed out)."""
    from flask_login import current_user as user

    return user if getattr(user, "is_authenticated", False) else None


@core.app_context_processor
def inject_shell():
    def menu():
        principal = current_principal()
        entries = []
        for item in ui.sorted_contributions("mosaic_menu_items", user=current_user()):
            if isinstance(item, ui.Placeholder):
                entries.append({"placeholder": item})
                continue
            if item.permission and not principal.can(item.permission):
                continue  # only what the user may use
            try:
                url = url_for(item.endpoint)
            except BuildError:
                current_app.logger.warning("menu item %r names unknown endpoint %r", item.label, item.endpoint)
                continue
            # Labels go through gettext: the host's are in its catalogues, and a
            # plugin label that matches one of them is translated too.
            entries.append({"label": gettext(item.label), "url": url, "icon": item.icon,
                            "current": _is_current(url)})
        return entries

    def unread_notifications() -> int:
        principal = current_principal()
        if principal.user_id is None:
            return 0
        from .core.notifications import unread_count

        return unread_count(db_session(), principal.user_id)

    def company_name() -> str:
        from .i18n import company_defaults

        return company_defaults().get("name") or ""

    return {
        "menu_items": menu,
        "slot": ui.template_slot,
        "render_html": ui.render_html,
        "unread_notifications": unread_notifications,
        "company_name": company_name,
        "can": lambda permission: current_principal().can(permission),
        "admin_nav": _admin_nav,
    }


def _admin_nav():
    from .web.admin_common import admin_nav

    return admin_nav()


def _is_current(url: str) -> bool:
    """The entry for the page being shown: its own URL, or a page under it."""
    path = request.path
    return path == url or (url != "/" and path.startswith(url.rstrip("/") + "/"))


@core.get("/")
@login_required
def index():
    """The dashboard: widgets in the user's arrangement (``host.web.layout``)."""
    from .web import layout

    widgets = ui.sorted_contributions("mosaic_dashboard_widgets", user=current_user())
    saved = layout.load_layout(db_session(), current_principal().user_id)
    shown, hidden = layout.arrange(widgets, saved)
    arranged = bool(saved.order or saved.hidden)
    return render_template("core/index.html", widgets=shown, hidden_widgets=hidden, arranged=arranged)


@core.get("/health")
@public
def health():
    """Liveness for load balancers: database reachable, plugins enabled. No
    login, nothing secret (no versions of dependencies, no paths)."""
    state = current_app.extensions["mosaic"]
    try:
        with get_db().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        database = "unreachable"
    body = {
        "status": "ok" if database == "ok" else "error",
        "database": database,
        "plugins": state.pm.plugin_names,
    }
    return jsonify(body), 200 if database == "ok" else 503
