"""The application factory.

``create_app`` builds everything per app: configuration, the plugin manager,
the database, blueprints and the API. Nothing is kept at module level, so two
apps with different plugin sets live side by side (the tests do this).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from flask import Blueprint, Flask

from hooks import JobDefinition, Permission

from . import hookimpls as host_hookimpls
from .api import MosaicApi
from .config import MosaicConfig, load_config
from .db import Database, close_session, host_models
from .errors import PluginError
from .events import EventDispatcher
from .plugins import Candidate, LoadedPlugin, MosaicPluginManager, build_plugin_manager
from .security import audit

log = logging.getLogger("mosaic")


@dataclass
class MosaicState:
    """What one app knows about itself; ``app.extensions["mosaic"]``."""

    config: MosaicConfig
    pm: MosaicPluginManager
    db: Database
    events: EventDispatcher
    tables_by_plugin: dict[str, list[str]] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    jobs: dict[str, JobDefinition] = field(default_factory=dict)
    api: Any = None
    _cli: Any = None
    rate_limiter: Any = None
    csrf: Any = None

    def plugin_cli(self):
        """A click group holding the commands plugins add (``mosaic_cli``)."""
        if self._cli is None:
            import click

            group = click.Group("plugin-commands")
            self.pm.results_by_plugin("mosaic_cli", cli=group)
            self._cli = group
        return self._cli

    @property
    def plugins(self) -> list[LoadedPlugin]:
        return self.pm.plugins

    def settings_for(self, plugin: str) -> dict[str, Any]:
        """A plugin's settings: its declared defaults, overridden by the
        ``[<plugin>]`` section of mosaic.toml."""
        declared = dict(self.pm.results_by_plugin("mosaic_settings")).get(plugin, [])
        values = {s.key: s.default for s in declared}
        values.update(self.config.plugin_settings.get(plugin, {}))
        return values

    def plugin(self, name: str) -> LoadedPlugin | None:
        return next((p for p in self.pm.plugins if p.name == name), None)


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    extra_plugins: Sequence[Candidate] = (),
    environ: Mapping[str, str] | None = None,
) -> Flask:
    """Build a Mosaic app.

    ``config`` overrides the environment (``MOSAIC_*``) and ``mosaic.toml``;
    ``extra_plugins`` adds plugins that are not installed as entry points
    (tests, embedding); they are still subject to the ``plugins`` allowlist.
    Raises ``MosaicStartupError`` with one line on any misconfiguration.
    """
    environ = os.environ if environ is None else environ
    cfg = load_config(config, environ)
    trace = cfg.trace_plugins or environ.get("MOSAIC_TRACE_PLUGINS", "") in ("1", "true", "yes")
    if trace:
        logging.getLogger("mosaic.plugins.trace").setLevel(logging.INFO)
    pm = build_plugin_manager(cfg.plugins, extra_plugins, host_hooks=host_hookimpls, trace=trace)

    app = Flask("host", instance_path=str(cfg.instance_path), root_path=os.path.dirname(__file__))
    app.config.update(
        SECRET_KEY=cfg.secret_key,
        MAX_CONTENT_LENGTH=cfg.max_content_length,
        TESTING=cfg.testing,
        DEBUG=cfg.debug,
        MOSAIC_CONFIG=cfg,
        TRUSTED_HOSTS=cfg.trusted_hosts,
    )
    if cfg.proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = cfg.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    db = Database(cfg.database_url)
    dispatcher = EventDispatcher(pm)
    dispatcher.install(db.Session, db.WriteSession)
    audit.install(db)
    state = MosaicState(config=cfg, pm=pm, db=db, events=dispatcher)
    app.extensions["mosaic"] = state

    _collect_models(state)
    _check_settings(state)
    _collect_permissions(state)
    _collect_jobs(state)
    _register_blueprints(app, state)
    state.api = _register_api(app, state)
    _declare_api_docs_public(app)
    app.teardown_appcontext(close_session)

    from .security import setup as security

    security.init_app(app, state)

    from . import errors_http, i18n

    i18n.init_app(app)
    errors_http.register(app)
    pm.hook.mosaic_app_ready(app=app)
    return app


def _collect_models(state: MosaicState) -> None:
    owner: dict[str, str] = {m.__table__.name: "host" for m in host_models()}
    for plugin, models in state.pm.results_by_plugin("mosaic_models"):
        if plugin == "host":
            continue
        names = []
        for model in models:
            table = getattr(model, "__table__", None)
            if table is None:
                raise PluginError(plugin, f"mosaic_models returned {model!r}, which is not a mapped model")
            name = table.name
            if not name.startswith(f"{plugin}_"):
                raise PluginError(plugin, f"table {name!r} must be named '{plugin}_...'")
            if name in owner:
                raise PluginError(plugin, f"table {name!r} is already declared by {owner[name]!r}")
            owner[name] = plugin
            names.append(name)
        state.tables_by_plugin[plugin] = names


def _check_settings(state: MosaicState) -> None:
    declared = {p: {s.key for s in settings} for p, settings in state.pm.results_by_plugin("mosaic_settings")}
    enabled = set(state.pm.plugin_names)
    for section, values in state.config.plugin_settings.items():
        if section not in enabled:
            continue  # settings of a disabled plugin are kept, not checked
        for key in values:
            if key not in declared.get(section, set()):
                raise PluginError(section, f"mosaic.toml: [{section}] {key}: unknown setting")


def _collect_permissions(state: MosaicState) -> None:
    for plugin, perms in state.pm.results_by_plugin("mosaic_permissions"):
        prefix = "core." if plugin == "host" else f"{plugin}."
        for perm in perms:
            if not perm.name.startswith(prefix) or perm.name.count(".") != 2:
                raise PluginError(plugin, f"permission {perm.name!r} must be named '{prefix}<object>.<action>'")
            if perm.name in state.permissions:
                raise PluginError(plugin, f"permission {perm.name!r} is declared twice")
            state.permissions[perm.name] = perm


def _collect_jobs(state: MosaicState) -> None:
    owners: dict[str, str] = {}
    for plugin, jobs in state.pm.results_by_plugin("mosaic_jobs"):
        for job in jobs:
            if job.name in owners:
                raise PluginError(plugin, f"job {job.name!r} is already declared by {owners[job.name]!r}")
            owners[job.name] = plugin
            state.jobs[job.name] = job


def _register_blueprints(app: Flask, state: MosaicState) -> None:
    from . import web
    from .views import core

    app.register_blueprint(core)
    web.register(app)
    for plugin, blueprints in state.pm.results_by_plugin("mosaic_blueprints"):
        if plugin == "host":
            continue
        for index, bp in enumerate(blueprints):
            if not isinstance(bp, Blueprint):
                raise PluginError(plugin, f"mosaic_blueprints returned {bp!r}, not a Flask Blueprint")
            if index == 0 and bp.name != plugin:
                raise PluginError(plugin, f"its first blueprint must be named {plugin!r}, not {bp.name!r}")
            if index > 0 and not bp.name.startswith(f"{plugin}_"):
                raise PluginError(plugin, f"blueprint {bp.name!r} must be named '{plugin}_...'")
            if bp.name in app.blueprints:
                raise PluginError(plugin, f"blueprint {bp.name!r} is already registered")
            prefix = bp.url_prefix or (f"/{plugin}" if index == 0 else f"/{plugin}/{bp.name[len(plugin) + 1:]}")
            if not (prefix == f"/{plugin}" or prefix.startswith(f"/{plugin}/")):
                raise PluginError(plugin, f"blueprint {bp.name!r} must live under /{plugin}/, not {prefix}")
            served = _served_routes(app)
            app.register_blueprint(bp, url_prefix=prefix)
            _check_no_shadowing(app, plugin, served)


def _served_routes(app: Flask) -> dict[tuple[str, str], str]:
    """(path, method) -> endpoint for every rule registered so far."""
    return {
        (rule.rule, method): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or ()) - {"HEAD", "OPTIONS"}
    }


def _check_no_shadowing(app: Flask, plugin: str, served_before: dict[tuple[str, str], str]) -> None:
    """A route that answers the same path and method as an earlier one would
    never be reached: refuse it rather than let it vanish silently."""
    for key, endpoint in _served_routes(app).items():
        if key in served_before and served_before[key] != endpoint:
            raise PluginError(plugin, f"route {key[0]} is already served by {served_before[key]}")


def _declare_api_docs_public(app: Flask) -> None:
    """The OpenAPI document describes the API, holds no data: anyone may read it."""
    import functools

    from .security.access import public

    for endpoint, view in list(app.view_functions.items()):
        if endpoint.startswith("api-docs."):
            app.view_functions[endpoint] = public(functools.wraps(view)(lambda *a, _v=view, **k: _v(*a, **k)))


def _register_api(app: Flask, state: MosaicState):
    api = MosaicApi(app)
    for plugin, blueprints in state.pm.results_by_plugin("mosaic_api_blueprints"):
        for bp in blueprints:
            expected = "core" if plugin == "host" else plugin
            if not (bp.name == f"api_{expected}" or bp.name.startswith(f"api_{expected}_")):
                raise PluginError(plugin, f"API blueprint {bp.name!r} must be named 'api_{expected}...'")
            if bp.name in app.blueprints:
                raise PluginError(plugin, f"API blueprint {bp.name!r} is already registered")
            try:
                api.register_plugin_blueprint(plugin, bp)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(plugin, f"API blueprint {bp.name!r}: {type(exc).__name__}: {exc}") from exc
    return api
