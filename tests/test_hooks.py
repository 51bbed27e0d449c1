"""One test per hook specification, named ``test_hook_<hook>`` (the contract
test checks that each hook has one). Each drives the hook through a small test
plugin and checks what the host does with the result."""

from __future__ import annotations

import datetime as dt
import random

import click
import pytest
from click.testing import CliRunner
from flask import Blueprint
from markupsafe import Markup
from sqlalchemy import column, select, table, text

import hooks
from hooks import hookimpl
from host import contributions, ui
from host.errors import MosaicStartupError, PluginError
from host.events import publish
from host.security.access import login_required, require
from host.testing import api_token, bearer, client_for, plugin_candidate


def app_with(make_app, hooks_object, name="acme", plugins=None, **config):
    candidate = plugin_candidate(name, hooks_object)
    return make_app(plugins=plugins or [name], extra_plugins=[candidate], **config)


# --- startup ----------------------------------------------------------------


def test_hook_mosaic_addhooks(make_app):
    class Specs:
        @hooks.hookspec(firstresult=True)
        def acme_price(self, sku):
            """The price of ``sku``; first result wins."""

    class Publisher:
        @hookimpl
        def mosaic_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Pricer:
        @hookimpl(optionalhook=True)
        def acme_price(self, sku):
            return {"A-1": 10}.get(sku)

    app = make_app(
        plugins=["acme", "pricer"],
        extra_plugins=[plugin_candidate("acme", Publisher()), plugin_candidate("pricer", Pricer())],
        migrate=False,
    )
    assert app.extensions["mosaic"].pm.hook.acme_price(sku="A-1") == 10


def test_hook_mosaic_models(make_app):
    app = make_app(plugins=["sales"], migrate=False)
    assert app.extensions["mosaic"].tables_by_plugin == {"sales": ["sales_deal"]}


def test_hook_mosaic_migrations_dir(make_app):
    from host.migrate import histories

    app = make_app(plugins=["service", "sales"], migrate=False)
    found = [(h.name, h.version_table, h.versions_dir.name) for h in histories(app.extensions["mosaic"])]
    assert found == [
        ("host", "alembic_version", "migrations"),
        ("sales", "alembic_version_sales", "migrations"),
        ("service", "alembic_version_service", "migrations"),
    ]


def test_hook_mosaic_blueprints(make_app):
    class Pages:
        @hookimpl
        def mosaic_blueprints(self):
            main, extra = Blueprint("acme", __name__), Blueprint("acme_admin", __name__)
            main.add_url_rule("/", "index", login_required(lambda: "acme home"))
            extra.add_url_rule("/", "index", require("core.user.update")(lambda: "acme admin"))
            return [main, extra]

    app = app_with(make_app, Pages())
    assert app.test_client().get("/acme/").status_code == 302, "signed out: to the login page"
    staff = client_for(app, "rep@example.com", roles=("staff",))
    assert staff.get("/acme/").data == b"acme home"
    assert staff.get("/acme/admin/").status_code == 403, "staff lacks core.user.update"
    assert client_for(app).get("/acme/admin/").data == b"acme admin"


def test_hook_mosaic_api_blueprints(make_app):
    class Api:
        @hookimpl
        def mosaic_api_blueprints(self):
            from flask_smorest import Blueprint as ApiBlueprint

            bp = ApiBlueprint("api_acme", __name__)

            @bp.get("/ping")
            @require("core.contact.read")
            def ping():
                """Answers pong."""
                return {"pong": True}

            return [bp]

    app = app_with(make_app, Api())
    client = app.test_client()
    client_for(app)
    assert client.get("/api/v1/acme/ping").status_code == 401
    assert client.get("/api/v1/acme/ping", headers=bearer(api_token(app, "admin@example.com"))).get_json() == {"pong": True}
    assert "/api/v1/acme/ping" in client.get("/api/v1/openapi.json").get_json()["paths"]


def test_hook_mosaic_permissions(make_app):
    class Perms:
        @hookimpl
        def mosaic_permissions(self):
            return [hooks.Permission("acme.widget.read", "See widgets", ("admin", "staff"))]

    state = app_with(make_app, Perms(), plugins=["acme", "sales"]).extensions["mosaic"]
    assert state.permissions["acme.widget.read"].default_roles == ("admin", "staff")
    assert "sales.deal.read" in state.permissions


def test_hook_mosaic_cli(make_app):
    from host.cli import AppHolder, cli

    class Commands:
        @hookimpl
        def mosaic_cli(self, cli):
            @cli.command("acme-hello")
            @click.argument("who")
            def hello(who):
                from flask import current_app

                plugins = current_app.extensions["mosaic"].pm.plugin_names
                click.echo(f"hello {who} from {','.join(plugins)}")

    holder = AppHolder()
    holder._app = app_with(make_app, Commands(), migrate=False)
    result = CliRunner().invoke(cli, ["acme-hello", "Ana"], obj=holder)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello Ana from acme"
    unknown = CliRunner().invoke(cli, ["acme-bye"], obj=holder)
    assert unknown.exit_code == 2 and "No such command 'acme-bye'" in unknown.output


def test_hook_mosaic_jobs(make_app):
    def count(ctx):
        return {"n": 1}

    class Jobs:
        @hookimpl
        def mosaic_jobs(self):
            return [hooks.JobDefinition("acme.count", count, every=60)]

    class SameName:
        @hookimpl
        def mosaic_jobs(self):
            return [hooks.JobDefinition("acme.count", count)]

    state = app_with(make_app, Jobs(), migrate=False).extensions["mosaic"]
    assert state.jobs["acme.count"].every == 60
    with pytest.raises(PluginError, match="job 'acme.count' is already declared by 'acme'"):
        make_app(
            plugins=["acme", "zeta"],
            extra_plugins=[plugin_candidate("acme", Jobs()), plugin_candidate("zeta", SameName())],
            migrate=False,
        )


def test_hook_mosaic_settings(make_app, tmp_path):
    class Settings:
        @hookimpl
        def mosaic_settings(self):
            return [hooks.Setting("greeting", default="hello"), hooks.Setting("limit", default=5)]

    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    (instance / "mosaic.toml").write_text('[acme]\ngreeting = "bonjour"\n')
    state = app_with(make_app, Settings(), migrate=False).extensions["mosaic"]
    assert state.settings_for("acme") == {"greeting": "bonjour", "limit": 5}

    (instance / "mosaic.toml").write_text('[acme]\ncolour = "red"\n')
    with pytest.raises(MosaicStartupError, match=r"plugin 'acme': mosaic.toml: \[acme\] colour: unknown setting"):
        app_with(make_app, Settings(), migrate=False)


def test_hook_mosaic_app_ready(make_app):
    class Ready:
        @hookimpl
        def mosaic_app_ready(self, app):
            app.add_template_filter(lambda value: value[::-1], "acme_reverse")

    app = app_with(make_app, Ready(), migrate=False)
    assert app.jinja_env.from_string("{{ 'abc'|acme_reverse }}").render() == "cba"


# --- UI ---------------------------------------------------------------------


def test_hook_mosaic_menu_items(make_app):
    class Menu:
        @hookimpl
        def mosaic_menu_items(self, user):
            return [hooks.MenuItem(label="Acme <b>", endpoint="core.index", order=1)]

    html = client_for(app_with(make_app, Menu())).get("/").get_data(as_text=True)
    assert "Acme &lt;b&gt;" in html, "labels are escaped"
    assert html.index("Dashboard") < html.index("Acme &lt;b&gt;"), "ordered by order"


def test_hook_mosaic_dashboard_widgets(make_app):
    class Widgets:
        @hookimpl
        def mosaic_dashboard_widgets(self, user):
            return [
                hooks.Widget(key="b", title="Second", html=Markup("<em>trusted</em>"), order=2),
                hooks.Widget(key="a", title="First", html="<script>alert(1)</script>", order=1),
            ]

    html = client_for(app_with(make_app, Widgets())).get("/").get_data(as_text=True)
    assert "<em>trusted</em>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert html.index("First") < html.index("Second")


def test_hook_mosaic_contact_panels(make_app):
    class Panels:
        @hookimpl
        def mosaic_contact_panels(self, contact, user):
            return [hooks.Panel(key="acme", title=f"Orders of {contact['name']}", html=Markup("<p>3</p>"))]

    class Broken:
        @hookimpl
        def mosaic_contact_panels(self, contact, user):
            raise LookupError("no table")

    app = make_app(
        plugins=["acme", "broken"],
        extra_plugins=[plugin_candidate("acme", Panels()), plugin_candidate("broken", Broken())],
        migrate=False,
    )
    with app.test_request_context():
        panels = ui.sorted_contributions("mosaic_contact_panels", contact={"name": "Ana"}, user=None)
    assert panels[0].title == "Orders of Ana"
    assert isinstance(panels[1], ui.Placeholder) and panels[1].plugin == "broken"


def test_hook_mosaic_contact_timeline(make_app):
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

    class Timeline:
        @hookimpl
        def mosaic_contact_timeline(self, contact, user, before, limit):
            entries = [hooks.TimelineEntry(when=now - dt.timedelta(days=i), kind="deal", title=f"d{i}") for i in range(10)]
            return [e for e in entries if before is None or e.when < before][:limit]

    app = app_with(make_app, Timeline(), migrate=False)
    with app.test_request_context():
        first = ui.contributions("mosaic_contact_timeline", contact=None, user=None, before=None, limit=3)
        older = ui.contributions("mosaic_contact_timeline", contact=None, user=None, before=first[-1].when, limit=3)
    assert [e.title for e in first] == ["d0", "d1", "d2"]
    assert [e.title for e in older] == ["d3", "d4", "d5"]


def test_hook_mosaic_search(make_app):
    class Search:
        @hookimpl
        def mosaic_search(self, query, user, limit):
            return [hooks.SearchResult(title=f"Deal {query}", url="/acme/1", kind="deal", score=0.5)][:limit]

    app = app_with(make_app, Search(), migrate=False)
    with app.test_request_context():
        hits = ui.contributions("mosaic_search", query="ivan", user=None, limit=5)
        none = ui.contributions("mosaic_search", query="ivan", user=None, limit=0)
    assert [h.title for h in hits] == ["Deal ivan"] and none == []


def test_hook_mosaic_template_slot(make_app):
    class Slots:
        @hookimpl
        def mosaic_template_slot(self, name, context):
            if name == "footer":
                return Markup("<p id='acme-footer'>Acme footer</p>")
            if name == "header":
                return "<b>plain text is escaped</b>"
            return None

    html = client_for(app_with(make_app, Slots())).get("/").get_data(as_text=True)
    assert "<p id='acme-footer'>Acme footer</p>" in html
    assert "&lt;b&gt;plain text is escaped&lt;/b&gt;" in html


# --- data -------------------------------------------------------------------


def definitions_app(make_app, hook_name, items, name="acme"):
    def impl(self):
        return items

    hooks_object = type("Defs", (), {hook_name: hookimpl(impl)})()
    return app_with(make_app, hooks_object, name=name, migrate=False)


def test_hook_mosaic_segment_fields(make_app):
    field = hooks.SegmentField("revenue", "Total revenue", "number", condition=lambda value, op: text("1=1"))
    app = definitions_app(make_app, "mosaic_segment_fields", [field])
    found = contributions.definitions("mosaic_segment_fields", app.extensions["mosaic"])
    assert found["revenue"].plugin == "acme" and found["revenue"].item.type == "number"


def test_hook_mosaic_revenue_facts(make_app):
    facts = table("acme_invoice", column("contact_id"), column("occurred_on"), column("amount"))
    source = hooks.RevenueFactSource("invoices", "Invoices", select(facts.c.contact_id, facts.c.occurred_on, facts.c.amount))
    app = definitions_app(make_app, "mosaic_revenue_facts", [source])
    item = contributions.definitions("mosaic_revenue_facts", app.extensions["mosaic"])["invoices"].item
    assert [c.name for c in item.selectable.selected_columns] == ["contact_id", "occurred_on", "amount"]


def test_hook_mosaic_import_targets(make_app):
    from marshmallow import Schema, fields

    class RowSchema(Schema):
        sku = fields.String(required=True)

    target = hooks.ImportTarget("products", "Products", RowSchema(), write=lambda session, rows, user: len(rows))
    app = definitions_app(make_app, "mosaic_import_targets", [target, target])
    with pytest.raises(PluginError, match="'products' is already defined by 'acme'"):
        contributions.definitions("mosaic_import_targets", app.extensions["mosaic"])


def test_hook_mosaic_export_types(make_app):
    export = hooks.ExportType("deals", "Deals", ("title", "amount"), rows=lambda session, user, filters: iter(()))
    app = definitions_app(make_app, "mosaic_export_types", [export, "not a definition"])
    with pytest.raises(PluginError, match="plugin 'acme': mosaic_export_types returned str, not hooks.ExportType"):
        contributions.definitions("mosaic_export_types", app.extensions["mosaic"])


def test_hook_mosaic_custom_fields(make_app):
    same_key_other_model = [
        hooks.CustomFieldDefinition("contact", "vat_id", "VAT id", "text"),
        hooks.CustomFieldDefinition("task", "vat_id", "VAT id", "text"),
    ]
    app = definitions_app(make_app, "mosaic_custom_fields", same_key_other_model)
    found = contributions.definitions("mosaic_custom_fields", app.extensions["mosaic"])
    assert set(found) == {("contact", "vat_id"), ("task", "vat_id")}


def test_hook_mosaic_reports(make_app):
    report = hooks.ReportDefinition("acme.volume", "Volume", query=lambda session, user, params: select(1), chart="bar")
    app = definitions_app(make_app, "mosaic_reports", [report])
    found = contributions.definitions("mosaic_reports", app.extensions["mosaic"])
    assert list(found) == ["acme.volume"]
    # cached per app: the hook is not called again
    assert contributions.definitions("mosaic_reports", app.extensions["mosaic"]) is found


class PersonalData:
    def __init__(self):
        self.calls = []

    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        self.calls.append(("merge", survivor, merged))

    @hookimpl
    def mosaic_export_contact(self, session, contact):
        return {"orders": [{"id": 1, "contact": contact}]}

    @hookimpl
    def mosaic_erase_contact(self, session, contact):
        self.calls.append(("erase", contact))


class FailingPersonalData:
    @hookimpl
    def mosaic_merge_contacts(self, session, survivor, merged):
        raise RuntimeError("locked")

    @hookimpl
    def mosaic_export_contact(self, session, contact):
        return {"when": dt.datetime.now()}


def personal_data_app(make_app, *objects, migrate=False):
    candidates = [plugin_candidate(f"p{i}", obj) for i, obj in enumerate(objects)]
    return make_app(plugins=[c.name for c in candidates], extra_plugins=candidates, migrate=migrate)


def test_hook_mosaic_merge_contacts(make_app):
    good = PersonalData()
    state = personal_data_app(make_app, good).extensions["mosaic"]
    assert contributions.merge_contacts(None, 1, 2, state) == ["p0"]
    assert good.calls == [("merge", 1, 2)]
    failing = personal_data_app(make_app, PersonalData(), FailingPersonalData()).extensions["mosaic"]
    with pytest.raises(PluginError, match="plugin 'p1': mosaic_merge_contacts raised RuntimeError: locked"):
        contributions.merge_contacts(None, 1, 2, failing)


def test_hook_mosaic_export_contact(make_app):
    # Migrated: the host's own implementation reads its contact table (no contact 7: no host part).
    state = personal_data_app(make_app, PersonalData(), migrate=True).extensions["mosaic"]
    with state.db.transaction() as session:
        assert contributions.export_contact(session, 7, state) == {"p0": {"orders": [{"id": 1, "contact": 7}]}}
    failing = personal_data_app(make_app, FailingPersonalData(), migrate=True).extensions["mosaic"]
    with pytest.raises(PluginError, match="plugin 'p0': mosaic_export_contact returned data that is not JSON"):
        with failing.db.transaction() as session:
            contributions.export_contact(session, 7, failing)


def test_hook_mosaic_erase_contact(make_app):
    good = PersonalData()
    state = personal_data_app(make_app, good, migrate=True).extensions["mosaic"]
    with state.db.transaction() as session:
        assert contributions.erase_contact(session, 9, state) == ["host", "p0"]
    assert good.calls == [("erase", 9)]


# --- events and demo data ---------------------------------------------------


def test_hook_mosaic_event(make_app):
    received = []

    class Listener:
        @hookimpl
        def mosaic_event(self, event):
            received.append((event.type, dict(event.data)))

    state = app_with(make_app, Listener()).extensions["mosaic"]
    with state.db.transaction() as session:
        publish(session, hooks.Event(type="acme.pinged", data={"n": 1}))
        assert received == [], "not before the commit"
    assert received == [("acme.pinged", {"n": 1})]


def test_hook_mosaic_demo_data(make_app):
    from host.demo import seed_demo_data

    class Demo:
        @hookimpl
        def mosaic_demo_data(self, session, rng):
            assert isinstance(rng, random.Random)
            session.execute(text("INSERT INTO setting (key, value) VALUES (:k, :v)"), {"k": "acme-demo", "v": '"%d"' % rng.randrange(10**6)})

    app = make_app(plugins=["sales"])
    assert seed_demo_data(app) == ["host", "sales"], "the host first"
    later = app_with(make_app, Demo(), plugins=["acme", "sales"])
    assert seed_demo_data(later) == ["acme"], "only the newly enabled plugin is seeded"
    assert seed_demo_data(later) == [], "a second run reuses the data"
    with later.extensions["mosaic"].db.Session() as session:
        deals = session.scalar(text("SELECT count(*) FROM sales_deal"))
    assert deals == 5
