"""The contact timeline: one stream, newest first, merged from the host's
interactions and tasks and every enabled plugin's ``mosaic_contact_timeline``.

Order and cursor
    Entries are ordered by the tuple ``(when, stream, key)``, descending:
    ``stream`` is ``core.interaction``, ``core.task`` or the plugin's name,
    ``key`` the entry's id within its stream (host ids zero-padded, so text
    order is number order). The tuple is unique, so a cursor made of the last
    entry's tuple splits the stream exactly: entries with equal timestamps
    are neither skipped nor repeated across pages.

What each source is asked
    A source is asked for at most ``limit + 1`` entries after the cursor, and
    the lists are merged k-way, so a page never loads a contact's history.
    The host's own streams are keyset SQL queries on the full tuple. Plugins
    only receive ``before`` ("strictly older than"), so a plugin whose stream
    sorts before or equal to the cursor's is asked for entries up to and
    including the cursor's timestamp (``before`` = cursor + 1 µs) and the
    host drops what was already shown. For the cursor's own stream that means
    asking ``seen`` more entries (the cursor counts how many entries of that
    stream at that timestamp were shown): exact as long as the plugin returns
    equal timestamps ordered by ``key`` descending, or has fewer ties at one
    instant than it is asked for.

Failures
    A plugin that raises, or returns something that is not a list of
    ``TimelineEntry`` with aware datetimes, is logged and contributes one
    placeholder item naming it (at the top of the page, dated at the page's
    upper bound so the page stays sorted); the rest of the stream renders.

Scope
    The caller checks that the contact is visible (``visible_contact``); the
    host's entries are filtered with ``scope_condition`` too, and plugins get
    the user and must filter with ``current_principal()``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session

from hooks import TimelineEntry
from host.db import utcnow
from host.pagination import encode_cursor
from host.security.access import Principal, scope_condition

from .models import Contact, Interaction, Task

log = logging.getLogger("mosaic.timeline")

HOOK = "mosaic_contact_timeline"
INTERACTIONS = "core.interaction"
TASKS = "core.task"
#: The ``source`` the API shows for the host's own entries.
HOST_SOURCE = "core"
#: The smallest step of a datetime: "up to and including T" is "before T + 1 µs".
ONE_TICK = dt.timedelta(microseconds=1)
SUMMARY_CHARS = 280
_KEY_DIGITS = 20


@dataclass(frozen=True)
class TimelineItem:
    """One entry of the merged stream, as the API and the UI show it."""

    when: dt.datetime
    kind: str
    title: str
    summary: str
    url: str | None
    #: "core" for the host's entries, else the plugin's name.
    source: str
    #: The tie-breaking stream and key; never shown, only put in cursors.
    stream: str
    key: str
    placeholder: bool = False

    @property
    def order(self) -> tuple[dt.datetime, str, str]:
        return (self.when, self.stream, self.key)


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: its last entry's order tuple, and how
    many entries of that stream at that instant were shown so far."""

    when: dt.datetime
    stream: str
    key: str
    seen: int = 1

    @property
    def order(self) -> tuple[dt.datetime, str, str]:
        return (self.when, self.stream, self.key)

    def encode(self) -> str:
        return encode_cursor([self.when.isoformat(), self.stream, self.key, self.seen])

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> "Cursor":
        """From a decoded cursor list; ``ValidationError`` naming ``cursor``
        for anything that is not one of ours."""
        try:
            when_text, stream, key, seen = values
            when = dt.datetime.fromisoformat(when_text)
            if when.tzinfo is None or not isinstance(stream, str) or not isinstance(key, str):
                raise ValueError
            return cls(when.astimezone(dt.timezone.utc), stream, key, max(int(seen), 0))
        except (TypeError, ValueError):
            raise ValidationError("Not a valid cursor: use the `next` value of the previous page.", "cursor") from None


@dataclass(frozen=True)
class TimelinePage:
    items: list[TimelineItem]
    next: str | None


# --- the page -------------------------------------------------------------------------


def contact_timeline(
    session: Session,
    contact: Contact,
    principal: Principal,
    *,
    user: Any = None,
    cursor: Cursor | None = None,
    limit: int = 50,
) -> TimelinePage:
    """One page of ``contact``'s timeline as ``principal`` may see it.

    ``user`` is what plugins receive as their ``user`` argument (the user
    account); ``contact`` must already be checked with ``visible_contact``."""
    streams = [
        _host_interactions(session, contact.id, principal, cursor, limit),
        _host_tasks(session, contact.id, principal, cursor, limit),
    ]
    plugin_streams, failed = _plugin_streams(contact, user, cursor, limit)
    streams += plugin_streams
    merged = list(itertools.islice(heapq.merge(*streams, key=lambda item: item.order, reverse=True), limit + 1))
    items = merged[:limit]
    next_cursor = _next_cursor(items, cursor).encode() if len(merged) > limit else None
    top = _page_top(items, cursor)
    return TimelinePage([_placeholder(name, top) for name in failed] + items, next_cursor)


def visible_contact(session: Session, principal: Principal, contact_id: int) -> Contact | None:
    """The contact if it exists, is not in the recycle bin and is in
    ``principal``'s scope; ``None`` otherwise (the API answers 404 for all
    three alike, so a hidden contact cannot be told from a missing one)."""
    query = select(Contact).where(
        Contact.id == contact_id, Contact.deleted_at.is_(None), scope_condition(principal, Contact)
    )
    return session.scalars(query).one_or_none()


def _next_cursor(items: list[TimelineItem], cursor: Cursor | None) -> Cursor:
    last = items[-1]
    same = sum(1 for item in items if (item.when, item.stream) == (last.when, last.stream))
    if cursor is not None and (cursor.when, cursor.stream) == (last.when, last.stream):
        same += cursor.seen
    return Cursor(last.when, last.stream, last.key, same)


def _after(cursor: Cursor | None) -> Callable[[TimelineItem], bool]:
    if cursor is None:
        return lambda item: True
    return lambda item: item.order < cursor.order


def _page_top(items: list[TimelineItem], cursor: Cursor | None) -> dt.datetime:
    """The page's upper bound, where placeholders stand so the page stays
    sorted: the cursor's instant, or now (or a later due task) on page one."""
    if cursor is not None:
        return cursor.when
    now = utcnow()
    return max(now, items[0].when) if items else now


def _placeholder(plugin: str, when: dt.datetime) -> TimelineItem:
    return TimelineItem(
        when=when, kind="placeholder", title=f"The {plugin} plugin could not show its entries.", summary="",
        url=None, source=plugin, stream=plugin, key="", placeholder=True,
    )


# --- the host's streams ----------------------------------------------------------------


def _host_key(record_id: int) -> str:
    return f"{record_id:0{_KEY_DIGITS}d}"


def _keyset(stream: str, when_col: Any, id_col: Any, cursor: Cursor | None) -> Any:
    """The SQL form of "sorts after the cursor" for one host stream."""
    if cursor is None:
        return true()
    if stream > cursor.stream:
        return when_col < cursor.when
    if stream < cursor.stream:
        return when_col <= cursor.when
    return or_(when_col < cursor.when, and_(when_col == cursor.when, id_col < int(cursor.key)))


def _host_interactions(session: Session, contact_id: int, principal: Principal, cursor: Cursor | None, limit: int) -> list[TimelineItem]:
    query = (
        select(Interaction)
        .where(
            Interaction.contact_id == contact_id,
            Interaction.deleted_at.is_(None),
            scope_condition(principal, Interaction),
            _keyset(INTERACTIONS, Interaction.occurred_at, Interaction.id, cursor),
        )
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit + 1)
    )
    return [_interaction_item(row) for row in session.scalars(query)]


def _interaction_item(row: Interaction) -> TimelineItem:
    return TimelineItem(
        when=row.occurred_at, kind=f"interaction.{row.channel}", title=row.subject, summary=_excerpt(row.body),
        url=f"/interactions/{row.id}", source=HOST_SOURCE, stream=INTERACTIONS, key=_host_key(row.id),
    )


def _task_when() -> Any:
    """A task stands on the timeline at its due time, or when it was created
    if it has none."""
    return func.coalesce(Task.due_at, Task.created_at)


def _host_tasks(session: Session, contact_id: int, principal: Principal, cursor: Cursor | None, limit: int) -> list[TimelineItem]:
    when = _task_when()
    query = (
        select(Task, when.label("when"))
        .where(
            Task.contact_id == contact_id,
            Task.deleted_at.is_(None),
            scope_condition(principal, Task),
            _keyset(TASKS, when, Task.id, cursor),
        )
        .order_by(when.desc(), Task.id.desc())
        .limit(limit + 1)
    )
    return [_task_item(task, when_value) for task, when_value in session.execute(query)]


def _task_item(task: Task, when: dt.datetime) -> TimelineItem:
    state = "Done" if task.done else "Open"
    summary = f"{state}: {_excerpt(task.notes)}" if task.notes else state
    return TimelineItem(
        when=when, kind="task.done" if task.done else "task", title=task.title, summary=summary,
        url=f"/tasks/{task.id}", source=HOST_SOURCE, stream=TASKS, key=_host_key(task.id),
    )


def _excerpt(text: str | None) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= SUMMARY_CHARS else flat[: SUMMARY_CHARS - 1] + "…"


# --- plugins' streams ---------------------------------------------------------------------


def _plugin_streams(contact: Contact, user: Any, cursor: Cursor | None, limit: int) -> tuple[list[list[TimelineItem]], list[str]]:
    """Each plugin's entries after the cursor, sorted; and the plugins that failed."""
    pm = current_app.extensions["mosaic"].pm
    streams: list[list[TimelineItem]] = []
    failed: list[str] = []
    for plugin, impl in pm.impls_in_order(HOOK):
        before, ask = _plugin_window(plugin, cursor, limit)
        values = {"contact": contact, "user": user, "before": before, "limit": ask}
        try:
            entries = impl.function(*[values[name] for name in impl.argnames])
            items = _plugin_items(plugin, entries)
        except Exception:
            log.exception("plugin %s failed in %s", plugin, HOOK)
            failed.append(plugin)
            continue
        keep = _after(cursor)
        streams.append(sorted((i for i in items if keep(i)), key=lambda i: i.order, reverse=True)[: limit + 1])
    return streams, failed


def _plugin_window(stream: str, cursor: Cursor | None, limit: int) -> tuple[dt.datetime | None, int]:
    """(``before``, ``limit``) to ask a plugin for (see the module docstring)."""
    if cursor is None:
        return None, limit + 1
    if stream > cursor.stream:
        return cursor.when, limit + 1
    if stream < cursor.stream:
        return cursor.when + ONE_TICK, limit + 1
    return cursor.when + ONE_TICK, limit + 1 + cursor.seen


def _plugin_items(plugin: str, entries: Iterable[Any] | None) -> list[TimelineItem]:
    """A plugin's entries as items; ``TypeError`` for anything malformed, so
    it degrades to a placeholder like an exception would."""
    items = []
    for entry in entries or ():
        if not isinstance(entry, TimelineEntry):
            raise TypeError(f"returned {type(entry).__name__}, not hooks.TimelineEntry")
        if not isinstance(entry.when, dt.datetime) or entry.when.tzinfo is None:
            raise TypeError(f"entry {entry.key!r}: `when` must be an aware datetime")
        items.append(TimelineItem(
            when=entry.when.astimezone(dt.timezone.utc), kind=entry.kind, title=entry.title, summary=entry.summary or "",
            url=entry.url, source=plugin, stream=plugin, key=str(entry.key),
        ))
    return items
