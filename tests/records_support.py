"""A business record for the integrity, audit and schema tests, and a test
plugin serving it through a real flask-smorest API.

``Note`` is declared once, on the host's declarative base, with the table
``acme_note`` (another helper owns ``acme_record``). It has no migration:
``create_note_table(app)`` creates it in the test's database.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from flask import jsonify
from flask_smorest import Blueprint, abort
from marshmallow import fields
from sqlalchemy import Date, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hooks import hookimpl
from host import db as host_db
from host.schemas import OwnedSchema, UpdateSchemaMixin
from host.security.access import public
from host.security.concurrency import check_version, commit_or_conflict, etag, expected_version
from host.security.models import OwnedMixin
from host.testing import plugin_candidate


class Note(OwnedMixin, host_db.Base):
    __tablename__ = "acme_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    amount: Mapped[decimal.Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    due: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class Secretive(host_db.Base):
    """Not owned, audited by opting in; holds a secret column and a column
    left out of the audit."""

    __tablename__ = "acme_secretive"
    __audited__ = True
    __audit_exclude__ = {"last_seen"}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    api_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_seen: Mapped[str | None] = mapped_column(String(40), nullable=True)


def create_note_table(app) -> None:
    """Create the test tables (no migration) in the app's database."""
    engine = app.extensions["mosaic"].db.engine
    Note.__table__.create(engine, checkfirst=True)
    Secretive.__table__.create(engine, checkfirst=True)


def add_user(app, email: str) -> int:
    """A user row, for owner_id foreign keys."""
    from host.security.models import User

    with app.extensions["mosaic"].db.transaction() as session:
        user = User(email=email, display_name=email.split("@")[0])
        session.add(user)
        session.flush()
        return user.id


def add_note(app, **values: Any) -> Note:
    """Insert a note through an audited session; returns it detached."""
    with app.extensions["mosaic"].db.transaction() as session:
        note = Note(**{"title": "first", **values})
        session.add(note)
    return note


class NoteSchema(OwnedSchema):
    title = fields.String(required=True)
    body = fields.String(allow_none=True)
    amount = fields.Decimal(allow_none=True, as_string=True, places=2)
    due = fields.Date(allow_none=True)


class NoteUpdateSchema(UpdateSchemaMixin, NoteSchema):
    pass


def _with_etag(note: Note, status: int = 200):
    response = jsonify(NoteSchema().dump(note))
    response.status_code = status
    response.headers["ETag"] = etag(note.version)
    return response


def _api_blueprint() -> Blueprint:
    """A fresh blueprint per app (flask-smorest keeps per-registration docs)."""
    blp = Blueprint("api_acme", __name__)

    @blp.route("/notes", methods=["POST"])
    @blp.arguments(NoteSchema)
    @public
    def create_note(data):
        session = host_db.session()
        note = Note(**data)
        session.add(note)
        session.commit()
        return _with_etag(note, 201)

    @blp.route("/notes/<int:note_id>", methods=["PATCH"])
    @blp.arguments(NoteUpdateSchema(partial=True))
    @public
    def update_note(data, note_id):
        sent = expected_version(data)
        session = host_db.session()
        note = session.get(Note, note_id) or abort(404)
        check_version(note, sent)
        for key, value in data.items():
            if key != "version":
                setattr(note, key, value)
        commit_or_conflict(session, note)
        return _with_etag(note)

    return blp


class _AcmeHooks:
    def __init__(self):
        self.blueprint = _api_blueprint()

    @hookimpl
    def mosaic_api_blueprints(self):
        return [self.blueprint]


def acme_plugin():
    """The ``acme`` test plugin with its notes API under ``/api/v1/acme``."""
    return plugin_candidate("acme", _AcmeHooks())
