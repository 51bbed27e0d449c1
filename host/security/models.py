"""Users, teams, roles, tokens, and the audit and security logs.

Permissions are strings declared by plugins (``sales.deal.read``); a role is a
set of them plus a scope per object type (all / team / own). Ownership columns
that scoped records carry come from ``OwnedMixin``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from host.db import Base, UTCDateTime, utcnow

SCOPES = ("own", "team", "all")
BUILTIN_ROLES = ("admin", "manager", "staff")


class User(Base):
    __tablename__ = "user_account"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased; login compares lower-cased.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str | None] = mapped_column(String(10), nullable=True)
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Raised on logout-everywhere, password change and deactivation; a session
    #: cookie carrying an older number is no longer valid.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last TOTP time step accepted, so a code cannot be replayed.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    roles: Mapped[list["Role"]] = relationship(secondary="user_role", lazy="selectin")
    teams: Mapped[list["Team"]] = relationship(secondary="team_member", lazy="selectin", back_populates="members")

    def __repr__(self) -> str:  # never the hash or the TOTP secret
        return f"<User {self.id} {self.email}>"


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    members: Mapped[list[User]] = relationship(secondary="team_member", back_populates="teams")


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, index=True)


class Role(Base):
    __tablename__ = "role"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Users holding this role must sign in with a second factor.
    require_totp: Mapped[bool] = mapped_column(Boolean, default=False)


class RolePermission(Base):
    __tablename__ = "role_permission"

    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)
    permission: Mapped[str] = mapped_column(String(200), primary_key=True)


class RoleScope(Base):
    """How far a role reaches for one object type (``core.contact``,
    ``sales.deal``): own records, the team's, or all. Absent means ``own``."""

    __tablename__ = "role_scope"

    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(10), default="own")


class UserRole(Base):
    __tablename__ = "user_role"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True, index=True)


class PermissionDefault(Base):
    """A declared permission whose default roles were already granted, so an
    admin's later revocation is not undone at the next start."""

    __tablename__ = "permission_default"

    permission: Mapped[str] = mapped_column(String(200), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    #: SHA-256 of the token: tokens carry 256 random bits, so a fast hash is
    #: enough and lets a request find its token with one indexed lookup.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters, shown in lists so a user can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class PasswordReset(Base):
    __tablename__ = "password_reset"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RateLimitCounter(Base):
    """Fixed-window counters for rate limits when no Redis is configured, so
    limits hold across app processes."""

    __tablename__ = "rate_limit_counter"
    __table_args__ = (UniqueConstraint("key", "window", name="uq_rate_limit_counter_key_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    window: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(Base):
    """Who changed what: one row per create, update or delete of a business
    record, with each changed field's old and new value."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_object", "object_type", "object_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(20))  # create, update, delete
    object_type: Mapped[str] = mapped_column(String(200))
    object_id: Mapped[str] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SecurityEvent(Base):
    """Sign-ins and failures, password and two-factor changes, tokens, role
    changes, exports and erasures."""

    __tablename__ = "security_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    #: The account the event concerns when it differs from the actor.
    subject_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PersonalDataJournal(Base):
    """Merges and erasures, so a plugin disabled at the time replays them
    when it is enabled again (``done_by`` lists plugins that applied it)."""

    __tablename__ = "personal_data_journal"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))  # merge, erase
    contact_id: Mapped[int] = mapped_column(Integer, index=True)
    other_contact_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    done_by: Mapped[list[Any]] = mapped_column(JSON, default=list)


class OwnedMixin:
    """Ownership and integrity columns every scoped business record carries.

    ``version`` is SQLAlchemy's ``version_id_col``: a flush that updates a row
    whose version changed meanwhile fails. Callers also compare the version the
    client sent (``host.security.concurrency``), which the flush cannot see.
    """

    @declared_attr
    def owner_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True, index=True)

    @declared_attr
    def team_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("team.id", ondelete="SET NULL"), nullable=True, index=True)

    @declared_attr
    def created_by(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def updated_by(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def created_at(cls) -> Mapped[dt.datetime]:
        return mapped_column(UTCDateTime, default=utcnow)

    @declared_attr
    def updated_at(cls) -> Mapped[dt.datetime]:
        return mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @declared_attr
    def version(cls) -> Mapped[int]:
        return mapped_column(Integer, default=1, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.version}
