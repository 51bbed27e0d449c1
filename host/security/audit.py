"""The audit trail: who created, changed or deleted which business record,
and for changes each field's old and new value (like Salesforce field history).

Entries are written by session events in the SAME transaction as the change,
so a rolled-back change leaves no entry and a committed one always has one;
no caller can forget. ``install(db)`` attaches the listeners to both session
factories of an app (``create_app`` calls it).

Audited models: every model using ``OwnedMixin`` and any model declaring
``__audited__ = True`` (``__audited__ = False`` opts an owned model out). A
model can leave further columns out with ``__audit_exclude__ = {"col", ...}``.
Noise columns (``updated_at``, ``updated_by``, ``version``) are never listed as
changes. Columns named like secrets (``password_hash``, ``totp_secret``) are
listed as changed but their values are replaced by ``"[redacted]"``.

How: ``before_flush`` stamps ``created_by``/``updated_by`` and works out the
old and new values while the pre-flush state still exists (an old value that
was never loaded is read from the database then); ``after_flush`` adds what only
the flush knows (new primary keys, Python-side defaults) and inserts the entries
with Core on the flush's connection.

What the events cannot see: Core or ORM bulk ``update()``/``delete()``
statements and database-side cascades. Bulk changes go through
``audited_bulk_update``, which audits and bumps versions itself.

Erasure: inside ``erasing(session)`` (used by ``host.security.personal_data``)
entries record which fields changed but not their values, and afterwards the
old values of those fields are scrubbed from the record's earlier entries, so
the audit trail does not keep what an erasure removed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import ColumnElement, event, insert, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import ObjectDeletedError
from sqlalchemy.sql import ClauseElement

from host.db import utcnow

from .access import Principal, current_principal, object_type_of, scope_condition
from .models import AuditEntry, OwnedMixin
from .seclog import is_secret_name, json_safe

#: Never listed as changes: they change with every update.
NOISE = frozenset({"updated_at", "updated_by", "version"})
#: Also left out of a create entry: the entry's own user and time say it.
CREATE_NOISE = NOISE | {"created_at", "created_by"}
REDACTED = "[redacted]"
ERASED = "[erased]"
MAX_LIMIT = 500
#: Ids per UPDATE in a bulk update (well below every backend's parameter limit).
BULK_CHUNK = 500

_PENDING = "mosaic_audit_pending"  # flush_context.attributes: entries to write
_ERASING = "mosaic_audit_erasing"  # session.info: {(type, id): fields | None}
_SCRUBBING = "mosaic_audit_scrubbing"  # session.info: the one allowed rewrite
_LOAD_AFTER_FLUSH = object()  # a new value given as a SQL expression


# --- which models, which columns ---------------------------------------------


def is_audited(cls: type) -> bool:
    """Owned models are audited unless they opt out; others when they opt in."""
    flag = getattr(cls, "__audited__", None)
    if flag is not None:
        return bool(flag)
    return isinstance(cls, type) and issubclass(cls, OwnedMixin)


def _excluded(cls: type, creating: bool = False) -> frozenset[str]:
    extra = frozenset(getattr(cls, "__audit_exclude__", ()))
    return (CREATE_NOISE if creating else NOISE) | extra


def _column_keys(obj: Any, creating: bool = False) -> list[str]:
    mapper = inspect(obj).mapper
    skip = _excluded(mapper.class_, creating)
    if creating:  # the primary key is the entry's object_id already
        skip = skip | {mapper.get_property_by_column(c).key for c in mapper.primary_key}
    return [prop.key for prop in mapper.column_attrs if prop.key not in skip]


def object_id_of(obj: Any) -> str:
    """The primary key as the audit stores it (composite keys joined by ",")."""
    ident = inspect(obj).mapper.primary_key_from_instance(obj)
    return ",".join(str(part) for part in ident)


def _value(key: str, value: Any) -> Any:
    if value is None:
        return None
    return REDACTED if is_secret_name(key) else json_safe(value)


# --- the flush listeners --------------------------------------------------------


def install(db) -> None:
    """Attach the audit listeners to ``db.Session`` and ``db.WriteSession``
    (idempotent). Sessions made elsewhere are not audited."""
    for factory in (db.Session, db.WriteSession):
        # The mark lives on the factory, not in SQLAlchemy's registry:
        # event.contains() keys on id() of the session class the factory
        # makes, and that key outlives the class, so a new factory whose
        # class reuses a freed address looked installed (seen in the test
        # suite as a flush that wrote no audit entries).
        if not getattr(factory, "_mosaic_audited", False):
            event.listen(factory, "before_flush", _before_flush)
            event.listen(factory, "after_flush", _after_flush)
            factory._mosaic_audited = True


def _before_flush(session: Session, flush_context, _instances) -> None:
    _guard_read_only(session)
    principal = current_principal()
    pending: list[tuple[str, Any, Any]] = []
    for obj in list(session.new):
        if is_audited(type(obj)):
            _stamp(obj, principal, creating=True)
            pending.append(("create", obj, None))
    for obj in list(session.dirty):
        if is_audited(type(obj)) and session.is_modified(obj, include_collections=False):
            _stamp(obj, principal, creating=False)
            changes = _update_changes(session, obj)
            if changes:
                pending.append(("update", obj, changes))
    for obj in list(session.deleted):
        if is_audited(type(obj)):
            pending.append(("delete", obj, (object_id_of(obj), _snapshot(obj))))
    if pending:
        flush_context.attributes[_PENDING] = (principal.user_id, pending)


def _guard_read_only(session: Session) -> None:
    """The trail is append-only: an ORM change to an entry is a bug, except
    the scrubbing an erasure performs."""
    if session.info.get(_SCRUBBING):
        return
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise PermissionError("audit entries are read-only")


def _stamp(obj: Any, principal: Principal, creating: bool) -> None:
    """Fill ``created_by``/``updated_by`` from the acting user, unless the
    caller set them itself (an import keeping the original author)."""
    if not isinstance(obj, OwnedMixin) or principal.user_id is None:
        return
    if creating:
        if obj.created_by is None:
            obj.created_by = principal.user_id
        if obj.updated_by is None:
            obj.updated_by = principal.user_id
    elif not inspect(obj).attrs.updated_by.history.added:
        obj.updated_by = principal.user_id


def _update_changes(session: Session, obj: Any) -> dict[str, list[Any]]:
    """{field: [old, new]} for each changed column. An attribute assigned
    without being loaded has no old value in memory: read it from the row."""
    state = inspect(obj)
    raw: dict[str, list[Any]] = {}
    unknown: list[str] = []
    for key in _column_keys(obj):
        hist = state.attrs[key].history
        if not hist.added:
            continue
        new = hist.added[0]
        if isinstance(new, ClauseElement):
            new = _LOAD_AFTER_FLUSH
        if hist.deleted:
            raw[key] = [hist.deleted[0], new]
        else:
            raw[key] = [None, new]
            unknown.append(key)
    if unknown:
        _fill_old_values(session, obj, raw, unknown)
    return {key: pair for key, pair in raw.items() if pair[1] is _LOAD_AFTER_FLUSH or pair[0] != pair[1]}


def _fill_old_values(session: Session, obj: Any, raw: dict[str, list[Any]], keys: list[str]) -> None:
    mapper = inspect(obj).mapper
    model = mapper.class_
    pk_values = mapper.primary_key_from_instance(obj)
    where = [col == value for col, value in zip(mapper.primary_key, pk_values)]
    row = session.execute(select(*(getattr(model, k) for k in keys)).where(*where)).one_or_none()
    if row is not None:
        for key, old in zip(keys, row):
            raw[key][0] = old


def _snapshot(obj: Any, creating: bool = False) -> dict[str, list[Any]]:
    """The record's values, as [value, None] (deleted) or [None, value] (created)."""
    state = inspect(obj)
    values: dict[str, Any] = {}
    for key in _column_keys(obj, creating):
        if creating:
            if key in state.dict:  # server-side defaults are not known yet
                values[key] = state.dict[key]
            continue
        try:
            values[key] = getattr(obj, key)
        except ObjectDeletedError:  # already gone: keep what is in memory
            values[key] = state.dict.get(key)
    if creating:
        return {k: [None, v] for k, v in values.items() if v is not None}
    return {k: [v, None] for k, v in values.items() if v is not None}


def _after_flush(session: Session, flush_context) -> None:
    found = flush_context.attributes.pop(_PENDING, None)
    if not found:
        return
    user_id, pending = found
    rows = []
    for action, obj, data in pending:
        if action == "create":
            object_id, changes = object_id_of(obj), _snapshot(obj, creating=True)
        elif action == "update":
            object_id, changes = object_id_of(obj), _resolve_after_flush(obj, data)
        else:
            object_id, changes = data
        rows.append(_entry(session, action, object_type_of(type(obj)), object_id, changes, user_id))
    _insert(session, rows)


def _resolve_after_flush(obj: Any, changes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A value assigned as a SQL expression (``n = Model.n + 1``) is only known
    once the row is written; read it back now."""
    for key, pair in changes.items():
        if pair[1] is _LOAD_AFTER_FLUSH:
            pair[1] = getattr(obj, key)
    return changes


# --- writing entries ---------------------------------------------------------------


def _entry(
    session: Session,
    action: str,
    object_type: str,
    object_id: str,
    changes: Mapping[str, list[Any]],
    user_id: int | None,
) -> dict[str, Any]:
    erasing = session.info.get(_ERASING)
    if erasing is not None:
        _remember_erased(erasing, action, object_type, object_id, changes)
        stored = {key: [None if v is None else ERASED for v in pair] for key, pair in changes.items()}
    else:
        stored = {key: [_value(key, v) for v in pair] for key, pair in changes.items()}
    return {
        "occurred_at": utcnow(),
        "user_id": user_id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "changes": stored,
    }


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(AuditEntry.__table__), rows)


def record(
    session: Session,
    action: str,
    object_type: str,
    object_id: Any,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Write one entry by hand, for actions that are not a row change of an
    audited model (``export``, ``erase``, ``merge``). ``changes`` is stored as
    given (JSON-safe), not as old/new pairs."""
    _insert(session, [recorded_entry(action, object_type, object_id, changes)])


def recorded_entry(action: str, object_type: str, object_id: Any, changes: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The ``audit_entry`` row ``record`` inserts, for a caller that inserts
    a batch of entries itself (an import's updates)."""
    if len(action) > 20:
        raise ValueError(f"audit action {action!r} is longer than 20 characters")
    return {
        "occurred_at": utcnow(),
        "user_id": current_principal().user_id,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id),
        "changes": json_safe(dict(changes or {})),
    }


def record_creates(session: Session, model: type, rows: Iterable[Mapping[str, Any]]) -> None:
    """Create entries for ``model`` rows inserted with Core (a bulk import),
    which the flush listeners never see: the same entries they write for an
    object added through the ORM (every column value that is not None, less
    the primary key, ``CREATE_NOISE`` and ``__audit_exclude__``), by the
    acting user. ``rows`` are the inserted values by attribute key, with
    the primary key filled in."""
    _insert(session, create_entries(session, model, rows))


def create_entries(session: Session, model: type, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``audit_entry`` rows ``record_creates`` inserts, for a caller
    that inserts them itself (an import, with its own bulk INSERT)."""
    mapper = inspect(model)
    pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    skip = _excluded(model, creating=True) | set(pk_keys)
    keys = [prop.key for prop in mapper.column_attrs if prop.key not in skip]
    object_type, user_id = object_type_of(model), current_principal().user_id
    if session.info.get(_ERASING) is not None:
        entries = [_entry(session, "create", object_type, ",".join(str(row[key]) for key in pk_keys),
                          {key: [None, row[key]] for key in keys if row.get(key) is not None}, user_id) for row in rows]
    else:  # what _entry stores, with the secret-name test done once per column rather than per value
        secret = {key for key in keys if is_secret_name(key)}
        now = utcnow()
        entries = [{
            "occurred_at": now, "user_id": user_id, "action": "create", "object_type": object_type,
            "object_id": ",".join(str(row[key]) for key in pk_keys),
            "changes": _create_changes(row, keys, secret),
        } for row in rows]
    return entries


def update_entries(session: Session, model: type, changes: Iterable[tuple[Any, Mapping[str, Sequence[Any]]]]
                   ) -> list[dict[str, Any]]:
    """The ``audit_entry`` rows the flush listeners write for ORM updates of
    ``model`` rows, for a caller that updates them with Core (an import's
    batch of updates): one per ``(object id, {key: [old, new]})``, keeping
    the keys the listeners audit (less ``NOISE`` and ``__audit_exclude__``)
    whose values differ, by the acting user; none for a row left with no
    such change, as the listeners write none."""
    skip = _excluded(model)
    object_type, user_id = object_type_of(model), current_principal().user_id
    entries = []
    for object_id, row_changes in changes:
        kept = {key: [old, new] for key, (old, new) in row_changes.items() if key not in skip and old != new}
        if kept:
            entries.append(_entry(session, "update", object_type, str(object_id), kept, user_id))
    return entries


#: Values ``json_safe`` returns as they are (exact types: a subclass goes through it).
_PLAIN = frozenset({str, int, bool, float})


def _create_changes(row: Mapping[str, Any], keys: list[str], secret: set[str]) -> dict[str, list[Any]]:
    """``{key: [None, value]}`` as ``_entry`` stores it. An import builds
    one per row over every column: ``json_safe`` is called only for values
    that are not plain already (most are text and numbers)."""
    if secret:
        return {key: [None, REDACTED if key in secret else json_safe(value)]
                for key in keys if (value := row.get(key)) is not None}
    plain = _PLAIN
    return {key: [None, value if value.__class__ in plain else json_safe(value)]
            for key in keys if (value := row.get(key)) is not None}


# --- bulk updates ------------------------------------------------------------------


def audited_bulk_update(
    session: Session,
    model: type,
    condition: ColumnElement[bool],
    values: Mapping[str, Any],
    *,
    principal: Principal | None = None,
    expected_versions: Mapping[int, int] | None = None,
) -> int:
    """Set ``values`` on every ``model`` row matching ``condition`` that the
    principal may see, with an audit entry per changed row and its version
    bumped (so a single-record editor holding the old version gets a 409).

    A plain ``session.execute(update(...))`` skips the audit listeners and
    the version check; this reads the affected ids and old values first
    (locking the rows on PostgreSQL), then updates only the rows that change.
    The record scope (``scope_condition``) of ``principal`` (default: the
    acting one) is added to ``condition`` for owned models: a bulk action
    never reaches a record its user cannot see. ``expected_versions``
    ({id: version the client saw}) turns a changed row into a ``StaleVersion``.
    Returns the number of rows changed. Values must be plain values, not SQL
    expressions. Single-column primary keys only."""
    principal = principal or current_principal()
    mapper = inspect(model)
    if len(mapper.primary_key) != 1:
        raise ValueError(f"audited_bulk_update: {model.__name__} has a composite primary key")
    pk = getattr(model, mapper.get_property_by_column(mapper.primary_key[0]).key)
    keys = list(values)
    rows = _bulk_old_rows(session, model, pk, keys, condition, principal)
    if expected_versions is not None:
        if not _versioned(model):
            raise ValueError(f"audited_bulk_update: {model.__name__} has no version column")
        _check_bulk_versions(model, rows, expected_versions)
    changed = {}
    for row in rows:
        changes = {k: [old, values[k]] for k, old in zip(keys, row[1:1 + len(keys)]) if old != values[k]}
        if changes:
            changed[row[0]] = changes
    _bulk_write(session, model, pk, list(changed), values, principal)
    object_type = object_type_of(model)
    _insert(session, [_entry(session, "update", object_type, str(i), c, principal.user_id) for i, c in changed.items()])
    return len(changed)


def _versioned(model: type) -> bool:
    return inspect(model).version_id_col is not None


def _bulk_old_rows(session, model, pk, keys, condition, principal) -> list[Any]:
    columns = [pk, *(getattr(model, k) for k in keys)]
    if _versioned(model):
        columns.append(model.version)
    stmt = select(*columns).where(condition)
    if hasattr(model, "owner_id"):
        stmt = stmt.where(scope_condition(principal, model))
    return list(session.execute(stmt.order_by(pk).with_for_update()))


def _check_bulk_versions(model: type, rows: list[Any], expected: Mapping[int, int]) -> None:
    from .concurrency import StaleVersion

    for row in rows:
        sent = expected.get(row[0])
        if sent is not None and sent != row[-1]:
            raise StaleVersion(current_version=row[-1], sent_version=sent, object_type=object_type_of(model), object_id=row[0])


def _bulk_write(session, model, pk, ids: list[Any], values: Mapping[str, Any], principal: Principal) -> None:
    assignments = dict(values)
    if _versioned(model):
        assignments["version"] = model.version + 1
    if issubclass(model, OwnedMixin) and principal.user_id is not None:
        assignments["updated_by"] = principal.user_id
    for start in range(0, len(ids), BULK_CHUNK):
        chunk = ids[start:start + BULK_CHUNK]
        session.execute(update(model).where(pk.in_(chunk)).values(**assignments).execution_options(synchronize_session="fetch"))


# --- erasure -----------------------------------------------------------------------


def _remember_erased(erasing: dict, action: str, object_type: str, object_id: str, changes: Mapping[str, Any]) -> None:
    key = (object_type, object_id)
    if action == "delete" or erasing.get(key, set()) is None:
        erasing[key] = None  # every field of a deleted record
    else:
        erasing.setdefault(key, set()).update(changes)


@contextlib.contextmanager
def erasing(session: Session) -> Iterator[None]:
    """Within this block, audit entries keep which fields changed but not
    their values; on leaving it, the old values of those fields (every field
    of a deleted record) are scrubbed from the records' earlier entries."""
    if _ERASING in session.info:  # nested: the outer block scrubs
        yield
        return
    touched: dict[tuple[str, str], set[str] | None] = {}
    session.info[_ERASING] = touched
    try:
        yield
        session.flush()
    finally:
        session.info.pop(_ERASING, None)
    for (object_type, object_id), fields in touched.items():
        scrub_history(session, object_type, object_id, fields)


def scrub_history(session: Session, object_type: str, object_id: Any, fields: Iterable[str] | None = None) -> int:
    """Replace the values of ``fields`` (None: all) in every entry about one
    record by ``"[erased]"``; returns the number of entries rewritten."""
    wanted = None if fields is None else set(fields)
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.object_type == object_type, AuditEntry.object_id == str(object_id))
    )
    rewritten = 0
    session.info[_SCRUBBING] = True
    try:
        for entry in entries:
            scrubbed = _scrubbed(entry.changes or {}, wanted)
            if scrubbed != entry.changes:
                entry.changes = scrubbed
                rewritten += 1
        session.flush()
    finally:
        session.info.pop(_SCRUBBING, None)
    return rewritten


def _scrubbed(changes: Mapping[str, Any], wanted: set[str] | None) -> dict[str, Any]:
    out = {}
    for key, pair in changes.items():
        if (wanted is None or key in wanted) and isinstance(pair, list):
            out[key] = [None if v is None else ERASED for v in pair]
        else:
            out[key] = pair
    return out


# --- reading -----------------------------------------------------------------------


def history(
    session: Session,
    *,
    object_type: str | None = None,
    object_id: Any = None,
    user_id: int | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """Entries newest first, filtered by record and/or by the user who acted;
    page on with ``before_id`` = the last id shown. Callers check
    ``core.audit.read`` and that the record is visible to the reader."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    if object_type is not None:
        stmt = stmt.where(AuditEntry.object_type == object_type)
    if object_id is not None:
        stmt = stmt.where(AuditEntry.object_id == str(object_id))
    if user_id is not None:
        stmt = stmt.where(AuditEntry.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return list(session.scalars(stmt))


def history_of(session: Session, obj: Any, **kwargs: Any) -> list[AuditEntry]:
    """The entries of one record (for its page)."""
    return history(session, object_type=object_type_of(type(obj)), object_id=object_id_of(obj), **kwargs)
