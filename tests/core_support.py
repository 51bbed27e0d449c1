"""Test helpers for the core record, for every test that needs contacts,
interactions or tasks (search, timeline, webhooks, imports, plugins).

Everything goes through ``host.core.services`` in its own committed
transaction, acting as the given user, so records carry real owners, audit
entries, lifecycle history and outbox events, exactly as the API makes them::

    ann = make_user(app, "ann@example.com")              # host.testing
    contact_id = make_contact(app, ann, first_name="Ann", last_name="Lee", email="ann@example.com")
    make_interaction(app, ann, contact_id, subject="Called")
    make_task(app, ann, title="Send offer", contact_id=contact_id)

``who`` is a user id, an e-mail, or a ``Principal`` (``SYSTEM`` for records
nobody owns).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from host.security.access import Principal, acting_as, load_principal
from host.security.models import User


def state(app) -> Any:
    return app.extensions["mosaic"]


def principal_of(app, who: int | str | Principal) -> Principal:
    """The principal of a user id or e-mail, with their roles resolved now."""
    if isinstance(who, Principal):
        return who
    with state(app).db.Session() as session:
        if isinstance(who, str):
            user = session.scalar(select(User).where(User.email == who.lower()))
        else:
            user = session.get(User, who)
        assert user is not None, f"no user {who!r}"
        return load_principal(session, user)


def run_as(app, who: int | str | Principal, func, *args: Any, **kwargs: Any) -> Any:
    """Call ``func(session, *args, **kwargs)`` as ``who`` in a committed
    transaction inside an app context; returns what it returns."""
    principal = principal_of(app, who)
    with app.app_context(), acting_as(principal), state(app).db.transaction() as session:
        return func(session, *args, **kwargs)


def make_contact(app, who: int | str | Principal, **fields: Any) -> int:
    """A contact created by ``who`` (its owner) through the service; returns
    its id. Without a name, a person "Test Person"."""
    from host.core import services

    if not {"name", "first_name", "last_name"} & set(fields):
        fields["name"] = "Test Person" if fields.get("kind", "person") == "person" else "Test Company Ltd"
    return run_as(app, who, lambda session: services.create_contact(session, fields).id)


def make_company(app, who: int | str | Principal, name: str = "Acme Ltd", **fields: Any) -> int:
    return make_contact(app, who, kind="company", name=name, **fields)


def make_interaction(app, who: int | str | Principal, contact_id: int, **fields: Any) -> int:
    """An interaction logged by ``who`` on ``contact_id`` (default: an
    outgoing phone call "Called")."""
    from host.core import services

    data = {"contact_id": contact_id, "channel": "phone", "subject": "Called", **fields}
    return run_as(app, who, lambda session: services.create_interaction(session, data).id)


def make_task(app, who: int | str | Principal, **fields: Any) -> int:
    """A task created by ``who`` (assigned to them unless ``assignee_id``)."""
    from host.core import services

    data = {"title": "Follow up", **fields}
    return run_as(app, who, lambda session: services.create_task(session, data).id)


def add_attachment(app, object_type: str, object_id: int, stored_name: str | None = None) -> int:
    """An attachment row on a contact, interaction or task (no file unless
    the caller writes one under ``stored_name``)."""
    import secrets

    from host.core.models import Attachment

    with state(app).db.transaction() as session:
        attachment = Attachment(object_type=object_type, object_id=object_id, filename="a.pdf",
                                stored_name=stored_name or secrets.token_hex(16), content_type="application/pdf", size=1)
        session.add(attachment)
        session.flush()
        return attachment.id


def row(app, model: type, record_id: int) -> dict[str, Any] | None:
    """A row as stored, unscoped and including the recycle bin (None when
    purged): for asserting what a service or route did."""
    with state(app).db.Session() as session:
        record = session.get(model, record_id)
        if record is None:
            return None
        return {column.key: getattr(record, column.key) for column in model.__table__.columns}


def rows(app, stmt) -> list[Any]:
    with state(app).db.Session() as session:
        return list(session.execute(stmt))


def events(app, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every outbox event whose type starts with ``prefix``, oldest first."""
    from host.events import read_outbox

    with state(app).db.Session() as session:
        return [(event.type, dict(event.data)) for event in read_outbox(session, 0, 10_000) if event.type.startswith(prefix)]


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
