"""Admin: the recycle bin of contacts. Lists the deleted contacts the user
may see (record scope applies, as everywhere) with when they will be purged,
and restores one with what was binned with it (``restore_contact``)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from marshmallow import ValidationError

from host.core import services
from host.db import session as db_session
from host.pagination import decode_cursor
from host.security.access import require

bp = Blueprint("admin_bin", __name__, url_prefix="/admin/recycle-bin")

PERMISSION = "core.contact.delete"
PAGE = 50


@bp.get("")
@require(PERMISSION)
def index():
    try:
        cursor = decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
        contacts, next_cursor = services.list_deleted_contacts(db_session(), limit=PAGE, cursor=cursor)
    except ValidationError:
        abort(400, description=gettext("That page link is not valid: start from the first page."))
    return render_template("core/admin/recycle_bin.html", contacts=contacts, next_cursor=next_cursor,
                           retention=services.RETENTION)


@bp.post("/<int:contact_id>/restore")
@require(PERMISSION)
def restore(contact_id: int):
    session = db_session()
    try:
        contact = services.restore_contact(session, contact_id)
    except services.MergedAway:
        session.rollback()
        flash(gettext("This contact was merged into another one and cannot be restored."), "error")
        return redirect(url_for("admin_bin.index"), code=303)
    session.commit()
    flash(gettext("%(name)s was restored with its interactions, tasks and attachments.", name=contact.name), "success")
    return redirect(url_for("admin_bin.index"), code=303)
