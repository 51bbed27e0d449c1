"""A hypothesis state machine of the permission model against a reference.

Random sequences of grants, revocations, role assignments, team moves, scope
changes and role re-creation run through ``host.security.roles`` on a real
database; after every step, for every user, the permissions and scopes that
``load_principal`` resolves, and the records a real query filtered by
``scope_condition`` returns (and ``visible()`` agrees with), must equal what a
few lines of plain Python say they should be.

Each example runs in one outer transaction that is rolled back afterwards, so
examples start from the same seeded database and the test stays fast on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import literal, select, union_all
from sqlalchemy.orm import Session

from host.security import roles as svc
from host.security.access import load_principal, scope_condition, visible
from host.security.models import Team, TeamMember, User

from .access_check import AcmeRecord, acme_plugin, create_acme_table

USERS = ("u0@example.com", "u1@example.com", "u2@example.com")
TEAMS = ("north", "south", "east")
CUSTOM_ROLE = "auditor"
ROLES = ("admin", "manager", "staff", CUSTOM_ROLE)
#: Object types whose scope the machine changes and compares; "core.contact"
#: is never the records' type, so its scope must not leak into acme.record.
OBJECT_TYPES = ("acme.record", "core.contact")
PERMISSIONS = (
    "acme.record.read",
    "acme.record.delete",
    "core.contact.read",
    "core.contact.export",
    "core.role.update",
    "core.audit.read",
    "acme.widget.read",  # declared by nobody: always refused
)
SCOPE_RANK = {"own": 0, "team": 1, "all": 2}


# --- the reference model: plain Python, no database ------------------------------


@dataclass
class Reference:
    declared: frozenset[str]
    role_perms: dict[str, set[str]]
    role_scopes: dict[str, dict[str, str]]
    user_roles: dict[str, set[str]] = field(default_factory=lambda: {u: set() for u in USERS})
    user_teams: dict[str, set[str]] = field(default_factory=lambda: {u: set() for u in USERS})
    #: id -> (owner e-mail or None, team name or None)
    records: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)

    @classmethod
    def initial(cls, declared: dict, records: dict[int, tuple[str | None, str | None]]) -> "Reference":
        """What the database must hold after the first upgrade: each declared
        permission granted to its default built-in roles, every one to admin."""
        perms = {role: {n for n, p in declared.items() if role == "admin" or role in p.default_roles} for role in ROLES[:3]}
        perms[CUSTOM_ROLE] = set()
        scopes = {"admin": {"*": "all"}, "manager": {"*": "team"}, "staff": {"*": "own"}, CUSTOM_ROLE: {}}
        return cls(frozenset(declared), perms, scopes, records=records)

    def permissions(self, user: str) -> set[str]:
        return set().union(*(self.role_perms[r] for r in self.user_roles[user]))

    def scope(self, user: str, object_type: str) -> str:
        """Each role reaches a type by its own setting, else its "*", else
        own; several roles give the widest. No role at all: own."""
        reach = [self.role_scopes[r].get(object_type) or self.role_scopes[r].get("*", "own") for r in self.user_roles[user]]
        return max(reach, key=SCOPE_RANK.__getitem__, default="own")

    def visible(self, user: str) -> set[int]:
        scope = self.scope(user, "acme.record")
        teams = self.user_teams[user]
        return {
            rid
            for rid, (owner, team) in self.records.items()
            if scope == "all" or owner == user or (scope == "team" and team is not None and team in teams)
        }


# --- fixtures ----------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    app: object
    user_ids: dict[str, int]
    team_ids: dict[str, int]
    records: dict[int, tuple[str | None, str | None]]


@pytest.fixture
def world(make_app) -> World:
    """Users, teams, a custom role and one record per (owner, team) pair,
    committed once; every example rolls back to this."""
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_acme_table(app)
    state = app.extensions["mosaic"]
    with state.db.transaction() as session:
        users = {e: User(email=e) for e in USERS}
        teams = {t: Team(name=t) for t in TEAMS}
        session.add_all([*users.values(), *teams.values()])
        session.flush()
        svc.create_role(session, CUSTOM_ROLE)
        rows = [
            AcmeRecord(title=f"{owner}/{team}", owner_id=users[owner].id if owner else None, team_id=teams[team].id if team else None)
            for owner in (*USERS, None)
            for team in (*TEAMS, None)
        ]
        session.add_all(rows)
        session.flush()
        by_id = {u.id: e for e, u in users.items()}
        by_team = {t.id: n for n, t in teams.items()}
        records = {r.id: (by_id.get(r.owner_id), by_team.get(r.team_id)) for r in rows}
        return World(app, {e: u.id for e, u in users.items()}, {n: t.id for n, t in teams.items()}, records)


# --- the machine ---------------------------------------------------------------------


def machine_for(world: World) -> type[RuleBasedStateMachine]:
    state = world.app.extensions["mosaic"]
    declared = state.permissions

    class PermissionModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.conn = state.db.engine.connect()
            self.outer = self.conn.begin()
            self.session = Session(bind=self.conn, join_transaction_mode="create_savepoint")
            self.ref = Reference.initial(declared, dict(world.records))
            #: The records never change here, so they are loaded once for visible().
            self.records = list(self.session.scalars(select(AcmeRecord)))

        def teardown(self) -> None:
            self.session.close()
            self.outer.rollback()
            self.conn.close()

        def call(self, func, *args, **kwargs):
            """One service call in a savepoint: a refused call leaves no trace."""
            with self.session.begin_nested():
                return func(self.session, *args, **kwargs)

        # --- rules: each applies the change to both and checks the return value

        @rule(role=st.sampled_from(ROLES), perm=st.sampled_from(PERMISSIONS))
        def grant(self, role: str, perm: str) -> None:
            if perm not in self.ref.declared:
                with pytest.raises(svc.NotFound, match="no enabled plugin declares it"):
                    self.call(svc.grant, role, perm, declared=declared)
                return
            expected = perm not in self.ref.role_perms[role]
            assert self.call(svc.grant, role, perm, declared=declared) is expected
            self.ref.role_perms[role].add(perm)

        @rule(role=st.sampled_from(ROLES), perm=st.sampled_from(PERMISSIONS))
        def revoke(self, role: str, perm: str) -> None:
            held = perm in self.ref.role_perms[role]
            if held and role == "admin" and perm == "core.role.update":
                with pytest.raises(svc.RoleError, match="admin role keeps"):
                    self.call(svc.revoke, role, perm, declared=declared)
                return
            if not held and perm not in self.ref.declared:
                with pytest.raises(svc.NotFound):
                    self.call(svc.revoke, role, perm, declared=declared)
                return
            assert self.call(svc.revoke, role, perm, declared=declared) is held
            self.ref.role_perms[role].discard(perm)

        @rule(user=st.sampled_from(USERS), role=st.sampled_from(ROLES))
        def assign(self, user: str, role: str) -> None:
            assert self.call(svc.assign_role, user, role) is (role not in self.ref.user_roles[user])
            self.ref.user_roles[user].add(role)

        @rule(user=st.sampled_from(USERS), role=st.sampled_from(ROLES))
        def unassign(self, user: str, role: str) -> None:
            assert self.call(svc.unassign_role, user, role) is (role in self.ref.user_roles[user])
            self.ref.user_roles[user].discard(role)

        @rule(user=st.sampled_from(USERS), team=st.sampled_from(TEAMS))
        def join_team(self, user: str, team: str) -> None:
            assert self.call(svc.add_to_team, user, team) is (team not in self.ref.user_teams[user])
            self.ref.user_teams[user].add(team)

        @rule(user=st.sampled_from(USERS), team=st.sampled_from(TEAMS))
        def leave_team(self, user: str, team: str) -> None:
            assert self.call(svc.remove_from_team, user, team) is (team in self.ref.user_teams[user])
            self.ref.user_teams[user].discard(team)

        @rule(user=st.sampled_from(USERS), old=st.sampled_from(TEAMS), new=st.sampled_from(TEAMS))
        def move_team(self, user: str, old: str, new: str) -> None:
            """A team move: out of one team and into another in one transaction."""
            with self.session.begin_nested():
                svc.remove_from_team(self.session, user, old)
                svc.add_to_team(self.session, user, new)
            self.ref.user_teams[user].discard(old)
            self.ref.user_teams[user].add(new)

        @rule(
            role=st.sampled_from(ROLES),
            object_type=st.sampled_from(("*", *OBJECT_TYPES)),
            scope=st.sampled_from(("own", "team", "all", None)),
        )
        def set_scope(self, role: str, object_type: str, scope: str | None) -> None:
            previous = self.ref.role_scopes[role].get(object_type)
            assert self.call(svc.set_scope, role, object_type, scope, declared=declared) == previous
            if scope is None:
                self.ref.role_scopes[role].pop(object_type, None)
            else:
                self.ref.role_scopes[role][object_type] = scope

        @rule()
        def recreate_custom_role(self) -> None:
            """Deleting a role takes it from its users; a new one of the same
            name starts empty (nothing of the old one comes back)."""
            self.call(svc.delete_role, CUSTOM_ROLE)
            self.call(svc.create_role, CUSTOM_ROLE)
            self.ref.role_perms[CUSTOM_ROLE] = set()
            self.ref.role_scopes[CUSTOM_ROLE] = {}
            for held in self.ref.user_roles.values():
                held.discard(CUSTOM_ROLE)

        # --- the comparison, after every step

        @invariant()
        def database_agrees_with_reference(self) -> None:
            memberships = set(self.session.execute(select(TeamMember.user_id, TeamMember.team_id)))
            assert memberships == {(world.user_ids[u], world.team_ids[t]) for u, teams in self.ref.user_teams.items() for t in teams}
            principals = {email: load_principal(self.session, self.session.get(User, uid)) for email, uid in world.user_ids.items()}
            for email, principal in principals.items():
                assert principal.permissions == self.ref.permissions(email), email
                for object_type in OBJECT_TYPES:
                    assert principal.scope_for(object_type) == self.ref.scope(email, object_type), (email, object_type)
                assert principal.team_ids == {world.team_ids[t] for t in self.ref.user_teams[email]}, email
                assert {r.id for r in self.records if visible(principal, r)} == self.ref.visible(email), email
            # one round trip: each user's scoped select, side by side
            per_user = union_all(
                *(select(literal(email).label("email"), AcmeRecord.id).where(scope_condition(p, AcmeRecord)) for email, p in principals.items())
            )
            queried: dict[str, set[int]] = {email: set() for email in principals}
            for email, record_id in self.session.execute(per_user):
                queried[email].add(record_id)
            for email, ids in queried.items():
                expected = self.ref.visible(email)
                assert ids == expected, (email, sorted(ids ^ expected))

    return PermissionModel


def test_permission_model_matches_the_reference(world):
    run_state_machine_as_test(
        machine_for(world),
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
