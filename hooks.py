"""The Mosaic plugin contract.

Everything a plugin can contribute crosses this module: the pluggy markers, the
hook specifications with their documentation, and the small dataclasses that
hooks return. Third-party plugins build on it, so it changes the way a public
library does (see ``HOOKS_API_VERSION``).

A plugin implements hooks in its ``plugin.py`` module::

    from hooks import hookimpl, MenuItem

    @hookimpl
    def mosaic_menu_items(user):
        return [MenuItem(label="Deals", endpoint="sales.index")]

An implementation may accept fewer arguments than the specification names
(pluggy passes only the ones it asks for), so a hook can gain arguments in a
minor release without breaking existing plugins.

Hooks are grouped below as: startup, UI, data, reports, events and demo data.
Unless a specification says "first result wins", the host calls every enabled
plugin's implementation and gathers a list of their results (``None`` results
are dropped by pluggy).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    import click
    import flask
    from sqlalchemy.orm import Session

#: MAJOR.MINOR. A new hook or a new keyword argument raises MINOR; removing or
#: changing the meaning of one raises MAJOR, after a MINOR release that warned.
HOOKS_API_VERSION = "1.0"

PROJECT_NAME = "mosaic"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------
# Values exchanged through hooks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    """What a plugin package declares about itself in its ``__init__.py``.

    The package's ``mosaic.plugins`` entry point names this object, e.g.
    ``sales = "plugins.sales:PLUGIN"``. The host then imports the
    package's ``plugin`` module (or ``hooks_module`` when set) and registers
    the hook implementations found there.

    ``name`` must equal the entry point name, is the prefix of the plugin's
    tables (``<name>_``), the name of its blueprint and its URL prefix
    (``/<name>/``, ``/api/v1/<name>/``).
    """

    name: str
    title: str
    version: str
    description: str = ""
    #: Names of plugins that must be enabled (and are migrated) before this one.
    depends: tuple[str, ...] = ()
    #: The ``HOOKS_API_VERSION`` the plugin was written for.
    hooks_api: str = HOOKS_API_VERSION
    #: Dotted module holding the hook implementations; default ``<package>.plugin``.
    hooks_module: str | None = None


@dataclass(frozen=True)
class Permission:
    """A permission a plugin declares, named ``<plugin>.<object>.<action>``.

    ``default_roles`` lists the built-in roles (``admin``, ``manager``,
    ``staff``) that get it when the plugin is enabled.
    """

    name: str
    description: str = ""
    default_roles: tuple[str, ...] = ("admin",)


@dataclass(frozen=True)
class MenuItem:
    """An entry in the main navigation. ``endpoint`` is a Flask endpoint name;
    ``permission`` hides the item from users who lack it."""

    label: str
    endpoint: str
    permission: str | None = None
    icon: str | None = None
    order: int = 100


@dataclass(frozen=True)
class Widget:
    """A dashboard widget. ``html`` is a ``markupsafe.Markup`` the plugin
    rendered (e.g. with ``render_template``, which escapes user data); a plain
    ``str`` is escaped and shows as text."""

    key: str
    title: str
    html: str
    order: int = 100


@dataclass(frozen=True)
class Panel:
    """A panel on the 360-degree contact page; ``html`` as for ``Widget``."""

    key: str
    title: str
    html: str
    order: int = 100


@dataclass(frozen=True)
class TimelineEntry:
    """One entry of a contact's merged timeline, newest first by ``when``."""

    when: _dt.datetime
    kind: str
    title: str
    summary: str = ""
    url: str | None = None
    #: A stable id unique within the plugin, used to break ties in the cursor.
    key: str = ""


@dataclass(frozen=True)
class SearchResult:
    """A hit for the global search; ``score`` ranks across plugins (higher first)."""

    title: str
    url: str
    kind: str
    snippet: str = ""
    score: float = 0.0


@dataclass(frozen=True)
class JobDefinition:
    """A background or periodic job a plugin contributes.

    ``func(ctx, **args)`` runs with a ``host.jobs.JobContext`` (database
    session, progress reporting). Arguments must be JSON-serialisable because
    a job may run in another process (RQ). With ``every`` set (seconds), the
    host also runs it periodically, once per period however many processes run.
    """

    name: str
    func: Callable[..., Any]
    every: int | None = None
    description: str = ""
    #: How many times an interrupted run is re-run before it is marked failed.
    max_attempts: int = 3


@dataclass(frozen=True)
class Setting:
    """A configuration key a plugin accepts in ``mosaic.toml`` under ``[<plugin>]``."""

    key: str
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class SegmentField:
    """A field a marketing segment can filter on, computed by the plugin that
    owns the data. ``condition(value, operator)`` returns a SQL condition on
    ``contact.id`` (e.g. ``contact.id IN (SELECT ...)``)."""

    key: str
    label: str
    type: str  # "number", "text", "date", "bool", "choice"
    condition: Callable[..., Any]
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class RevenueFactSource:
    """A SQL selectable with the columns ``contact_id``, ``occurred_on`` and
    ``amount`` (base currency) that analytics aggregates, whoever owns it."""

    key: str
    label: str
    selectable: Any


@dataclass(frozen=True)
class ImportTarget:
    """A record type that can be imported from CSV/XLSX: ``schema`` is the
    marshmallow schema validating a row; ``write(session, rows, user)`` stores
    validated rows.

    ``write`` may return one outcome per row (``"created"``, ``"updated"``,
    ``"unchanged"``, or a ``{field: [messages]}`` mapping for a row it
    rejected without storing anything of it); any other return value means
    every row was stored. A ``marshmallow.ValidationError`` or a database
    error raised by ``write`` makes the host retry the batch one row at a
    time, so the failing rows are rejected and the others stored.

    Optional (since 1.0, defaults keep older targets working):
    ``columns(session)`` returns ``{field: label}`` that file headers may
    name (default: the schema's fields; a dotted field ``"a.b"`` is nested
    as ``{"a": {"b": ...}}``); ``required_columns`` lists fields a file must
    have a column for (default: the schema's required fields), where
    ``"a|b"`` accepts either."""

    key: str
    label: str
    schema: Any
    write: Callable[..., Any]
    permission: str | None = None
    columns: Callable[..., Mapping[str, str]] | None = None
    required_columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ExportType:
    """A list that can be exported; ``rows(session, user, filters)`` yields dicts.

    Optional (defaults keep older types working): ``columns_for(session)``
    returns the columns when they depend on the data (custom fields), used
    instead of ``columns``; ``filters_schema`` is a marshmallow schema that
    validates the filters (query parameters) before ``rows`` gets them."""

    key: str
    label: str
    columns: tuple[str, ...]
    rows: Callable[..., Any]
    permission: str | None = None
    columns_for: Callable[..., Sequence[str]] | None = None
    filters_schema: Any = None


@dataclass(frozen=True)
class CustomFieldDefinition:
    """A custom field on a host record (``model`` is e.g. ``"contact"``)."""

    model: str
    key: str
    label: str
    type: str  # "text", "number", "date", "bool", "choice"
    choices: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class ReportDefinition:
    """A report the reports plugin can run and draw. ``query(session, user,
    params)`` returns a SQL selectable that aggregates in the database."""

    key: str
    title: str
    query: Callable[..., Any]
    columns: tuple[str, ...] = ()
    chart: str | None = None  # "bar", "line", "pie" or None for a table
    permission: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Event:
    """A domain event, delivered to ``mosaic_event`` after its transaction
    commits (never for a rolled-back one), and kept in the outbox table.

    ``type`` is ``<object>.<verb>``: ``contact.created``, ``deal.won`` ...
    ``data`` must be JSON-serialisable.
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
    )
    #: Set by the host when the event is written to the outbox.
    id: int | None = None
    #: The plugin (or "host") that published it.
    source: str = "host"


# ---------------------------------------------------------------------------
# Startup hooks: called while ``create_app`` builds the application.
# ---------------------------------------------------------------------------


@hookspec(historic=True)
def mosaic_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Let a plugin publish hook specifications of its own for other plugins.

    Called once per plugin as it is registered, before any other hook
    (pytest's ``pytest_addhooks`` pattern). Call
    ``pluginmanager.add_hookspecs(module)``. Implementations of a spec that a
    plugin publishes must be marked ``@hookimpl(optionalhook=True)`` by the
    plugins that implement it, so they still load when the publisher is disabled.

    Since 1.0.
    """


@hookspec
def mosaic_models() -> Sequence[type]:
    """Return the SQLAlchemy model classes the plugin defines.

    Called once at start. The host checks that each table is named
    ``<plugin>_...`` and that no two plugins declare the same table. The tables
    themselves are created only by the plugin's own migrations.

    Since 1.0.
    """


@hookspec
def mosaic_migrations_dir() -> str:
    """Return the directory holding the plugin's Alembic revision files.

    Called by ``mosaic db upgrade``. Each plugin has its own history and
    version table ``alembic_version_<plugin>``; the host's runs first, then
    each enabled plugin's in dependency order.

    Since 1.0.
    """


@hookspec
def mosaic_blueprints() -> Sequence["flask.Blueprint"]:
    """Return Flask blueprints for the staff UI.

    Called once at start. The first blueprint must be named after the plugin
    and is mounted at ``/<plugin>/``; further ones must be named
    ``<plugin>_<something>`` and are mounted at ``/<plugin>/<something>/``
    unless they set a ``url_prefix`` of their own under ``/<plugin>/``.

    Since 1.0.
    """


@hookspec
def mosaic_api_blueprints() -> Sequence[Any]:
    """Return flask-smorest blueprints for the REST API.

    Called once at start. Each is mounted under ``/api/v1/<plugin>/`` and
    appears in the OpenAPI document only while the plugin is enabled.

    Since 1.0.
    """


@hookspec
def mosaic_permissions() -> Sequence[Permission]:
    """Return the permissions the plugin declares (``<plugin>.<object>.<action>``).

    Called once at start; a name declared twice stops the start.

    Since 1.0.
    """


@hookspec
def mosaic_cli(cli: "click.Group") -> None:
    """Add click commands to the ``mosaic`` command line.

    Called when the command line is built; add commands with
    ``cli.add_command(...)``. They run inside an application context.

    Since 1.0.
    """


@hookspec
def mosaic_jobs() -> Sequence[JobDefinition]:
    """Return background and periodic jobs the plugin contributes.

    Called once at start; job names must be unique (prefix them with the
    plugin name: ``sales.recalculate_targets``).

    Since 1.0.
    """


@hookspec
def mosaic_settings() -> Sequence[Setting]:
    """Return the configuration keys the plugin reads from ``[<plugin>]`` in
    ``mosaic.toml``. Unknown keys in that section stop the start.

    Since 1.0.
    """


@hookspec
def mosaic_app_ready(app: "flask.Flask") -> None:
    """Called once, after every plugin is registered and the app is built.

    Use it for wiring that needs the finished app (template filters, request
    hooks). Not for database work: the database may not be migrated yet.

    Since 1.0.
    """


# ---------------------------------------------------------------------------
# UI hooks: called while a page renders. A plugin that raises here degrades
# its piece to a visible placeholder naming the plugin; the page still renders.
# ---------------------------------------------------------------------------


@hookspec
def mosaic_menu_items(user: Any) -> Sequence[MenuItem]:
    """Return navigation entries for ``user`` (``None`` when signed out).

    Called on every page render. Return only what the user may use.

    Since 1.0.
    """


@hookspec
def mosaic_dashboard_widgets(user: Any) -> Sequence[Widget]:
    """Return dashboard widgets for ``user``.

    Called when the dashboard renders. Data in a widget must respect the
    user's record scope.

    Since 1.0.
    """


@hookspec
def mosaic_contact_panels(contact: Any, user: Any) -> Sequence[Panel]:
    """Return panels for the 360-degree page of ``contact`` as seen by ``user``.

    Since 1.0.
    """


@hookspec
def mosaic_contact_timeline(
    contact: Any, user: Any, before: _dt.datetime | None, limit: int
) -> Sequence[TimelineEntry]:
    """Return up to ``limit`` timeline entries of ``contact`` older than
    ``before`` (all when ``None``), newest first, within ``user``'s scope.

    The host merges every plugin's entries with its own and paginates.

    Since 1.0.
    """


@hookspec
def mosaic_search(query: str, user: Any, limit: int) -> Sequence[SearchResult]:
    """Return up to ``limit`` results for ``query`` that ``user`` may see.

    Since 1.0.
    """


@hookspec
def mosaic_template_slot(name: str, context: Mapping[str, Any]) -> str | None:
    """Return markup for the named slot of a host template, or ``None``.

    Called wherever a template says ``{{ slot("name") }}``; every plugin's
    markup is joined in plugin order. Return ``markupsafe.Markup``: a plain
    ``str`` is escaped.

    Since 1.0.
    """


# ---------------------------------------------------------------------------
# Data hooks
# ---------------------------------------------------------------------------


@hookspec
def mosaic_segment_fields() -> Sequence[SegmentField]:
    """Return fields marketing segments can filter contacts on.

    Since 1.0.
    """


@hookspec
def mosaic_revenue_facts() -> Sequence[RevenueFactSource]:
    """Return revenue fact sources (contact, date, amount) for analytics.

    Since 1.0.
    """


@hookspec
def mosaic_import_targets() -> Sequence[ImportTarget]:
    """Return record types that the import wizard and ``mosaic import`` accept.

    Since 1.0.
    """


@hookspec
def mosaic_export_types() -> Sequence[ExportType]:
    """Return lists that can be exported to CSV/XLSX.

    Since 1.0.
    """


@hookspec
def mosaic_custom_fields() -> Sequence[CustomFieldDefinition]:
    """Return custom field definitions on host records.

    Since 1.0.
    """


@hookspec
def mosaic_merge_contacts(session: "Session", survivor: Any, merged: Any) -> None:
    """Move the plugin's references from contact ``merged`` to ``survivor``.

    Called inside the merge's transaction (do not commit). Merges are
    journaled: a plugin disabled at the time is called again for each past
    merge when it is enabled, so it must be idempotent.

    Since 1.0.
    """


@hookspec
def mosaic_export_contact(session: "Session", contact: Any) -> Mapping[str, Any] | None:
    """Return the plugin's personal data about ``contact`` for a data-subject
    export (JSON-serialisable), keyed as the plugin likes.

    Since 1.0.
    """


@hookspec
def mosaic_erase_contact(session: "Session", contact: Any) -> None:
    """Anonymise the plugin's personal data about ``contact``.

    Called inside the erasure's transaction; journaled and replayed like
    merges, so it must be idempotent.

    Since 1.0.
    """


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


@hookspec
def mosaic_reports() -> Sequence[ReportDefinition]:
    """Return report definitions. The reports plugin runs and draws them;
    without it, nothing else breaks.

    Since 1.0.
    """


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@hookspec
def mosaic_event(event: Event) -> None:
    """Receive a domain event after its transaction committed.

    Called once per event per plugin, in the process that committed it. An
    exception is logged with the plugin's name and does not undo anything.
    Durable consumers should read the outbox (``host.events``) instead.

    Since 1.0.
    """


# ---------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------


@hookspec
def mosaic_demo_data(session: "Session", rng: Any) -> None:
    """Add demo records for ``mosaic serve --demo``.

    Called once per database, host first, then plugins in dependency order,
    inside one transaction. ``rng`` is a seeded ``random.Random``.

    Since 1.0.
    """
