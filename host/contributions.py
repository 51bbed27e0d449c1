"""Definitions plugins contribute through data and report hooks, gathered
once per app, checked, and kept with the name of the plugin that gave them.

A contribution of the wrong type or a key two plugins both claim raises
``PluginError`` naming the plugin, at the first use of that hook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, Iterator, TypeVar

from flask import current_app

import hooks

from .errors import PluginError

T = TypeVar("T")


@dataclass(frozen=True)
class Contribution(Generic[T]):
    plugin: str
    item: T


#: hook name -> (dataclass it must return, the attribute(s) that make it unique)
DEFINITION_HOOKS: dict[str, tuple[type, tuple[str, ...]]] = {
    "mosaic_segment_fields": (hooks.SegmentField, ("key",)),
    "mosaic_revenue_facts": (hooks.RevenueFactSource, ("key",)),
    "mosaic_import_targets": (hooks.ImportTarget, ("key",)),
    "mosaic_export_types": (hooks.ExportType, ("key",)),
    "mosaic_custom_fields": (hooks.CustomFieldDefinition, ("model", "key")),
    "mosaic_reports": (hooks.ReportDefinition, ("key",)),
}


def _state(state=None):
    return state if state is not None else current_app.extensions["mosaic"]


def definitions(hook_name: str, state=None) -> dict[Any, Contribution]:
    """Key -> Contribution for a definition hook, in plugin order; cached per app."""
    state = _state(state)
    cache = state.__dict__.setdefault("_definitions", {})
    if hook_name not in cache:
        cache[hook_name] = _gather(state, hook_name)
    return cache[hook_name]


def _gather(state, hook_name: str) -> dict[Any, Contribution]:
    kind, key_attrs = DEFINITION_HOOKS[hook_name]
    found: dict[Any, Contribution] = {}
    for plugin, items in state.pm.results_by_plugin(hook_name):
        for item in items:
            if not isinstance(item, kind):
                raise PluginError(plugin, f"{hook_name} returned {type(item).__name__}, not hooks.{kind.__name__}")
            key = tuple(getattr(item, a) for a in key_attrs)
            key = key[0] if len(key) == 1 else key
            if key in found:
                raise PluginError(plugin, f"{hook_name}: {key!r} is already defined by {found[key].plugin!r}")
            found[key] = Contribution(plugin, item)
    return found


def export_contact(session, contact, state=None) -> dict[str, Any]:
    """Each plugin's part of a data-subject export, keyed by plugin name.

    A failure is not skipped: an export that silently lacks a plugin's data
    would mislead the person asking for it."""
    state = _state(state)
    out: dict[str, Any] = {}
    for plugin, data in state.pm.results_by_plugin("mosaic_export_contact", session=session, contact=contact):
        try:
            json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise PluginError(plugin, f"mosaic_export_contact returned data that is not JSON: {exc}") from None
        out[plugin] = data
    return out


def _call_all(hook_name: str, state, **kwargs: Any) -> list[str]:
    """Call every implementation inside the caller's transaction; the first
    failure propagates (naming the plugin) so the caller rolls back."""
    called = []
    for plugin, thunk in state.pm.call_each(hook_name, **kwargs):
        try:
            thunk()
        except Exception as exc:
            raise PluginError(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}") from exc
        called.append(plugin)
    return called


def erase_contact(session, contact, state=None) -> list[str]:
    """Ask every enabled plugin to anonymise its data about ``contact``;
    returns the plugins called (for the erasure journal)."""
    return _call_all("mosaic_erase_contact", _state(state), session=session, contact=contact)


def merge_contacts(session, survivor, merged, state=None) -> list[str]:
    """Ask every enabled plugin to move its references; returns the plugins
    called (for the merge journal)."""
    return _call_all("mosaic_merge_contacts", _state(state), session=session, survivor=survivor, merged=merged)


def iter_items(hook_name: str, state=None) -> Iterator[Any]:
    for contribution in definitions(hook_name, state).values():
        yield contribution.item
