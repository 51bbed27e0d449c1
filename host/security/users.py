"""Accounts: create, change password, deactivate with a hand-over.

Domain logic only (a session in, no Flask request), shared by the CLI, the
admin pages and the API.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from host.db import Base, utcnow

from . import passwords
from .access import SYSTEM
from .audit import audited_bulk_update
from .models import ApiToken, OwnedMixin, Role, User, UserRole
from .sessions import end_all_sessions


class AccountError(ValueError):
    """A refused account change; the message is for the person who asked."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or any(c.isspace() for c in email):
        raise AccountError(f"{email!r} is not an e-mail address.")
    return email


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(
    session: Session,
    email: str,
    password: str | None,
    *,
    roles: tuple[str, ...] = ("staff",),
    display_name: str = "",
) -> User:
    email = normalise_email(email)
    if find_user(session, email) is not None:
        raise AccountError(f"A user with the e-mail {email} already exists.")
    user = User(email=email, display_name=display_name or email.split("@")[0], active=True, session_version=1)
    if password is not None:
        set_password(user, password)
    session.add(user)
    session.flush()
    for name in roles:
        role = session.scalar(select(Role).where(Role.name == name))
        if role is None:
            known = ", ".join(session.scalars(select(Role.name).order_by(Role.name))) or "none (run `mosaic db upgrade`)"
            raise AccountError(f"No role named {name!r} (roles: {known}).")
        session.add(UserRole(user_id=user.id, role_id=role.id))
    session.flush()
    session.refresh(user)
    return user


def set_password(user: User, password: str) -> None:
    problem = passwords.policy_problem(password, user.email)
    if problem:
        raise AccountError(problem)
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = utcnow()
    if user.id is not None:
        end_all_sessions(user)


def owned_models() -> list[type]:
    """Every mapped model carrying owner columns, the host's and plugins'."""
    return [m.class_ for m in Base.registry.mappers if issubclass(m.class_, OwnedMixin)]


def deactivate_user(session: Session, user: User, hand_over_to: User | None) -> dict[str, int]:
    """Disable ``user`` everywhere at once and give their records to a colleague.

    Returns how many records of each table changed owner. Records of plugins
    that are installed but disabled are handed over too when their table exists.
    """
    if hand_over_to is not None and (hand_over_to.id == user.id or not hand_over_to.active):
        raise AccountError("Hand the records over to another, active user.")
    moved: dict[str, int] = {}
    if hand_over_to is not None:
        from sqlalchemy import inspect

        existing = set(inspect(session.connection()).get_table_names())
        for model in owned_models():
            if model.__table__.name not in existing:
                continue
            # The hand-over is an admin action over everyone's records: it is
            # audited per record and bumps versions, but is not scope-limited.
            changed = audited_bulk_update(
                session, model, model.owner_id == user.id, {"owner_id": hand_over_to.id}, principal=SYSTEM
            )
            if changed:
                moved[model.__table__.name] = changed
    user.active = False
    end_all_sessions(user)
    session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
    return moved


def count_admins(session: Session) -> int:
    return session.scalar(
        select(func.count(func.distinct(User.id)))
        .join(UserRole, UserRole.user_id == User.id)
        .join(Role, Role.id == UserRole.role_id)
        .where(Role.name == "admin", User.active.is_(True))
    ) or 0
