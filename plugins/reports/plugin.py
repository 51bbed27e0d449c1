"""Reports hook implementations."""

from __future__ import annotations

from pathlib import Path

from flask import render_template_string
from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup

from hooks import MenuItem, Permission, Widget, hookimpl

from . import services
from .models import SavedReport


@hookimpl
def mosaic_models():
    return [SavedReport]


@hookimpl
def mosaic_migrations_dir():
    return str(Path(__file__).parent / "migrations")


@hookimpl
def mosaic_blueprints():
    from .views import bp

    return [bp]


@hookimpl
def mosaic_api_blueprints():
    from .api import bp

    return [bp]


@hookimpl
def mosaic_permissions():
    # Descriptions stay as declared: the admin pages show a plugin's
    # descriptions untranslated (docs/architecture.md, Localisation).
    return [
        Permission("reports.report.read", "See saved reports", ("admin", "manager", "staff")),
        Permission("reports.report.create", "Create saved reports", ("admin", "manager", "staff")),
        Permission("reports.report.update", "Edit saved reports", ("admin", "manager", "staff")),
        Permission("reports.report.delete", "Delete saved reports", ("admin", "manager")),
    ]


@hookimpl
def mosaic_menu_items(user):
    return [MenuItem(label=_("Reports"), endpoint="reports.index", permission="reports.report.read", order=40)]


@hookimpl
def mosaic_dashboard_widgets(user):
    from host.db import session

    count = services.count_by_status(session(), "active")
    # The count stays first and apart from the words, so no markup enters
    # the catalogue; the plural form agrees with it (ru, sk have three).
    html = Markup(render_template_string("<p><strong>{{ count|number }}</strong> {{ words }}</p>",
                                         count=count, words=ngettext("active", "active", count)))
    return [Widget(key="reports-summary", title=_("Saved reports"), html=html, order=40)]


@hookimpl
def mosaic_demo_data(session, rng):
    for title in ['Monthly overview', 'Pipeline by stage']:
        session.add(SavedReport(title=title, status=rng.choice(("active", "active", "closed"))))
