"""Finding, checking and registering plugins.

Built-in and third-party plugins are found the same way: through the
``mosaic.plugins`` entry point group. A plugin manager is built per app, inside
``create_app``, so apps (and tests) never share plugin state.

Every misconfiguration raises ``PluginError`` with one line naming the plugin.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pluggy

import hooks
from hooks import HOOKS_API_VERSION, Plugin

from .errors import PluginError

log = logging.getLogger("mosaic.plugins")

ENTRY_POINT_GROUP = "mosaic.plugins"
HOST = "host"

#: Names a plugin may not take: they are the host's own URL paths or tables.
RESERVED_NAMES = frozenset(
    {
        "api", "admin", "auth", "login", "logout", "contacts", "interactions",
        "tasks", "search", "import", "export", "static", "portal", "core",
        "host", "health",
        # The host's other first URL segments and blueprint names: a plugin's
        # pages live under /<name>/ and its blueprint is called <name>.
        "attachments", "notifications", "profile", "dashboard", "language",
        "imports", "merge", "audit", "shell", "suggest", "reset",
        # Host table prefixes a plugin's <name>_ tables would mingle with.
        "contact", "interaction", "task", "user", "team", "role", "tag",
        "setting", "job", "webhook", "notification", "attachment",
        "permission", "security", "lifecycle", "personal", "custom", "rate", "event",
        "password",
    }
)


@dataclass
class Candidate:
    """An installed plugin not yet loaded: where it comes from, and how to load it."""

    name: str
    load: Callable[[], Any]
    package: str
    distribution: str | None = None
    #: Already-imported hook implementations (plugins registered by tests).
    hooks_object: Any = None


@dataclass
class LoadedPlugin:
    name: str
    info: Plugin
    package: str
    hooks_object: Any
    path: Path | None
    distribution: str | None = None

    @property
    def version(self) -> str:
        return self.info.version


def _parse_version(value: str, plugin: str) -> tuple[int, int]:
    try:
        major, minor = value.split(".")
        return int(major), int(minor)
    except ValueError:
        raise PluginError(plugin, f"hooks_api {value!r} is not MAJOR.MINOR") from None


def installed_candidates() -> dict[str, Candidate]:
    """Every plugin installed through the ``mosaic.plugins`` entry points."""
    found: dict[str, Candidate] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if getattr(ep, "dist", None) else None
        if ep.name in found:
            raise PluginError(ep.name, f"is installed twice ({found[ep.name].distribution} and {dist})")
        found[ep.name] = Candidate(name=ep.name, load=ep.load, package=ep.module, distribution=dist)
    return found


def candidate_from_objects(info: Plugin, hooks_object: Any, package: str | None = None) -> Candidate:
    """A plugin given as objects rather than an entry point (tests, embedding)."""
    pkg = package or getattr(hooks_object, "__name__", None) or type(hooks_object).__module__
    return Candidate(name=info.name, load=lambda: info, package=pkg, hooks_object=hooks_object)


def load_info(candidate: Candidate) -> Plugin:
    try:
        info = candidate.load()
    except Exception as exc:  # an import error inside the plugin
        raise PluginError(candidate.name, f"failed to import: {type(exc).__name__}: {exc}") from exc
    if not isinstance(info, Plugin):
        raise PluginError(candidate.name, "its entry point must name a hooks.Plugin object")
    if info.name != candidate.name:
        raise PluginError(candidate.name, f"declares the name {info.name!r}, not its entry point name")
    return info


def _load(candidate: Candidate) -> LoadedPlugin:
    info = load_info(candidate)
    name = info.name
    if name in RESERVED_NAMES:
        raise PluginError(name, "this name is reserved by the host (pick another)")
    if not name.isidentifier() or name != name.lower():
        raise PluginError(name, "a plugin name must be a lower-case Python identifier")

    host_major, host_minor = _parse_version(HOOKS_API_VERSION, name)
    major, minor = _parse_version(info.hooks_api, name)
    if major != host_major or minor > host_minor:
        raise PluginError(
            name, f"needs hooks API {info.hooks_api}, but this host offers {HOOKS_API_VERSION}"
        )

    hooks_object = candidate.hooks_object
    if hooks_object is None:
        module_name = info.hooks_module or f"{candidate.package}.plugin"
        try:
            hooks_object = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(name, f"failed to import {module_name}: {type(exc).__name__}: {exc}") from exc

    path = None
    try:
        package = importlib.import_module(candidate.package)
        if getattr(package, "__file__", None):
            path = Path(package.__file__).parent
    except Exception:
        path = None
    return LoadedPlugin(name, info, candidate.package, hooks_object, path, candidate.distribution)


def order_by_dependencies(plugins: Mapping[str, LoadedPlugin], installed: Iterable[str]) -> list[LoadedPlugin]:
    """Dependencies first; otherwise alphabetical, so the order is stable."""
    installed = set(installed)
    for plugin in plugins.values():
        for dep in plugin.info.depends:
            if dep not in plugins:
                why = "which is not enabled (add it to MOSAIC_PLUGINS)" if dep in installed else "which is not installed"
                raise PluginError(plugin.name, f"depends on {dep!r}, {why}")

    ordered: list[LoadedPlugin] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise PluginError(name, "dependency cycle: " + " -> ".join(cycle))
        state[name] = "visiting"
        for dep in sorted(plugins[name].info.depends):
            visit(dep, path + [name])
        state[name] = "done"
        ordered.append(plugins[name])

    for name in sorted(plugins):
        visit(name, [])
    return ordered


def select_plugins(allowlist: Sequence[str] | None, candidates: Mapping[str, Candidate]) -> list[LoadedPlugin]:
    """Load the allowed plugins (all installed when ``allowlist`` is None) in
    dependency order."""
    if allowlist is None:
        names = list(candidates)
    else:
        names = list(dict.fromkeys(allowlist))
        for name in names:
            if name not in candidates:
                known = ", ".join(sorted(candidates)) or "none"
                raise PluginError(name, f"is not installed (installed plugins: {known})")
    loaded = {name: _load(candidates[name]) for name in names}
    return order_by_dependencies(loaded, candidates)


class MosaicPluginManager(pluggy.PluginManager):
    """pluggy's manager plus what the host needs: the loaded plugins in
    dependency order, and per-plugin calls."""

    def __init__(self) -> None:
        super().__init__(hooks.PROJECT_NAME)
        self.add_hookspecs(hooks)
        self.plugins: list[LoadedPlugin] = []

    @property
    def plugin_names(self) -> list[str]:
        return [p.name for p in self.plugins]

    def impls_in_order(self, hook_name: str) -> list[tuple[str, pluggy.HookImpl]]:
        """(plugin name, implementation) for a hook: host first, then plugins
        in dependency order."""
        caller = getattr(self.hook, hook_name)
        rank = {HOST: -1, **{p.name: i for i, p in enumerate(self.plugins)}}
        impls = [(impl.plugin_name, impl) for impl in caller.get_hookimpls()]
        return sorted(impls, key=lambda item: rank.get(item[0], len(rank)))

    def call_each(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
        """Yield (plugin name, thunk) per implementation so the caller decides
        what a failure means (fail the start, or degrade a UI piece)."""
        for name, impl in self.impls_in_order(hook_name):
            args = [kwargs[arg] for arg in impl.argnames]
            yield name, (lambda impl=impl, args=args: impl.function(*args))

    def results_by_plugin(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook per plugin; a raising plugin stops the start with its name."""
        out = []
        for name, thunk in self.call_each(hook_name, **kwargs):
            try:
                result = thunk()
            except Exception as exc:
                raise PluginError(name, f"{hook_name} raised {type(exc).__name__}: {exc}") from exc
            if result is not None:
                out.append((name, result))
        return out


def build_plugin_manager(
    allowlist: Sequence[str] | None,
    extra: Sequence[Candidate] = (),
    host_hooks: ModuleType | None = None,
    trace: bool = False,
) -> MosaicPluginManager:
    candidates = installed_candidates()
    for candidate in extra:
        candidates[candidate.name] = candidate
    selected = select_plugins(allowlist, candidates)

    pm = MosaicPluginManager()
    pm.hook.mosaic_addhooks.call_historic(kwargs={"pluginmanager": pm})
    if host_hooks is not None:
        pm.register(host_hooks, name=HOST)
    for plugin in selected:
        try:
            pm.register(plugin.hooks_object, name=plugin.name)
        except ValueError as exc:
            raise PluginError(plugin.name, f"cannot be registered: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(plugin.name, _validation_message(exc)) from exc
        pm.plugins.append(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or "?"
        hook = _unknown_hook_name(pm, exc.plugin)
        raise PluginError(name, f"implements {hook!r}, which matches no hook specification") from None
    if trace:
        _install_tracing(pm)
    return pm


def _validation_message(exc: pluggy.PluginValidationError) -> str:
    """pluggy's message spans lines (with the source of the function); keep
    the hook's name and the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    hook = re.search(r"for hook '([^']+)'", lines[0]) if lines else None
    reason = lines[-1] if lines else "invalid hook implementation"
    return f"implementation of {hook.group(1)!r}: {reason}" if hook else reason


def _unknown_hook_name(pm: pluggy.PluginManager, plugin: object) -> str:
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.optionalhook:
                    return name
    return "?"


trace_log = logging.getLogger("mosaic.plugins.trace")


def _install_tracing(pm: pluggy.PluginManager) -> None:
    """Log each hook implementation call with its plugin and duration.

    Wraps each ``HookImpl.function`` once: pluggy reads argument names at
    registration, so the wrapper does not change what the plugin receives."""
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if not isinstance(caller, pluggy.HookCaller):
            continue
        for impl in caller.get_hookimpls():
            impl.function = _timed(impl.function, impl.plugin_name, name)


def _timed(func: Callable[..., Any], plugin: str, hook_name: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        outcome = "ok"
        try:
            return func(*args, **kwargs)
        except BaseException:
            outcome = "raised"
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000
            trace_log.info("hook %s plugin=%s %.3f ms %s", hook_name, plugin, ms, outcome)

    return timed
