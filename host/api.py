"""The REST API base: flask-smorest, mounted at ``/api/v1``.

Differences from a plain ``flask_smorest.Api``: error handling is the host's
(JSON under ``/api/``, HTML elsewhere, see ``errors_http``); schema names in the
OpenAPI document are prefixed by their plugin so two plugins may both have a
``Item`` schema; and no interactive docs are served (they load from a CDN).
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from flask_smorest import Api

from .errors import PluginError

API_PREFIX = "/api/v1"


BEARER = "bearerAuth"


class SecurityDocPlugin(BasePlugin):
    """Every operation in the document states how it authenticates and the
    errors the host's gate and error handler can answer, so a client written
    from the document alone handles them."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def operation_helper(self, path=None, operations=None, **kwargs):
        from .security.access import PUBLIC, policy_of

        rule = kwargs.get("rule")
        view = self.app.view_functions.get(rule.endpoint) if (self.app and rule is not None) else None
        public = policy_of(view) == PUBLIC
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            operation["security"] = [] if public else [{BEARER: []}]
            wanted = [] if public else ["UNAUTHORIZED", "FORBIDDEN", "TOO_MANY_REQUESTS"]
            if rule is not None and rule.arguments:
                wanted.append("NOT_FOUND")
            if method in ("post", "put", "patch"):
                wanted += ["UNSUPPORTED_MEDIA_TYPE", "UNPROCESSABLE_ENTITY"]
            if method == "patch":
                wanted += ["CONFLICT", "PRECONDITION_FAILED", "PRECONDITION_REQUIRED"]
            for name in wanted:
                responses.setdefault(str(_STATUS[name]), name)
            responses.setdefault("default", "DEFAULT_ERROR")


_STATUS = {
    "UNAUTHORIZED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "CONFLICT": 409, "PRECONDITION_FAILED": 412,
    "UNSUPPORTED_MEDIA_TYPE": 415, "UNPROCESSABLE_ENTITY": 422, "PRECONDITION_REQUIRED": 428,
    "TOO_MANY_REQUESTS": 429,
}


class MosaicApi(Api):
    def __init__(self, app: Flask):
        self._schema_owner: dict[str, type] = {}
        self._current_plugin = "core"
        security_doc = SecurityDocPlugin()
        app.config.setdefault("API_TITLE", "Mosaic CRM")
        app.config.setdefault("API_VERSION", "1")
        app.config.setdefault("OPENAPI_VERSION", "3.0.3")
        app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
        app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
        app.config.setdefault("API_SPEC_OPTIONS", {
            "info": {"description": "Mosaic CRM REST API. Only enabled plugins' endpoints appear here."},
        })
        super().__init__(
            app,
            spec_kwargs={
                "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=self._schema_name),
                "extra_plugins": [security_doc],
            },
        )
        security_doc.app = app
        self.spec.components.security_scheme(
            BEARER, {"type": "http", "scheme": "bearer", "description": "A personal API token: `mosaic tokens create EMAIL`."}
        )

    def _register_error_handlers(self) -> None:
        """The host registers one handler for UI and API alike (errors_http)."""

    def _schema_name(self, schema: Any) -> str:
        cls = resolve_schema_cls(schema)
        base = cls.__name__.removesuffix("Schema") or cls.__name__
        plugin = self._plugin_of(cls)
        name = f"{plugin.title()}{base}" if plugin not in ("core", "host") else base
        owner = self._schema_owner.setdefault(name, cls)
        if owner is not cls:
            raise PluginError(plugin, f"API schema name {name!r} is used by both {owner.__module__}.{owner.__name__} and {cls.__module__}.{cls.__name__}")
        return name

    def _plugin_of(self, cls: type) -> str:
        module = cls.__module__
        if module.startswith("plugins."):
            return module.split(".")[1]
        return self._current_plugin

    def register_plugin_blueprint(self, plugin: str, blueprint: Any) -> None:
        self._current_plugin = "core" if plugin == "host" else plugin
        try:
            prefix = API_PREFIX if plugin == "host" else f"{API_PREFIX}/{plugin}"
            self.register_blueprint(blueprint, url_prefix=blueprint.url_prefix or prefix)
        finally:
            self._current_plugin = "core"
