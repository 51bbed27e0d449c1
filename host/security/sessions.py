"""UI sessions: a signed cookie naming the user and their session version.

The version is checked against the user row on every request, so logout,
password change and deactivation end every session of that user at once, on
every process. Idle and absolute timeouts end forgotten sessions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, current_app, g, session
from flask_login import LoginManager, login_user, logout_user

from host.db import session as db_session

from .access import ANONYMOUS, Principal, load_principal
from .models import User

IDLE_TIMEOUT_S = 2 * 60 * 60
ABSOLUTE_TIMEOUT_S = 12 * 60 * 60


@dataclass
class SessionUser:
    """What Flask-Login keeps for a signed-in user (templates see it as
    ``current_user``)."""

    user: User
    principal: Principal

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.user.active

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_version}"

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def display_name(self) -> str:
        return self.user.display_name or self.user.email

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)


def init_app(app: Flask, state) -> None:
    manager = LoginManager()
    manager.session_protection = None  # we rotate and version sessions ourselves
    manager.login_view = "auth.login"
    manager.user_loader(_load_user)
    manager.init_app(app)
    app.config.setdefault("MOSAIC_IDLE_TIMEOUT", IDLE_TIMEOUT_S)
    app.config.setdefault("MOSAIC_ABSOLUTE_TIMEOUT", ABSOLUTE_TIMEOUT_S)
    app.config["REMEMBER_COOKIE_DURATION"] = 0


def _load_user(value: str) -> SessionUser | None:
    try:
        user_id, version = (int(part) for part in value.split(":"))
    except ValueError:
        return None
    user = db_session().get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        return None
    if _expired():
        return None
    session["seen"] = int(time.time())
    return SessionUser(user, load_principal(db_session(), user))


def _expired() -> bool:
    now = time.time()
    seen = session.get("seen", 0)
    started = session.get("started", 0)
    config = current_app.config
    return now - seen > config["MOSAIC_IDLE_TIMEOUT"] or now - started > config["MOSAIC_ABSOLUTE_TIMEOUT"]


def principal_for_request() -> Principal:
    from flask_login import current_user

    user = current_user._get_current_object()
    if getattr(user, "is_authenticated", False) and isinstance(user, SessionUser):
        return user.principal
    if session.get("_user_id"):
        # The cookie named a session that is no longer valid: drop it so the
        # browser does not keep sending a dead identity.
        session.clear()
    return ANONYMOUS


def start_session(user: User) -> None:
    """Sign ``user`` in with a fresh session (nothing of the old one is kept,
    so a session fixed before login is worthless after it)."""
    session.clear()
    now = int(time.time())
    session["started"] = now
    session["seen"] = now
    login_user(SessionUser(user, load_principal(db_session(), user)))
    g.pop("_login_user", None)


def end_session() -> None:
    logout_user()
    session.clear()


def end_all_sessions(user: User) -> None:
    """Invalidate every session of ``user`` on every process (the caller commits)."""
    user.session_version = (user.session_version or 0) + 1
