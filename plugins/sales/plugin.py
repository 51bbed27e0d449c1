"""Sales hook implementations."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from flask import render_template_string
from flask_babel import gettext as _
from markupsafe import Markup

from hooks import MenuItem, Permission, Widget, hookimpl

from . import services
from .models import DEAL_STAGES, Deal


@hookimpl
def mosaic_models():
    return [Deal]


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
        Permission("sales.deal.read", "See deals", ("admin", "manager", "staff")),
        Permission("sales.deal.create", "Create deals", ("admin", "manager", "staff")),
        Permission("sales.deal.update", "Edit deals", ("admin", "manager", "staff")),
        Permission("sales.deal.delete", "Delete deals", ("admin", "manager")),
    ]


@hookimpl
def mosaic_menu_items(user):
    return [MenuItem(label=_("Sales"), endpoint="sales.index", permission="sales.deal.read", order=10)]


@hookimpl
def mosaic_dashboard_widgets(user):
    from host.db import session

    total = services.open_pipeline_total(session())
    html = Markup(render_template_string("<p>{{ label }} <strong>{{ total|money }}</strong></p>",
                                         label=_("Open pipeline:"), total=total))
    return [Widget(key="sales-pipeline", title=_("Pipeline"), html=html, order=10)]


@hookimpl
def mosaic_demo_data(session, rng):
    titles = ["Website relaunch", "Annual support", "Fleet upgrade", "Pilot project", "Licence renewal"]
    for title in titles:
        session.add(Deal(title=title, stage=rng.choice(DEAL_STAGES), amount=Decimal(rng.randrange(1_000, 90_000))))
