"""Object-level access checks, reusable by the core record and every plugin.

``check_scope_access`` proves, at the query level, that the one enforcement
point (``scope_condition``) hides a record from a user whose scope does not
reach it, and that counts leave it out; ``check_object_access`` (below) does the
same through every route a record type has: UI, API, search and export.

Use from a test (users need the type's permissions; scope alone must hide
the record)::

    case = ObjectAccessCase(app, Contact, contact_id, "Ann Example",
                            "owner@example.com", "other@example.com",
                            AccessRoutes(ui_detail="/contacts/{id}", api_item="/api/v1/contacts/{id}", ...))
    check_object_access(case)

It signs both users in through the real login form and gives them API
tokens (``host.testing``), so it needs the security layer of issue 4.

Beyond a plain record type, a case can describe:

- soft deletion: ``live`` (the condition of records not in the recycle bin)
  makes counts leave binned records out, and ``check_binned_access`` proves
  that a binned record is hidden from everyone's live routes, listed in the
  bin only for those whose scope reaches it, and restorable only by them;
- a child reached through its parent (an attachment on a contact): ``parent``
  (model, id) is the record whose scope decides, and ``{parent}`` in a path
  is its id;
- reads that are not routes (``finders``: search and timeline services) and
  counts (``counters``), and extra routes per record (``api_reads``,
  ``api_listings``, ``api_writes``, ``ui_reads``).

This module also holds the test model ``AcmeRecord`` (table ``acme_record``)
and the test plugin ``acme`` serving it through a UI list, detail, edit and
delete, a CSV export, the search hook, an export type and a REST API.
A table defined on ``host.db.Base`` stays in the global metadata for the rest
of the test run, so it is defined here once and imported by every test that
needs a scoped model. It has no migration: tests create its table with
``create_acme_table(app)``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template_string, request, url_for
from flask_login import current_user
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import fields
from sqlalchemy import Index, String, and_, func, select
from sqlalchemy.orm import Mapped, mapped_column

from hooks import ExportType, Permission, SearchResult, hookimpl
from host import db as host_db
from host.db import Base
from host.schemas import OwnedSchema, UpdateSchemaMixin
from host.security.access import Principal, acting_as, current_principal, load_principal, require, scope_condition, visible
from host.security.concurrency import check_version, commit_or_conflict, expected_version
from host.security.models import OwnedMixin, User
from host.testing import plugin_candidate


class AcmeRecord(OwnedMixin, Base):
    """A scoped business record of the test plugin ``acme`` (object type
    ``acme.record``). The (owner_id, id) index is what an own-scope list
    ordered by id needs: without it the scoped first page scans."""

    __tablename__ = "acme_record"
    __table_args__ = (
        Index("ix_acme_record_owner_id_id", "owner_id", "id"),
        Index("ix_acme_record_team_id_id", "team_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


ACME_OBJECT = "acme.record"
ACME_PERMISSIONS = {
    f"{ACME_OBJECT}.read": ("admin", "manager", "staff"),
    f"{ACME_OBJECT}.create": ("admin", "manager", "staff"),
    f"{ACME_OBJECT}.update": ("admin", "manager", "staff"),
    f"{ACME_OBJECT}.delete": ("admin", "manager", "staff"),
    f"{ACME_OBJECT}.export": ("admin", "manager", "staff"),
}


def create_acme_table(app) -> None:
    """Create ``acme_record`` in the app's database (it has no migration)."""
    AcmeRecord.__table__.create(app.extensions["mosaic"].db.engine, checkfirst=True)


def principal_for(session, email: str) -> Principal:
    user = session.scalar(select(User).where(User.email == email.lower()))
    assert user is not None, f"no user {email}"
    return load_principal(session, user)


# --- query-level checks ----------------------------------------------------------


def visible_ids(session, principal: Principal, model: Any = AcmeRecord) -> set[int]:
    """Ids of ``model`` rows that ``principal`` may see, by a Core select."""
    return set(session.scalars(select(model.id).where(scope_condition(principal, model))))


def visible_count(session, principal: Principal, model: Any = AcmeRecord) -> int:
    return session.scalar(select(func.count()).select_from(model).where(scope_condition(principal, model)))


@dataclass(frozen=True)
class ScopeVerdict:
    """What one user sees of one record at the query level."""

    in_select: bool
    in_count: bool
    in_orm_get: bool
    visible: bool


def scope_verdict(session, principal: Principal, model: Any, record_id: int) -> ScopeVerdict:
    """The record's fate through every query path a route uses: a Core select
    of ids, a count, an ORM select of the object, and ``visible()`` on the
    loaded object. They must agree; ``check_scope_access`` asserts that."""
    condition = scope_condition(principal, model)
    in_select = session.scalar(select(model.id).where(model.id == record_id, condition)) is not None
    scoped = session.scalar(select(func.count()).select_from(model).where(condition))
    without = session.scalar(select(func.count()).select_from(model).where(condition, model.id != record_id))
    obj = session.execute(select(model).where(model.id == record_id, condition)).scalar_one_or_none()
    raw = session.get(model, record_id)
    assert raw is not None, f"{model.__name__} {record_id} does not exist"
    return ScopeVerdict(
        in_select=in_select,
        in_count=scoped == without + 1,
        in_orm_get=obj is not None,
        visible=visible(principal, raw),
    )


def check_scope_access(app, *, model: Any, record_id: int, owner_email: str, other_email: str) -> None:
    """Assert at the query level that ``owner_email`` sees the record and
    ``other_email`` does not, by every path (select, count, ORM, ``visible``).

    The owner half keeps the check honest: a condition that hid the record
    from everyone would pass the other half alone."""
    state = app.extensions["mosaic"]
    with state.db.Session() as session:
        owner = scope_verdict(session, principal_for(session, owner_email), model, record_id)
        other = scope_verdict(session, principal_for(session, other_email), model, record_id)
    assert owner == ScopeVerdict(True, True, True, True), f"{owner_email} should see {model.__name__} {record_id}: {owner}"
    assert other == ScopeVerdict(False, False, False, False), f"{other_email} must not see {model.__name__} {record_id}: {other}"


# --- the test plugin "acme": every route a record type has, scope-filtered ---------


def _principal_for_hook(session, user) -> Principal:
    """The principal a hook acts for: the acting one when it is ``user``
    (a request or a job), else ``user``'s own roles."""
    acting = current_principal()
    user_id = getattr(user, "id", None)
    if user_id is None or acting.user_id == user_id:
        return acting
    return load_principal(session, session.get(User, user_id))


def scoped_get_or_404(session, model: Any, record_id: int):
    """The record if the acting principal's scope reaches it, else 404: a
    record out of scope must look exactly like one that does not exist."""
    record = session.scalar(select(model).where(model.id == record_id, scope_condition(current_principal(), model)))
    if record is None:
        abort(404)
    return record


def _scoped_page(session, principal: Principal, query: str | None = None) -> tuple[list[AcmeRecord], int]:
    """First page (newest first) and the total, under the same condition."""
    condition = scope_condition(principal, AcmeRecord)
    if query:
        condition = and_(condition, AcmeRecord.title.contains(query, autoescape=True))
    rows = list(session.scalars(select(AcmeRecord).where(condition).order_by(AcmeRecord.id.desc()).limit(50)))
    total = session.scalar(select(func.count()).select_from(AcmeRecord).where(condition))
    return rows, total


def export_rows(session, user, filters=None):
    """``ExportType.rows``: every record the user may see, as dicts."""
    principal = _principal_for_hook(session, user)
    stmt = select(AcmeRecord).where(scope_condition(principal, AcmeRecord)).order_by(AcmeRecord.id)
    for record in session.scalars(stmt):
        yield {"id": record.id, "title": record.title, "owner_id": record.owner_id}


_LIST = """{% extends "core/base.html" %}{% block content %}
<h1>Acme records</h1><p id="count">{{ total }} records</p>
<ul>{% for r in rows %}<li><a href="{{ url_for('acme.detail', record_id=r.id) }}">{{ r.title }}</a></li>{% endfor %}</ul>
{% endblock %}"""

_DETAIL = """{% extends "core/base.html" %}{% block content %}
<h1>{{ record.title }}</h1>
<form method="post" action="{{ url_for('acme.update', record_id=record.id) }}">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  <input type="hidden" name="version" value="{{ record.version }}">
  <input name="title" value="{{ record.title }}"><button>Save</button>
</form>
<form method="post" action="{{ url_for('acme.delete', record_id=record.id) }}">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}"><button>Delete</button>
</form>
{% endblock %}"""

_SEARCH = """{% extends "core/base.html" %}{% block content %}
<h1>Search</h1><ul>{% for hit in hits %}<li><a href="{{ hit.url }}">{{ hit.title }}</a></li>{% endfor %}</ul>
{% endblock %}"""


def _ui_blueprint() -> Blueprint:
    bp = Blueprint("acme", __name__)

    @bp.get("/")
    @require("acme.record.read")
    def index():
        rows, total = _scoped_page(host_db.session(), current_principal())
        return render_template_string(_LIST, rows=rows, total=total)

    @bp.get("/<int:record_id>")
    @require("acme.record.read")
    def detail(record_id: int):
        return render_template_string(_DETAIL, record=scoped_get_or_404(host_db.session(), AcmeRecord, record_id))

    @bp.post("/<int:record_id>/edit")
    @require("acme.record.update")
    def update(record_id: int):
        session = host_db.session()
        record = scoped_get_or_404(session, AcmeRecord, record_id)
        check_version(record, request.form.get("version"))
        record.title = request.form["title"]
        commit_or_conflict(session, record)
        return redirect(url_for("acme.detail", record_id=record.id), 303)

    @bp.post("/<int:record_id>/delete")
    @require("acme.record.delete")
    def delete(record_id: int):
        session = host_db.session()
        session.delete(scoped_get_or_404(session, AcmeRecord, record_id))
        session.commit()
        return redirect(url_for("acme.index"), 303)

    @bp.get("/export.csv")
    @require("acme.record.export")
    def export():
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["id", "title", "owner_id"])
        writer.writeheader()
        writer.writerows(export_rows(host_db.session(), current_user))
        return Response(out.getvalue(), mimetype="text/csv")

    @bp.get("/search")
    @require("acme.record.read")
    def search():
        """Stands in for the host's global search: every plugin's ``mosaic_search``."""
        state = current_app.extensions["mosaic"]
        results = state.pm.hook.mosaic_search(query=request.args.get("q", ""), user=current_user, limit=20)
        return render_template_string(_SEARCH, hits=[hit for batch in results for hit in batch])

    return bp


class RecordSchema(OwnedSchema):
    title = fields.String(required=True)


class RecordUpdateSchema(UpdateSchemaMixin, RecordSchema):
    pass


def _api_blueprint() -> SmorestBlueprint:
    """A fresh blueprint per app (flask-smorest keeps per-registration docs)."""
    blp = SmorestBlueprint("api_acme", __name__)

    @blp.route("/records", methods=["GET"])
    @require("acme.record.read")
    def list_records():
        rows, total = _scoped_page(host_db.session(), current_principal(), request.args.get("q"))
        return jsonify({"items": RecordSchema(many=True).dump(rows), "total": total})

    @blp.route("/records/<int:record_id>", methods=["GET"])
    @require("acme.record.read")
    def get_record(record_id: int):
        return jsonify(RecordSchema().dump(scoped_get_or_404(host_db.session(), AcmeRecord, record_id)))

    @blp.route("/records/<int:record_id>", methods=["PATCH"])
    @blp.arguments(RecordUpdateSchema(partial=True))
    @require("acme.record.update")
    def patch_record(data, record_id: int):
        session = host_db.session()
        record = scoped_get_or_404(session, AcmeRecord, record_id)
        check_version(record, expected_version(data))
        for key, value in data.items():
            if key != "version":
                setattr(record, key, value)
        commit_or_conflict(session, record)
        return jsonify(RecordSchema().dump(record))

    @blp.route("/records/<int:record_id>", methods=["DELETE"])
    @require("acme.record.delete")
    def delete_record(record_id: int):
        session = host_db.session()
        session.delete(scoped_get_or_404(session, AcmeRecord, record_id))
        session.commit()
        return "", 204

    return blp


class AcmeHooks:
    """Hook implementations of the test plugin ``acme``: one scoped model,
    its permissions (granted by default to every built-in role, so that
    record scope, not a missing permission, is what a test sees working),
    and every way a record type is reached: UI list/detail/edit/delete,
    export, the search hook and a REST API, all filtered by
    ``scope_condition``."""

    def __init__(self) -> None:
        self.ui = _ui_blueprint()
        self.api = _api_blueprint()

    @hookimpl
    def mosaic_models(self):
        return [AcmeRecord]

    @hookimpl
    def mosaic_permissions(self):
        return [Permission(name, f"acme record: {name.rsplit('.', 1)[1]}", roles) for name, roles in ACME_PERMISSIONS.items()]

    @hookimpl
    def mosaic_blueprints(self):
        return [self.ui]

    @hookimpl
    def mosaic_api_blueprints(self):
        return [self.api]

    @hookimpl
    def mosaic_search(self, query, user, limit):
        session = host_db.session()
        principal = _principal_for_hook(session, user)
        condition = and_(scope_condition(principal, AcmeRecord), AcmeRecord.title.contains(query, autoescape=True))
        rows = session.scalars(select(AcmeRecord).where(condition).order_by(AcmeRecord.id.desc()).limit(limit))
        return [SearchResult(title=r.title, url=url_for("acme.detail", record_id=r.id), kind="acme record") for r in rows]

    @hookimpl
    def mosaic_export_types(self):
        return [ExportType("acme.records", "Acme records", ("id", "title", "owner_id"), export_rows, f"{ACME_OBJECT}.export")]


def acme_plugin():
    """The ``acme`` plugin for ``make_app(plugins=[..., "acme"], extra_plugins=[acme_plugin()])``."""
    return plugin_candidate("acme", AcmeHooks(), title="Acme (test plugin)")


# --- route-level checks: UI, API, search, export ------------------------------------


@dataclass(frozen=True)
class AccessRoutes:
    """Where a record type is reached. ``{id}`` in a path is the record's id;
    leave out what the type does not have. UI paths are used with a signed-in
    session, API paths with a bearer token."""

    ui_detail: str | None = None
    ui_list: str | None = None
    #: (path, form fields): a POST that changes the record (CSRF token and,
    #: when the form has one, ``version`` are added by the helper).
    ui_update: tuple[str, dict[str, str]] | None = None
    ui_delete: str | None = None
    ui_export: str | None = None
    #: A search page; the helper appends ``?q=<search term>``.
    ui_search: str | None = None
    api_list: str | None = None
    #: GET, PATCH and DELETE on one record.
    api_item: str | None = None
    #: The JSON body of a PATCH (``version`` is added by the helper).
    api_patch: dict[str, Any] | None = None
    #: Reads the total from an API list response (default: ``body["total"]``).
    api_total: Any = None
    #: Reads the count from the UI list page's HTML, if it shows one.
    ui_count: Any = None
    #: More GETs of this one record (its timeline, history, files ...): the
    #: owner gets 200, the other user 404. UI paths with the session, API
    #: paths with the token.
    ui_reads: tuple[str, ...] = ()
    api_reads: tuple[str, ...] = ()
    #: More UI GETs listing records (suggestions as you type ...): 200 for
    #: both, the marker shown to the owner only.
    ui_listings: tuple[str, ...] = ()
    #: More API GETs listing records (a search, an export): 200 for both,
    #: the marker shown to the owner only.
    api_listings: tuple[str, ...] = ()
    #: More API calls that act on this record: (method, path, JSON body or
    #: None). The other user gets 404 and the row stays as it was.
    api_writes: tuple[tuple[str, str, Any], ...] = ()


@dataclass
class ObjectAccessCase:
    """One record owned by one user, and a user whose scope does not reach it.

    ``marker`` is text that appears wherever the record is shown (its title),
    so "not shown" can be checked on lists, search results and exports; keep
    it to letters, digits and spaces so HTML, CSV and JSON show it alike.
    ``search_term`` finds the record through search (default: the marker).
    Both users need the type's read, update, delete and export permissions:
    the point is that scope alone keeps the record away."""

    app: Any
    model: Any
    record_id: int
    marker: str
    owner_email: str
    other_email: str
    routes: AccessRoutes
    search_term: str | None = None
    #: The record whose scope decides (model, id), when this one is reached
    #: through it (an attachment through its contact); ``{parent}`` in paths.
    parent: tuple[Any, int] | None = None
    #: ``model -> SQL condition`` of records not in the recycle bin: counts
    #: leave the others out, as lists do.
    live: Any = None
    #: Whether the plugin hooks (``mosaic_search``, export types' rows) are
    #: checked too: a host record is searched by the host's own service
    #: (give it in ``finders``), not by the hook.
    check_search_hook: bool = True
    check_export_hook: bool = True
    #: ``(session, principal) -> anything``: reads outside routes (search
    #: and timeline services ...); what they return must mention the marker
    #: for the owner only.
    finders: tuple[Any, ...] = ()
    #: ``(session, principal) -> int``: counts that must equal the scoped count.
    counters: tuple[Any, ...] = ()

    def path(self, template: str) -> str:
        parent_id = self.parent[1] if self.parent else None
        return template.format(id=self.record_id, parent=parent_id)

    @property
    def scope_model(self) -> Any:
        return self.parent[0] if self.parent else self.model

    @property
    def scope_id(self) -> int:
        return self.parent[1] if self.parent else self.record_id

    def row(self) -> dict[str, Any] | None:
        """The record's row as stored now (None once deleted)."""
        with self.app.extensions["mosaic"].db.Session() as session:
            record = session.get(self.model, self.record_id)
            return None if record is None else {c.key: getattr(record, c.key) for c in self.model.__table__.columns}

    def scoped_count(self, email: str) -> int:
        """How many records of the type ``email`` may see (live ones, when
        the type has a recycle bin)."""
        model = self.model
        with self.app.extensions["mosaic"].db.Session() as session:
            condition = scope_condition(principal_for(session, email), model)
            if self.live is not None:
                condition = and_(condition, self.live(model))
            return session.scalar(select(func.count()).select_from(model).where(condition))


def check_object_access(case: ObjectAccessCase, *, prove_owner_can_write: bool = True) -> None:
    """Assert that ``case.other_email`` cannot read, change, delete, export or
    find the record through any route in ``case.routes``, that counts leave
    it out, and that an out-of-scope record answers 404 (never 403, which
    would confirm it exists). Each negative check is paired with the owner
    reaching the same route, so a wrong path cannot pass as "hidden".

    With ``prove_owner_can_write`` the owner finally updates and deletes the
    record through the same routes (so the record is gone afterwards)."""
    from host.testing import api_token, bearer, csrf_token, login

    check_scope_access(case.app, model=case.scope_model, record_id=case.scope_id, owner_email=case.owner_email,
                       other_email=case.other_email)
    before = case.row()
    owner_ui, other_ui = _signed_in(case.app, case.owner_email, login), _signed_in(case.app, case.other_email, login)
    owner_api = bearer(api_token(case.app, case.owner_email))
    other_api = bearer(api_token(case.app, case.other_email))

    _check_reads(case, owner_ui, other_ui)
    _check_api_reads(case, owner_ui, owner_api, other_api)
    _check_writes_refused(case, other_ui, other_api, csrf_token(other_ui, "/"))
    assert case.row() == before, f"{case.other_email} changed a record out of scope: {before} -> {case.row()}"
    _check_hooks(case)
    _check_services(case)
    if prove_owner_can_write:
        _check_owner_writes(case, owner_ui, owner_api, csrf_token(owner_ui, "/"))


def _signed_in(app, email: str, login) -> Any:
    client = app.test_client()
    response = login(client, email)
    assert response.status_code == 303, f"sign-in failed for {email}: {response.status_code}"
    return client


def _text(response) -> str:
    return response.get_data(as_text=True)


def _read(client, path: str) -> tuple[Any, str]:
    response = client.get(path)
    return response, _text(response)


def _without_echo(html: str, path: str, term: str | None) -> str:
    """The page without what merely repeats the request: its own URL (a
    "next" field, a language switch) and the query in the search box, so
    a search page showing what was typed is not taken for a hit."""
    from markupsafe import escape

    for echo in (path, str(escape(path))):
        html = html.replace(echo, "")
    if term:
        html = html.replace(f'value="{escape(term)}"', "")
    return html


def _check_reads(case: ObjectAccessCase, owner, other) -> None:
    routes, marker = case.routes, case.marker
    if routes.ui_detail:
        path = case.path(routes.ui_detail)
        assert owner.get(path).status_code == 200, f"the owner cannot open {path}"
        assert other.get(path).status_code == 404, f"{path}: a record out of scope must answer 404"
    search = f"{routes.ui_search}?{urlencode({'q': case.search_term or marker})}" if routes.ui_search else None
    listings = [(routes.ui_list, "list"), (routes.ui_export, "export"), (search, "search"),
                *((case.path(path), "listing") for path in routes.ui_listings)]
    for path, what in listings:
        if not path:
            continue
        # Each body is read before the next request: a streamed response
        # (an export) holds its request context until it is consumed.
        (mine, mine_text), (theirs, theirs_text) = _read(owner, path), _read(other, path)
        term = case.search_term or marker if what == "search" else None
        assert mine.status_code == 200 and marker in _without_echo(mine_text, path, term), f"{what} {path}: the owner does not see the record"
        assert theirs.status_code == 200, f"{what} {path}: {theirs.status_code}"
        assert marker not in _without_echo(theirs_text, path, term), f"{what} {path} shows a record out of scope to {case.other_email}"
    for template in routes.ui_reads:
        path = case.path(template)
        assert owner.get(path).status_code == 200, f"the owner cannot open {path}"
        assert other.get(path).status_code == 404, f"{path}: a record out of scope must answer 404"
    if routes.ui_list and routes.ui_count:
        for client, email in ((owner, case.owner_email), (other, case.other_email)):
            shown = routes.ui_count(_text(client.get(routes.ui_list)))
            assert shown == case.scoped_count(email), f"{routes.ui_list}: count {shown} for {email}"


def _check_api_reads(case: ObjectAccessCase, owner_ui, owner_api, other_api) -> None:
    routes = case.routes
    total_of = routes.api_total or (lambda body: body["total"])
    if routes.api_item:
        path = case.path(routes.api_item)
        assert owner_ui.get(path).status_code == 401, f"{path}: the API must ignore session cookies"
        mine = case.app.test_client().get(path, headers=owner_api)
        assert mine.status_code == 200 and case.marker in _text(mine), f"{path}: the owner cannot read it"
        theirs = case.app.test_client().get(path, headers=other_api)
        assert theirs.status_code == 404 and theirs.is_json, f"{path}: out of scope must answer 404 JSON, got {theirs.status_code}"
    if routes.api_list:
        for headers, email in ((owner_api, case.owner_email), (other_api, case.other_email)):
            response = case.app.test_client().get(routes.api_list, headers=headers)
            assert response.status_code == 200, f"{routes.api_list}: {response.status_code}"
            assert (case.marker in _text(response)) == (email == case.owner_email), f"{routes.api_list} for {email}"
            assert total_of(response.get_json()) == case.scoped_count(email), f"{routes.api_list}: total for {email}"
    for template in routes.api_reads:
        path = case.path(template)
        mine = case.app.test_client().get(path, headers=owner_api)
        assert mine.status_code == 200, f"{path}: the owner gets {mine.status_code}"
        theirs = case.app.test_client().get(path, headers=other_api)
        assert theirs.status_code == 404 and theirs.is_json, f"{path}: out of scope must answer 404 JSON, got {theirs.status_code}"
    for template in routes.api_listings:
        path = case.path(template)
        for headers, email in ((owner_api, case.owner_email), (other_api, case.other_email)):
            response = case.app.test_client().get(path, headers=headers)
            assert response.status_code == 200, f"{path}: {response.status_code} for {email}"
            shown = case.marker in _text(response)
            assert shown == (email == case.owner_email), f"{path} {'hides the record from' if not shown else 'shows a record out of scope to'} {email}"


def _check_writes_refused(case: ObjectAccessCase, other_ui, other_api, token: str) -> None:
    routes = case.routes
    version = str(case.row().get("version", 1))
    if routes.ui_update:
        path, form = case.path(routes.ui_update[0]), routes.ui_update[1]
        response = other_ui.post(path, data={**form, "version": version, "csrf_token": token})
        assert response.status_code == 404, f"POST {path} out of scope: {response.status_code}"
    if routes.ui_delete:
        path = case.path(routes.ui_delete)
        response = other_ui.post(path, data={"csrf_token": token})
        assert response.status_code == 404, f"POST {path} out of scope: {response.status_code}"
    if routes.api_item:
        path = case.path(routes.api_item)
        client = case.app.test_client()
        if routes.api_patch is not None:
            response = client.patch(path, json={**routes.api_patch, "version": int(version)}, headers=other_api)
            assert response.status_code == 404, f"PATCH {path} out of scope: {response.status_code}"
        response = client.delete(path, headers=other_api)
        assert response.status_code == 404, f"DELETE {path} out of scope: {response.status_code}"
    for method, template, body in routes.api_writes:
        path = case.path(template)
        response = case.app.test_client().open(path, method=method, json=body, headers=other_api)
        assert response.status_code == 404, f"{method} {path} out of scope: {response.status_code}"


def _check_hooks(case: ObjectAccessCase) -> None:
    """Search and export hooks called directly, as the host, reports and jobs
    do: nothing of the record for the other user, and the owner finds it."""
    if not (case.check_search_hook or case.check_export_hook):
        return
    state = case.app.extensions["mosaic"]
    term = case.search_term or case.marker
    for email, is_owner in ((case.owner_email, True), (case.other_email, False)):
        with case.app.test_request_context("/"), state.db.Session() as session:
            principal = principal_for(session, email)
            user = session.get(User, principal.user_id)
            with acting_as(principal):
                hits = [hit for batch in state.pm.hook.mosaic_search(query=term, user=user, limit=50) for hit in batch]
                exports = [export for batch in state.pm.hook.mosaic_export_types() for export in batch]
                exported = {export.key: _mentions(export.rows(session, user, {}), case.marker) for export in exports}
        found = any(case.marker in hit.title for hit in hits)
        if case.check_search_hook:
            assert found is is_owner, f"mosaic_search({term!r}) for {email}: {hits}"
        if not case.check_export_hook:
            continue
        if is_owner:
            assert any(exported.values()), f"no export type gives the owner {email} the record: {exported}"
        else:
            assert not any(exported.values()), f"export gives {email} a record out of scope: {exported}"


def _check_services(case: ObjectAccessCase) -> None:
    """``finders`` and ``counters`` called as each user, in an app context."""
    if not (case.finders or case.counters):
        return
    state = case.app.extensions["mosaic"]
    for email, is_owner in ((case.owner_email, True), (case.other_email, False)):
        with case.app.test_request_context("/"), state.db.Session() as session:
            principal = principal_for(session, email)
            with acting_as(principal):
                for finder in case.finders:
                    found = case.marker in repr(finder(session, principal))
                    assert found is is_owner, f"{getattr(finder, '__name__', finder)} for {email}: found={found}"
                counts = [counter(session, principal) for counter in case.counters]
        expected = case.scoped_count(email)
        for counter, count in zip(case.counters, counts):
            assert count == expected, f"{getattr(counter, '__name__', counter)} for {email}: {count}, scope allows {expected}"


def _mentions(rows, marker: str) -> bool:
    return any(marker in str(value) for row in rows for value in row.values())


def _check_owner_writes(case: ObjectAccessCase, owner_ui, owner_api, token: str) -> None:
    routes = case.routes
    if routes.ui_update:
        path, form = routes.ui_update
        response = owner_ui.post(case.path(path), data={**form, "version": str(case.row()["version"]), "csrf_token": token})
        assert response.status_code in (200, 303), f"the owner's POST {path}: {response.status_code}"
        _assert_stored(case, form, f"POST {path}")
    if routes.api_item and routes.api_patch is not None:
        path = case.path(routes.api_item)
        response = case.app.test_client().patch(path, json={**routes.api_patch, "version": case.row()["version"]}, headers=owner_api)
        assert response.status_code == 200, f"the owner's PATCH {path}: {response.status_code} {_text(response)}"
        _assert_stored(case, routes.api_patch, f"PATCH {path}")
    if routes.ui_delete:
        response = owner_ui.post(case.path(routes.ui_delete), data={"csrf_token": token})
        assert response.status_code in (200, 303), f"the owner's POST {routes.ui_delete}: {response.status_code}"
    elif routes.api_item:
        response = case.app.test_client().delete(case.path(routes.api_item), headers=owner_api)
        assert response.status_code in (200, 204), f"the owner's DELETE {routes.api_item}: {response.status_code}"
    if routes.ui_delete or routes.api_item:
        row = case.row()
        assert row is None or row.get("deleted_at") is not None, "the owner's delete left the record in place"


def _assert_stored(case: ObjectAccessCase, values: dict[str, Any], what: str) -> None:
    row = case.row()
    changed = {key: row[key] for key in values if key in row}
    assert changed == {key: values[key] for key in changed}, f"{what} by the owner did not store {values}: {row}"


# --- the recycle bin -------------------------------------------------------------------


@dataclass(frozen=True)
class BinRoutes:
    """Where a type's recycle bin is reached (API, with a token)."""

    #: POST that brings one record back.
    api_restore: str
    #: The bin's list (``{"items": [...]}``), if the type has one.
    api_list: str | None = None


def check_binned_access(case: ObjectAccessCase, bin_routes: BinRoutes) -> None:
    """With the case's record in the recycle bin: its live routes answer
    404 to everyone, its owner included, and lists, search and counts leave
    it out; the bin lists it only for the owner; the other user cannot
    restore it (404, nothing changes); the owner can, and then reaches it
    again. Call after deleting the record (e.g. the owner's API DELETE)."""
    from host.testing import api_token, bearer

    row = case.row()
    assert row is not None and row.get("deleted_at") is not None, "put the record in the bin first"
    owner_api = bearer(api_token(case.app, case.owner_email))
    other_api = bearer(api_token(case.app, case.other_email))
    client = case.app.test_client()
    routes = case.routes
    for headers, email in ((owner_api, case.owner_email), (other_api, case.other_email)):
        if routes.api_item:
            response = client.get(case.path(routes.api_item), headers=headers)
            assert response.status_code == 404, f"{routes.api_item}: a binned record answers {response.status_code} to {email}"
        for template in routes.api_reads:
            response = client.get(case.path(template), headers=headers)
            assert response.status_code == 404, f"{template}: a binned record answers {response.status_code} to {email}"
        for path in filter(None, (routes.api_list, *routes.api_listings)):
            response = client.get(case.path(path), headers=headers)
            assert response.status_code == 200 and case.marker not in _text(response), f"{path} shows a binned record to {email}"
        if bin_routes.api_list:
            binned = client.get(bin_routes.api_list, headers=headers)
            assert binned.status_code == 200, f"{bin_routes.api_list}: {binned.status_code}"
            listed = any(item.get("id") == case.record_id for item in binned.get_json()["items"])
            assert listed is (email == case.owner_email), f"{bin_routes.api_list} for {email}: listed={listed}"
    _check_services_hidden_from_all(case)
    restore = case.path(bin_routes.api_restore)
    response = client.post(restore, headers=other_api)
    assert response.status_code == 404, f"POST {restore} out of scope: {response.status_code}"
    assert case.row() == row, "the other user's restore changed the record"
    response = client.post(restore, headers=owner_api)
    assert response.status_code == 200, f"the owner's POST {restore}: {response.status_code}"
    assert case.row()["deleted_at"] is None
    if routes.api_item:
        assert client.get(case.path(routes.api_item), headers=owner_api).status_code == 200


def _check_services_hidden_from_all(case: ObjectAccessCase) -> None:
    state = case.app.extensions["mosaic"]
    for email in (case.owner_email, case.other_email):
        with case.app.test_request_context("/"), state.db.Session() as session:
            principal = principal_for(session, email)
            with acting_as(principal):
                for finder in case.finders:
                    assert case.marker not in repr(finder(session, principal)), f"{finder} shows a binned record to {email}"
                counts = [counter(session, principal) for counter in case.counters]
        assert all(count == case.scoped_count(email) for count in counts), f"counts for {email} include a binned record"
