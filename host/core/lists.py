"""The staff UI's list queries that the API's lists do not need: contacts
sorted by more than their id and filtered on custom fields, "my tasks" in
due-date groups, and names of contacts for list rows.

Every query carries ``scope_condition`` (through ``services.contact_conditions``
or directly) and leaves out the recycle bin, like the services it builds on.
Pages are keyset pages whose cursor holds the sort value and the id of the
last row shown, so a deep page costs what the first one does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from marshmallow import ValidationError
from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session

from host.pagination import page
from host.security.access import Principal, scope_condition

from . import services
from .models import Contact, Task
from .schemas import custom_fields_schema

#: Sort orders of the contact list: name -> (column, descending).
CONTACT_SORTS = ("newest", "oldest", "name", "activity")
DEFAULT_SORT = "newest"


# --- contacts -------------------------------------------------------------------------------


def custom_field_conditions(session: Session, given: Mapping[str, Any], *, state=None) -> list[Any]:
    """Conditions for custom field filters ``{key: value as typed}``. The
    values are validated by the same schema as a contact's custom fields
    (so "abc" for a number field is an error naming ``custom_fields`` ->
    key); empty values filter nothing."""
    definitions = services.custom_field_definitions(session, state=state)
    wanted = {key: value for key, value in given.items() if value not in (None, "")}
    unknown = sorted(set(wanted) - set(definitions))
    if unknown:
        raise ValidationError({"custom_fields": {key: ["Unknown field."] for key in unknown}})
    try:
        loaded = custom_fields_schema(definitions).load(wanted, partial=True)
    except ValidationError as exc:
        raise ValidationError({"custom_fields": exc.messages}) from None
    conditions = []
    for key, value in loaded.items():
        stored = Contact.custom_fields[key]
        kind = definitions[key].type
        if kind == "bool":
            conditions.append(stored.as_boolean() == bool(value))
        elif kind == "number":
            conditions.append(stored.as_float() == float(value))
        else:
            conditions.append(stored.as_string() == str(value))
    return conditions


def _sort_keyset(sort: str, cursor: Sequence[Any] | None) -> tuple[list[Any], list[Any]]:
    """(ORDER BY, WHERE after the cursor) for a sort order. ``activity``
    puts contacts without activity last, so its cursor may hold a null."""
    after: list[Any] = []
    if sort == "oldest":
        if cursor:
            after.append(Contact.id > _int(cursor[1]))
        return [Contact.id.asc()], after
    if sort == "name":
        if cursor:
            name, last_id = _text(cursor[0]), _int(cursor[1])
            after.append(or_(Contact.name > name, and_(Contact.name == name, Contact.id > last_id)))
        return [Contact.name.asc(), Contact.id.asc()], after
    if sort == "activity":
        if cursor:
            when, last_id = cursor[0], _int(cursor[1])
            if when is None:
                after.append(and_(Contact.last_activity_at.is_(None), Contact.id < last_id))
            else:
                when = _when(when)
                after.append(or_(Contact.last_activity_at < when,
                                 and_(Contact.last_activity_at == when, Contact.id < last_id),
                                 Contact.last_activity_at.is_(None)))
        return [Contact.last_activity_at.desc().nulls_last(), Contact.id.desc()], after
    if cursor:
        after.append(Contact.id < _int(cursor[1]))
    return [Contact.id.desc()], after


def _cursor_key(sort: str, contact: Contact) -> list[Any]:
    if sort == "name":
        return [contact.name, contact.id]
    if sort == "activity":
        return [contact.last_activity_at.isoformat() if contact.last_activity_at else None, contact.id]
    return [None, contact.id]


def _bad_cursor() -> ValidationError:
    return ValidationError({"cursor": ["Not a valid cursor: use the `next` value of the previous page."]})


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_cursor()
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad_cursor()
    return value


def _when(value: Any) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(_text(value))
    except ValueError:
        raise _bad_cursor() from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def list_contacts(session: Session, principal: Principal, filters: Mapping[str, Any] | None = None, *,
                  custom: Mapping[str, Any] | None = None, sort: str = DEFAULT_SORT, limit: int = 50,
                  cursor: Sequence[Any] | None = None, state=None) -> tuple[list[Contact], str | None]:
    """A page of live contacts ``principal`` may see: the API list's filters
    (``ContactListArgsSchema`` data), custom field filters and a sort order
    from ``CONTACT_SORTS``; with e-mails, phones and tags loaded."""
    if sort not in CONTACT_SORTS:
        raise ValidationError({"sort": [f"Choose one of: {', '.join(CONTACT_SORTS)}."]})
    if cursor is not None and (not isinstance(cursor, list) or len(cursor) != 2):
        raise _bad_cursor()
    conditions = services.contact_conditions(session, filters or {}, principal)
    conditions += custom_field_conditions(session, custom or {}, state=state)
    order, after = _sort_keyset(sort, cursor)
    stmt = select(Contact).where(*conditions, *after).order_by(*order).limit(limit + 1)
    items, next_cursor = page(list(session.scalars(stmt)), limit, key=lambda contact: _cursor_key(sort, contact))
    return services.load_contact_lists(session, items), next_cursor


def contact_names(session: Session, principal: Principal, ids: Iterable[int | None]) -> dict[int, str]:
    """Names of the live contacts among ``ids`` that ``principal`` may see;
    the others are simply absent (a list row shows no name it may not)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.execute(select(Contact.id, Contact.name).where(
        Contact.id.in_(wanted), Contact.deleted_at.is_(None), scope_condition(principal, Contact)))
    return {row.id: row.name for row in rows}


def people_of(session: Session, principal: Principal, company_id: int, limit: int = 50) -> list[Contact]:
    """The live people of a company that ``principal`` may see, by name."""
    return list(session.scalars(select(Contact).where(
        Contact.company_id == company_id, Contact.kind == "person", Contact.deleted_at.is_(None),
        scope_condition(principal, Contact)).order_by(Contact.name, Contact.id).limit(limit)))


# --- tasks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskGroups:
    """Open tasks of one assignee by when they need doing. A snoozed task
    counts at the end of its snooze (its due date stays what was agreed)."""

    overdue: list[Task]
    today: list[Task]
    upcoming: list[Task]
    undated: list[Task]


def _effective_due(now: dt.datetime) -> Any:
    return case((Task.snoozed_until > now, Task.snoozed_until), else_=Task.due_at)


def task_groups(session: Session, principal: Principal, *, assignee_id: int | None, now: dt.datetime,
                end_of_today: dt.datetime, limit: int = 100) -> TaskGroups:
    """Open tasks of ``assignee_id`` (``None``: every assignee) that
    ``principal`` may see, in four groups of at most ``limit`` each: overdue
    (oldest first), due by ``end_of_today`` (the user's midnight), later,
    and without a due date (newest first)."""
    when = _effective_due(now)
    base = [Task.done.is_(False), Task.deleted_at.is_(None), scope_condition(principal, Task)]
    if assignee_id is not None:
        base.append(Task.owner_id == assignee_id)

    def fetch(*conditions: Any, order: Sequence[Any]) -> list[Task]:
        return list(session.scalars(select(Task).where(*base, *conditions).order_by(*order).limit(limit)))

    return TaskGroups(
        overdue=fetch(when < now, order=[when.asc(), Task.id.asc()]),
        today=fetch(when >= now, when < end_of_today, order=[when.asc(), Task.id.asc()]),
        upcoming=fetch(when >= end_of_today, order=[when.asc(), Task.id.asc()]),
        undated=fetch(when.is_(None), order=[Task.id.desc()]),
    )
