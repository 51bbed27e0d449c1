"""Each user's dashboard arrangement: the order of widgets and which are hidden.

Stored per user in the ``setting`` table (key ``core.dashboard.<user id>``,
a JSON value ``{"order": [...], "hidden": [...]}`` of widget keys), so it
needs no column of its own. Widgets the layout does not name yet (a plugin
enabled later) show after the arranged ones in their own order; keys of
widgets that are gone are kept, so disabling a plugin for a while does not
lose where its widgets were.

Domain logic only: a session in, no Flask request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy.orm import Session

from host.models import Setting

ACTIONS = ("up", "down", "hide", "show", "reset")
MAX_KEYS = 200


@dataclass
class Layout:
    order: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)


def _key(user_id: int) -> str:
    return f"core.dashboard.{user_id}"


def load_layout(session: Session, user_id: int) -> Layout:
    row = session.get(Setting, _key(user_id))
    value = row.value if row is not None and isinstance(row.value, dict) else {}
    order = [k for k in value.get("order", []) if isinstance(k, str)]
    hidden = [k for k in value.get("hidden", []) if isinstance(k, str)]
    return Layout(order=order, hidden=hidden)


def save_layout(session: Session, user_id: int, layout: Layout) -> None:
    value = {"order": layout.order[:MAX_KEYS], "hidden": layout.hidden[:MAX_KEYS]}
    row = session.get(Setting, _key(user_id))
    if row is None:
        session.add(Setting(key=_key(user_id), value=value))
    else:
        row.value = value
    session.flush()


def arrange(widgets: Sequence[Any], layout: Layout) -> tuple[list[Any], list[Any]]:
    """(shown, hidden) widgets in the user's order. Items without a ``key``
    (placeholders of failed plugins) are always shown, last."""
    keyed = [w for w in widgets if isinstance(getattr(w, "key", None), str)]
    others = [w for w in widgets if not isinstance(getattr(w, "key", None), str)]
    rank = {key: index for index, key in enumerate(layout.order)}
    ordered = sorted(keyed, key=lambda w: (w.key not in rank, rank.get(w.key, 0)))  # stable for the rest
    hidden = set(layout.hidden)
    return [w for w in ordered if w.key not in hidden] + others, [w for w in ordered if w.key in hidden]


def change(layout: Layout, current_keys: Sequence[str], action: str, key: str) -> Layout:
    """The layout after ``action`` on widget ``key``; ``current_keys`` are the
    keys of the widgets present now (shown or hidden), in their default order.
    "up" and "down" swap with the neighbour the user sees."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if action == "reset":
        return Layout()
    if key not in current_keys:
        raise LookupError(key)
    # Make the whole order explicit as ``arrange`` shows it: the remembered
    # keys (absent widgets' too), then widgets the layout does not name yet.
    order = list(layout.order) + [k for k in current_keys if k not in layout.order]
    hidden = [k for k in layout.hidden if k != key]
    if action == "hide":
        hidden.append(key)
    elif action in ("up", "down"):
        visible = [k for k in order if k in current_keys and k not in layout.hidden]
        if key in visible:
            i = visible.index(key)
            j = i - 1 if action == "up" else i + 1
            if 0 <= j < len(visible):
                a, b = order.index(visible[i]), order.index(visible[j])
                order[a], order[b] = order[b], order[a]
        hidden = list(layout.hidden)
    return Layout(order=order, hidden=hidden)
