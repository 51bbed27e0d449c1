"""Creating many contacts at once, for an import: the rules of
``services.create_contact``, the writes of a whole batch in a few statements.

``services.create_contact`` costs about a dozen SQL statements and three
flushes per contact; an import of 50,000 rows spent nearly all its time
there. ``ContactBatch`` validates each new contact in Python with the
services' own helpers (``services.apply_*``, run in the order
``services._apply_contact`` runs them, so a row gets the same messages
under the same fields) and keeps it pending; ``flush`` writes every pending
contact with multi-row INSERTs (``host.bulk_insert``): the contacts (ids by
``RETURNING``), their e-mails, phones, tags and first lifecycle stage, the
audit trail's create entries (``audit.create_entries``, the entries the
flush listeners write for an ORM insert) and the ``contact.created`` events
(``events.publish_many``, delivered after commit like ``publish``'s). The
search index follows by itself: its triggers fire on every INSERT.

What the per-row path looks up per row is looked up once per batch: the
custom field definitions (and their schema), tags (created when missing,
only for rows that are stored). External ids already stored are known to
the caller (``host.core.imports`` matches them first); the batch refuses an
external id that an earlier row of the same import claimed, as the
database constraint would.

Reads that must see earlier rows of the same batch make the caller flush
first (``has_pending_company``; a company that may be pending): the rows
are then stored in file order, so ids, audit entries and events come out
exactly as the per-row path numbers them. tests/test_import_batch.py
imports files both ways and compares every table.

Stamps as the ORM path sets them: owner and team (the creator's only team)
from the principal, ``created_by``/``updated_by`` (``audit._stamp``),
``version`` 1, ``created_at``/``updated_at`` the flush's time.

A row that matches a stored contact by external id is an update.
``planned_update`` first tells, by the same rules run on a copy, what it
would change: nothing (re-importing a file mostly repeats what is stored:
no savepoint, no ORM flush, no write), the contact's own columns, its
stage or its tags (``ContactUpdates`` writes those together), or more
(e-mails, phones, a tag not stored yet, the kind or company, or a row the
rules refuse: row by row through ``services.update_contact``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
from collections.abc import Mapping  # isinstance() through typing's alias is slow
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from marshmallow import ValidationError
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from hooks import Event
from host.bulk_insert import execute_many, insert_rows, inserted_ids
from host.db import is_among, utcnow
from host.events import publish_many
from host.security import audit
from host.security.access import Principal, object_type_of
from host.security.models import AuditEntry

from . import services
from .models import Contact, ContactEmail, ContactPhone, ContactTag, LifecycleChange, Tag
from .schemas import custom_fields_schema

_CONTACT = Contact.__table__
_OBJECT_TYPE = object_type_of(Contact)
#: Columns a new contact's values come from (the rest are stamps or unset).
_STAMPS = ("id", "created_by", "updated_by", "created_at", "updated_at", "version", "last_activity_at", "deleted_at")
_FIELDS = tuple(column.key for column in _CONTACT.columns if column.key not in _STAMPS)
_FIELD_VALUES = operator.attrgetter(*_FIELDS)


class _Draft:
    """A new contact's attributes as the services' ``apply_*`` helpers set
    them (they only read and assign attributes, and append rows to the
    ``emails``/``phones`` lists); cheaper than a mapped ``Contact``. Unset
    fields read as None (class attributes)."""

    id = None

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)
        self.emails: list[Any] = []
        self.phones: list[Any] = []
        self.tags: list[Any] = []


for _name in _FIELDS:
    setattr(_Draft, _name, None)


class _EmailRow:
    """A draft's e-mail row (what ``services.apply_emails`` reads and sets
    of a ``ContactEmail``)."""

    __slots__ = ("email", "label")

    def __init__(self, email: str, label: str | None) -> None:
        self.email, self.label = email, label


class _PhoneRow:
    """A draft's phone row (as ``_EmailRow``, of a ``ContactPhone``)."""

    __slots__ = ("phone", "number_digits", "label")

    def __init__(self, phone: str, number_digits: str, label: str | None) -> None:
        self.phone, self.number_digits, self.label = phone, number_digits, label


_COLUMNS = tuple(column.key for column in _CONTACT.columns)


@dataclass
class PlannedUpdate:
    """What an update row would change, when ``ContactUpdates`` can write
    it: the contact's own columns, ``{column: (stored, new)}`` (the
    lifecycle stage among them: its history row follows), and its new tags
    when the set of names changes (tags that exist already). False when
    nothing would change."""

    columns: dict[str, tuple[Any, Any]]
    tags: list[Tag] | None = None

    def __bool__(self) -> bool:
        return bool(self.columns) or self.tags is not None


def planned_update(session: Session, contact: Contact, data: Mapping[str, Any], principal: Principal,
                   state=None, tags_named: Callable[[list[str]], list[Tag] | None] | None = None
                   ) -> PlannedUpdate | None:
    """What ``services.update_contact`` would change in ``contact`` with
    ``data`` (``ContactUpdateSchema`` data), when it changes the contact's
    own columns, its stage or its tags: an empty plan when nothing would
    change (no write, no audit entry, no event, the version kept). The
    services' own ``apply_contact`` runs on a copy (a draft with the stored
    values and rows), so the answer follows their rules. None whenever it
    cannot be sure without the update path: a row those rules refuse (the
    update path then rejects it with its messages), e-mails or phones that
    would change (rows with search-index triggers and labels), a tag not
    stored yet (``tags_named`` finds stored tags by name; without it any tag
    change), another kind or company (which the update path checks against
    the rows it may have to write first). Reads only."""
    if data.get("kind", contact.kind) != contact.kind or data.get("company_id", contact.company_id) != contact.company_id:
        return None
    given = dict(data)
    tags = None
    if "tags" in given:
        names = _tag_names(given.pop("tags") or [])
        if set(names) != {tag.name for tag in contact.tags}:
            tags = tags_named(names) if tags_named is not None else None
            if tags is None:
                return None
    # Loaded column values sit in the instance's __dict__: read there, not
    # through the instrumented attributes (an expired one loads as usual).
    loaded = contact.__dict__
    stored = {key: loaded[key] if key in loaded else getattr(contact, key) for key in _COLUMNS}
    draft = _Draft(**stored)
    draft.emails = [_EmailRow(row.email, row.label) for row in contact.emails]
    draft.phones = [_PhoneRow(row.phone, row.number_digits, row.label) for row in contact.phones]
    draft.tags = list(contact.tags)
    try:
        applied = services.apply_contact(session, draft, given, principal, state=state)
    except ValidationError:
        return None
    if applied.lists:
        return None
    after = draft.__dict__
    return PlannedUpdate({key: (value, after[key]) for key, value in stored.items() if after[key] != value}, tags)


class ContactUpdates:
    """Updates of stored contacts that change their own columns, their
    stage or their tags (``planned_update``), written together: what
    ``services.update_contact`` writes for each, one ORM flush and event
    flush per row, in a few statements per batch. An UPDATE per contact
    (run through the driver's ``executemany``, one statement per run of
    rows changing the same columns, in file order: a contact changed twice
    is changed in order), with the version moved and checked as the ORM's
    ``version_id_col`` does, ``updated_by``/``updated_at`` stamped; a
    lifecycle history row per stage change; the tag rows each contact gains
    and loses over the batch; the audit trail's entries (the update's, then
    the tags' own, as ``services`` records them); the ``contact.updated``
    events with the changed fields. Search-index triggers fire on the
    UPDATE as on any.

    ``add`` applies the change to the loaded contact at once (as committed
    values), so a later row of the batch sees it, as it would see the row
    the update path had written. A write that fails expires those contacts
    (``forget``): the caller's savepoint rolls the rows back, and the
    contacts must not keep values the database no longer holds."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session, self.principal = session, principal
        # (contact, column changes, version read, (old tags, new tags) or None)
        self.pending: list[tuple[Contact, dict[str, tuple[Any, Any]], int, tuple[list[Tag], list[Tag]] | None]] = []
        self.touched: list[Contact] = []
        self.stored_tags: dict[str, Tag] = {}

    def tags_named(self, names: list[str]) -> list[Tag] | None:
        """The stored tags of these names (exact names, as
        ``services.tags_by_name`` finds them), or None when one is not
        stored yet (the update path creates it). Looked up once per name."""
        missing = [name for name in names if name not in self.stored_tags]
        if missing:
            self.stored_tags.update((tag.name, tag) for tag in self.session.scalars(
                select(Tag).where(is_among(self.session, Tag.name, missing))))
        if any(name not in self.stored_tags for name in names):
            return None
        return [self.stored_tags[name] for name in names]

    def add(self, contact: Contact, planned: PlannedUpdate) -> None:
        version, changes = contact.version, planned.columns
        tags = None if planned.tags is None else (list(contact.tags), list(planned.tags))
        self.pending.append((contact, changes, version, tags))
        self.touched.append(contact)
        for key, (_old, new) in changes.items():
            set_committed_value(contact, key, new)
        if tags is not None:
            set_committed_value(contact, "tags", tags[1])
        set_committed_value(contact, "version", version + 1)
        if self.principal.user_id is not None:
            set_committed_value(contact, "updated_by", self.principal.user_id)

    def flush(self) -> None:
        """Write every pending update (in the order they were added)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        session, now, user_id = self.session, utcnow(), self.principal.user_id
        stamps = {"updated_at": now} if user_id is None else {"updated_at": now, "updated_by": user_id}
        for keys, same_columns in itertools.groupby(pending, key=lambda item: tuple(item[1])):
            run = list(same_columns)
            statement = (update(_CONTACT)
                         .where(_CONTACT.c.id == bindparam("contact_id"), _CONTACT.c.version == bindparam("old_version"))
                         .values({**{key: bindparam(key) for key in keys}, **{key: bindparam(key) for key in stamps},
                                  "version": bindparam("new_version")}))
            params = [{**{key: new for key, (_old, new) in changes.items()}, **stamps, "contact_id": contact.id,
                       "old_version": version, "new_version": version + 1} for contact, changes, version, _tags in run]
            matched = execute_many(session, statement, params)
            if matched != len(run):
                raise StaleDataError(f"{len(run) - matched} of {len(run)} contacts changed while the import ran")
        for contact, _changes, _version, _tags in pending:
            set_committed_value(contact, "updated_at", now)
        insert_rows(session, LifecycleChange.__table__, [
            {"contact_id": contact.id, "from_stage": changes["lifecycle_stage"][0],
             "to_stage": changes["lifecycle_stage"][1], "changed_at": now, "changed_by": user_id}
            for contact, changes, _version, _tags in pending if "lifecycle_stage" in changes])
        self._write_tags(pending)
        entries = []
        for contact, changes, _version, tags in pending:
            entries += audit.update_entries(session, Contact, [(contact.id, changes)])
            if tags is not None:  # services._audit_collections' entry
                entries.append(audit.recorded_entry("update", _OBJECT_TYPE, contact.id, {
                    "tags": [sorted(tag.name for tag in tags[0]), sorted(tag.name for tag in tags[1])]}))
        insert_rows(session, AuditEntry.__table__, entries)
        publish_many(session, [Event(type="contact.updated", occurred_at=now, data={
            "id": contact.id, "changed": sorted(set(changes) - audit.NOISE | ({"tags"} if tags else set()))})
            for contact, changes, _version, tags in pending])

    def _write_tags(self, pending) -> None:
        """Each contact's tag rows as its last row of the batch leaves them:
        those it had before the batch and lost are deleted, those it gained
        inserted (a tag added by one row and dropped by a later one is never
        written)."""
        before: dict[int, set[int]] = {}
        after: dict[int, set[int]] = {}
        for contact, _changes, _version, tags in pending:
            if tags is not None:
                before.setdefault(contact.id, {tag.id for tag in tags[0]})
                after[contact.id] = {tag.id for tag in tags[1]}
        lost = [{"cid": cid, "tid": tid} for cid, tag_ids in after.items() for tid in sorted(before[cid] - tag_ids)]
        if lost:
            table = ContactTag.__table__
            execute_many(self.session, delete(table).where(table.c.contact_id == bindparam("cid"),
                                                           table.c.tag_id == bindparam("tid")), lost)
        insert_rows(self.session, ContactTag.__table__, [
            {"contact_id": cid, "tag_id": tid} for cid, tag_ids in after.items() for tid in sorted(tag_ids - before[cid])])

    def forget(self) -> None:
        """Expire every contact this writer changed in memory."""
        for contact in self.touched:
            self.session.expire(contact)
        self.touched, self.pending = [], []


@dataclass
class NewContact:
    """A validated row waiting for its INSERT."""

    values: dict[str, Any]
    emails: list[tuple[str, str | None]]  # address, label
    phones: list[tuple[str, str, str | None]]  # as typed, digits, label
    tags: list[str]
    stage: str
    placeholder: int

    @property
    def email_keys(self) -> list[str]:
        return [email for email, _label in self.emails]

    @property
    def phone_keys(self) -> list[str]:
        return [digits for _phone, digits, _label in self.phones]


def _tag_names(names: Sequence[str]) -> list[str]:
    """A row's tag names as ``services.tags_by_name`` stores them (spaces
    collapsed, repeats dropped, case kept)."""
    return list(dict.fromkeys(" ".join(name.split()) for name in names if name and name.strip()))


class ContactBatch:
    """New contacts of one import batch, validated one by one and written
    together. Use inside ``services.acting(principal)``: the audit trail
    names the acting user. A pending contact is known by a placeholder id
    (negative) until ``flush`` gives it its id (``real_id``)."""

    def __init__(self, session: Session, principal: Principal, *, claimed_external_ids: set[str] = frozenset(),
                 state=None) -> None:
        services.require_actor(principal)
        self.session, self.principal = session, principal
        self.owner_id, self.team_id = principal.user_id, services.default_team(principal)
        definitions = services.custom_field_definitions(session, state=state)
        self.custom_schema = custom_fields_schema(definitions)
        self.custom_required = any(definition.required for definition in definitions.values())
        self.claimed = set(claimed_external_ids)
        self.created_external_ids: set[str] = set()  # by rows of this batch, pending or flushed
        self.pending: list[NewContact] = []
        self.pending_companies: set[int] = set()
        self.ids: list[int] = []  # of every contact flushed, by placeholder

    # --- validating -------------------------------------------------------------------------------

    def prepare(self, data: Mapping[str, Any]) -> NewContact:
        """The contact ``data`` (``ContactCreateSchema`` data) describes, or
        the ``ValidationError`` ``services.create_contact`` would raise."""
        errors = services.FieldErrors()
        draft = _Draft(kind=data.get("kind") or "person", owner_id=self.owner_id, team_id=self.team_id,
                       custom_fields={}, marketing_consent=False, lifecycle_stage=None)
        tags = _tag_names(data["tags"]) if "tags" in data else []
        services.apply_kind(self.session, draft, data, errors)
        services.apply_plain(draft, data)
        services.apply_name(draft, data, None, errors)  # a new contact has no derived name yet
        services.apply_company(self.session, draft, data, self.principal, errors)
        if "external_id" in data and draft.external_id is not None and draft.external_id in self.claimed:
            errors.add("external_id", "Another record already has this external id.")
        try:
            draft.custom_fields = self._custom_fields(data.get("custom_fields") or {})
        except ValidationError as exc:
            errors.add("custom_fields", exc.messages["custom_fields"])
        services.apply_consent(draft, data, errors)
        services.apply_phones(draft, data, errors, row_type=_PhoneRow)
        errors.raise_if_any()
        services.apply_emails(draft, data, row_type=_EmailRow)
        stage = services.apply_stage(draft, data)
        return NewContact(
            values=dict(zip(_FIELDS, _FIELD_VALUES(draft))),
            emails=[(row.email, row.label) for row in draft.emails],
            phones=[(row.phone, row.number_digits, row.label) for row in draft.phones],
            tags=tags, stage=stage[1], placeholder=0)

    def _custom_fields(self, given: Any) -> dict[str, Any]:
        """``services.validate_custom_fields`` for a new record (nothing
        stored yet), with the schema built once per batch."""
        if not given and not self.custom_required:
            return {}  # what loading nothing gives when no field is required
        if not isinstance(given, Mapping):
            raise ValidationError({"custom_fields": ["Not a valid mapping type."]})
        try:
            loaded = self.custom_schema.load(dict(given))
        except ValidationError as exc:
            raise ValidationError({"custom_fields": exc.messages}) from None
        return {key: value for key, value in loaded.items() if value is not None}

    # --- pending -----------------------------------------------------------------------------------

    def add(self, new: NewContact) -> int:
        """Queue a prepared contact; returns its placeholder id."""
        new.placeholder = -1 - (len(self.ids) + len(self.pending))
        self.pending.append(new)
        if new.values["external_id"] is not None:
            self.claimed.add(new.values["external_id"])
            self.created_external_ids.add(new.values["external_id"])
        if new.values["company_id"] is not None:
            self.pending_companies.add(new.values["company_id"])
        return new.placeholder

    def has_pending_company(self, company_id: int) -> bool:
        """Whether a pending person belongs to ``company_id`` (a read of
        that company's people must see it: flush first)."""
        return company_id in self.pending_companies

    def real_id(self, contact_id: int) -> int:
        """A contact id, or the id a flushed placeholder stands for."""
        return contact_id if contact_id >= 0 else self.ids[-1 - contact_id]

    # --- writing -----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending contact (in the order they were added)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        self.pending_companies = set()
        session, user_id, now = self.session, self.principal.user_id, utcnow()
        rows = [{**new.values, "created_by": user_id, "updated_by": user_id, "created_at": now, "updated_at": now,
                 "version": 1} for new in pending]
        ids = inserted_ids(session, _CONTACT, rows)
        self.ids.extend(ids)
        for row, contact_id in zip(rows, ids):
            row["id"] = contact_id
        self._children(pending, ids, now)
        insert_rows(session, AuditEntry.__table__, audit.create_entries(session, Contact, rows))
        # One time for the batch, as its rows' created_at: one value for the
        # bulk insert to convert, instead of one clock reading per event.
        publish_many(session, [Event(type="contact.created", data={"id": contact_id}, occurred_at=now)
                               for contact_id in ids])

    def _children(self, pending: list[NewContact], ids: Sequence[int], now: dt.datetime) -> None:
        session = self.session
        emails = [{"contact_id": cid, "email": email, "label": label}
                  for new, cid in zip(pending, ids) for email, label in new.emails]
        phones = [{"contact_id": cid, "phone": phone, "number_digits": digits, "label": label}
                  for new, cid in zip(pending, ids) for phone, digits, label in new.phones]
        wanted = [name for new in pending for name in new.tags]
        tag_ids = {tag.name: tag.id for tag in services.tags_by_name(session, wanted)} if wanted else {}
        tags = [{"contact_id": cid, "tag_id": tag_ids[name]} for new, cid in zip(pending, ids) for name in new.tags]
        stages = [{"contact_id": cid, "from_stage": None, "to_stage": new.stage, "changed_at": now,
                   "changed_by": self.principal.user_id} for new, cid in zip(pending, ids)]
        for model, values in ((ContactEmail, emails), (ContactPhone, phones), (ContactTag, tags), (LifecycleChange, stages)):
            insert_rows(session, model.__table__, values)
