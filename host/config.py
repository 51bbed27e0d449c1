"""Configuration: environment variables over ``mosaic.toml`` over defaults.

The instance folder (``MOSAIC_INSTANCE``, default ``./instance`` in the working
directory) holds the SQLite database, the generated secret key, attachments and
the optional ``mosaic.toml``. Every value is validated by one marshmallow schema
so a bad one stops the start with a line naming its key.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields, validate

from .errors import ConfigError

ENV_PREFIX = "MOSAIC_"


class _PluginList(fields.Field):
    """A comma string (environment) or a list (TOML) of plugin names.

    ``None`` means every installed plugin; an empty string, none."""

    #: What the error calls the items.
    items_are = "names"

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",")]
        elif isinstance(value, (list, tuple)):
            items = [str(part).strip() for part in value]
        else:
            raise ValidationError(f"Must be a comma-separated string or a list of {self.items_are}.")
        return [item for item in items if item]


class _HostList(_PluginList):
    """The same, of host names, each ``name``, ``name:port`` or ``.domain``
    (that domain and its subdomains, as Flask's ``TRUSTED_HOSTS`` reads it);
    empty means any host (``None``)."""

    items_are = "host names"
    _HOST = re.compile(r"^\.?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d{1,5})?$")

    def _deserialize(self, value, attr, data, **kwargs):
        items = super()._deserialize(value, attr, data, **kwargs)
        bad = [item for item in items if not self._HOST.match(item)]
        if bad:
            raise ValidationError(f"Not a host name: {bad[0]!r}.")
        return items or None


class ConfigSchema(Schema):
    database_url = fields.String(load_default=None, allow_none=True)
    plugins = _PluginList(load_default=None, allow_none=True)
    secret_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=16))
    redis_url = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^(redis|rediss|unix)://", error="Must be a redis:// URL."),
    )
    smtp_url = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^smtps?://", error="Must be an smtp:// or smtps:// URL."),
    )
    mail_from = fields.Email(load_default="mosaic@localhost")
    #: Without SMTP, mail goes to the log; its body (which may hold a reset
    #: link) only with this set, for development installs.
    mail_log_body = fields.Boolean(load_default=False)
    #: Webhooks may target loopback, private, link-local and reserved
    #: addresses only with this set (development, tests, an intranet receiver);
    #: otherwise a URL resolving to one is refused (SSRF guard).
    webhooks_allow_private = fields.Boolean(load_default=False)
    base_url = fields.Url(load_default=None, allow_none=True, require_tld=False)
    #: Requests whose Host header names none of these answer 400 (a forged
    #: Host cannot reach links built from it). Unset: any host.
    trusted_hosts = _HostList(load_default=None, allow_none=True)
    #: How many reverse proxies stand in front: their X-Forwarded-For/-Proto/
    #: -Host/-Port headers are believed for that many hops (client address
    #: for login limits and the security log, HTTPS for cookies and HSTS).
    #: 0 believes none, so a client cannot forge its address.
    proxies = fields.Integer(load_default=0, validate=validate.Range(min=0, max=5))
    trace_plugins = fields.Boolean(load_default=False)
    jobs_inline = fields.Boolean(load_default=False)
    max_content_length = fields.Integer(load_default=32 * 1024 * 1024, validate=validate.Range(min=1024))
    debug = fields.Boolean(load_default=False)
    testing = fields.Boolean(load_default=False)
    # Sections named after plugins hold plugin settings; checked against
    # ``mosaic_settings`` once the plugins are known.
    plugin_settings = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)


#: Keys read from the environment as ``MOSAIC_<KEY>``.
ENV_KEYS = (
    "database_url",
    "plugins",
    "secret_key",
    "redis_url",
    "smtp_url",
    "mail_from",
    "mail_log_body",
    "webhooks_allow_private",
    "base_url",
    "trusted_hosts",
    "proxies",
    "trace_plugins",
    "jobs_inline",
    "max_content_length",
)


@dataclass
class MosaicConfig:
    instance_path: Path
    database_url: str
    plugins: list[str] | None
    secret_key: str
    redis_url: str | None
    smtp_url: str | None
    mail_from: str
    mail_log_body: bool
    webhooks_allow_private: bool
    base_url: str | None
    trusted_hosts: list[str] | None
    proxies: int
    trace_plugins: bool
    jobs_inline: bool
    max_content_length: int
    debug: bool
    testing: bool
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)


def instance_path_from(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("MOSAIC_INSTANCE") or Path.cwd() / "instance").resolve()


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested error dict to its first (key, message)."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        return _first_error(value, f"{prefix}.{key}" if prefix else str(key))
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], prefix)
    return prefix, str(messages)


def load_config(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> MosaicConfig:
    """Build the configuration; ``overrides`` (from ``create_app(config=...)``)
    win over the environment, which wins over ``mosaic.toml``."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    instance = Path(overrides.pop("instance_path", None) or instance_path_from(environ)).resolve()

    toml_path = instance / "mosaic.toml"
    raw: dict[str, Any] = {}
    plugin_sections: dict[str, dict[str, Any]] = {}
    for key, value in _read_toml(toml_path).items():
        if isinstance(value, dict):
            plugin_sections[key] = value
        else:
            raw[key] = value
    known = set(ConfigSchema().fields)
    for key in raw:
        if key not in known or key == "plugin_settings":
            raise ConfigError(f"mosaic.toml: {key}: unknown setting")
    source = {key: "mosaic.toml" for key in raw}
    for key in ENV_KEYS:
        env_name = ENV_PREFIX + key.upper()
        if env_name in environ:
            raw[key] = environ[env_name]
            source[key] = env_name
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"config: {key}: unknown setting")
        raw[key] = value
        source[key] = "config"
    raw["plugin_settings"] = {**plugin_sections, **raw.get("plugin_settings", {})}

    try:
        data = ConfigSchema().load(raw)
    except ValidationError as exc:
        key, message = _first_error(exc.messages)
        where = source.get(key.split(".")[0], "config")
        if where.startswith(ENV_PREFIX):  # the variable's name says it all
            raise ConfigError(f"{where}: {message}") from None
        raise ConfigError(f"{where}: {key}: {message}") from None

    instance.mkdir(parents=True, exist_ok=True)
    if not data["database_url"]:
        data["database_url"] = f"sqlite:///{instance / 'mosaic.db'}"
    if not data["secret_key"]:
        data["secret_key"] = _stored_secret_key(instance)
    return MosaicConfig(instance_path=instance, **data)


def _stored_secret_key(instance: Path) -> str:
    """Generate the secret key once and keep it in the instance folder, so
    sessions survive restarts and every process of one install agrees."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    # O_EXCL: when two processes start at once, the second reads the first's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
