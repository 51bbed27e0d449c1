"""Small helpers the record pages share: who is signed in, the choices of
users and teams for selects, and safe "back to" addresses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from host.security.models import Team, User

#: The most users a select offers (an install with more would want a search).
MAX_USERS = 500


def hook_user(session: Session) -> User | None:
    """The account plugins' UI hooks receive as ``user``."""
    from flask_login import current_user

    if not getattr(current_user, "is_authenticated", False):
        return None
    return session.get(User, current_user.id)


def user_choices(session: Session) -> list[tuple[str, str]]:
    """Active users as (id, name) for owner and assignee selects."""
    rows = session.execute(select(User.id, User.display_name, User.email).where(User.active.is_(True))
                           .order_by(User.display_name, User.email).limit(MAX_USERS))
    return [(str(row.id), row.display_name or row.email) for row in rows]


def team_choices(session: Session) -> list[tuple[str, str]]:
    return [(str(row.id), row.name) for row in session.execute(select(Team.id, Team.name).order_by(Team.name))]


def user_names(session: Session, ids: Any) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.display_name, User.email).where(User.id.in_(wanted)))
    return {row.id: row.display_name or row.email for row in rows}


def local_path(value: str | None, default: str) -> str:
    """``value`` when it is a path on this site (a "back to" field), else
    ``default``: a form must not be able to send the user elsewhere."""
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def back_to(default: str) -> str:
    """Where a form posted from a page should return: its ``next`` field."""
    return local_path(request.form.get("next") or request.args.get("next"), default)


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
