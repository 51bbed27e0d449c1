"""Uploads the import wizard keeps between its steps ("drafts").

A draft is two files in ``<instance>/imports/``: the uploaded bytes and a
small JSON record of the wizard's choices (type, mapping, the dry run's job).
Both are named ``wizard-<user id>-<random token>``: the user's file name is
only shown, never part of a path, and a token is looked up under the
signed-in user's id, so nobody reaches another user's draft by guessing or
by changing a URL. Drafts go, with their dry run's rejected rows file, when
their import is started or cancelled; any left behind are deleted after
``MAX_AGE_SECONDS``.

No Flask request in here: the wizard's views pass the instance folder and
the user's id.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from host.core import imports

PREFIX = "wizard"
#: Drafts older than this are deleted (an abandoned wizard keeps no customer data for long).
MAX_AGE_SECONDS = 24 * 3600
#: A user's drafts beyond this many are deleted, oldest first (disk space).
MAX_PER_USER = 5
_TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass
class Draft:
    token: str
    user_id: int
    type: str
    #: As the user's computer named it: shown, and it decides CSV or XLSX.
    filename: str
    mapping: dict[str, str | None] | None = None
    on_duplicate: str = "report"
    dry_run_job: int | None = None
    created_at: float = field(default_factory=time.time)


def _stem(user_id: int, token: str) -> str:
    return f"{PREFIX}-{int(user_id)}-{token}"


def _paths(instance_path: str | Path, user_id: int, token: str) -> tuple[Path, Path]:
    folder = imports.folder(instance_path)
    stem = _stem(user_id, token)
    return folder / f"{stem}.upload", folder / f"{stem}.json"


def create(instance_path: str | Path, user_id: int, type_key: str, filename: str, data: bytes) -> Draft:
    """Keep an upload; sweeps old drafts first."""
    sweep(instance_path)
    _limit_per_user(instance_path, user_id)
    draft = Draft(secrets.token_hex(16), int(user_id), type_key, filename)
    upload, _record = _paths(instance_path, draft.user_id, draft.token)
    upload.write_bytes(data)
    save(instance_path, draft)
    return draft


def save(instance_path: str | Path, draft: Draft) -> None:
    _upload, record = _paths(instance_path, draft.user_id, draft.token)
    partial = record.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(draft)), encoding="utf-8")
    os.replace(partial, record)  # a reader never sees half a record


def load(instance_path: str | Path, user_id: int | None, token: str) -> Draft | None:
    """The user's draft ``token``, or None (no such draft, another user's,
    expired, or not a token at all)."""
    if user_id is None or not _TOKEN.fullmatch(token or ""):
        return None
    upload, record = _paths(instance_path, user_id, token)
    try:
        values: dict[str, Any] = json.loads(record.read_text(encoding="utf-8"))
        draft = Draft(**values)
    except (OSError, ValueError, TypeError):
        return None
    if draft.user_id != int(user_id) or draft.token != token or not upload.is_file():
        return None
    if time.time() - draft.created_at > MAX_AGE_SECONDS:
        discard(instance_path, draft)
        return None
    return draft


def data(instance_path: str | Path, draft: Draft) -> bytes:
    upload, _record = _paths(instance_path, draft.user_id, draft.token)
    return upload.read_bytes()


def copy_for_job(instance_path: str | Path, draft: Draft) -> str:
    """A copy of the upload under a new name for one ``core.import`` job
    (the job deletes its file when it ends, and a dry run's job must not
    take the draft with it)."""
    upload, _record = _paths(instance_path, draft.user_id, draft.token)
    name = imports.new_upload_name(draft.filename)
    shutil.copyfile(upload, imports.stored_path(instance_path, name))
    return name


def discard(instance_path: str | Path, draft: Draft) -> None:
    """Delete the draft, and its dry run's rejected rows file (an import
    writes its own)."""
    forget_dry_run(instance_path, draft)
    for path in _paths(instance_path, draft.user_id, draft.token):
        path.unlink(missing_ok=True)


def forget_dry_run(instance_path: str | Path, draft: Draft) -> None:
    """Delete the rejected rows file of the draft's last dry run, if any
    (named by the service's ``rejected_name``: ``rejected-<job id>.<format>``)."""
    if draft.dry_run_job is None:
        return
    for fmt in ("csv", "xlsx"):
        imports.stored_path(instance_path, f"rejected-{int(draft.dry_run_job)}.{fmt}").unlink(missing_ok=True)


def sweep(instance_path: str | Path, now: float | None = None, max_age: float = MAX_AGE_SECONDS) -> int:
    """Delete drafts older than ``max_age`` seconds; returns files deleted."""
    now = time.time() if now is None else now
    deleted = 0
    folder = imports.folder(instance_path)
    for record in folder.glob(f"{PREFIX}-*.json"):
        try:
            if now - record.stat().st_mtime > max_age:
                forget_dry_run(instance_path, Draft(**json.loads(record.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue  # swept meanwhile, or not a record of ours: its files still go below
    for path in folder.glob(f"{PREFIX}-*"):
        try:
            if now - path.stat().st_mtime > max_age:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue  # another process swept it meanwhile
    return deleted


def _limit_per_user(instance_path: str | Path, user_id: int) -> None:
    records = []
    for path in imports.folder(instance_path).glob(f"{PREFIX}-{int(user_id)}-*.json"):
        try:
            records.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    records = [path for _mtime, path in sorted(records)]
    for record in records[:max(0, len(records) - MAX_PER_USER + 1)]:
        token = record.stem.rsplit("-", 1)[-1]
        draft = load(instance_path, user_id, token)
        if draft is not None:
            discard(instance_path, draft)
        for path in _paths(instance_path, user_id, token):
            path.unlink(missing_ok=True)
