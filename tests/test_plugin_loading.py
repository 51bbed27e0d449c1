"""Plugin discovery and the fail-fast checks: each misconfiguration stops
the start with one line that names the plugin."""

from __future__ import annotations

import pytest
from flask import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hooks import HOOKS_API_VERSION, MenuItem, Permission, hookimpl
from host.errors import MosaicStartupError, PluginError
from host.testing import client_for, plugin_candidate

from .conftest import BUILTIN_PLUGINS, plugin_init


def start_error(make_app, **kwargs) -> str:
    with pytest.raises(MosaicStartupError) as info:
        make_app(migrate=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "a fail-fast error is one line"
    return message


# --- discovery --------------------------------------------------------------


def test_builtin_plugins_are_found_through_entry_points(make_app):
    app = make_app(migrate=False)
    assert app.extensions["mosaic"].pm.plugin_names == sorted(BUILTIN_PLUGINS)


def test_empty_allowlist_enables_the_host_alone(make_app):
    app = make_app(plugins=[], migrate=False)
    assert app.extensions["mosaic"].pm.plugin_names == []
    assert app.test_client().get("/sales/").status_code == 404


def test_third_party_plugin_installed_as_a_distribution_loads(make_app, site_packages):
    site_packages.install(
        "acme",
        {
            "__init__.py": plugin_init("acme"),
            "plugin.py": """
                from hooks import hookimpl, MenuItem
                @hookimpl
                def mosaic_menu_items(user):
                    return [MenuItem(label="Acme", endpoint="core.index")]
            """,
        },
    )
    app = make_app(plugins=["acme", "sales"])
    assert app.extensions["mosaic"].pm.plugin_names == ["acme", "sales"]
    assert b"Acme" in client_for(app).get("/").data


# --- fail-fast cases --------------------------------------------------------


def test_unknown_plugin_name_lists_the_installed_ones(make_app):
    message = start_error(make_app, plugins=["sales", "nosuch"])
    assert "'nosuch'" in message
    assert "is not installed" in message
    for name in BUILTIN_PLUGINS:
        assert name in message


def test_dependency_not_installed(make_app):
    acme = plugin_candidate("acme", object(), depends=["ghost"])
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message == "plugin 'acme': depends on 'ghost', which is not installed"


def test_dependency_installed_but_disabled(make_app):
    acme = plugin_candidate("acme", object(), depends=["sales"])
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert "plugin 'acme': depends on 'sales', which is not enabled" in message


def test_dependencies_decide_the_order(make_app):
    zulu = plugin_candidate("zulu", object())
    alpha = plugin_candidate("alpha", object(), depends=["zulu"])
    app = make_app(plugins=["alpha", "zulu"], extra_plugins=[zulu, alpha], migrate=False)
    assert app.extensions["mosaic"].pm.plugin_names == ["zulu", "alpha"]


def test_dependency_cycle(make_app):
    a = plugin_candidate("alpha", object(), depends=["beta"])
    b = plugin_candidate("beta", object(), depends=["alpha"])
    message = start_error(make_app, plugins=["alpha", "beta"], extra_plugins=[a, b])
    assert "dependency cycle: alpha -> beta -> alpha" in message


@pytest.mark.parametrize("needed", ["1.99", "2.0", "0.9"])
def test_plugin_needing_another_hooks_api_is_refused(make_app, needed):
    acme = plugin_candidate("acme", object(), hooks_api=needed)
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message == f"plugin 'acme': needs hooks API {needed}, but this host offers {HOOKS_API_VERSION}"


def test_plugin_for_an_older_minor_is_accepted(make_app):
    acme = plugin_candidate("acme", object(), hooks_api="1.0")
    make_app(plugins=["acme"], extra_plugins=[acme], migrate=False)


class MisspelledHook:
    @hookimpl
    def mosaic_menu_itemz(self, user):
        return []


def test_hook_implementation_matching_no_spec(make_app):
    acme = plugin_candidate("acme", MisspelledHook())
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message == "plugin 'acme': implements 'mosaic_menu_itemz', which matches no hook specification"


class AsksForUnknownArgument:
    @hookimpl
    def mosaic_menu_items(self, user, colour):
        return []


def test_hook_implementation_asking_for_an_argument_the_spec_lacks(make_app):
    acme = plugin_candidate("acme", AsksForUnknownArgument())
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message.startswith("plugin 'acme':") and "colour" in message


def test_import_error_inside_the_plugin_package(make_app, site_packages):
    site_packages.install("broken", {"__init__.py": "import no_such_module_here\n"})
    message = start_error(make_app, plugins=["broken"])
    assert message.startswith("plugin 'broken': failed to import: ModuleNotFoundError")
    assert "no_such_module_here" in message


def test_import_error_inside_the_hooks_module(make_app, site_packages):
    site_packages.install("broken", {"__init__.py": plugin_init("broken"), "plugin.py": "1/0\n"})
    message = start_error(make_app, plugins=["broken"])
    assert message.startswith("plugin 'broken': failed to import mosaic_test_broken.plugin: ZeroDivisionError")


def test_broken_plugin_that_is_not_enabled_does_not_stop_the_start(make_app, site_packages):
    site_packages.install("broken", {"__init__.py": "raise RuntimeError('boom')\n"})
    make_app(plugins=["sales"], migrate=False)


def test_entry_point_must_name_a_plugin_object(make_app, site_packages):
    site_packages.install("odd", {"__init__.py": "PLUGIN = 42\n"})
    assert start_error(make_app, plugins=["odd"]) == "plugin 'odd': its entry point must name a hooks.Plugin object"


def test_plugin_name_must_match_its_entry_point(make_app, site_packages):
    site_packages.install("alias", {"__init__.py": plugin_init("other")})
    assert "declares the name 'other'" in start_error(make_app, plugins=["alias"])


@pytest.mark.parametrize("reserved", ["contacts", "api", "health", "static", "core"])
def test_reserved_names_are_refused(make_app, reserved):
    thing = plugin_candidate(reserved, object())
    message = start_error(make_app, plugins=[reserved], extra_plugins=[thing])
    assert message == f"plugin '{reserved}': this name is reserved by the host (pick another)"


def test_reserved_names_cover_the_hosts_paths_blueprints_and_table_prefixes(make_app):
    """A plugin serves /<name>/, registers blueprint <name> and prefixes its
    tables <name>_: none of these may land on the host's own. Walks the host
    alone, so a new host route or table is caught here."""
    from host.db import host_models
    from host.plugins import RESERVED_NAMES

    app = make_app(plugins=[])
    segments = {rule.rule.strip("/").split("/")[0] for rule in app.url_map.iter_rules()}
    names = {s for s in segments if s.isidentifier()}
    names |= {name for name in app.blueprints if name.isidentifier() and "_" not in name}
    names |= {model.__table__.name.split("_")[0] for model in host_models()}
    assert names - RESERVED_NAMES == set()


# --- duplicate contributions ------------------------------------------------


class TwoBlueprintsOneName:
    @hookimpl
    def mosaic_blueprints(self):
        return [Blueprint("acme", __name__), Blueprint("acme_extra", __name__), Blueprint("acme_extra", __name__)]


def test_duplicate_blueprint_name(make_app):
    message = start_error(make_app, plugins=["acme"], extra_plugins=[plugin_candidate("acme", TwoBlueprintsOneName())])
    assert message == "plugin 'acme': blueprint 'acme_extra' is already registered"


class FirstBlueprintMisnamed:
    @hookimpl
    def mosaic_blueprints(self):
        return [Blueprint("sales", __name__)]


def test_blueprint_named_after_another_plugin(make_app):
    message = start_error(
        make_app, plugins=["acme", "sales"], extra_plugins=[plugin_candidate("acme", FirstBlueprintMisnamed())]
    )
    assert message == "plugin 'acme': its first blueprint must be named 'acme', not 'sales'"


class ShadowedRoute:
    @hookimpl
    def mosaic_blueprints(self):
        first, second = Blueprint("acme", __name__), Blueprint("acme_again", __name__, url_prefix="/acme")
        first.add_url_rule("/", "index", lambda: "one")
        second.add_url_rule("/", "index", lambda: "two")
        return [first, second]


def test_duplicate_route(make_app):
    message = start_error(make_app, plugins=["acme"], extra_plugins=[plugin_candidate("acme", ShadowedRoute())])
    assert message.startswith("plugin 'acme': route /acme/ is already served by acme.index")


class EscapingBlueprint:
    @hookimpl
    def mosaic_blueprints(self):
        return [Blueprint("acme", __name__, url_prefix="/contacts")]


def test_blueprint_outside_its_plugin_prefix(make_app):
    message = start_error(make_app, plugins=["acme"], extra_plugins=[plugin_candidate("acme", EscapingBlueprint())])
    assert message == "plugin 'acme': blueprint 'acme' must live under /acme/, not /contacts"


class DuplicatePermission:
    @hookimpl
    def mosaic_permissions(self):
        return [Permission("acme.widget.read"), Permission("acme.widget.read")]


def test_duplicate_permission(make_app):
    message = start_error(make_app, plugins=["acme"], extra_plugins=[plugin_candidate("acme", DuplicatePermission())])
    assert message == "plugin 'acme': permission 'acme.widget.read' is declared twice"


class ForeignPermission:
    @hookimpl
    def mosaic_permissions(self):
        return [Permission("sales.deal.read")]


def test_permission_in_another_plugins_namespace(make_app):
    message = start_error(
        make_app, plugins=["acme", "sales"], extra_plugins=[plugin_candidate("acme", ForeignPermission())]
    )
    assert message == "plugin 'acme': permission 'sales.deal.read' must be named 'acme.<object>.<action>'"


class _OtherBase(DeclarativeBase):
    """A separate base so test tables never enter the app's metadata."""


class UnprefixedThing(_OtherBase):
    __tablename__ = "thing"
    id: Mapped[int] = mapped_column(primary_key=True)


class HostTableClash(_OtherBase):
    __tablename__ = "job_period"
    id: Mapped[int] = mapped_column(primary_key=True)


class BoxItem(_OtherBase):
    __tablename__ = "acme_box_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(10))


def models_plugin(*models):
    class Models:
        @hookimpl
        def mosaic_models(self):
            return list(models)

    return Models()


def test_table_without_the_plugin_prefix(make_app):
    acme = plugin_candidate("acme", models_plugin(UnprefixedThing))
    assert start_error(make_app, plugins=["acme"], extra_plugins=[acme]) == "plugin 'acme': table 'thing' must be named 'acme_...'"


def test_table_already_owned_by_the_host(make_app):
    # Every host table prefix is a reserved name, so a plugin that would
    # declare the host's job_period is refused by its name already.
    job = plugin_candidate("job", models_plugin(HostTableClash))
    assert start_error(make_app, plugins=["job"], extra_plugins=[job]) == "plugin 'job': this name is reserved by the host (pick another)"


def test_table_already_owned_by_another_plugin(make_app):
    # "acme_box_item" fits both "acme_" and "acme_box_": the prefix check
    # cannot tell them apart, the ownership check must.
    acme = plugin_candidate("acme", models_plugin(BoxItem))
    box = plugin_candidate("acme_box", models_plugin(BoxItem))
    message = start_error(make_app, plugins=["acme", "acme_box"], extra_plugins=[acme, box])
    assert message == "plugin 'acme_box': table 'acme_box_item' is already declared by 'acme'"


def _schema_pair():
    first = type("ThingSchema", (Schema,), {"name": fields.String(), "__module__": "acme.api"})
    second = type("ThingSchema", (Schema,), {"size": fields.Integer(), "__module__": "acme.other"})
    return first, second


class DuplicateApiSchemas:
    @hookimpl
    def mosaic_api_blueprints(self):
        from flask_smorest import Blueprint as ApiBlueprint

        first, second = _schema_pair()
        bp = ApiBlueprint("api_acme", __name__)

        @bp.get("/one")
        @bp.response(200, first)
        def one():
            return {}

        @bp.get("/two")
        @bp.response(200, second)
        def two():
            return {}

        return [bp]


def test_duplicate_api_schema_name(make_app):
    acme = plugin_candidate("acme", DuplicateApiSchemas())
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message.startswith("plugin 'acme': API schema name 'AcmeThing' is used by both")


def test_same_schema_name_in_two_plugins_is_fine(app):
    """sales and marketing both have an ``...Schema``; names are prefixed."""
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "SalesDeal" in schemas and "MarketingCampaign" in schemas


class RaisesAtStartup:
    @hookimpl
    def mosaic_permissions(self):
        raise RuntimeError("database of permissions unavailable")


def test_startup_hook_raising_names_the_plugin(make_app):
    acme = plugin_candidate("acme", RaisesAtStartup())
    message = start_error(make_app, plugins=["acme"], extra_plugins=[acme])
    assert message == "plugin 'acme': mosaic_permissions raised RuntimeError: database of permissions unavailable"


# --- hooks published by plugins ---------------------------------------------


def _publisher_specs():
    from hooks import hookspec

    class Specs:
        @hookspec
        def acme_greeting(self, name):
            """Return a greeting for ``name``."""

    return Specs


class Publisher:
    @hookimpl
    def mosaic_addhooks(self, pluginmanager):
        pluginmanager.add_hookspecs(_publisher_specs())


class Subscriber:
    @hookimpl(optionalhook=True)
    def acme_greeting(self, name):
        return f"hello {name}"


def test_plugin_publishes_hooks_that_another_implements(make_app):
    publisher = plugin_candidate("acme", Publisher())
    subscriber = plugin_candidate("greeter", Subscriber())
    app = make_app(plugins=["acme", "greeter"], extra_plugins=[publisher, subscriber], migrate=False)
    assert app.extensions["mosaic"].pm.hook.acme_greeting(name="Ana") == ["hello Ana"]


def test_optional_implementation_loads_while_the_publisher_is_disabled(make_app):
    subscriber = plugin_candidate("greeter", Subscriber())
    app = make_app(plugins=["greeter"], extra_plugins=[subscriber], migrate=False)
    assert app.extensions["mosaic"].pm.plugin_names == ["greeter"]


class NonOptionalSubscriber:
    @hookimpl
    def acme_greeting(self, name):
        return name


def test_required_implementation_of_a_missing_publisher_is_refused(make_app):
    subscriber = plugin_candidate("greeter", NonOptionalSubscriber())
    message = start_error(make_app, plugins=["greeter"], extra_plugins=[subscriber])
    assert message == "plugin 'greeter': implements 'acme_greeting', which matches no hook specification"


# --- opt-in arguments and tracing ------------------------------------------


class TakesNoArguments:
    @hookimpl
    def mosaic_menu_items(self):
        return [MenuItem(label="No-args entry", endpoint="core.index")]


def test_implementation_may_take_fewer_arguments_than_the_spec(make_app):
    app = make_app(plugins=["acme"], extra_plugins=[plugin_candidate("acme", TakesNoArguments())])
    assert b"No-args entry" in client_for(app).get("/").data


def test_trace_logs_each_hook_call_with_plugin_and_duration(make_app, caplog):
    app = make_app(plugins=["sales"], trace_plugins=True)
    client = client_for(app)
    caplog.set_level("INFO", logger="mosaic.plugins.trace")
    client.get("/")
    lines = [r.getMessage() for r in caplog.records if r.name == "mosaic.plugins.trace"]
    assert any(line.startswith("hook mosaic_dashboard_widgets plugin=sales ") and line.endswith(" ms ok") for line in lines)
    assert any(line.startswith("hook mosaic_menu_items plugin=host ") for line in lines)


def test_no_trace_without_the_setting(make_app, caplog):
    app = make_app(plugins=["sales"])
    client = client_for(app)
    caplog.set_level("INFO", logger="mosaic.plugins.trace")
    client.get("/")
    assert not [r for r in caplog.records if r.name == "mosaic.plugins.trace"]


def test_two_apps_do_not_share_plugin_state(make_app):
    one = make_app(plugins=["sales"], migrate=False)
    two = make_app(plugins=["service"], migrate=False)
    assert one.extensions["mosaic"].pm is not two.extensions["mosaic"].pm
    assert one.test_client().get("/service/").status_code == 404
    assert two.test_client().get("/sales/").status_code == 404
