"""Marketing hook implementations."""

from __future__ import annotations

from pathlib import Path

from flask import render_template_string
from flask_babel import gettext as _
from flask_babel import ngettext
from markupsafe import Markup

from hooks import MenuItem, Permission, Widget, hookimpl

from . import services
from .models import Campaign


@hookimpl
def mosaic_models():
    return [Campaign]


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
        Permission("marketing.campaign.read", "See campaigns", ("admin", "manager", "staff")),
        Permission("marketing.campaign.create", "Create campaigns", ("admin", "manager", "staff")),
        Permission("marketing.campaign.update", "Edit campaigns", ("admin", "manager", "staff")),
        Permission("marketing.campaign.delete", "Delete campaigns", ("admin", "manager")),
    ]


@hookimpl
def mosaic_menu_items(user):
    return [MenuItem(label=_("Marketing"), endpoint="marketing.index", permission="marketing.campaign.read", order=20)]


@hookimpl
def mosaic_dashboard_widgets(user):
    from host.db import session

    count = services.count_by_status(session(), "running")
    # The count stays first and apart from the words, so no markup enters
    # the catalogue; the plural form agrees with it (ru, sk have three).
    html = Markup(render_template_string("<p><strong>{{ count|number }}</strong> {{ words }}</p>",
                                         count=count, words=ngettext("running", "running", count)))
    return [Widget(key="marketing-summary", title=_("Campaigns running"), html=html, order=20)]


@hookimpl
def mosaic_demo_data(session, rng):
    for name in ['Spring newsletter', 'Trade fair invitation', 'Birthday greetings', 'Win-back offer']:
        session.add(Campaign(name=name, status=rng.choice(("running", "running", "closed"))))
