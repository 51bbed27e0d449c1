"""Service hook implementations."""

from __future__ import annotations

from pathlib import Path

from flask import render_template_string
from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup

from hooks import MenuItem, Permission, Widget, hookimpl

from . import services
from .models import Ticket


@hookimpl
def mosaic_models():
    return [Ticket]


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
        Permission("service.ticket.read", "See tickets", ("admin", "manager", "staff")),
        Permission("service.ticket.create", "Create tickets", ("admin", "manager", "staff")),
        Permission("service.ticket.update", "Edit tickets", ("admin", "manager", "staff")),
        Permission("service.ticket.delete", "Delete tickets", ("admin", "manager")),
    ]


@hookimpl
def mosaic_menu_items(user):
    return [MenuItem(label=_("Service"), endpoint="service.index", permission="service.ticket.read", order=30)]


@hookimpl
def mosaic_dashboard_widgets(user):
    from host.db import session

    count = services.count_by_status(session(), "open")
    # The count stays first and apart from the words, so no markup enters
    # the catalogue; the plural form agrees with it (ru, sk have three).
    html = Markup(render_template_string("<p><strong>{{ count|number }}</strong> {{ words }}</p>",
                                         count=count, words=ngettext("open", "open", count)))
    return [Widget(key="service-summary", title=_("Open tickets"), html=html, order=30)]


@hookimpl
def mosaic_demo_data(session, rng):
    for subject in ['Printer offline', 'Invoice question', 'Broken delivery', 'Password reset', 'Maintenance visit']:
        session.add(Ticket(subject=subject, status=rng.choice(("open", "open", "closed"))))
