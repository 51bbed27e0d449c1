"""Bulk actions on contacts chosen in a list: assign an owner, add a tag,
change the lifecycle stage.

Each action applies to the chosen contacts the principal may see and change;
ids out of scope, missing or in the recycle bin are skipped without a trace
(reporting them would confirm they exist). Tags and stages go through
``services.update_contact`` one contact at a time, so the audit trail, the
lifecycle history and the events are exactly those of a single edit; the
owner goes through ``audited_bulk_update`` (the services have no single-edit
path for it: an owner is never a side effect of an edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from marshmallow import ValidationError
from sqlalchemy.orm import Session

from hooks import Event
from host.events import publish
from host.security.access import Principal
from host.security.audit import audited_bulk_update
from host.security.models import User

from . import services
from .models import LIFECYCLE_STAGES, Contact

#: The most contacts one bulk action takes (a list page shows at most 200).
MAX_IDS = 200
PERMISSION = "core.contact.update"


@dataclass(frozen=True)
class BulkResult:
    """How many of the chosen contacts changed; the rest were already so,
    or are not the principal's to change."""

    chosen: int
    changed: int


def _ids(ids: Iterable[int]) -> list[int]:
    unique = sorted({i for i in ids if isinstance(i, int) and not isinstance(i, bool)})
    if not unique:
        raise ValidationError({"ids": ["Choose at least one contact."]})
    if len(unique) > MAX_IDS:
        raise ValidationError({"ids": [f"Choose at most {MAX_IDS} contacts at once."]})
    return unique


def _visible(session: Session, principal: Principal, ids: list[int]) -> list[Contact]:
    return list(session.scalars(services._scoped(Contact, principal).where(Contact.id.in_(ids)).order_by(Contact.id)))


def _check(principal: Principal) -> None:
    if not principal.can(PERMISSION):
        raise PermissionError(f"bulk actions need {PERMISSION}")


def add_tag(session: Session, principal: Principal, ids: Iterable[int], tag: str) -> BulkResult:
    _check(principal)
    chosen = _ids(ids)
    name = " ".join((tag or "").split())
    if not name or len(name) > 100:
        raise ValidationError({"tag": ["Give a tag of 1 to 100 characters."]})
    changed = 0
    for contact in _visible(session, principal, chosen):
        names = [t.name for t in contact.tags]
        if name not in names:
            services.update_contact(session, contact.id, {"tags": [*names, name]}, principal=principal)
            changed += 1
    return BulkResult(len(chosen), changed)


def set_stage(session: Session, principal: Principal, ids: Iterable[int], stage: str) -> BulkResult:
    _check(principal)
    chosen = _ids(ids)
    if stage not in LIFECYCLE_STAGES:
        raise ValidationError({"lifecycle_stage": [f"Choose one of: {', '.join(LIFECYCLE_STAGES)}."]})
    changed = 0
    for contact in _visible(session, principal, chosen):
        if contact.lifecycle_stage != stage:
            services.update_contact(session, contact.id, {"lifecycle_stage": stage}, principal=principal)
            changed += 1
    return BulkResult(len(chosen), changed)


def assign_owner(session: Session, principal: Principal, ids: Iterable[int], owner_id: int | None) -> BulkResult:
    """Give the chosen contacts to an active user; each moves to the new
    owner's team when they have exactly one (as a task follows its
    assignee), so the owner's manager sees it."""
    _check(principal)
    chosen = _ids(ids)
    owner = session.get(User, owner_id) if isinstance(owner_id, int) else None
    if owner is None or not owner.active:
        raise ValidationError({"owner_id": ["No such active user."]})
    values = {"owner_id": owner.id}
    if len(owner.teams) == 1:
        values["team_id"] = owner.teams[0].id
    found = _visible(session, principal, chosen)
    if not found:
        return BulkResult(len(chosen), 0)
    before = {contact.id: contact.owner_id for contact in found}
    visible = list(before)
    changed = audited_bulk_update(session, Contact, Contact.id.in_(visible), values, principal=principal)
    for contact_id in visible:
        if before.get(contact_id) != owner.id:
            publish(session, Event(type="contact.updated", data={"id": contact_id, "changed": sorted(values)}))
    return BulkResult(len(chosen), changed)
