"""The one place access is decided.

Routes: every view declares a policy (``@public``, ``@login_required`` or
``@require("sales.deal.read")``); a view that declares none is refused (default
deny), and a test walks ``app.url_map`` to prove every route declares one.

Records: ``scope_condition(principal, Model)`` is THE enforcement point for
record scope. It returns a SQL condition usable in ORM selects, Core selects,
full-text queries, report SQL and bulk updates alike, so every query path
filters the same way.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import ColumnElement, String, cast, false, literal, null, or_, select, true, union_all
from sqlalchemy.orm import Session

from .models import SCOPES, Role, RolePermission, RoleScope, TeamMember, User, UserRole

POLICY_ATTR = "_mosaic_policy"
PUBLIC = "public"
AUTHENTICATED = "authenticated"

_SCOPE_RANK = {name: rank for rank, name in enumerate(SCOPES)}


# --- route policies -----------------------------------------------------------


def _mark(view: Callable[..., Any], policy: str) -> Callable[..., Any]:
    setattr(view, POLICY_ATTR, policy)
    return view


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """Anyone may call this view (login page, health check)."""
    return _mark(view, PUBLIC)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Any signed-in user may call this view (their own profile)."""
    return _mark(view, AUTHENTICATED)


def require(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Only users holding ``permission`` may call this view."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        return _mark(view, permission)

    return decorator


#: Where ``@accepts`` keeps the body types an API view takes.
ACCEPTS_ATTR = "_mosaic_accepts"


def accepts(*mimetypes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The request body types an API view takes, instead of the default
    ``application/json`` (the gate answers 415 to any other), e.g. an upload::

        @bp.post("/attachments")
        @require("sales.deal.update")
        @accepts("multipart/form-data")
        def upload(): ...
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, ACCEPTS_ATTR, tuple(m.strip().lower() for m in mimetypes))
        return view

    return decorator


def policy_of(view: Callable[..., Any] | None) -> str | None:
    """The declared policy of a view function, looking through decorators
    that wrap it (flask-smorest wraps API views)."""
    seen = 0
    while view is not None and seen < 20:
        policy = getattr(view, POLICY_ATTR, None)
        if policy is not None:
            return policy
        view = getattr(view, "__wrapped__", None)
        seen += 1
    return None


# --- who is asking ------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A user as access control sees them: resolved once per request or job."""

    user_id: int | None
    email: str = ""
    permissions: frozenset[str] = frozenset()
    #: object type -> "own" | "team" | "all"; "*" is the role's default for
    #: types it names no scope for; absent altogether means "own".
    scopes: dict[str, str] = field(default_factory=dict)
    team_ids: frozenset[int] = frozenset()
    #: Set for API calls made with a read-only token.
    read_only: bool = False
    #: The host itself (migrations, system jobs): sees everything.
    system: bool = False

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None or self.system

    def can(self, permission: str) -> bool:
        return self.system or permission in self.permissions

    def scope_for(self, object_type: str) -> str:
        if self.system:
            return "all"
        return self.scopes.get(object_type) or self.scopes.get("*", "own")


ANONYMOUS = Principal(user_id=None)
SYSTEM = Principal(user_id=None, email="system", system=True)


_acting: ContextVar[Principal] = ContextVar("mosaic_principal", default=ANONYMOUS)


def current_principal() -> Principal:
    """Who is acting: the signed-in user or token owner during a request, the
    user who started a job while it runs, else ``ANONYMOUS``."""
    return _acting.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run a block as ``principal`` (jobs, CLI commands, tests)."""
    token = _acting.set(principal)
    try:
        yield principal
    finally:
        _acting.reset(token)


def set_request_principal(principal: Principal):
    """Set for the current request; the returned token is reset at teardown."""
    return _acting.set(principal)


def reset_request_principal(token) -> None:
    _acting.reset(token)


def load_principal(session: Session, user: User, *, read_only: bool = False) -> Principal:
    """Resolve a user's roles into permissions and scopes (one statement;
    the teams come with the loaded user)."""
    return _principal(session, user.id, user.email, read_only=read_only,
                      team_ids=frozenset(team.id for team in user.teams))


def principal_of(session: Session, user_id: int, email: str, *, read_only: bool = False) -> Principal:
    """``load_principal`` for a user known by id and e-mail, without loading
    the user (its mapping would fetch the roles and the teams too): roles,
    permissions, scopes and teams in one statement. An API request resolves
    its token's user this way."""
    return _principal(session, user_id, email, read_only=read_only)


def _principal(session: Session, user_id: int, email: str, *, read_only: bool,
               team_ids: frozenset[int] | None = None) -> Principal:
    per_role: dict[int, dict[str, str]] = {}
    permissions: set[str] = set()
    teams: set[int] = set()
    for kind, key, name, scope in session.execute(_grants(user_id, with_teams=team_ids is None)):
        if kind == "role":
            per_role.setdefault(key, {})
        elif kind == "permission":
            permissions.add(name)
        elif kind == "scope":
            per_role.setdefault(key, {})[name] = scope
        else:
            teams.add(key)
    return Principal(
        user_id=user_id,
        email=email,
        permissions=frozenset(permissions),
        scopes=merge_scopes(per_role.values()) if per_role else {},
        team_ids=team_ids if team_ids is not None else frozenset(teams),
        read_only=read_only,
    )


def _grants(user_id: int, *, with_teams: bool):
    """(kind, id, name, scope) rows: each role of the user ("role", role
    id), each permission its roles give ("permission", role id, name), each
    scope ("scope", role id, object type, scope) and, ``with_teams``, each
    team ("team", team id)."""
    text_null = cast(null(), String)
    held = UserRole.user_id == user_id
    parts = [
        select(literal("role"), UserRole.role_id, text_null, text_null).where(held),
        select(literal("permission"), RolePermission.role_id, RolePermission.permission, text_null)
        .join(UserRole, UserRole.role_id == RolePermission.role_id).where(held),
        select(literal("scope"), RoleScope.role_id, RoleScope.object_type, RoleScope.scope)
        .join(UserRole, UserRole.role_id == RoleScope.role_id).where(held),
    ]
    if with_teams:
        parts.append(select(literal("team"), TeamMember.team_id, text_null, text_null).where(TeamMember.user_id == user_id))
    return union_all(*parts)


def merge_scopes(role_scopes) -> dict[str, str]:
    """Roles are additive: per object type, the widest of what each role gives
    it (its own entry for the type, else its "*" default, else "own")."""
    role_scopes = list(role_scopes)
    types = {t for scopes in role_scopes for t in scopes}
    merged = {}
    for object_type in types:
        candidates = [scopes.get(object_type) or scopes.get("*", "own") for scopes in role_scopes]
        merged[object_type] = max(candidates, key=lambda s: _SCOPE_RANK.get(s, 0))
    return merged


# --- record scope: the one enforcement point -----------------------------------


def object_type_of(model: Any) -> str:
    """``sales_deal`` -> ``sales.deal``; host tables -> ``core.<table>``.
    A model may say otherwise with ``__object_type__``."""
    declared = getattr(model, "__object_type__", None)
    if declared:
        return declared
    table = model.__table__.name
    plugin, _, rest = table.partition("_")
    return f"{plugin}.{rest}" if rest else f"core.{table}"


def scope_condition(principal: Principal, model: Any, object_type: str | None = None) -> ColumnElement[bool]:
    """The SQL condition limiting ``model`` rows to those ``principal`` may see.

    Works for ORM and Core alike (it uses the mapped columns ``owner_id`` and
    ``team_id``); combine it with ``.where(...)`` in every query that reads or
    changes scoped records, including counts, search and reports.
    """
    if principal.system:
        return true()
    if principal.user_id is None:
        return false()
    scope = principal.scope_for(object_type or object_type_of(model))
    if scope == "all":
        return true()
    mine = model.owner_id == principal.user_id
    if scope == "team" and principal.team_ids:
        return or_(mine, model.team_id.in_(sorted(principal.team_ids)))
    return mine


def visible(principal: Principal, obj: Any) -> bool:
    """The same rule as ``scope_condition`` for one loaded object (no query)."""
    if principal.system:
        return True
    if principal.user_id is None:
        return False
    scope = principal.scope_for(object_type_of(type(obj)))
    if scope == "all":
        return True
    if obj.owner_id == principal.user_id:
        return True
    return scope == "team" and obj.team_id is not None and obj.team_id in principal.team_ids


def grantable_permissions(declared: Iterable[str]) -> list[str]:
    return sorted(set(declared))
