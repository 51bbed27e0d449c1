"""Data-subject export and erasure, and the journal that makes them reach
plugins that were disabled at the time.

The contact record is identified by its id. Hooks receive a contact *object*
(``mosaic_export_contact(session, contact)`` ...); here that object is the
caller's contact record when it has one, else a ``ContactRef(id)``. Replays
always pass a ``ContactRef``: by then the contact may be anonymised or merged
away. So a plugin implementation must rely on ``contact.id`` only.

- ``export_person``: one JSON document with the host's part (given by the
  caller) and every enabled plugin's part; writes the security log
  (``export``) and an audit entry.
- ``erase_person``: every enabled plugin anonymises its data; journaled with
  the plugins that did it; security log (``erasure``) and audit. Audit
  entries written during the erasure keep field names but not values, and the
  erased fields' earlier values are scrubbed from the audit trail
  (``audit.erasing``).
- ``record_merge``: every enabled plugin moves its references from the merged
  contact to the survivor; journaled and audited.
- ``replay_journal``: for each journal entry, oldest first, every enabled
  plugin implementing the hook and not yet in ``done_by`` applies it, and is
  added to ``done_by``. ``host.migrate.upgrade`` calls it after the
  migrations, so a re-enabled plugin's tables exist when it is asked.

Permissions are the caller's job (views and API check
``core.personal_data.export`` / ``core.personal_data.erase``); everything here
runs in the caller's transaction and does not commit, except
``replay_after_upgrade`` which owns its transaction.

Mind: a journaled erasure is replayed by contact id, so ids must never be
reused (on SQLite the contact table needs ``AUTOINCREMENT``), or a plugin
enabled later would erase the data of a newer contact with the same id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from host import contributions
from host.db import utcnow
from host.errors import PluginError

from . import audit, seclog
from .access import SYSTEM, acting_as, current_principal
from .models import PersonalDataJournal

log = logging.getLogger("mosaic.personal_data")

EXPORT_FORMAT = "mosaic.personal-data-export/1"
CONTACT_TYPE = "core.contact"
ERASE = "erase"
MERGE = "merge"
_HOOK = {ERASE: "mosaic_erase_contact", MERGE: "mosaic_merge_contacts"}


@dataclass(frozen=True)
class ContactRef:
    """A contact known only by id: what hooks receive when no full record
    is at hand (replays, or callers that only have the id)."""

    id: int


def contact_ref(contact: Any) -> Any:
    """An int becomes a ``ContactRef``; an object with ``.id`` is passed on."""
    if isinstance(contact, bool):
        raise TypeError("a contact is an id or an object with .id")
    if isinstance(contact, int):
        return ContactRef(contact)
    if not isinstance(getattr(contact, "id", None), int):
        raise TypeError(f"a contact is an id or an object with an integer .id, not {contact!r}")
    return contact


def _state(state):
    if state is not None:
        return state
    from flask import current_app

    return current_app.extensions["mosaic"]


# --- export ------------------------------------------------------------------------


def export_person(session: Session, contact: Any, *, host_part: Any = None, state=None) -> dict[str, Any]:
    """The data-subject export of one contact as one JSON-ready document::

        {"format": ..., "contact_id": 7, "exported_at": ..., "exported_by": 3,
         "data": {"host": {...}, "<plugin>": {...}, ...}}

    ``host_part`` is the host's own data about the contact (its record,
    interactions ...), supplied by the caller; a ``mosaic_export_contact``
    implementation of the host counts too. A plugin failing raises
    ``PluginError``: an export silently missing a part would mislead."""
    ref = contact_ref(contact)
    parts = contributions.export_contact(session, ref, _state(state))
    if host_part is not None:
        if "host" in parts:
            raise ValueError("export_person: host_part given, but the host's hook contributed a part too")
        parts = {"host": seclog.json_safe(host_part), **parts}
    document = {
        "format": EXPORT_FORMAT,
        "contact_id": ref.id,
        "exported_at": utcnow().isoformat(),
        "exported_by": current_principal().user_id,
        "data": parts,
    }
    names = sorted(parts)
    seclog.record(session, "export", detail={"contact_id": ref.id, "parts": names})
    audit.record(session, "export", CONTACT_TYPE, ref.id, {"parts": names})
    return document


# --- erasure and merge ---------------------------------------------------------------


def erase_person(session: Session, contact: Any, *, state=None) -> PersonalDataJournal:
    """Anonymise the contact's data in every enabled plugin, in the caller's
    transaction, and journal it for plugins enabled later. The host's own
    record is anonymised by the caller (or the host's hook implementation)."""
    ref = contact_ref(contact)
    with audit.erasing(session):
        done = contributions.erase_contact(session, ref, _state(state))
    entry = _journal(session, ERASE, ref.id, None, done)
    seclog.record(session, "erasure", detail={"contact_id": ref.id, "parts": done, "journal_id": entry.id})
    audit.record(session, ERASE, CONTACT_TYPE, ref.id, {"parts": done, "journal_id": entry.id})
    return entry


def record_merge(session: Session, survivor_id: int, merged_id: int, *, state=None) -> PersonalDataJournal:
    """Move every enabled plugin's references from ``merged_id`` to
    ``survivor_id`` and journal the merge for plugins enabled later. The
    host's own contact rows are merged by the caller."""
    if survivor_id == merged_id:
        raise ValueError("a contact cannot be merged into itself")
    survivor, merged = ContactRef(survivor_id), ContactRef(merged_id)
    done = contributions.merge_contacts(session, survivor, merged, _state(state))
    entry = _journal(session, MERGE, survivor_id, merged_id, done)
    audit.record(session, MERGE, CONTACT_TYPE, survivor_id, {"merged_id": merged_id, "parts": done, "journal_id": entry.id})
    return entry


def _journal(session: Session, kind: str, contact_id: int, other_id: int | None, done: list[str]) -> PersonalDataJournal:
    entry = PersonalDataJournal(
        kind=kind,
        contact_id=contact_id,
        other_contact_id=other_id,
        user_id=current_principal().user_id,
        done_by=list(done),
    )
    session.add(entry)
    session.flush()
    return entry


# --- replay -----------------------------------------------------------------------------


def replay_journal(session: Session, state, *, plugins: Iterable[str] | None = None) -> list[tuple[int, str]]:
    """Apply each journaled erasure and merge, oldest first, in every enabled
    plugin that implements the hook and has not applied it yet (limited to
    ``plugins`` when given). Returns (journal id, plugin) pairs applied.

    A plugin's failure raises ``PluginError`` naming it; the caller rolls back,
    so nothing is marked done that was not."""
    only = set(plugins) if plugins is not None else None
    applied: list[tuple[int, str]] = []
    entries = session.scalars(select(PersonalDataJournal).order_by(PersonalDataJournal.id)).all()
    for entry in entries:
        for plugin in _replay_one(session, state, entry, only):
            applied.append((entry.id, plugin))
    return applied


def _replay_one(session: Session, state, entry: PersonalDataJournal, only: set[str] | None) -> list[str]:
    done = list(entry.done_by or [])
    applied = []
    for plugin, thunk in state.pm.call_each(_HOOK[entry.kind], **_hook_kwargs(session, entry)):
        if plugin in done or (only is not None and plugin not in only):
            continue
        try:
            _run(session, entry, thunk)
        except Exception as exc:
            raise PluginError(plugin, f"replaying {entry.kind} #{entry.id}: {_HOOK[entry.kind]} raised {type(exc).__name__}: {exc}") from exc
        done.append(plugin)
        applied.append(plugin)
    if applied:
        entry.done_by = done  # a new list: the JSON column does not track in-place changes
        session.flush()
        log.info("replayed %s #%s for %s", entry.kind, entry.id, ", ".join(applied))
    return applied


def _hook_kwargs(session: Session, entry: PersonalDataJournal) -> dict[str, Any]:
    if entry.kind == ERASE:
        return {"session": session, "contact": ContactRef(entry.contact_id)}
    return {"session": session, "survivor": ContactRef(entry.contact_id), "merged": ContactRef(entry.other_contact_id)}


def _run(session: Session, entry: PersonalDataJournal, thunk) -> None:
    if entry.kind == ERASE:
        with audit.erasing(session):
            thunk()
    else:
        thunk()
        session.flush()


def replay_after_upgrade(state, only: str | None = None) -> list[tuple[int, str]]:
    """Called at the end of ``host.migrate.upgrade``: replay the journal in
    its own transaction, as the system. With ``only`` (one history migrated)
    just that plugin (or the host) replays: the others may not be migrated."""
    plugins = None if only is None else [only]
    with acting_as(SYSTEM), state.db.transaction() as session:
        return replay_journal(session, state, plugins=plugins)
