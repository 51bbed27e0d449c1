"""Gathering UI contributions from plugins without letting one break a page.

A plugin that raises inside a UI hook gets its piece replaced by a visible
placeholder naming it; the error is logged with a traceback and the page renders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_babel import gettext
from markupsafe import Markup, escape

log = logging.getLogger("mosaic.ui")


@dataclass(frozen=True)
class Placeholder:
    """Stands in for a failed plugin contribution; templates render it as a notice."""

    plugin: str
    hook: str

    @property
    def is_placeholder(self) -> bool:
        return True

    def __html__(self) -> str:
        return str(
            Markup('<div class="mosaic-placeholder" role="status">{}</div>').format(
                gettext("The %(plugin)s plugin could not show this part.", plugin=self.plugin)
            )
        )


def contributions(hook_name: str, **kwargs: Any) -> list[Any]:
    """Flatten each plugin's list of contributions; a failing plugin yields
    one ``Placeholder`` instead of its items."""
    pm = current_app.extensions["mosaic"].pm
    items: list[Any] = []
    for plugin, thunk in pm.call_each(hook_name, **kwargs):
        try:
            result = thunk()
        except Exception:
            log.exception("plugin %s failed in %s", plugin, hook_name)
            items.append(Placeholder(plugin, hook_name))
            continue
        if result is None:
            continue
        if isinstance(result, (list, tuple)):
            items.extend(result)
        else:
            items.append(result)
    return items


def sorted_contributions(hook_name: str, **kwargs: Any) -> list[Any]:
    """As ``contributions``, ordered by each item's ``order`` (placeholders last)."""
    items = contributions(hook_name, **kwargs)
    return sorted(items, key=lambda item: getattr(item, "order", 10_000))


def template_slot(name: str, **context: Any) -> Markup:
    """Join every plugin's markup for a named template slot."""
    parts = []
    for item in contributions("mosaic_template_slot", name=name, context=context):
        parts.append(render_html(item))
    return Markup("").join(parts)


def render_html(value: Any) -> Markup:
    """Markup a plugin rendered (a ``Markup`` or anything with ``__html__``)
    is kept; a plain string is escaped, so forgetting to escape is safe."""
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    return escape(value)
