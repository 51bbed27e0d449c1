"""Roles, permissions, scopes and teams: the services behind ``mosaic roles``,
``mosaic teams`` and the admin pages.

Every function takes a SQLAlchemy session (never a Flask request) and leaves
committing to the caller, so the CLI, the admin UI and tests share one path.
Names are what callers have at hand (a role name, a team name, an e-mail), so
the functions resolve them and raise ``NotFound`` with a clear message.

Each change that affects access writes a security log entry naming the acting
user (``current_principal()``; ``None`` for the CLI and migrations).

Permission defaults: a declared permission lists the built-in roles that get
it (``Permission.default_roles``; ``admin`` gets every permission). They are
granted once per permission and remembered in ``permission_default``, so a
plugin enabled later gives the built-in roles its defaults, while a default an
admin revoked stays revoked at the next ``mosaic db upgrade``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Collection, Iterable, Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hooks import Permission

from . import seclog
from .models import (
    BUILTIN_ROLES,
    SCOPES,
    PermissionDefault,
    Role,
    RolePermission,
    RoleScope,
    Team,
    TeamMember,
    User,
    UserRole,
)

log = logging.getLogger("mosaic.security.roles")

#: The scope each built-in role starts with for every object type ("*").
BUILTIN_DEFAULT_SCOPES = {"admin": "all", "manager": "team", "staff": "own"}
BUILTIN_DESCRIPTIONS = {
    "admin": "Administrators: every permission, every record.",
    "manager": "Team leads: their team's records.",
    "staff": "Everyone else: their own records.",
}
#: The role that every declared permission is granted to by default.
ADMIN_ROLE = "admin"
#: The admin role keeps this one, or nobody could manage roles from the UI.
ROLE_ADMIN_PERMISSION = "core.role.update"
#: "*" (the role's default for every object type) or "<plugin>.<object>".
DEFAULT_OBJECT_TYPE = "*"
_OBJECT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


class RoleError(ValueError):
    """A request the permission model refuses; the message says why."""


class NotFound(RoleError, LookupError):
    """A role, team, user or permission name that does not exist."""


# --- the security log ----------------------------------------------------------

#: Security log kinds: role, permission, scope and assignment changes are
#: "role.change", team membership "team.change"; ``detail["action"]`` says which.
ROLE_CHANGE = "role.change"
TEAM_CHANGE = "team.change"


def _log(session: Session, action: str, *, subject_user_id: int | None = None, kind: str = ROLE_CHANGE, **detail: Any) -> None:
    """A security log entry in the caller's transaction (so it exists exactly
    when the change it describes was committed), attributed to whoever is
    acting now (``None`` for the CLI and migrations)."""
    seclog.record(session, kind, subject_user_id=subject_user_id, detail={"action": action, **detail})


# --- lookups -----------------------------------------------------------------


def get_role(session: Session, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.name == name))
    if role is None:
        known = ", ".join(session.scalars(select(Role.name).order_by(Role.name))) or "none"
        raise NotFound(f"no role named {name!r} (roles: {known})")
    return role


def get_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        known = ", ".join(session.scalars(select(Team.name).order_by(Team.name))) or "none"
        raise NotFound(f"no team named {name!r} (teams: {known})")
    return team


def get_user(session: Session, email: str) -> User:
    """E-mails are stored lower-cased, so the lookup is case-insensitive."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user with e-mail {email!r}")
    return user


def list_roles(session: Session) -> list[Role]:
    """Built-in roles first (admin, manager, staff), then the others by name."""
    roles = list(session.scalars(select(Role)))
    order = {name: i for i, name in enumerate(BUILTIN_ROLES)}
    return sorted(roles, key=lambda r: (order.get(r.name, len(order)), r.name))


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def role_permissions(session: Session, role: Role) -> list[str]:
    return list(
        session.scalars(
            select(RolePermission.permission).where(RolePermission.role_id == role.id).order_by(RolePermission.permission)
        )
    )


def role_scopes(session: Session, role: Role) -> dict[str, str]:
    """object type -> scope; ``"*"`` is the role's default for the others."""
    rows = session.execute(
        select(RoleScope.object_type, RoleScope.scope).where(RoleScope.role_id == role.id).order_by(RoleScope.object_type)
    )
    return {object_type: scope for object_type, scope in rows}


def role_members(session: Session, role: Role) -> list[User]:
    return list(
        session.scalars(select(User).join(UserRole, UserRole.user_id == User.id).where(UserRole.role_id == role.id).order_by(User.email))
    )


def role_member_counts(session: Session) -> dict[int, int]:
    """role id -> number of users holding it (one query for a list page)."""
    rows = session.execute(select(UserRole.role_id, func.count()).group_by(UserRole.role_id))
    return {role_id: count for role_id, count in rows}


def object_types(declared: Iterable[str]) -> list[str]:
    """The object types the declared permissions name (``sales.deal.read`` ->
    ``sales.deal``): what a scope can be set for."""
    return sorted({name.rsplit(".", 1)[0] for name in declared})


# --- built-in roles and permission defaults ------------------------------------


def ensure_builtin_roles(session: Session) -> dict[str, Role]:
    """Create the built-in roles that are missing, each with its default scope.

    An existing role is left as it is, so an admin's change to a built-in
    role's scope survives the next upgrade."""
    existing = {r.name: r for r in session.scalars(select(Role).where(Role.name.in_(BUILTIN_ROLES)))}
    for name in BUILTIN_ROLES:
        role = existing.get(name)
        if role is None:
            role = Role(name=name, description=BUILTIN_DESCRIPTIONS[name], builtin=True)
            session.add(role)
            session.flush()
            session.add(RoleScope(role_id=role.id, object_type=DEFAULT_OBJECT_TYPE, scope=BUILTIN_DEFAULT_SCOPES[name]))
            existing[name] = role
        elif not role.builtin:
            role.builtin = True
    session.flush()
    return existing


def apply_permission_defaults(session: Session, state: Any) -> list[str]:
    """Grant every declared permission not applied before to its default roles.

    ``state`` is the app's ``MosaicState`` (or anything with a ``permissions``
    mapping name -> ``Permission``). Returns the names applied now; a second
    run returns ``[]``. Idempotent and safe to run at every upgrade."""
    declared: Mapping[str, Permission] = state.permissions
    roles = ensure_builtin_roles(session)
    done = set(session.scalars(select(PermissionDefault.permission)))
    new = [declared[name] for name in sorted(declared) if name not in done]
    for perm in new:
        for role_name in _default_roles(perm):
            _add_permission(session, roles[role_name], perm.name)
        session.add(PermissionDefault(permission=perm.name))
    if new:
        session.flush()
        _log(session, "apply_defaults", permissions=[p.name for p in new])
    return [p.name for p in new]


def _default_roles(perm: Permission) -> list[str]:
    """The built-in roles that get ``perm``: its default roles plus admin.

    A name that is not a built-in role is ignored with a warning: custom roles
    are made by an admin, so a plugin cannot expect one to exist."""
    unknown = [r for r in perm.default_roles if r not in BUILTIN_ROLES]
    if unknown:
        log.warning("permission %s names default roles that are not built in: %s", perm.name, ", ".join(unknown))
    return [r for r in BUILTIN_ROLES if r == ADMIN_ROLE or r in perm.default_roles]


def apply_defaults(state: Any) -> list[str]:
    """Built-in roles and permission defaults in their own transaction; run by
    ``host.migrate.upgrade`` after every history is migrated."""
    with state.db.transaction() as session:
        applied = apply_permission_defaults(session, state)
    if applied:
        log.info("granted default roles for %d permission(s)", len(applied))
    return applied


def _add_permission(session: Session, role: Role, permission: str) -> bool:
    if session.get(RolePermission, (role.id, permission)) is not None:
        return False
    session.add(RolePermission(role_id=role.id, permission=permission))
    session.flush()
    return True


# --- roles -------------------------------------------------------------------


def create_role(session: Session, name: str, description: str = "") -> Role:
    """A new, empty custom role (no permissions; scope ``own`` until set)."""
    name = name.strip()
    if not _NAME.match(name):
        raise RoleError(f"invalid role name {name!r}: 1-100 letters, digits, spaces, '.', '_' or '-'")
    if session.scalar(select(Role.id).where(Role.name == name)) is not None:
        raise RoleError(f"a role named {name!r} already exists")
    role = Role(name=name, description=description.strip(), builtin=False)
    session.add(role)
    session.flush()
    _log(session, "create_role", role=name)
    return role


def delete_role(session: Session, name: str) -> None:
    """Delete a custom role; its users lose what it granted them."""
    role = get_role(session, name)
    if role.builtin:
        raise RoleError(f"{name!r} is a built-in role and cannot be deleted")
    members = [u.email for u in role_members(session, role)]
    for table in (UserRole, RolePermission, RoleScope):
        session.execute(delete(table).where(table.role_id == role.id))
    session.delete(role)
    session.flush()
    _expire_loaded_users(session, "roles")
    _log(session, "delete_role", role=name, members=members)


def _expire_loaded_users(session: Session, attribute: str) -> None:
    """Rows deleted with a bulk DELETE do not update collections already
    loaded on ``User`` objects; expire them so the next access re-reads."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, User):
            session.expire(obj, [attribute])


def set_description(session: Session, name: str, description: str) -> Role:
    role = get_role(session, name)
    role.description = description.strip()
    session.flush()
    return role


def grant(session: Session, role_name: str, permission: str, *, declared: Collection[str]) -> bool:
    """Give ``role_name`` a permission. ``declared`` is the permissions of the
    enabled plugins (``state.permissions``): a name outside it is refused, so a
    typo never becomes a grant that silently does nothing. Returns False when
    the role had it already."""
    role = get_role(session, role_name)
    if permission not in declared:
        raise NotFound(f"unknown permission {permission!r}: no enabled plugin declares it")
    if not _add_permission(session, role, permission):
        return False
    _log(session, "grant", role=role.name, permission=permission)
    return True


def revoke(session: Session, role_name: str, permission: str, *, declared: Collection[str]) -> bool:
    """Take a permission from a role. A granted permission of a disabled
    plugin may be revoked too; a name neither granted nor declared is refused.
    Returns False when the role did not have it."""
    role = get_role(session, role_name)
    row = session.get(RolePermission, (role.id, permission))
    if row is None:
        if permission not in declared:
            raise NotFound(f"unknown permission {permission!r}: no enabled plugin declares it")
        return False
    if role.name == ADMIN_ROLE and permission == ROLE_ADMIN_PERMISSION:
        raise RoleError(f"the admin role keeps {ROLE_ADMIN_PERMISSION}, or no one could manage roles")
    session.delete(row)
    session.flush()
    _log(session, "revoke", role=role.name, permission=permission)
    return True


def set_scope(session: Session, role_name: str, object_type: str, scope: str | None, *, declared: Collection[str]) -> str | None:
    """Set how far ``role_name`` reaches for ``object_type``: ``own``, ``team``
    or ``all``; ``None`` removes a type's own setting so the role's ``"*"``
    default applies again. ``object_type`` is ``"*"`` or one named by a
    declared permission (``sales.deal``). Returns the previous scope."""
    role = get_role(session, role_name)
    if scope is not None and scope not in SCOPES:
        raise RoleError(f"unknown scope {scope!r} (scopes: {', '.join(SCOPES)})")
    _check_object_type(object_type, declared)
    row = session.get(RoleScope, (role.id, object_type))
    previous = row.scope if row is not None else None
    if previous == scope:
        return previous
    if scope is None:
        session.delete(row)
    elif row is None:
        session.add(RoleScope(role_id=role.id, object_type=object_type, scope=scope))
    else:
        row.scope = scope
    session.flush()
    _log(session, "set_scope", role=role.name, object_type=object_type, scope=scope, previous=previous)
    return previous


def _check_object_type(object_type: str, declared: Collection[str]) -> None:
    if object_type == DEFAULT_OBJECT_TYPE:
        return
    if not _OBJECT_TYPE.match(object_type):
        raise RoleError(f"invalid object type {object_type!r}: '*' or '<plugin>.<object>' such as 'sales.deal'")
    if object_type not in object_types(declared):
        raise NotFound(f"unknown object type {object_type!r}: no enabled plugin declares permissions for it")


def set_require_totp(session: Session, role_name: str, required: bool) -> bool:
    """Require a second factor at sign-in for every holder of the role.
    Returns False when nothing changed."""
    role = get_role(session, role_name)
    if role.require_totp == required:
        return False
    role.require_totp = required
    session.flush()
    _log(session, "require_totp", role=role.name, require_totp=required)
    return True


# --- users and roles ---------------------------------------------------------


def assign_role(session: Session, email: str, role_name: str) -> bool:
    """Give a user a role (roles add up). Returns False if they had it."""
    user = get_user(session, email)
    role = get_role(session, role_name)
    if role in user.roles:
        return False
    user.roles.append(role)
    session.flush()
    _log(session, "assign", subject_user_id=user.id, role=role.name)
    return True


def unassign_role(session: Session, email: str, role_name: str) -> bool:
    """Take a role from a user. Returns False if they did not have it."""
    user = get_user(session, email)
    role = get_role(session, role_name)
    if role not in user.roles:
        return False
    user.roles.remove(role)
    session.flush()
    _log(session, "unassign", subject_user_id=user.id, role=role.name)
    return True


# --- teams -------------------------------------------------------------------


def create_team(session: Session, name: str) -> Team:
    name = name.strip()
    if not _NAME.match(name):
        raise RoleError(f"invalid team name {name!r}: 1-100 letters, digits, spaces, '.', '_' or '-'")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise RoleError(f"a team named {name!r} already exists")
    team = Team(name=name)
    session.add(team)
    session.flush()
    _log(session, "create_team", kind=TEAM_CHANGE, team=name)
    return team


def delete_team(session: Session, name: str) -> None:
    """Delete a team: its members leave it, and its records keep their owner
    but no longer belong to a team (``team_id`` is set to NULL)."""
    team = get_team(session, name)
    members = [u.email for u in team.members]
    session.delete(team)  # the ORM removes its team_member rows
    session.flush()
    _expire_loaded_users(session, "teams")
    _log(session, "delete_team", kind=TEAM_CHANGE, team=name, members=members)


def add_to_team(session: Session, email: str, team_name: str) -> bool:
    """Put a user in a team (a user may be in several). False if already in."""
    user = get_user(session, email)
    team = get_team(session, team_name)
    if team in user.teams:
        return False
    user.teams.append(team)
    session.flush()
    _log(session, "add_member", kind=TEAM_CHANGE, subject_user_id=user.id, team=team.name)
    return True


def remove_from_team(session: Session, email: str, team_name: str) -> bool:
    """Take a user out of a team. False if they were not in it."""
    user = get_user(session, email)
    team = get_team(session, team_name)
    if team not in user.teams:
        return False
    user.teams.remove(team)
    session.flush()
    _log(session, "remove_member", kind=TEAM_CHANGE, subject_user_id=user.id, team=team.name)
    return True


def team_member_counts(session: Session) -> dict[int, int]:
    rows = session.execute(select(TeamMember.team_id, func.count()).group_by(TeamMember.team_id))
    return {team_id: count for team_id, count in rows}
