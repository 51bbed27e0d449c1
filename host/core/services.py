"""The core record's domain logic: contacts, interactions and tasks, their
recycle bin, lifecycle history, tags, custom fields, duplicates and merges.

Used by the REST API, the staff UI, imports and jobs alike, so nothing here
touches a Flask request. Every function takes a SQLAlchemy session and works
inside the caller's transaction (it flushes, the caller commits); writes are
attributed to ``principal`` (default: ``current_principal()``), which also
decides what may be read or changed: every query on contacts, interactions
and tasks carries ``scope_condition(principal, Model)``.

Errors, for any caller:

- ``RecordNotFound`` (a werkzeug 404): missing, in the recycle bin, or out of
  the principal's scope. The three look the same, so a 404 never confirms
  that a record exists.
- ``marshmallow.ValidationError`` with messages by field (``company_id``,
  ``custom_fields`` -> ``{key: [...]}`` ...): the API answers 422 with them.
- ``StaleVersion``/``IfMatchFailed``/``VersionRequired`` from
  ``host.security.concurrency`` when an ``expected`` version does not match.
- ``MergedAway`` (409): restoring a contact that was merged into another.

Decisions the issue left open (each is documented where it is made):

- Delete is the recycle bin: the contact and ALL its interactions, tasks and
  attachments (colleagues' too) get the same ``deleted_at``; restore brings
  back exactly those; the hourly job purges after ``RETENTION`` (30 days).
  Single interactions and tasks are binned and restored the same way.
- A merged contact goes to the recycle bin, emptied, with a note naming the
  survivor; it cannot be restored (``MergedAway``). Consent and lifecycle
  stage are never taken from it unless chosen; empty fields are filled.
- Phones match on ``normalise_phone``: "+359 88..." = "00359 88...", but a
  national "088..." is another number (no default country is configured).
- Duplicates are reported only among contacts the user may see, and names
  only among people of the same company.
- New records belong to the creator's team when they have exactly one; a
  task belongs to its assignee (``owner_id``) and the assignee's team.
- ``last_activity_at`` is derived: moved by a Core UPDATE without a version
  bump, so logging a call never turns a colleague's open edit into a 409.
- Tag names are case-sensitive (SQLite and PostgreSQL fold case differently).
- Withdrawing marketing consent clears ``consent_at`` and ``consent_source``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import logging
import re
import unicodedata
# Mapping from collections.abc: isinstance() through typing's alias costs ten
# times more, and an import asks it for every e-mail and phone.
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from marshmallow import ValidationError
from sqlalchemy import (
    ARRAY,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    inspect,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.exceptions import Conflict, NotFound

from hooks import Event
from host import contributions
from host.db import utcnow
from host.events import publish
from host.pagination import page
from host.security import audit, personal_data
from host.security.access import SYSTEM, Principal, acting_as, current_principal, scope_condition
from host.security.audit import audited_bulk_update
from host.security.concurrency import SentVersion, check_version
from host.security.models import PersonalDataJournal, User

from .models import (
    Attachment,
    Contact,
    ContactEmail,
    ContactPhone,
    ContactTag,
    CustomFieldDefinitionRow,
    Interaction,
    LifecycleChange,
    Tag,
    Task,
)
from .schemas import FieldDefinition, custom_fields_schema

log = logging.getLogger("mosaic.core")

#: How long a deleted contact (with its interactions, tasks and attachments)
#: stays restorable before the purge job deletes it for good.
RETENTION = dt.timedelta(days=30)
PURGE_BATCH = 200
#: Names at least this similar (difflib ratio, 0..1) count as duplicates.
NAME_SIMILARITY = 0.9
#: At most this many people of one company are compared by name.
NAME_CANDIDATES = 2000
MIN_PHONE_DIGITS = 3
MAX_PHONE_DIGITS = 25

_MISSING = object()


class RecordNotFound(NotFound):
    """404: missing, deleted, or out of scope (deliberately the same)."""

    def __init__(self, what: str = "record"):
        super().__init__(description=f"No such {what}.")
        self.data = {"message": self.description}


class MergedAway(Conflict):
    """409: the contact was merged into another; restoring it would bring
    back an empty shell, so the survivor is the record to use."""

    def __init__(self, survivor_id: int):
        self.survivor_id = survivor_id
        super().__init__(description=f"This contact was merged into contact {survivor_id}; it cannot be restored.")
        self.data = {"message": self.description}


# --- who acts ---------------------------------------------------------------------------


@contextlib.contextmanager
def _acting(principal: Principal | None) -> Iterator[Principal]:
    """Resolve the principal and make it the acting one for the block, so
    the audit trail (which reads ``current_principal()`` at flush) names the
    same user that the scope checks used."""
    principal = principal if principal is not None else current_principal()
    if principal == current_principal():
        yield principal
        return
    with acting_as(principal):
        yield principal


def _require_actor(principal: Principal) -> None:
    if not principal.is_authenticated:
        raise PermissionError("sign in first")


def _default_team(principal: Principal) -> int | None:
    """A new record's team: the creator's, when they are in exactly one
    (with several, none is guessed; team scope then relies on the owner)."""
    return next(iter(principal.team_ids)) if len(principal.team_ids) == 1 else None


def _reaching_children(principal: Principal) -> Principal:
    """The principal with scope "all" on contacts, interactions and tasks,
    for the cascade of an action it may take on one contact: binning,
    restoring or merging a contact moves ALL of its interactions and tasks
    (and a company's people), including colleagues' ones it cannot see,
    or they would dangle on a deleted contact. The audit still names the
    user. Used only after the contact itself passed the user's scope."""
    if principal.system:
        return principal
    wide = {**principal.scopes, "core.contact": "all", "core.interaction": "all", "core.task": "all"}
    return dataclasses.replace(principal, scopes=wide)


def _publish(session: Session, kind: str, **data: Any) -> None:
    """Events carry ids and changed field names only, never personal data."""
    publish(session, Event(type=kind, data=data))


# --- loading, scoped ------------------------------------------------------------------------


def _scoped(model: Any, principal: Principal, *, deleted: bool = False) -> Any:
    """SELECT of ``model`` rows the principal may see, live or in the bin."""
    binned = model.deleted_at.is_not(None) if deleted else model.deleted_at.is_(None)
    return select(model).where(scope_condition(principal, model), binned)


def _load(session: Session, model: Any, record_id: Any, principal: Principal, *,
          deleted: bool = False, lock: bool = False) -> Any:
    stmt = _scoped(model, principal, deleted=deleted).where(model.id == record_id)
    if lock:
        stmt = stmt.with_for_update()
    found = session.scalars(stmt).one_or_none() if isinstance(record_id, int) and not isinstance(record_id, bool) else None
    if found is None:
        raise RecordNotFound(model.__tablename__)
    return found


def get_contact(session: Session, contact_id: int, *, principal: Principal | None = None, deleted: bool = False) -> Contact:
    """A live contact the principal may see (``deleted=True``: one in the bin)."""
    return _load(session, Contact, contact_id, principal or current_principal(), deleted=deleted)


def get_interaction(session: Session, interaction_id: int, *, principal: Principal | None = None) -> Interaction:
    return _load(session, Interaction, interaction_id, principal or current_principal())


def get_task(session: Session, task_id: int, *, principal: Principal | None = None) -> Task:
    return _load(session, Task, task_id, principal or current_principal())


def _check_expected(record: Any, expected: SentVersion | int | str | None) -> None:
    """Compare the version the client edited (None: the caller checks
    nothing, e.g. an import matching on external id)."""
    if expected is not None:
        check_version(record, expected)


# --- validation helpers -------------------------------------------------------------------------


class _Errors:
    """Collects field errors so one 422 names every bad field at once."""

    def __init__(self) -> None:
        self.messages: dict[str, Any] = {}

    def add(self, field: str, message: str | Mapping[str, Any]) -> None:
        if isinstance(message, Mapping):
            self.messages.setdefault(field, {}).update(message)
        else:
            self.messages.setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ValidationError(self.messages)


def _clean_text(value: Any) -> Any:
    """Text as stored: surrounding spaces dropped, "" means no value."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _unique_external_id(session: Session, model: Any, value: str | None, own_id: int | None, errors: _Errors) -> None:
    """``external_id`` is unique over ALL rows (the database says so). This
    check is deliberately unscoped: it reads no record, it only turns the
    constraint into a 422 instead of a 500."""
    if value is None:
        return
    clash = session.scalar(select(model.id).where(model.external_id == value, model.id != (own_id or -1)).limit(1))
    if clash is not None:
        errors.add("external_id", "Another record already has this external id.")


# --- normalisation (duplicates, lookups) ----------------------------------------------------------


def normalise_email(value: str) -> str:
    return value.strip().lower()


_NOT_ASCII_DIGIT = re.compile(r"[^0-9]+")


def normalise_phone(raw: str) -> str:
    """The form a phone number is matched in (``number_digits``).

    Digits only (any script's decimal digits become ASCII), with a leading
    ``+`` kept when the number carries a country code: written with ``+``,
    or with the international call prefix ``00``. So "+359 88 123 4567",
    "00359 88 123 4567" and "+359 (0)88 123 4567" are one number:
    "+359881234567" (a "(0)" after the country code is the trunk prefix and
    is not dialled internationally).

    A national number ("088 123 4567") stays "0881234567" and does NOT match
    its international form: telling which country a national number belongs
    to needs a default country, which Mosaic does not configure. Returns ""
    when there are no digits."""
    text = unicodedata.normalize("NFKC", raw).strip()  # full-width "＋３５９" too
    international = text.startswith("+")
    if international:
        text = text.replace("(0)", "")
    if text.isascii():  # the usual case, and the only decimal digits there are 0-9 (an import's hot path)
        digits = _NOT_ASCII_DIGIT.sub("", text)
    else:
        digits = "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    return f"+{digits}" if international and digits else digits


def normalise_name(name: str) -> str:
    """Case-folded, accents stripped (NFKD without combining marks, so
    "Žofia" -> "zofia", "Йордан" -> "иордан"), punctuation as spaces,
    spaces collapsed: the form names are compared in."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def name_similarity(a: str, b: str) -> float:
    """difflib ratio of two normalised names, also with their words sorted
    ("Petrov Ivan" is "Ivan Petrov")."""
    if not a or not b:
        return 0.0
    plain = difflib.SequenceMatcher(None, a, b)
    if plain.real_quick_ratio() < NAME_SIMILARITY and _sorted_words(a) != _sorted_words(b):
        return plain.real_quick_ratio()
    return max(plain.ratio(), difflib.SequenceMatcher(None, _sorted_words(a), _sorted_words(b)).ratio())


def _sorted_words(name: str) -> str:
    return " ".join(sorted(name.split()))


# --- custom fields ------------------------------------------------------------------------------------


def custom_field_definitions(session: Session, model: str = "contact", *, state=None) -> dict[str, FieldDefinition]:
    """Every custom field of ``model``: the enabled plugins' (the
    ``mosaic_custom_fields`` hook) and the admin-defined ones
    (``CustomFieldDefinitionRow``). When both define a key, the plugin's
    wins (an admin row made before the plugin was enabled)."""
    found: dict[str, FieldDefinition] = {}
    for (on_model, key), contribution in contributions.definitions("mosaic_custom_fields", state).items():
        if on_model == model:
            item = contribution.item
            found[key] = FieldDefinition(model, key, item.label, item.type, tuple(item.choices), item.required, contribution.plugin)
    rows = session.scalars(select(CustomFieldDefinitionRow).where(CustomFieldDefinitionRow.model == model)
                           .order_by(CustomFieldDefinitionRow.id))
    for row in rows:
        found.setdefault(row.key, FieldDefinition(model, row.key, row.label, row.type, tuple(row.choices or ()),
                                                  row.required, "admin", row.id))
    return found


def validate_custom_fields(session: Session, given: Any, *, existing: Mapping[str, Any] | None = None,
                           model: str = "contact", state=None) -> dict[str, Any]:
    """The custom field values to store, or a ``ValidationError`` naming
    ``custom_fields`` -> key: unknown keys, wrong types, a value outside the
    choices, a required field missing.

    ``given`` replaces the keys it names in ``existing`` (a null removes
    one); the result is validated as a whole, so a required field must be
    present after the change. Stored keys whose definition was deleted are
    kept as they are (deleting a definition destroys no data) but cannot be
    written any more."""
    if not isinstance(given, Mapping):
        raise ValidationError({"custom_fields": ["Not a valid mapping type."]})
    definitions = custom_field_definitions(session, model, state=state)
    existing = dict(existing or {})
    orphans = {k: v for k, v in existing.items() if k not in definitions}
    candidate = {**{k: v for k, v in existing.items() if k in definitions}, **given}
    try:
        loaded = custom_fields_schema(definitions).load(candidate)
    except ValidationError as exc:
        raise ValidationError({"custom_fields": exc.messages}) from None
    return {**orphans, **{k: v for k, v in loaded.items() if v is not None}}


def create_custom_field(session: Session, data: Mapping[str, Any], *, state=None) -> CustomFieldDefinitionRow:
    """An admin-defined field (``CustomFieldDefinitionCreateSchema`` data).
    Its key must be free: neither a plugin's nor another admin field's."""
    errors = _Errors()
    model, key, kind = data.get("model", "contact"), data["key"], data["type"]
    choices = [c.strip() for c in data.get("choices") or [] if c.strip()]
    existing = custom_field_definitions(session, model, state=state)
    if key in existing:
        owner = existing[key].source
        errors.add("key", "An admin-defined field already has this key." if owner == "admin" else f"The plugin {owner!r} defines this key.")
    if kind == "choice" and not choices:
        errors.add("choices", "A choice field needs at least one choice.")
    if kind != "choice" and choices:
        errors.add("choices", "Only choice fields take choices.")
    if len(set(choices)) != len(choices):
        errors.add("choices", "Choices must differ.")
    errors.raise_if_any()
    row = CustomFieldDefinitionRow(model=model, key=key, label=data["label"].strip(), type=kind, choices=choices,
                                   required=bool(data.get("required")))
    session.add(row)
    session.flush()
    audit.record(session, "create", "core.custom_field_definition", row.id,
                 {"model": model, "key": key, "type": kind, "required": row.required, "choices": choices})
    return row


def delete_custom_field(session: Session, definition_id: int) -> None:
    """Delete an admin-defined field; stored values stay in the contacts
    (see ``validate_custom_fields``). Plugin fields are not deletable here."""
    row = session.get(CustomFieldDefinitionRow, definition_id)
    if row is None:
        raise RecordNotFound("custom field")
    audit.record(session, "delete", "core.custom_field_definition", row.id, {"model": row.model, "key": row.key})
    session.delete(row)
    session.flush()


# --- contacts: fields ------------------------------------------------------------------------------------

#: Plain columns a client sets as given (text cleaned).
_CONTACT_TEXT = ("first_name", "last_name", "street", "city", "postal_code", "region", "website", "tax_number",
                 "source", "language", "notes", "external_id")
_CONTACT_PLAIN = ("birthday",)


@dataclass(frozen=True)
class _Entry:
    """An e-mail or phone row as wanted: ``key`` is what makes two equal
    (the lower-cased address; the normalised number)."""

    key: str
    value: str
    label: str | None = None


def _email_entry(item: Any) -> _Entry:
    value = item["email"] if isinstance(item, Mapping) else item
    label = item.get("label") if isinstance(item, Mapping) else None
    address = normalise_email(value)
    return _Entry(address, address, _clean_text(label))


def _phone_entry(item: Any, field: str, errors: _Errors) -> _Entry | None:
    value = item["phone"] if isinstance(item, Mapping) else item
    label = item.get("label") if isinstance(item, Mapping) else None
    digits = normalise_phone(value)
    if not MIN_PHONE_DIGITS <= len(digits.lstrip("+")) <= MAX_PHONE_DIGITS:
        errors.add(field, f"Not a valid phone number: give {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits.")
        return None
    return _Entry(digits, value.strip(), _clean_text(label))


def _dedup(entries: Iterable[_Entry | None]) -> list[_Entry]:
    seen: dict[str, _Entry] = {}
    for entry in entries:
        if entry is not None and entry.key not in seen:
            seen[entry.key] = entry
    return list(seen.values())


def _wanted_entries(current: list[_Entry], current_primary: str | None, primary: Any,
                    listed: Any) -> tuple[_Entry | None, list[_Entry]]:
    """The rows and the primary after a change. ``primary``/``listed`` are
    ``_MISSING`` when not sent.

    - A list replaces the rows; the primary stays when still listed, else
      the first listed one (or the one sent) becomes primary.
    - A primary alone replaces the old primary's row (changing "the"
      address), other rows stay; None removes it and promotes the next."""
    if listed is not _MISSING:
        if isinstance(primary, _Entry):  # first, with the label the list gives it
            same = next((e for e in listed if e is not None and e.key == primary.key), None)
            chosen = _Entry(primary.key, primary.value, primary.label or (same.label if same else None))
            return chosen, _dedup([chosen, *listed])
        entries = _dedup(listed)
        keep = next((e for e in entries if e.key == current_primary), None) if primary is _MISSING else None
        return keep or (entries[0] if entries else None), entries
    if primary is _MISSING:
        return next((e for e in current if e.key == current_primary), None), current
    others = [e for e in current if e.key != current_primary]
    if primary is None:
        return (others[0] if others else None), others
    existing = next((e for e in current if e.key == primary.key), None)
    chosen = _Entry(primary.key, primary.value, primary.label or (existing.label if existing else None))
    return chosen, _dedup([chosen, *others])


def _sync_rows(rows: list[Any], wanted: list[_Entry], key_of: Callable[[Any], str], value_of: Callable[[Any], str],
               make: Callable[[_Entry], Any], update_row: Callable[[Any, _Entry], None]) -> bool:
    """Make the relationship list ``rows`` hold exactly ``wanted`` (rows of
    a kept key are updated in place, keeping their ids). True if changed."""
    if not rows:  # a new record (every import row): what the loops below do then
        rows.extend(make(entry) for entry in wanted)
        return bool(wanted)
    by_key = {key_of(row): row for row in rows}
    wanted_keys = {entry.key for entry in wanted}
    changed = False
    for row in list(rows):
        if key_of(row) not in wanted_keys:
            rows.remove(row)
            changed = True
    for entry in wanted:
        row = by_key.get(entry.key)
        if row is None:
            rows.append(make(entry))
            changed = True
        elif (row.label, value_of(row)) != (entry.label, entry.value):
            update_row(row, entry)
            changed = True
    return changed


def _apply_emails(contact: Contact, data: Mapping[str, Any], row_type: Callable[..., Any] = ContactEmail) -> bool:
    """``row_type`` makes a new row (an import's draft contact takes a
    plain object: a mapped one costs more to build than the rest)."""
    if "email" not in data and "emails" not in data:
        return False
    primary = data.get("email", _MISSING)
    primary = _email_entry(primary) if isinstance(primary, str) else primary
    listed = [_email_entry(item) for item in data["emails"]] if "emails" in data else _MISSING
    current = [_Entry(row.email, row.email, row.label) for row in contact.emails]
    chosen, wanted = _wanted_entries(current, contact.email, primary, listed)

    def update_row(row: ContactEmail, entry: _Entry) -> None:
        row.label = entry.label

    changed = _sync_rows(contact.emails, wanted, lambda r: r.email, lambda r: r.email,
                         lambda e: row_type(email=e.value, label=e.label), update_row)
    contact.email = chosen.value if chosen else None
    return changed


def _apply_phones(contact: Contact, data: Mapping[str, Any], errors: _Errors,
                  row_type: Callable[..., Any] = ContactPhone) -> bool:
    """``row_type``: as for ``_apply_emails``."""
    if "phone" not in data and "phones" not in data:
        return False
    primary = data.get("phone", _MISSING)
    if isinstance(primary, str):
        primary = _phone_entry(primary, "phone", errors) if primary.strip() else None
    listed = _MISSING
    if "phones" in data:
        listed = [_phone_entry(item, "phones", errors) for item in data["phones"]]
    if errors.messages.get("phone") or errors.messages.get("phones"):
        return False
    current = [_Entry(row.number_digits, row.phone, row.label) for row in contact.phones]
    chosen, wanted = _wanted_entries(current, contact.phone_digits, primary, listed)

    def update_row(row: ContactPhone, entry: _Entry) -> None:
        row.phone, row.label = entry.value, entry.label

    changed = _sync_rows(contact.phones, wanted, lambda r: r.number_digits, lambda r: r.phone,
                         lambda e: row_type(phone=e.value, number_digits=e.key, label=e.label), update_row)
    contact.phone, contact.phone_digits = (chosen.value, chosen.key) if chosen else (None, None)
    return changed


def _tags_by_name(session: Session, names: Iterable[str]) -> list[Tag]:
    """Tags by exact name (spaces collapsed), created when missing. Names
    are case-sensitive: the same rule on SQLite and PostgreSQL, whose
    ``lower()`` differ outside ASCII. Called before the contact is touched,
    so the savepoint that absorbs a concurrent creation holds nothing else."""
    wanted = list(dict.fromkeys(" ".join(name.split()) for name in names if name and name.strip()))
    if not wanted:
        return []
    found = {tag.name: tag for tag in session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
    for name in wanted:
        if name not in found:
            found[name] = _create_tag(session, name)
    return [found[name] for name in wanted]


def _create_tag(session: Session, name: str) -> Tag:
    try:
        with session.begin_nested():
            tag = Tag(name=name)
            session.add(tag)
        return tag
    except IntegrityError:  # another transaction created it meanwhile
        return session.scalars(select(Tag).where(Tag.name == name)).one()


def _apply_company(session: Session, contact: Contact, data: Mapping[str, Any], principal: Principal, errors: _Errors) -> None:
    """A person may belong to a company: a live company contact the
    principal may see. Companies belong to none (no company hierarchy)."""
    company_id = data.get("company_id", contact.company_id)
    if company_id is None:
        contact.company_id = None
        return
    if contact.kind != "person":
        errors.add("company_id", "Only a person belongs to a company.")
        return
    if contact.id is not None and company_id == contact.company_id:
        return  # the link is unchanged: it was checked when it was made
    if contact.id is not None and company_id == contact.id:
        errors.add("company_id", "A contact cannot belong to itself.")
        return
    company = session.scalar(_scoped(Contact, principal).where(Contact.id == company_id))
    if company is None or company.kind != "company":
        errors.add("company_id", "No such company.")
        return
    contact.company_id = company_id


def _apply_kind(session: Session, contact: Contact, data: Mapping[str, Any], errors: _Errors) -> None:
    kind = data.get("kind")
    if kind is None or kind == contact.kind:
        return
    if contact.kind == "company" and contact.id is not None:
        has_people = session.scalar(select(Contact.id).where(Contact.company_id == contact.id).limit(1))
        if has_people is not None:
            errors.add("kind", "This company has people; move them first.")
            return
    contact.kind = kind


def _derived_name(first: str | None, last: str | None) -> str | None:
    return " ".join(part for part in (first, last) if part) or None


def _apply_name(contact: Contact, data: Mapping[str, Any], old_derived: str | None, errors: _Errors) -> None:
    """A person's name is "first last" unless one is given; it follows
    first/last changes while it was still the derived one."""
    given = _clean_text(data.get("name"))
    if given:
        contact.name = given
    elif contact.kind == "person" and (contact.name is None or contact.name == old_derived):
        contact.name = _derived_name(contact.first_name, contact.last_name)
    if not contact.name:
        errors.add("name", "Give a name." if contact.kind == "company" else "Give a name, or a first or last name.")
    if contact.kind == "company" and contact.birthday is not None:
        errors.add("birthday", "Only people have a birthday.")


#: A lifecycle stage change to record: (from, to).
StageChange = tuple["str | None", str]


def _apply_stage(contact: Contact, data: Mapping[str, Any]) -> StageChange | None:
    """Set the stage; returns the change to record, if any. A new contact's
    first stage ("lead" unless given) is a change from nothing."""
    previous = None if contact.id is None else contact.lifecycle_stage
    stage = data.get("lifecycle_stage") or previous or "lead"
    if stage == previous:
        return None
    contact.lifecycle_stage = stage
    return previous, stage


def _record_stage(session: Session, contact_id: int, change: StageChange | None, principal: Principal) -> None:
    """Every stage change is kept (from, to, when, who) for lifecycle
    analysis. Written once the contact has its id."""
    if change is not None:
        session.add(LifecycleChange(contact_id=contact_id, from_stage=change[0], to_stage=change[1],
                                    changed_at=utcnow(), changed_by=principal.user_id))


def _apply_consent(contact: Contact, data: Mapping[str, Any], errors: _Errors) -> None:
    """Consent records when it was given (``consent_at``, set as it turns
    on) and how (``consent_source``, e.g. "web form"). Withdrawing clears
    both; the audit trail keeps when it was given and withdrawn."""
    if "marketing_consent" in data:
        consent = bool(data["marketing_consent"])
        if consent and not contact.marketing_consent:
            contact.consent_at = utcnow()
        elif not consent:
            contact.consent_at = None
            contact.consent_source = None
        contact.marketing_consent = consent
    if "consent_source" in data:
        if contact.marketing_consent:
            contact.consent_source = _clean_text(data["consent_source"])
        elif _clean_text(data["consent_source"]) is not None:
            errors.add("consent_source", "A consent source needs marketing_consent.")


def _apply_plain(contact: Contact, data: Mapping[str, Any]) -> None:
    for key in _CONTACT_TEXT:
        if key in data:
            setattr(contact, key, _clean_text(data[key]))
    for key in _CONTACT_PLAIN:
        if key in data:
            setattr(contact, key, data[key])
    if "country" in data:
        contact.country = _clean_text(data["country"]).upper() if _clean_text(data["country"]) else None


@dataclass
class _Applied:
    """What applying input changed beyond the contact's columns."""

    lists: set[str]  # "emails", "phones", "tags"
    stage: StageChange | None


def _apply_contact(session: Session, contact: Contact, data: Mapping[str, Any], principal: Principal, *, state=None) -> _Applied:
    """Apply validated input to ``contact``. Raises one ``ValidationError``
    naming every bad field, before anything but tags was written."""
    errors = _Errors()
    creating = contact.id is None
    tags = _tags_by_name(session, data["tags"]) if "tags" in data else None
    old_derived = _derived_name(contact.first_name, contact.last_name)
    _apply_kind(session, contact, data, errors)
    _apply_plain(contact, data)
    _apply_name(contact, data, old_derived, errors)
    _apply_company(session, contact, data, principal, errors)
    _unique_external_id(session, Contact, contact.external_id if "external_id" in data else None, contact.id, errors)
    if "custom_fields" in data or creating:
        try:
            contact.custom_fields = validate_custom_fields(session, data.get("custom_fields") or {},
                                                           existing=contact.custom_fields, state=state)
        except ValidationError as exc:
            errors.add("custom_fields", exc.messages["custom_fields"])
    changed = set()
    _apply_consent(contact, data, errors)
    if _apply_phones(contact, data, errors):
        changed.add("phones")
    errors.raise_if_any()
    if _apply_emails(contact, data):
        changed.add("emails")
    if tags is not None and [t.name for t in contact.tags] != [t.name for t in tags]:
        before = {t.name for t in contact.tags}
        contact.tags = tags
        if before != {t.name for t in tags}:
            changed.add("tags")
    return _Applied(changed, _apply_stage(contact, data))


def _column_values(record: Any) -> dict[str, Any]:
    return {prop.key: getattr(record, prop.key) for prop in inspect(record).mapper.column_attrs}


def _changed_fields(before: Mapping[str, Any], record: Any, noise: Iterable[str] = ("updated_at", "updated_by", "version")) -> list[str]:
    after = _column_values(record)
    return sorted(k for k in after if k not in noise and before.get(k) != after[k])


def _collections(contact: Contact) -> dict[str, list[Any]]:
    return {
        "emails": [row.email for row in contact.emails],
        "phones": [row.phone for row in contact.phones],
        "tags": sorted(tag.name for tag in contact.tags),
    }


def _audit_collections(session: Session, contact: Contact, before: Mapping[str, list[Any]], names: set[str]) -> None:
    """E-mail, phone and tag rows are audited through the contact: one
    entry with their old and new lists, like a column change."""
    after = _collections(contact)
    changes = {name: [before[name], after[name]] for name in sorted(names) if before[name] != after[name]}
    if changes:
        audit.record(session, "update", "core.contact", contact.id, changes)


# --- contacts: create, update --------------------------------------------------------------------------------


def create_contact(session: Session, data: Mapping[str, Any], *, principal: Principal | None = None,
                   owner_id: int | None = None, state=None) -> Contact:
    """A new person or company from ``ContactCreateSchema`` data, owned by
    the principal (``owner_id`` lets an import or the demo data name another
    owner; the API never passes it). Publishes ``contact.created``."""
    with _acting(principal) as principal:
        _require_actor(principal)
        contact = Contact(kind=data.get("kind") or "person", owner_id=owner_id or principal.user_id,
                          team_id=_default_team(principal), custom_fields={}, marketing_consent=False,
                          lifecycle_stage=None)
        applied = _apply_contact(session, contact, data, principal, state=state)
        session.add(contact)
        session.flush()
        _record_stage(session, contact.id, applied.stage, principal)
        session.flush()
        _publish(session, "contact.created", id=contact.id)
        return contact


def update_contact(session: Session, contact_id: int, data: Mapping[str, Any], *, expected: SentVersion | int | str | None = None,
                   principal: Principal | None = None, state=None) -> Contact:
    """Change the fields in ``data`` (``ContactUpdateSchema``, without
    ``version``) after checking ``expected`` against the row's version.
    Publishes ``contact.updated`` with the changed field names."""
    with _acting(principal) as principal:
        contact = _load(session, Contact, contact_id, principal)
        _check_expected(contact, expected)
        before, lists = _column_values(contact), _collections(contact)
        # The checks read other rows (custom field definitions, the company,
        # external ids); an autoflush there wrote the fields assigned so far
        # as an UPDATE of their own: one edit became two UPDATEs, two audit
        # entries and two versions.
        with session.no_autoflush:
            applied = _apply_contact(session, contact, data, principal, state=state)
        if applied.lists and not session.is_modified(contact, include_collections=False):
            contact.updated_at = utcnow()  # a row update, so the version moves and the edit is guarded
        session.flush()
        _record_stage(session, contact.id, applied.stage, principal)
        _audit_collections(session, contact, lists, applied.lists)
        changed = sorted(set(_changed_fields(before, contact)) | applied.lists)
        session.flush()
        if changed:
            _publish(session, "contact.updated", id=contact.id, changed=changed)
        return contact


def lifecycle_history(session: Session, contact_id: int, *, principal: Principal | None = None) -> list[LifecycleChange]:
    """The contact's stage changes, oldest first."""
    contact = _load(session, Contact, contact_id, principal or current_principal())
    return list(session.scalars(select(LifecycleChange).where(LifecycleChange.contact_id == contact.id)
                                .order_by(LifecycleChange.changed_at, LifecycleChange.id)))


# --- lists -------------------------------------------------------------------------------------------------------------


def _cursor_id(cursor: Sequence[Any] | None) -> int | None:
    if not cursor:
        return None
    if len(cursor) != 1 or not isinstance(cursor[0], int) or isinstance(cursor[0], bool):
        raise ValidationError({"cursor": ["Not a valid cursor: use the `next` value of the previous page."]})
    return cursor[0]


def _keyset_page(session: Session, stmt: Any, model: Any, limit: int, cursor: Sequence[Any] | None,
                 key: Any = None) -> tuple[list[Any], str | None]:
    """Newest first by id, ``limit`` rows after the cursor's id: one index
    range however deep the page. ``key``: a column equal to ``model.id`` to
    order and page by instead (the search index's, so it drives the query)."""
    key = model.id if key is None else key
    after = _cursor_id(cursor)
    if after is not None:
        stmt = stmt.where(key < after)
    rows = list(session.scalars(stmt.order_by(key.desc()).limit(limit + 1)))
    return page(rows, limit, key=lambda row: [row.id])


def _range(column: Any, after: Any, before: Any) -> list[Any]:
    conditions = []
    if after is not None:
        conditions.append(column >= after)
    if before is not None:
        conditions.append(column < before)
    return conditions


def _equal(model: Any, filters: Mapping[str, Any], *names: str) -> list[Any]:
    return [getattr(model, name) == filters[name] for name in names if filters.get(name) is not None]


def contact_conditions(session: Session, filters: Mapping[str, Any], principal: Principal) -> list[Any]:
    """The WHERE conditions of a contact list (scope and bin included).
    Shared by lists, counts and exports, so all three agree."""
    conditions = [scope_condition(principal, Contact), Contact.deleted_at.is_(None)]
    conditions += _equal(Contact, filters, "kind", "owner_id", "team_id", "company_id", "lifecycle_stage")
    if filters.get("tag"):
        conditions.append(_tagged(" ".join(filters["tag"].split())))
    conditions += _range(Contact.created_at, filters.get("created_after"), filters.get("created_before"))
    conditions += _range(Contact.last_activity_at, filters.get("last_activity_after"), filters.get("last_activity_before"))
    if filters.get("q"):
        conditions.append(search_condition(session, principal, filters["q"]))
    return conditions


def _tagged(name: str) -> Any:
    """The contact carries the tag ``name``: a probe of ``contact_tag``'s
    primary key per contact the list walks. ``OFFSET 0`` keeps PostgreSQL
    from turning the EXISTS into a join: as a merge join it read
    ``contact_tag`` down from the newest contact to the cursor's, so a page
    cost grew with its depth (13 ms at page 51 of "customer + newsletter" in
    a million contacts, against 0.4 ms probing). SQLite probes either way."""
    tag_id = select(Tag.id).where(Tag.name == name).scalar_subquery()
    probe = (select(ContactTag.contact_id)
             .where(ContactTag.contact_id == Contact.id, ContactTag.tag_id == tag_id)
             .offset(0))
    return probe.exists()


def list_contacts(session: Session, filters: Mapping[str, Any] | None = None, *, limit: int = 50, cursor: Sequence[Any] | None = None,
                  principal: Principal | None = None) -> tuple[list[Contact], str | None]:
    """A page of live contacts the principal may see, newest first, with
    their e-mails, phones and tags loaded (three queries, not one per row)."""
    stmt, key = _contact_list(session, filters, principal, select(Contact))
    items, next_cursor = _keyset_page(session, stmt, Contact, limit, cursor, key=key)
    return load_contact_lists(session, items), next_cursor


def list_contact_records(session: Session, filters: Mapping[str, Any] | None = None, *, limit: int = 50,
                         cursor: Sequence[Any] | None = None, principal: Principal | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """``list_contacts``' page as plain dicts, for answers that only show
    it (the API): the contact's columns, and ``emails``, ``phones`` and
    ``tags`` as lists of dicts of their rows (``_contact_list_dicts``), in
    the relationships' order. No ORM objects: building 50 contacts and their
    150 collections cost about as much CPU as the rest of the list request."""
    stmt, key = _contact_list(session, filters, principal, select(*Contact.__table__.c))
    key = Contact.id if key is None else key
    after = _cursor_id(cursor)
    if after is not None:
        stmt = stmt.where(key < after)
    rows = session.execute(stmt.order_by(key.desc()).limit(limit + 1)).mappings().all()
    items, next_cursor = page(rows, limit, key=lambda row: [row["id"]])
    records = [dict(row) for row in items]
    if records:
        found = _contact_list_dicts(session, [record["id"] for record in records])
        for record in records:
            for name in CONTACT_LISTS:
                record[name] = found[name].get(record["id"], [])
    return records, next_cursor


def _contact_list(session: Session, filters: Mapping[str, Any] | None, principal: Principal | None,
                  stmt: Any) -> tuple[Any, Any]:
    """The contact list's ``stmt`` (a select from ``contact``) filtered for
    ``principal``, and the column to page by (None: ``contact.id``)."""
    principal = principal or current_principal()
    filters = dict(filters or {})
    q = filters.pop("q", None)
    stmt = stmt.where(*contact_conditions(session, filters, principal))
    key = None
    if q:
        stmt, key = _with_matches(session, stmt, principal, q)
    return stmt, key


#: The collections a contact list shows with each contact.
CONTACT_LISTS = ("emails", "phones", "tags")


def load_contact_lists(session: Session, contacts: list[Contact]) -> list[Contact]:
    """Load the e-mails, phones and tags of a page of contacts: one lean
    statement each, the page's ids as one array parameter on PostgreSQL
    (``= ANY``). ``selectinload`` bound one cast parameter per contact, and
    for the 51 rows a page of 50 fetches psycopg parses such a statement
    anew on every call (it caches those of at most 50 parameters), while
    SQLAlchemy renders the list and sets up a loader per call: about 1 ms
    of a page's CPU. Only the page's contacts are loaded (not the extra
    row), and collections already loaded in the session are left as they are."""
    pending = [c for c in contacts if any(name not in c.__dict__ for name in CONTACT_LISTS)]
    if not pending:
        return contacts
    found = _contact_list_rows(session, [c.id for c in pending], (ContactEmail, ContactPhone, Tag))
    for contact in pending:
        for name in CONTACT_LISTS:
            if name not in contact.__dict__:
                set_committed_value(contact, name, found[name].get(contact.id, []))
    return contacts


def _contact_ids_match(session: Session, contact_ids: Iterable[int]) -> Callable[[Any], Any]:
    """``column`` in the given contact ids: one array parameter on
    PostgreSQL (one statement text, whatever the page's size)."""
    ids = sorted(set(contact_ids))
    if session.get_bind().dialect.name == "postgresql":
        wanted = bindparam("contact_ids", ids, type_=ARRAY(Integer))
        return lambda column: column == any_(wanted)
    return lambda column: column.in_(ids)


def _contact_list_rows(session: Session, contact_ids: list[int], entities: Sequence[Any]
                       ) -> dict[str, dict[int, list[Any]]]:
    """{"emails"|"phones"|"tags": {contact id: ORM objects}} of ``entities``
    (e-mail, phone, tag), in the relationships' order."""
    match = _contact_ids_match(session, contact_ids)
    email, phone, tag = entities
    queries = (
        ("emails", select(email, ContactEmail.contact_id).where(match(ContactEmail.contact_id)).order_by(ContactEmail.id)),
        ("phones", select(phone, ContactPhone.contact_id).where(match(ContactPhone.contact_id)).order_by(ContactPhone.id)),
        ("tags", select(tag, ContactTag.contact_id).join(ContactTag, ContactTag.tag_id == Tag.id)
         .where(match(ContactTag.contact_id)).order_by(Tag.name)),
    )
    found: dict[str, dict[int, list[Any]]] = {name: {} for name in CONTACT_LISTS}
    for name, stmt in queries:
        into = found[name]
        for item, contact_id in session.execute(stmt):
            into.setdefault(contact_id, []).append(item)
    return found


def _contact_list_dicts(session: Session, contact_ids: list[int]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """``_contact_list_rows`` as dicts, in one statement (a UNION ALL of
    the three lists): every round trip to PostgreSQL also costs the
    process a wait and a wake-up. Within a list the rows keep the
    relationships' order (e-mails and phones by id, tags by name in the
    database's collation)."""
    match = _contact_ids_match(session, contact_ids)
    e, p, t, ct = ContactEmail.__table__, ContactPhone.__table__, Tag.__table__, ContactTag.__table__
    nothing = cast(null(), String)
    stmt = union_all(
        select(literal_column("'emails'").label("list"), e.c.contact_id, e.c.id, e.c.email.label("value"),
               e.c.label.label("label"), nothing.label("digits"), nothing.label("tag_order"))
        .where(match(e.c.contact_id)),
        select(literal_column("'phones'"), p.c.contact_id, p.c.id, p.c.phone, p.c.label, p.c.number_digits, nothing)
        .where(match(p.c.contact_id)),
        select(literal_column("'tags'"), ct.c.contact_id, t.c.id, t.c.name, nothing, nothing, t.c.name)
        .join_from(ct, t, t.c.id == ct.c.tag_id).where(match(ct.c.contact_id)),
    ).order_by(literal_column("tag_order"), literal_column("id"))
    found: dict[str, dict[int, list[dict[str, Any]]]] = {name: {} for name in CONTACT_LISTS}
    emails, phones, tags = (found[name] for name in CONTACT_LISTS)
    for kind, contact_id, row_id, value, label, digits, _order in session.execute(stmt):
        if kind == "emails":
            emails.setdefault(contact_id, []).append({"id": row_id, "contact_id": contact_id, "email": value, "label": label})
        elif kind == "phones":
            phones.setdefault(contact_id, []).append({"id": row_id, "contact_id": contact_id, "phone": value,
                                                      "number_digits": digits, "label": label})
        else:
            tags.setdefault(contact_id, []).append({"id": row_id, "name": value})
    return found


def count_contacts(session: Session, filters: Mapping[str, Any] | None = None, *, principal: Principal | None = None) -> int:
    principal = principal or current_principal()
    conditions = contact_conditions(session, filters or {}, principal)
    return session.scalar(select(func.count()).select_from(Contact).where(*conditions))


def list_deleted_contacts(session: Session, *, limit: int = 50, cursor: Sequence[Any] | None = None,
                          principal: Principal | None = None) -> tuple[list[Contact], str | None]:
    """The recycle bin: contacts the principal may see that await purging."""
    stmt = _scoped(Contact, principal or current_principal(), deleted=True)
    items, next_cursor = _keyset_page(session, stmt, Contact, limit, cursor)
    return load_contact_lists(session, items), next_cursor


def search_condition(session: Session, principal: Principal, q: str) -> Any:
    """THE seam between lists and the search engine: a condition on
    ``contact.id`` for the ``q=`` filter, combined with the list's scope,
    bin filter and keyset, so a search pages through every match.

    ``host.core.search.contact_match_condition`` (the full-text index) when
    the search engine is installed; without it a plain LIKE on name and
    e-mail (a full scan, ASCII-only case folding on SQLite: a stand-in)."""
    engine = _search_engine()
    if engine is not None:
        return engine.contact_match_condition(session, q)
    pattern = "%" + q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(func.lower(Contact.name).like(pattern, escape="\\"), Contact.email.like(pattern, escape="\\"))


def _with_matches(session: Session, stmt: Any, principal: Principal, q: str) -> tuple[Any, Any]:
    """A contact list restricted to ``q``'s matches, and the column to page
    by: the search engine's (``join_matches``) when it offers one, so the
    index hands out matches newest first and stops at the page's end;
    otherwise ``search_condition``."""
    engine = _search_engine()
    if engine is not None and hasattr(engine, "join_matches"):
        return engine.join_matches(session, stmt, q, principal)
    return stmt.where(search_condition(session, principal, q)), None


def _search_engine() -> Any:
    from importlib.util import find_spec

    if find_spec("host.core.search") is None:
        return None
    from host.core import search

    return search if hasattr(search, "contact_match_condition") else None


# --- recycle bin --------------------------------------------------------------------------------------------------------


def _children_of(contact_ids: Any) -> tuple[Any, Any]:
    return (select(Interaction.id).where(Interaction.contact_id.in_(contact_ids)),
            select(Task.id).where(Task.contact_id.in_(contact_ids)))


def _attachments_of(contact_id: int) -> Any:
    """Attachments on the contact and on its interactions and tasks."""
    interactions, tasks = _children_of([contact_id])
    return or_(
        and_(Attachment.object_type == "contact", Attachment.object_id == contact_id),
        and_(Attachment.object_type == "interaction", Attachment.object_id.in_(interactions)),
        and_(Attachment.object_type == "task", Attachment.object_id.in_(tasks)),
    )


def _set_children_deleted(session: Session, contact_id: int, principal: Principal, when: dt.datetime | None,
                          binned_at: dt.datetime | None) -> None:
    """Move the contact's interactions, tasks and attachments to the bin
    (``when``), or back from it: only those binned WITH the contact
    (``deleted_at == binned_at``), so one deleted on its own before stays
    deleted."""
    reach = _reaching_children(principal)
    for model in (Interaction, Task):
        state = model.deleted_at.is_(None) if when is not None else model.deleted_at == binned_at
        audited_bulk_update(session, model, and_(model.contact_id == contact_id, state), {"deleted_at": when}, principal=reach)
    state = Attachment.deleted_at.is_(None) if when is not None else Attachment.deleted_at == binned_at
    session.execute(update(Attachment).where(_attachments_of(contact_id), state).values(deleted_at=when)
                    .execution_options(synchronize_session=False))


def delete_contact(session: Session, contact_id: int, *, expected: SentVersion | int | str | None = None,
                   principal: Principal | None = None) -> Contact:
    """Move the contact to the recycle bin with its interactions, tasks and
    attachments (all of them, also colleagues' ones). People of a deleted
    company keep their ``company_id`` until the company is purged, so a
    restore brings the company back whole. Publishes ``contact.deleted``."""
    with _acting(principal) as principal:
        contact = _load(session, Contact, contact_id, principal, lock=True)
        _check_expected(contact, expected)
        when = utcnow()
        contact.deleted_at = when
        session.flush()
        _set_children_deleted(session, contact.id, principal, when, None)
        _publish(session, "contact.deleted", id=contact.id)
        return contact


def restore_contact(session: Session, contact_id: int, *, principal: Principal | None = None) -> Contact:
    """Bring a contact back from the bin with what was binned with it.
    A merged contact is not restorable (``MergedAway``). Publishes
    ``contact.restored``."""
    with _acting(principal) as principal:
        contact = _load(session, Contact, contact_id, principal, deleted=True, lock=True)
        survivor = merged_into(session, contact.id)
        if survivor is not None:
            raise MergedAway(survivor)
        binned_at = contact.deleted_at
        contact.deleted_at = None
        session.flush()
        _set_children_deleted(session, contact.id, principal, None, binned_at)
        _publish(session, "contact.restored", id=contact.id)
        return contact


def merged_into(session: Session, contact_id: int) -> int | None:
    """The survivor a contact was merged into, from the merge journal."""
    return session.scalar(select(PersonalDataJournal.contact_id).where(
        PersonalDataJournal.kind == personal_data.MERGE, PersonalDataJournal.other_contact_id == contact_id)
        .order_by(PersonalDataJournal.id.desc()).limit(1))


@dataclass
class PurgeReport:
    """What a purge deleted; ``stored_names`` are the attachment files to
    remove once the transaction has committed."""

    counts: dict[str, int]
    stored_names: list[str]


def purge_recycle_bin(session: Session, *, now: dt.datetime | None = None, retention: dt.timedelta = RETENTION,
                      principal: Principal | None = None, batch: int = PURGE_BATCH) -> PurgeReport:
    """Delete for good what has been in the bin longer than ``retention``:
    contacts (their e-mails, phones, tags, lifecycle history, interactions,
    tasks and attachment rows go with them; a purged company's people lose
    their ``company_id``) and interactions and tasks deleted on their own.
    Each contact is purged in a savepoint: one that a plugin's foreign key
    still holds is logged and kept for the next run."""
    with _acting(principal if principal is not None else SYSTEM) as principal:
        cutoff = (now or utcnow()) - retention
        counts = {"contacts": 0, "skipped": 0, "interactions": 0, "tasks": 0}
        stored: list[str] = []
        failed: set[int] = set()
        while True:
            stmt = (_scoped(Contact, principal, deleted=True).where(Contact.deleted_at < cutoff, Contact.id.not_in(failed or [-1]))
                    .order_by(Contact.id).limit(batch))
            contacts = list(session.scalars(stmt))
            if not contacts:
                break
            for contact in contacts:
                names = _purge_contact(session, contact, principal)
                if names is None:
                    failed.add(contact.id)
                    counts["skipped"] += 1
                else:
                    stored += names
                    counts["contacts"] += 1
        for model, key in ((Interaction, "interactions"), (Task, "tasks")):
            counts[key] = _purge_children(session, model, cutoff, principal, stored)
        return PurgeReport(counts, stored)


def _purge_contact(session: Session, contact: Contact, principal: Principal) -> list[str] | None:
    """Purge one contact; its attachments' stored names, or None when a
    foreign key (a plugin's) still holds it."""
    contact_id = contact.id
    try:
        with session.begin_nested():
            audited_bulk_update(session, Contact, Contact.company_id == contact_id, {"company_id": None},
                                principal=_reaching_children(principal))
            interactions, tasks = (session.scalar(select(func.count()).select_from(model).where(model.contact_id == contact_id))
                                   for model in (Interaction, Task))
            stored = _delete_attachments(session, _attachments_of(contact_id))
            audit.record(session, "purge", "core.contact", contact_id,
                         {"interactions": interactions, "tasks": tasks, "attachments": len(stored)})
            session.delete(contact)
            session.flush()
    except IntegrityError as exc:
        log.warning("recycle bin: contact %s is still referenced and was kept: %s", contact_id, exc.orig)
        return None
    return stored


def _purge_children(session: Session, model: Any, cutoff: dt.datetime, principal: Principal, stored: list[str]) -> int:
    """Interactions or tasks deleted on their own (their contact is live)."""
    rows = list(session.scalars(_scoped(model, principal, deleted=True).where(model.deleted_at < cutoff)))
    for row in rows:
        stored += _delete_attachments(session, and_(Attachment.object_type == model.__tablename__, Attachment.object_id == row.id))
        session.delete(row)
    session.flush()
    return len(rows)


def _delete_attachments(session: Session, condition: Any) -> list[str]:
    """Delete attachment rows; returns their stored file names, for
    ``_remove_files`` once the deletion has committed."""
    rows = list(session.execute(select(Attachment.id, Attachment.stored_name).where(condition)))
    if rows:
        session.execute(delete(Attachment).where(Attachment.id.in_([row.id for row in rows]))
                        .execution_options(synchronize_session=False))
    return [row.stored_name for row in rows]


def purge_recycle_bin_job(ctx) -> dict[str, int]:
    """The ``core.purge_recycle_bin`` job (hourly, as the system): commits,
    then removes the purged attachments' files (a failed commit must not
    leave rows naming files that are gone)."""
    report = purge_recycle_bin(ctx.session, principal=ctx.principal)
    ctx.session.commit()
    remove_attachment_files(ctx.app, report.stored_names)
    return report.counts


def remove_attachment_files(app, stored_names: Sequence[str]) -> None:
    """Delete stored attachment files through the attachment store
    (``host.core.attachments``); without it there are no files."""
    from importlib.util import find_spec

    if not stored_names or find_spec("host.core.attachments") is None:
        return
    from host.core import attachments

    attachments.remove_files(attachments.storage_root(app.instance_path), stored_names)


# --- duplicates ------------------------------------------------------------------------------------------------------------


def find_duplicates(session: Session, principal: Principal, data: Mapping[str, Any], *, exclude_id: int | None = None) -> list[int]:
    """Ids (ascending) of live contacts ``principal`` may see that look like
    the contact ``data`` describes (``ContactCreateSchema`` data):

    - the same e-mail: any of its addresses equals any stored address;
    - the same phone: equal ``normalise_phone`` forms (so "+359 88 123 4567"
      and "00359881234567" match; "088 123 4567" does not, see there);
    - a very similar name in the same company: people with the same
      ``company_id`` whose normalised names (``normalise_name``) have a
      difflib ratio of at least 0.9.

    Every lookup is an index lookup (``contact_email.email``,
    ``contact_phone.number_digits``, ``contact.company_id``): cheap at a
    million contacts. Contacts out of the principal's scope are never
    reported (that would reveal them), and company names are not compared
    (``name`` has no index; that is the search engine's job)."""
    found: set[int] = set()
    found |= _same_emails(session, principal, _emails_in(data))
    found |= _same_phones(session, principal, _phones_in(data))
    found |= _similar_names(session, principal, data)
    found.discard(exclude_id)
    return sorted(found)


def _emails_in(data: Mapping[str, Any]) -> set[str]:
    items = [data.get("email")] + [e["email"] if isinstance(e, Mapping) else e for e in data.get("emails") or []]
    return {normalise_email(item) for item in items if isinstance(item, str) and item.strip()}


def _phones_in(data: Mapping[str, Any]) -> set[str]:
    items = [data.get("phone")] + [p["phone"] if isinstance(p, Mapping) else p for p in data.get("phones") or []]
    digits = {normalise_phone(item) for item in items if isinstance(item, str)}
    return {d for d in digits if len(d.lstrip("+")) >= MIN_PHONE_DIGITS}


def _live_visible(principal: Principal) -> list[Any]:
    return [scope_condition(principal, Contact), Contact.deleted_at.is_(None)]


def _same_emails(session: Session, principal: Principal, emails: set[str]) -> set[int]:
    if not emails:
        return set()
    listed = select(Contact.id).join(ContactEmail, ContactEmail.contact_id == Contact.id).where(
        ContactEmail.email.in_(sorted(emails)), *_live_visible(principal))
    primary = select(Contact.id).where(Contact.email.in_(sorted(emails)), *_live_visible(principal))
    return set(session.scalars(listed)) | set(session.scalars(primary))


def _same_phones(session: Session, principal: Principal, phones: set[str]) -> set[int]:
    if not phones:
        return set()
    listed = select(Contact.id).join(ContactPhone, ContactPhone.contact_id == Contact.id).where(
        ContactPhone.number_digits.in_(sorted(phones)), *_live_visible(principal))
    primary = select(Contact.id).where(Contact.phone_digits.in_(sorted(phones)), *_live_visible(principal))
    return set(session.scalars(listed)) | set(session.scalars(primary))


def _similar_names(session: Session, principal: Principal, data: Mapping[str, Any]) -> set[int]:
    company_id = data.get("company_id")
    if company_id is None or (data.get("kind") or "person") != "person":
        return set()
    name = normalise_name(_clean_text(data.get("name")) or _derived_name(_clean_text(data.get("first_name")),
                                                                         _clean_text(data.get("last_name"))) or "")
    if not name:
        return set()
    stmt = (select(Contact.id, Contact.name).where(Contact.company_id == company_id, Contact.kind == "person",
                                                   *_live_visible(principal)).limit(NAME_CANDIDATES))
    return {row.id for row in session.execute(stmt) if name_similarity(name, normalise_name(row.name)) >= NAME_SIMILARITY}


# --- merge ----------------------------------------------------------------------------------------------------------------------

#: Fields a merge can take from either contact ("fields" choice map).
MERGE_FIELDS = ("name", "first_name", "last_name", "company_id", "email", "phone", "street", "city", "postal_code",
                "region", "country", "website", "tax_number", "lifecycle_stage", "source", "birthday", "language",
                "notes", "external_id", "marketing_consent", "custom_fields")
#: Filled from the merged contact when the survivor has none. Consent is
#: never copied without an explicit choice, nor the stage (a decision).
_AUTO_FILL = tuple(f for f in MERGE_FIELDS if f not in ("marketing_consent", "lifecycle_stage", "custom_fields"))


def merge_contacts(session: Session, survivor_id: int, merged_id: int, principal: Principal | None = None, *,
                   fields: Mapping[str, str] | None = None, state=None) -> Contact:
    """Merge contact ``merged_id`` into ``survivor_id`` in the caller's
    transaction (one commit makes it all or nothing).

    Moves interactions, tasks (every one, the bin's too) and attachments;
    adds the merged contact's e-mails, phones and tags the survivor lacks;
    a merged company's people move to the survivor. Fields: the survivor
    keeps its values; empty ones are filled from the merged contact;
    ``fields`` ({field: "survivor"|"merged"}) picks per field (the UI's
    pick-each-field screen). Then every enabled plugin moves its references
    (``personal_data.record_merge``: journaled, so a plugin disabled now
    replays the merge when enabled again; audited as ``merge``).

    The merged contact goes to the recycle bin, empty, with a line in its
    notes naming the survivor, and is purged with the bin; it cannot be
    restored (``MergedAway``), and its id is never reused, so a replayed
    merge cannot hit another record. Both contacts must be live, visible to
    the principal, of the same kind; the principal needs
    ``core.contact.merge``. Publishes ``contact.merged``."""
    with _acting(principal) as principal:
        if not principal.can("core.contact.merge"):
            raise PermissionError("merging contacts needs core.contact.merge")
        choices = _merge_choices(fields)
        if survivor_id == merged_id:
            raise ValidationError({"merge_id": ["A contact cannot be merged into itself."]})
        survivor, merged = _lock_pair(session, survivor_id, merged_id, principal)
        if survivor.kind != merged.kind:
            raise ValidationError({"merge_id": [f"Cannot merge a {merged.kind} into a {survivor.kind}."]})
        before, lists = _column_values(survivor), _collections(survivor)
        _move_references(session, survivor, merged, principal)
        moved_lists = _merge_lists(session, survivor, merged)
        stage = _merge_fields(session, survivor, merged, choices)
        _ensure_primary_rows(survivor)
        when = utcnow()
        merged.notes = "\n".join(filter(None, [merged.notes, f"Merged into contact {survivor.id} on {when:%Y-%m-%d}."]))
        merged.deleted_at = when
        survivor.last_activity_at = _latest(survivor.last_activity_at, merged.last_activity_at)
        if moved_lists and not session.is_modified(survivor, include_collections=False):
            survivor.updated_at = when
        session.flush()
        _record_stage(session, survivor.id, stage, principal)
        _audit_collections(session, survivor, lists, moved_lists)
        personal_data.record_merge(session, survivor.id, merged.id, state=state)
        audit.record(session, "merged_into", "core.contact", merged.id, {"survivor_id": survivor.id})
        changed = sorted(set(_changed_fields(before, survivor)) | moved_lists)
        _publish(session, "contact.merged", id=survivor.id, survivor_id=survivor.id, merged_id=merged.id, changed=changed)
        return survivor


def _merge_choices(fields: Mapping[str, str] | None) -> dict[str, str]:
    errors = _Errors()
    for key, side in (fields or {}).items():
        if key not in MERGE_FIELDS:
            errors.add("fields", {key: ["Not a field a merge can choose."]})
        elif side not in ("survivor", "merged"):
            errors.add("fields", {key: ['Choose "survivor" or "merged".']})
    errors.raise_if_any()
    return dict(fields or {})


def _lock_pair(session: Session, survivor_id: int, merged_id: int, principal: Principal) -> tuple[Contact, Contact]:
    """Both rows, locked in id order (two merges of the same pair in
    opposite directions wait instead of deadlocking)."""
    loaded = {}
    for contact_id in sorted((survivor_id, merged_id)):
        try:
            loaded[contact_id] = _load(session, Contact, contact_id, principal, lock=True)
        except RecordNotFound:
            field = "merge_id" if contact_id == merged_id else None
            if field:
                raise ValidationError({"merge_id": ["No such contact."]}) from None
            raise
    return loaded[survivor_id], loaded[merged_id]


def _move_references(session: Session, survivor: Contact, merged: Contact, principal: Principal) -> None:
    reach = _reaching_children(principal)
    for model in (Interaction, Task):
        audited_bulk_update(session, model, model.contact_id == merged.id, {"contact_id": survivor.id}, principal=reach)
    audited_bulk_update(session, Contact, and_(Contact.company_id == merged.id, Contact.id != survivor.id),
                        {"company_id": survivor.id}, principal=reach)
    session.execute(update(Attachment).where(Attachment.object_type == "contact", Attachment.object_id == merged.id)
                    .values(object_id=survivor.id).execution_options(synchronize_session=False))


def _merge_lists(session: Session, survivor: Contact, merged: Contact) -> set[str]:
    """Add the merged contact's e-mails, phones and tags the survivor lacks
    (compared as normalised), and take them off the merged contact."""
    changed = set()
    have = {row.email for row in survivor.emails}
    extra = [ContactEmail(email=row.email, label=row.label) for row in merged.emails if row.email not in have]
    have_phones = {row.number_digits for row in survivor.phones}
    extra_phones = [ContactPhone(phone=row.phone, number_digits=row.number_digits, label=row.label)
                    for row in merged.phones if row.number_digits not in have_phones]
    extra_tags = [tag for tag in merged.tags if tag not in survivor.tags]
    merged.emails.clear()
    merged.phones.clear()
    merged.tags = []
    session.flush()  # the merged rows go before the survivor's copies arrive
    for name, rows, target in (("emails", extra, survivor.emails), ("phones", extra_phones, survivor.phones),
                               ("tags", extra_tags, survivor.tags)):
        if rows:
            target.extend(rows)
            changed.add(name)
    if survivor.email is None and survivor.emails:
        survivor.email = survivor.emails[0].email
    if survivor.phone is None and survivor.phones:
        survivor.phone, survivor.phone_digits = survivor.phones[0].phone, survivor.phones[0].number_digits
    return changed


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {}


def _merge_fields(session: Session, survivor: Contact, merged: Contact, choices: Mapping[str, str]) -> StageChange | None:
    """Take the chosen fields, and fill the survivor's empty ones, from the
    merged contact; returns the stage change to record, if any. Custom
    fields merge key by key: the chosen side wins where both have a key."""
    taken = [field for field in MERGE_FIELDS if field != "custom_fields" and (
        choices.get(field) == "merged"
        or (field not in choices and field in _AUTO_FILL
            and _is_empty(getattr(survivor, field)) and not _is_empty(getattr(merged, field))))]
    values = {field: getattr(merged, field) for field in taken}
    if "external_id" in taken:  # unique: free it on the merged row first
        merged.external_id = None
        session.flush()
    stage = None
    for field in taken:
        stage = _take(survivor, merged, field, values[field]) or stage
    mine, theirs = survivor.custom_fields or {}, merged.custom_fields or {}
    survivor.custom_fields = {**mine, **theirs} if choices.get("custom_fields") == "merged" else {**theirs, **mine}
    return stage


def _take(survivor: Contact, merged: Contact, field: str, value: Any) -> StageChange | None:
    """Copy one field, with the columns that belong to it."""
    if field == "phone":
        survivor.phone, survivor.phone_digits = value, merged.phone_digits
    elif field == "marketing_consent":
        survivor.marketing_consent, survivor.consent_at, survivor.consent_source = value, merged.consent_at, merged.consent_source
    elif field == "lifecycle_stage" and value != survivor.lifecycle_stage:
        previous, survivor.lifecycle_stage = survivor.lifecycle_stage, value
        return previous, value
    else:
        setattr(survivor, field, value)
    return None


def _ensure_primary_rows(contact: Contact) -> None:
    """The primary e-mail and phone are always among the contact's rows."""
    if contact.email and contact.email not in {row.email for row in contact.emails}:
        contact.emails.append(ContactEmail(email=contact.email))
    if contact.phone_digits and contact.phone_digits not in {row.number_digits for row in contact.phones}:
        contact.phones.append(ContactPhone(phone=contact.phone, number_digits=contact.phone_digits))


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


# --- interactions -------------------------------------------------------------------------------------------------------------


def _visible_contact(session: Session, contact_id: Any, principal: Principal, errors: _Errors, field: str = "contact_id") -> Contact | None:
    """A live contact the principal may see, for a body field: a bad one is a
    422 on that field (the URL names no contact, so not a 404)."""
    try:
        return _load(session, Contact, contact_id, principal)
    except RecordNotFound:
        errors.add(field, "No such contact.")
        return None


def _touch_activity(session: Session, contact_id: int, when: dt.datetime, principal: Principal) -> None:
    """``last_activity_at`` moves forward to ``when``. A derived column, so
    a Core UPDATE: no version bump (logging a call must not turn a
    colleague's open edit of the contact into a conflict) and no audit entry
    (the interaction's own is the record)."""
    session.execute(
        update(Contact)
        .where(Contact.id == contact_id, scope_condition(_reaching_children(principal), Contact),
               or_(Contact.last_activity_at.is_(None), Contact.last_activity_at < when))
        .values(last_activity_at=when)
        .execution_options(synchronize_session=False)
    )
    contact = session.get(Contact, contact_id)
    if contact is not None:
        session.expire(contact, ["last_activity_at"])


_INTERACTION_FIELDS = ("channel", "direction", "subject", "body", "occurred_at", "outcome", "external_id")


def create_interaction(session: Session, data: Mapping[str, Any], *, principal: Principal | None = None,
                       owner_id: int | None = None) -> Interaction:
    """Log what happened with a contact the principal may see; moves the
    contact's ``last_activity_at``. Publishes ``interaction.created``."""
    with _acting(principal) as principal:
        _require_actor(principal)
        errors = _Errors()
        contact = _visible_contact(session, data.get("contact_id"), principal, errors)
        _unique_external_id(session, Interaction, _clean_text(data.get("external_id")), None, errors)
        errors.raise_if_any()
        interaction = Interaction(contact_id=contact.id, owner_id=owner_id or principal.user_id, team_id=_default_team(principal),
                                  direction="out", occurred_at=utcnow())
        _set_fields(interaction, data, _INTERACTION_FIELDS)
        session.add(interaction)
        session.flush()
        _touch_activity(session, contact.id, interaction.occurred_at, principal)
        _publish(session, "interaction.created", id=interaction.id, contact_id=contact.id)
        return interaction


def _set_fields(record: Any, data: Mapping[str, Any], names: Iterable[str]) -> None:
    for name in names:
        if name in data:
            value = _clean_text(data[name])
            if value is not None or record.__table__.c[name].nullable:
                setattr(record, name, value)


def update_interaction(session: Session, interaction_id: int, data: Mapping[str, Any], *,
                       expected: SentVersion | int | str | None = None, principal: Principal | None = None) -> Interaction:
    with _acting(principal) as principal:
        interaction = _load(session, Interaction, interaction_id, principal)
        _check_expected(interaction, expected)
        errors = _Errors()
        if "contact_id" in data and data["contact_id"] != interaction.contact_id:
            contact = _visible_contact(session, data["contact_id"], principal, errors)
            if contact is not None:
                interaction.contact_id = contact.id
        if "external_id" in data:
            _unique_external_id(session, Interaction, _clean_text(data["external_id"]), interaction.id, errors)
        errors.raise_if_any()
        before = _column_values(interaction)
        _set_fields(interaction, data, _INTERACTION_FIELDS)
        session.flush()
        _touch_activity(session, interaction.contact_id, interaction.occurred_at, principal)
        changed = _changed_fields(before, interaction)
        if changed:
            _publish(session, "interaction.updated", id=interaction.id, contact_id=interaction.contact_id, changed=changed)
        return interaction


def list_interactions(session: Session, filters: Mapping[str, Any] | None = None, *, limit: int = 50,
                      cursor: Sequence[Any] | None = None, principal: Principal | None = None) -> tuple[list[Interaction], str | None]:
    filters = filters or {}
    stmt = _scoped(Interaction, principal or current_principal())
    stmt = stmt.where(*_equal(Interaction, filters, "contact_id", "owner_id", "team_id", "channel", "direction"),
                      *_range(Interaction.occurred_at, filters.get("occurred_after"), filters.get("occurred_before")))
    return _keyset_page(session, stmt, Interaction, limit, cursor)


# --- tasks ------------------------------------------------------------------------------------------------------------------------------

_TASK_FIELDS = ("title", "notes", "due_at", "priority", "snoozed_until", "external_id")


def _assignee(session: Session, user_id: Any, errors: _Errors) -> User | None:
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.active:
        errors.add("assignee_id", "No such active user.")
        return None
    return user


def _apply_task(session: Session, task: Task, data: Mapping[str, Any], principal: Principal) -> bool:
    """Apply validated input; True when the task was just completed."""
    errors = _Errors()
    if "contact_id" in data and data["contact_id"] != task.contact_id:
        contact = _visible_contact(session, data["contact_id"], principal, errors) if data["contact_id"] is not None else None
        task.contact_id = contact.id if contact is not None else None
    if "assignee_id" in data and data["assignee_id"] != task.owner_id:
        assignee = _assignee(session, data["assignee_id"], errors)
        if assignee is not None:
            # The task belongs to the assignee's team, so their manager sees it.
            task.owner_id, task.team_id = assignee.id, (assignee.teams[0].id if len(assignee.teams) == 1 else None)
    if "external_id" in data:
        _unique_external_id(session, Task, _clean_text(data["external_id"]), task.id, errors)
    errors.raise_if_any()
    _set_fields(task, data, _TASK_FIELDS)
    completed = False
    if "done" in data and bool(data["done"]) != bool(task.done):
        task.done = bool(data["done"])
        task.done_at = utcnow() if task.done else None
        completed = task.done
    return completed


def create_task(session: Session, data: Mapping[str, Any], *, principal: Principal | None = None) -> Task:
    """A follow-up, assigned to ``assignee_id`` (default: the principal),
    optionally on a contact the principal may see. Publishes
    ``task.created`` (and ``task.completed`` when created done)."""
    with _acting(principal) as principal:
        _require_actor(principal)
        task = Task(owner_id=principal.user_id, team_id=_default_team(principal), priority="normal", done=False)
        completed = _apply_task(session, task, data, principal)
        session.add(task)
        session.flush()
        _publish(session, "task.created", id=task.id, contact_id=task.contact_id)
        if completed:
            _publish(session, "task.completed", id=task.id, contact_id=task.contact_id)
        return task


def update_task(session: Session, task_id: int, data: Mapping[str, Any], *, expected: SentVersion | int | str | None = None,
                principal: Principal | None = None) -> Task:
    """Change a task; marking it done stamps ``done_at`` and publishes
    ``task.completed`` (undoing clears it)."""
    with _acting(principal) as principal:
        task = _load(session, Task, task_id, principal)
        _check_expected(task, expected)
        before = _column_values(task)
        completed = _apply_task(session, task, data, principal)
        session.flush()
        changed = _changed_fields(before, task)
        if changed:
            _publish(session, "task.updated", id=task.id, contact_id=task.contact_id, changed=changed)
        if completed:
            _publish(session, "task.completed", id=task.id, contact_id=task.contact_id)
        return task


def list_tasks(session: Session, filters: Mapping[str, Any] | None = None, *, limit: int = 50,
               cursor: Sequence[Any] | None = None, principal: Principal | None = None) -> tuple[list[Task], str | None]:
    filters = filters or {}
    stmt = _scoped(Task, principal or current_principal())
    stmt = stmt.where(*_equal(Task, filters, "contact_id", "owner_id", "team_id", "priority"),
                      *_range(Task.due_at, filters.get("due_after"), filters.get("due_before")))
    if filters.get("done") is not None:
        stmt = stmt.where(Task.done.is_(bool(filters["done"])))
    return _keyset_page(session, stmt, Task, limit, cursor)


# --- deleting and restoring one interaction or task --------------------------------------------------------------------------------


def delete_record(session: Session, model: type, record_id: int, *, expected: SentVersion | int | str | None = None,
                  principal: Principal | None = None) -> Any:
    """An interaction or task (``model``) to the recycle bin with its
    attachments; purged with the bin after ``RETENTION``."""
    with _acting(principal) as principal:
        record = _load(session, model, record_id, principal, lock=True)
        _check_expected(record, expected)
        record.deleted_at = utcnow()
        session.flush()
        session.execute(update(Attachment).where(Attachment.object_type == model.__tablename__, Attachment.object_id == record.id,
                                                 Attachment.deleted_at.is_(None))
                        .values(deleted_at=record.deleted_at).execution_options(synchronize_session=False))
        _publish(session, f"{model.__tablename__}.deleted", id=record.id, contact_id=record.contact_id)
        return record


def restore_record(session: Session, model: type, record_id: int, *, principal: Principal | None = None) -> Any:
    """Bring an interaction or task back from the bin; not while its
    contact is in the bin (restore the contact, which brings it back)."""
    with _acting(principal) as principal:
        record = _load(session, model, record_id, principal, deleted=True, lock=True)
        if record.contact_id is not None:
            live = session.scalar(select(Contact.id).where(Contact.id == record.contact_id, Contact.deleted_at.is_(None)))
            if live is None:
                raise ValidationError({"contact_id": ["The contact is in the recycle bin: restore the contact."]})
        binned_at, record.deleted_at = record.deleted_at, None
        session.flush()
        session.execute(update(Attachment).where(Attachment.object_type == model.__tablename__, Attachment.object_id == record.id,
                                                 Attachment.deleted_at == binned_at)
                        .values(deleted_at=None).execution_options(synchronize_session=False))
        _publish(session, f"{model.__tablename__}.restored", id=record.id, contact_id=record.contact_id)
        return record


# --- public names for the batch import ---------------------------------------------------------------------------
# ``host.core.import_batch`` creates many contacts at once by the very rules
# ``create_contact`` applies, and ``host.core.import_batch_linked`` many
# interactions and tasks by those of ``create_interaction``/``create_task``;
# they call these helpers through public names so that a change here changes
# both paths (tests/test_import_batch.py and test_import_batch_linked.py
# compare them).

FieldErrors = _Errors
clean_text = _clean_text
acting = _acting
require_actor = _require_actor
default_team = _default_team
apply_contact = _apply_contact
apply_kind = _apply_kind
apply_plain = _apply_plain
apply_name = _apply_name
apply_company = _apply_company
apply_consent = _apply_consent
apply_phones = _apply_phones
apply_emails = _apply_emails
apply_stage = _apply_stage
tags_by_name = _tags_by_name
emails_in = _emails_in
phones_in = _phones_in
similar_names = _similar_names
set_fields = _set_fields
INTERACTION_FIELDS = _INTERACTION_FIELDS
TASK_FIELDS = _TASK_FIELDS
reaching_children = _reaching_children
