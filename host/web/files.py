"""Attachment uploads from the record pages (contact, interaction, task):
one form field ``file``, stored by ``host.core.attachments`` exactly as the
API stores it, the outcome told by a flash message."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, request
from flask_babel import gettext as _

from host.core import attachments
from host.db import session as db_session
from host.security.access import current_principal


def upload_from_form(record: Any) -> bool:
    """Store the posted ``file`` on ``record`` and commit; False (with a
    flash saying why) when there was no file or it was refused."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("Choose a file to upload."), "error")
        return False
    session, root = db_session(), attachments.storage_root(current_app.instance_path)
    limit = int(current_app.config.get(attachments.MAX_BYTES_SETTING) or attachments.MAX_BYTES)
    try:
        stored = attachments.store(session, root, attachments.Upload(upload.stream, upload.filename), record=record,
                                   user_id=current_principal().user_id, max_bytes=limit)
    except attachments.AttachmentError as exc:
        session.rollback()
        flash(_("The file was not attached: %(why)s", why=exc.message), "error")
        return False
    try:
        session.commit()
    except Exception:
        attachments.remove_files(root, [stored.stored_name])
        raise
    flash(_("Attached %(name)s.", name=stored.filename), "success")
    return True


def listed(session: Any, object_type: str, record_id: int) -> list[Any]:
    return attachments.list_attachments(session, object_type, record_id, limit=50)
