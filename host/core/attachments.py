"""Files on contacts, interactions and tasks.

Storage
    Files live in the instance folder under ``attachments/``, named by
    ``secrets.token_hex(16)`` and sharded by its first two characters
    (``attachments/ab/ab12...``). The user's file name is kept only in the
    database and in the download header: nothing the user sends reaches a
    path, so ``../../etc/passwd`` is just a name. A stored name is checked
    against its pattern before it becomes a path.

Limits
    ``MAX_BYTES`` (the Flask setting ``MOSAIC_ATTACHMENT_MAX_BYTES`` overrides
    it; ``MAX_CONTENT_LENGTH`` still caps the whole request). The type is
    sniffed from the content against an allowlist (PDF, images, office and
    OpenDocument files, zip, text, audio and video of calls and meetings);
    executables, scripts and markup that a browser would run (HTML, SVG) are
    refused by content and by extension, and the stored ``content_type`` is
    the sniffed one, never the client's claim.

Access
    An attachment is served to whoever may read its record: the type's
    ``core.<type>.read`` permission and the record in scope, not in the
    recycle bin (nor its contact). Anything else is "not found". Uploading
    and deleting need ``core.<type>.update`` on the record. A record's
    attachments follow it into the recycle bin and back without being touched
    (access checks the record); purging the record purges them
    (``purge_for_records``), and deleted attachments are purged with
    ``purge_deleted`` (files removed after the commit: ``remove_files``).

Downloads are always ``Content-Disposition: attachment`` with an ASCII
fallback name and an RFC 6266 / 5987 ``filename*``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence
from urllib.parse import quote

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from host.db import utcnow
from host.security import audit
from host.security.access import Principal, object_type_of, scope_condition

from .models import Attachment, Contact, Interaction, Task

FOLDER = "attachments"
MAX_BYTES = 20 * 1024 * 1024
#: Flask config key overriding ``MAX_BYTES`` for an app.
MAX_BYTES_SETTING = "MOSAIC_ATTACHMENT_MAX_BYTES"
MODELS: dict[str, Any] = {"contact": Contact, "interaction": Interaction, "task": Task}
CHUNK = 64 * 1024
SNIFF_BYTES = 8192
MAX_FILENAME = 255
_STORED_NAME = re.compile(r"^[0-9a-f]{32}$")


class AttachmentError(Exception):
    """An upload refused; ``status`` is the HTTP answer (413, 415, 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- where files live ----------------------------------------------------------------


def storage_root(instance_path: str | os.PathLike[str]) -> Path:
    return Path(instance_path) / FOLDER


def stored_path(root: Path, stored_name: str) -> Path:
    """The file of a stored name; refuses anything but our generated names,
    so even a tampered row cannot point outside the folder."""
    if not _STORED_NAME.fullmatch(stored_name or ""):
        raise ValueError(f"not a stored attachment name: {stored_name!r}")
    return root / stored_name[:2] / stored_name


def remove_files(root: Path, stored_names: Iterable[str]) -> None:
    """Delete stored files (after the rows' deletion committed); a file
    already gone is fine."""
    for name in stored_names:
        stored_path(root, name).unlink(missing_ok=True)


# --- names ---------------------------------------------------------------------------


def safe_filename(name: str | None) -> str:
    """The name to keep and offer on download: the last path part only,
    without control characters or surrounding dots and spaces, at most 255
    characters with its extension kept; ``file`` when nothing is left."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name or ""))[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = base.strip().strip(".").strip()
    if len(base) > MAX_FILENAME:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:20] if dot else ""
        base = (stem if dot else base)[: MAX_FILENAME - len(ext) - 1].rstrip() + (f".{ext}" if ext else "")
    return base or "file"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name as UTF-8
    ``filename*`` (RFC 6266, RFC 5987): quotes, backslashes and line breaks
    cannot break out of the header."""
    return f"attachment; filename=\"{_ascii_fallback(filename)}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _ascii_fallback(filename: str) -> str:
    """For clients without ``filename*``: accents dropped, anything unsafe
    in a quoted string replaced; ``download.<ext>`` when nothing readable is
    left (a Cyrillic or Chinese name)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9 ._()+,=@-]", "_", ascii_name).strip()
    stem, dot, _ext = ascii_name.rpartition(".")
    if not re.search(r"[A-Za-z0-9]", stem if dot else ascii_name):
        ext = _extension(filename)
        return f"download.{ext}" if ext and ext.isascii() and ext.isalnum() else "download"
    return ascii_name


def _extension(filename: str) -> str:
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


# --- what a file is --------------------------------------------------------------------

#: Refused whatever their content: run by the OS or rendered by a browser.
DENIED_EXTENSIONS = frozenset(
    """exe com bat cmd msi msp scr pif cpl dll sys ocx ps1 psm1 vbs vbe js jse mjs wsf wsh hta jar apk app dmg
    pkg deb rpm sh bash zsh csh command run bin elf so lnk url reg inf scf html htm xhtml shtml mht mhtml svg svgz
    xsl xslt swf php phtml asp aspx jsp cgi pl py docm dotm xlsm xltm pptm potm""".split()
)
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"{\\rtf", "application/rtf"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
)
_ZIP_TYPES = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}
_OLE_TYPES = {
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "msg": "application/vnd.ms-outlook",
}
_TEXT_TYPES = {
    "csv": "text/csv", "xml": "application/xml", "json": "application/json", "ics": "text/calendar",
    "vcf": "text/vcard", "md": "text/markdown", "eml": "message/rfc822",
}
#: Markup a browser would render or run, looked for in text files.
_MARKUP = (
    "<html", "<svg", "<script", "<!doctype html", "<body", "<head", "<iframe", "<object", "<embed",
    "<?xml-stylesheet", "http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg",
)
_TEXT_CONTROLS = frozenset({9, 10, 12, 13, 27})


def sniff(head: bytes, filename: str) -> str:
    """The content type of a file from its first bytes (and, within a family
    such as zip-based office files, its extension); ``AttachmentError(415)``
    for anything off the allowlist."""
    ext = _extension(filename)
    if ext in DENIED_EXTENSIONS:
        raise AttachmentError(415, f"Files of type .{ext} are not accepted (programs, scripts and web pages).")
    found = _binary_type(head, ext) or _text_type(head, ext)
    if found is None:
        raise AttachmentError(
            415, "This kind of file is not accepted: PDF, images, office documents, zip, text, audio and video are."
        )
    return found


def _binary_type(head: bytes, ext: str) -> str | None:
    for magic, content_type in _SIGNATURES:
        if head.startswith(magic):
            return content_type
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ZIP_TYPES.get(ext, "application/zip")
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _OLE_TYPES.get(ext, "application/x-ole-storage")
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if head[8:12] == b"WEBP" else "audio/wav"
    if head[4:8] == b"ftyp":
        return _ftyp_type(head[8:12])
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return None


def _ftyp_type(brand: bytes) -> str:
    if brand in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    if brand == b"M4A ":
        return "audio/mp4"
    if brand == b"qt  ":
        return "video/quicktime"
    return "video/mp4"


def _text_type(head: bytes, ext: str) -> str | None:
    """Text (UTF-8, a single-byte code page, or UTF-16 with its mark) without
    control characters and without browser markup."""
    text = _as_text(head)
    if text is None:
        return None
    lowered = text.lower()
    if any(marker in lowered for marker in _MARKUP):
        raise AttachmentError(415, "Web pages and SVG images are not accepted (they could run scripts when opened).")
    return _TEXT_TYPES.get(ext, "text/plain")


def _as_text(head: bytes) -> str | None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = head.decode("utf-16", errors="strict" if len(head) % 2 == 0 else "ignore")
        except UnicodeDecodeError:
            return None
        return None if any(ord(ch) < 32 and ord(ch) not in _TEXT_CONTROLS for ch in text) else text
    if any(byte < 32 and byte not in _TEXT_CONTROLS for byte in head):
        return None  # NUL and other control bytes: binary
    return head.decode("utf-8", errors="ignore")


# --- records -----------------------------------------------------------------------------


def find_record(session: Session, principal: Principal, object_type: str, record_id: int) -> Any | None:
    """The record if ``principal``'s scope reaches it and neither it nor its
    contact is in the recycle bin; else ``None`` (the caller answers 404).
    Permissions are the caller's to check (``permission_for``)."""
    model = MODELS[object_type]
    query = select(model).where(model.id == record_id, model.deleted_at.is_(None), scope_condition(principal, model))
    if model is not Contact:
        query = query.outerjoin(Contact, Contact.id == model.contact_id).where(Contact.deleted_at.is_(None))
    return session.scalars(query).one_or_none()


def permission_for(object_type: str, action: str) -> str:
    return f"core.{object_type}.{action}"


def accessible_attachment(session: Session, principal: Principal, attachment_id: int, action: str = "read") -> Attachment | None:
    """The attachment if it is not deleted and ``principal`` may ``action``
    (read, update) its record; ``None`` for every other case alike."""
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or attachment.deleted_at is not None or attachment.object_type not in MODELS:
        return None
    if not principal.can(permission_for(attachment.object_type, action)):
        return None
    if find_record(session, principal, attachment.object_type, attachment.object_id) is None:
        return None
    return attachment


def list_attachments(
    session: Session, object_type: str, object_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[Attachment]:
    """A record's attachments (not deleted), newest first, keyset on id."""
    query = select(Attachment).where(
        Attachment.object_type == object_type, Attachment.object_id == object_id, Attachment.deleted_at.is_(None)
    )
    if before_id is not None:
        query = query.where(Attachment.id < before_id)
    return list(session.scalars(query.order_by(Attachment.id.desc()).limit(limit)))


# --- storing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file as received: its stream and the name the client gave."""

    stream: BinaryIO
    filename: str | None


def store(
    session: Session,
    root: Path,
    upload: Upload,
    *,
    record: Any,
    user_id: int | None,
    max_bytes: int = MAX_BYTES,
) -> Attachment:
    """Write the file under a generated name and add its row (flushed, not
    committed). Raises ``AttachmentError`` (nothing is left on disk then).
    If the caller's commit fails, it removes the file with ``remove_files``."""
    filename = safe_filename(upload.filename)
    stored_name = secrets.token_hex(16)
    final = stored_path(root, stored_name)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f"{stored_name}.part")
    try:
        size, head = _copy_limited(upload.stream, partial, max_bytes)
        content_type = sniff(head, filename)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    attachment = Attachment(
        object_type=_object_type(record), object_id=record.id, filename=filename, stored_name=stored_name,
        content_type=content_type, size=size, uploaded_by=user_id, created_at=utcnow(),
    )
    try:
        session.add(attachment)
        session.flush()
        _audit(session, "attachment.add", attachment)
    except Exception:
        final.unlink(missing_ok=True)
        raise
    return attachment


def _object_type(record: Any) -> str:
    for name, model in MODELS.items():
        if isinstance(record, model):
            return name
    raise TypeError(f"attachments go on contacts, interactions and tasks, not {type(record).__name__}")


def _copy_limited(stream: BinaryIO, target: Path, max_bytes: int) -> tuple[int, bytes]:
    """Copy ``stream`` to a new file (owner-only) up to ``max_bytes``;
    return its size and first bytes."""
    size, head = 0, b""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise AttachmentError(413, f"The file is larger than {_megabytes(max_bytes)}.")
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            out.write(chunk)
    if size == 0:
        raise AttachmentError(422, "The file is empty.")
    return size, head


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):g} MB"


def _audit(session: Session, action: str, attachment: Attachment) -> None:
    """On the record's history: attachments are part of what it holds."""
    audit.record(
        session, action, object_type_of(MODELS[attachment.object_type]), attachment.object_id,
        {"attachment_id": attachment.id, "filename": attachment.filename, "size": attachment.size},
    )


# --- deleting --------------------------------------------------------------------------------


def move_to_recycle_bin(session: Session, attachment: Attachment, now: dt.datetime | None = None) -> None:
    """Delete as users do: hidden at once, the file kept until purged."""
    attachment.deleted_at = now or utcnow()
    _audit(session, "attachment.delete", attachment)


def purge_deleted(session: Session, older_than: dt.datetime) -> list[str]:
    """Delete the rows of attachments deleted before ``older_than``; return
    their stored names, to ``remove_files`` once this commits."""
    condition = Attachment.deleted_at.is_not(None) & (Attachment.deleted_at < older_than)
    return _delete_rows(session, condition)


def purge_for_records(session: Session, object_type: str, record_ids: Sequence[int]) -> list[str]:
    """Delete the rows of every attachment of records being purged; return
    their stored names, to ``remove_files`` once this commits."""
    if not record_ids:
        return []
    condition = (Attachment.object_type == object_type) & Attachment.object_id.in_(list(record_ids))
    return _delete_rows(session, condition)


def _delete_rows(session: Session, condition: Any) -> list[str]:
    names = list(session.scalars(select(Attachment.stored_name).where(condition)))
    session.execute(delete(Attachment).where(condition).execution_options(synchronize_session=False))
    return names
