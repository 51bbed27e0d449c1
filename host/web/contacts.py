"""The contact list (``/contacts``): filters, sorting, keyset pages, saved
filters, bulk actions and the export of the current list.

The filters are the API list's (``ContactListArgsSchema``, one validation
path) plus custom fields (``cf:<key>``) and a sort order; the page's date
inputs are days in the user's time zone, turned into the API's aware
bounds here ("to" is inclusive: up to the next midnight).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import to_utc
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from host.core import bulk, lists, saved_filters, services
from host.core.schemas import ContactListArgsSchema
from host.db import session as db_session
from host.pagination import decode_cursor
from host.security.access import current_principal, require

from . import labels
from .common import back_to, int_or_none, team_choices, user_choices, user_names
from .forms import CUSTOM_PREFIX
from .validation import translate_messages, translate_text

bp = Blueprint("contacts", __name__)

PAGE_SIZE = 50
AREA = "contacts"
#: The list's own query parameters (besides ``cf:<key>``).
FILTER_PARAMS = ("q", "kind", "owner_id", "team_id", "lifecycle_stage", "tag", "created_from", "created_to",
                 "active_from", "active_to", "sort")
_DATE_BOUNDS = {"created_from": ("created_after", False), "created_to": ("created_before", True),
                "active_from": ("last_activity_after", False), "active_to": ("last_activity_before", True)}


def current_filters(args: MultiDict) -> dict[str, str]:
    """The filter parameters present in ``args`` (for links, saving, export)."""
    kept = {name: args.get(name, "").strip() for name in FILTER_PARAMS}
    kept.update({k: v.strip() for k, v in args.items() if k.startswith(CUSTOM_PREFIX)})
    return {k: v for k, v in kept.items() if v}


def _day_start(text: str, field: str, next_day: bool) -> str:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError({field: [_("Not a valid date.")]}) from None
    if next_day:
        day += dt.timedelta(days=1)
    return to_utc(dt.datetime.combine(day, dt.time())).replace(tzinfo=dt.timezone.utc).isoformat()


def parse_filters(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], str]:
    """(API list filters, custom field filters, sort) from the page's
    parameters; ``ValidationError`` naming the page's field."""
    api_args: dict[str, Any] = {k: params[k] for k in ("q", "kind", "owner_id", "team_id", "lifecycle_stage", "tag") if k in params}
    errors: dict[str, Any] = {}
    for name, (api_name, next_day) in _DATE_BOUNDS.items():
        if name in params:
            try:
                api_args[api_name] = _day_start(params[name], name, next_day)
            except ValidationError as exc:
                errors.update(exc.messages)
    try:
        loaded = ContactListArgsSchema().load(api_args)
    except ValidationError as exc:
        back = {api: page for page, (api, _n) in _DATE_BOUNDS.items()}
        errors.update({back.get(k, k): v for k, v in exc.messages.items()})
        loaded = {}
    if errors:
        raise ValidationError(errors)
    loaded.pop("limit", None)
    loaded.pop("cursor", None)
    custom = {k[len(CUSTOM_PREFIX):]: v for k, v in params.items() if k.startswith(CUSTOM_PREFIX)}
    sort = params.get("sort") or lists.DEFAULT_SORT
    return loaded, custom, sort


def _cursor() -> list[Any] | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        return decode_cursor(raw)
    except ValidationError:
        raise ValidationError({"cursor": [_("Not a valid page link: start from the first page.")]}) from None


def _export_available() -> bool:
    """The export link shows once the export service exists (another part
    of the record builds it) and the user may export."""
    return "contacts.export" in current_app.view_functions and current_principal().can("core.contact.export")


@bp.get("/contacts")
@require("core.contact.read")
def index():
    session = db_session()
    principal = current_principal()
    saved = saved_filters.saved_filters(session, AREA, principal.user_id)
    chosen = request.args.get("saved")
    if chosen:
        if chosen not in saved:
            flash(_("No saved filter of that name."), "error")
            return redirect(url_for("contacts.index"))
        return redirect(url_for("contacts.index") + "?" + urlencode(saved[chosen]))
    params = current_filters(request.args)
    contacts, next_cursor, errors = [], None, {}
    try:
        filters, custom, sort = parse_filters(params)
        contacts, next_cursor = lists.list_contacts(session, principal, filters, custom=custom, sort=sort,
                                                    limit=PAGE_SIZE, cursor=_cursor())
    except ValidationError as exc:
        errors = translate_messages(exc.messages)
    definitions = services.custom_field_definitions(session)
    users = user_choices(session)
    body = render_template(
        "core/contacts/list.html",
        contacts=contacts, params=params, errors=errors, saved=saved,
        next_url=url_for("contacts.index") + "?" + urlencode({**params, "cursor": next_cursor}) if next_cursor else None,
        first_url=url_for("contacts.index") + ("?" + urlencode(params) if params else ""),
        paged=bool(request.args.get("cursor")),
        query_string=urlencode(params),
        definitions=definitions, users=users, teams=team_choices(session),
        owners=user_names(session, (c.owner_id for c in contacts)),
        companies=lists.contact_names(session, principal, (c.company_id for c in contacts)),
        stages=labels.stages(), kinds=labels.kinds(),
        sorts={"newest": _("Newest first"), "oldest": _("Oldest first"), "name": _("Name A–Z"),
               "activity": _("Latest activity")},
        can_bulk=principal.can(bulk.PERMISSION),
        export_url=url_for("contacts.export") if _export_available() else None,
    )
    return body, 422 if errors else 200


# --- bulk actions -----------------------------------------------------------------------------


BULK_ACTIONS = ("add_tag", "set_stage", "assign_owner")


@bp.post("/contacts/bulk")
@require("core.contact.update")
def bulk_action():
    """Apply one action to the chosen contacts within the user's scope."""
    session = db_session()
    principal = current_principal()
    action = request.form.get("action")
    ids = [i for i in (int_or_none(v) for v in request.form.getlist("ids")) if i is not None]
    target = back_to(url_for("contacts.index"))
    if action not in BULK_ACTIONS:
        flash(_("Choose what to do with the chosen contacts."), "error")
        return redirect(target)
    try:
        if action == "add_tag":
            result = bulk.add_tag(session, principal, ids, request.form.get("tag", ""))
        elif action == "set_stage":
            result = bulk.set_stage(session, principal, ids, request.form.get("lifecycle_stage", ""))
        else:
            result = bulk.assign_owner(session, principal, ids, int_or_none(request.form.get("owner_id")))
    except ValidationError as exc:
        session.rollback()
        flash(_bulk_error(exc.messages), "error")
        return redirect(target)
    session.commit()
    flash(_("Changed %(changed)d of %(chosen)d chosen contacts.", changed=result.changed, chosen=result.chosen), "success")
    return redirect(target)


def _bulk_error(messages: dict[str, Any]) -> str:
    names = {"ids": _("Contacts"), "tag": _("Tag"), "lifecycle_stage": _("Stage"), "owner_id": _("Owner")}
    return " ".join(f"{names.get(k, k)}: {' '.join(translate_text(str(m)) for m in v)}" for k, v in messages.items())


# --- saved filters ------------------------------------------------------------------------------


@bp.post("/contacts/filters")
@require("core.contact.read")
def save_filter():
    session = db_session()
    params = current_filters(MultiDict(parse_qsl(request.form.get("params", ""))))
    name = request.form.get("name", "")
    try:
        saved_filters.save_filter(session, AREA, current_principal().user_id, name, params)
    except ValidationError as exc:
        session.rollback()
        flash(_("The filter was not saved: %(why)s", why=" ".join(translate_text(m) for v in exc.messages.values() for m in v)), "error")
        return redirect(url_for("contacts.index") + ("?" + urlencode(params) if params else ""))
    session.commit()
    flash(_("Filter “%(name)s” saved.", name=" ".join(name.split())), "success")
    return redirect(url_for("contacts.index") + ("?" + urlencode(params) if params else ""))


@bp.post("/contacts/filters/delete")
@require("core.contact.read")
def delete_filter():
    session = db_session()
    if saved_filters.delete_filter(session, AREA, current_principal().user_id, request.form.get("name", "")):
        session.commit()
        flash(_("Filter deleted."), "success")
    return redirect(url_for("contacts.index"))


# --- export --------------------------------------------------------------------------------------


def _list_rows(custom: dict[str, str], sort: str):
    """``ExportType.rows`` for the list as the page shows it: the host's
    contact export, but paged through this list's query, so custom field
    filters and the sort order hold in the file too."""
    from host.core import exports

    def rows(session, user, filters):
        principal = current_principal()  # the export body runs acting as the requester
        cursor = None
        while True:
            items, more = lists.list_contacts(session, principal, filters, custom=custom, sort=sort,
                                              limit=exports.PAGE, cursor=cursor)
            for contact in items:
                row = {column: getattr(contact, column, None) for column in exports.CONTACT_COLUMNS}
                row.update(emails=[e.email for e in contact.emails], phones=[p.phone for p in contact.phones],
                           tags=[t.name for t in contact.tags])
                row.update({f"custom_fields.{k}": v for k, v in (contact.custom_fields or {}).items()})
                yield row
                session.expunge(contact)
            if more is None:
                return
            cursor = decode_cursor(more)

    return rows


@bp.get("/contacts/export")
@require("core.contact.export")
def export():
    """The current list as CSV or XLSX (``format``), for the signed-in
    user: the API's export service, its security-log entry and scope."""
    import dataclasses

    from flask import Response, stream_with_context

    from host.core import exports

    fmt = request.args.get("format")
    params = current_filters(request.args)
    if fmt is None:  # a page offering the formats (the link to a download must name one)
        query = urlencode(params)
        return render_template("core/contacts/export.html", query=query,
                               back_url=url_for("contacts.index") + ("?" + query if query else ""))
    try:
        if fmt not in exports.FORMATS:
            raise ValidationError({"format": [_("Choose csv or xlsx.")]})
        filters, custom, sort = parse_filters(params)
        lists.custom_field_conditions(db_session(), custom)  # refuse a bad filter before the download starts
    except ValidationError as exc:
        flash(_("The list was not exported: %(why)s", why=_bulk_error(exc.messages)), "error")
        return redirect(url_for("contacts.index") + ("?" + urlencode(params) if params else ""))
    host_type = exports.export_types().get("contacts")
    if host_type is None:
        abort(404)
    export_type = dataclasses.replace(host_type, rows=_list_rows(custom, sort))
    started = exports.start_export(db_session(), current_app, current_principal(), export_type, fmt,
                                   {**filters, **{f"cf:{k}": v for k, v in custom.items()}, "sort": sort})
    response = Response(stream_with_context(started.body), mimetype=started.content_type.split(";")[0])
    response.headers["Content-Type"] = started.content_type
    response.headers["Content-Disposition"] = f'attachment; filename="{started.filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
