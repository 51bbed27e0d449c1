"""Roles, permission defaults, scopes and teams (host.security.roles and
`mosaic roles` / `mosaic teams`), on SQLite and PostgreSQL, no mocks.

What could break: defaults granted to the wrong roles, a plugin enabled later
not giving its defaults, an admin's revocation undone by the next upgrade,
several roles not adding up (permissions, widest scope, the "*" fallback),
scope_condition letting a record through, team moves not taking effect, and
the CLI changing something when it says it failed.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from host import migrate
from host.cli import AppHolder, cli
from host.security import roles as svc
from host.security.access import Principal, acting_as, load_principal, scope_condition, visible
from host.testing import csrf_token, make_user
from host.security.models import (
    PermissionDefault,
    Role,
    RolePermission,
    RoleScope,
    SecurityEvent,
    User,
)

from .access_check import (
    AcmeRecord,
    acme_plugin,
    check_scope_access,
    create_acme_table,
    principal_for,
    visible_count,
    visible_ids,
)


# --- helpers -----------------------------------------------------------------


def state_of(app):
    return app.extensions["mosaic"]


def role_perms(app, name: str) -> set[str]:
    with state_of(app).db.Session() as session:
        return set(svc.role_permissions(session, svc.get_role(session, name)))


def add_users(app, *emails: str) -> dict[str, int]:
    """Plain accounts (no password needed: access is decided from roles)."""
    with state_of(app).db.transaction() as session:
        users = [User(email=e, display_name=e.split("@")[0]) for e in emails]
        session.add_all(users)
        session.flush()
        return {u.email: u.id for u in users}


def change(app, func, *args, **kwargs):
    """Run one service call in its own committed transaction."""
    with state_of(app).db.transaction() as session:
        return func(session, *args, **kwargs)


def principal(app, email: str) -> Principal:
    with state_of(app).db.Session() as session:
        return principal_for(session, email)


@pytest.fixture
def acme_app(make_app):
    """The host plus the test plugin "acme" with its scoped table."""
    app = make_app(plugins=["acme"], extra_plugins=[acme_plugin()])
    create_acme_table(app)
    return app


def add_records(app, rows: list[tuple[str, int | None, int | None]]) -> dict[str, int]:
    """rows: (title, owner_id, team_id) -> {title: id}."""
    with state_of(app).db.transaction() as session:
        records = [AcmeRecord(title=t, owner_id=o, team_id=tm) for t, o, tm in rows]
        session.add_all(records)
        session.flush()
        return {r.title: r.id for r in records}


# --- built-in roles and permission defaults ------------------------------------


def test_builtin_roles_exist_with_their_default_scopes(make_app):
    app = make_app(plugins=[])
    with state_of(app).db.Session() as session:
        roles = {r.name: r for r in svc.list_roles(session)}
        assert [r.name for r in svc.list_roles(session)] == ["admin", "manager", "staff"]
        assert all(r.builtin for r in roles.values())
        scopes = {name: svc.role_scopes(session, role) for name, role in roles.items()}
    assert scopes == {"admin": {"*": "all"}, "manager": {"*": "team"}, "staff": {"*": "own"}}


def test_defaults_follow_each_permissions_default_roles(make_app):
    app = make_app(plugins=["sales"])
    declared = state_of(app).permissions
    assert role_perms(app, "admin") == set(declared)
    for role in ("manager", "staff"):
        assert role_perms(app, role) == {n for n, p in declared.items() if role in p.default_roles}
    # spot checks against hookimpls.py / the sales plugin, so the sets above are not both empty
    assert "core.role.update" in role_perms(app, "admin") and "core.role.update" not in role_perms(app, "manager")
    assert "sales.deal.read" in role_perms(app, "staff") and "sales.deal.delete" not in role_perms(app, "staff")
    with state_of(app).db.Session() as session:
        assert set(session.scalars(select(PermissionDefault.permission))) == set(declared)


def test_enabling_a_plugin_later_grants_its_defaults(make_app):
    make_app(plugins=["sales"])
    app = make_app(plugins=["sales"])
    assert not any(p.startswith("service.") for p in role_perms(app, "staff"))
    app = make_app(plugins=["sales", "service"])
    assert {"service.ticket.read", "service.ticket.update"} <= role_perms(app, "staff")
    assert "service.ticket.delete" not in role_perms(app, "staff")
    assert "service.ticket.delete" in role_perms(app, "manager")
    assert {p for p in state_of(app).permissions if p.startswith("service.")} <= role_perms(app, "admin")


def test_a_revoked_default_stays_revoked_after_another_upgrade(make_app):
    app = make_app(plugins=["sales"])
    declared = state_of(app).permissions
    assert change(app, svc.revoke, "staff", "sales.deal.read", declared=declared) is True
    again = make_app(plugins=["sales"])
    assert "sales.deal.read" not in role_perms(again, "staff")
    # disabling the plugin and enabling it again does not bring the default back either
    make_app(plugins=[])
    again = make_app(plugins=["sales"])
    assert "sales.deal.read" not in role_perms(again, "staff")
    assert "sales.deal.update" in role_perms(again, "staff")


def test_applying_defaults_is_idempotent_and_logged_once(make_app):
    app = make_app(plugins=["sales"])
    state = state_of(app)
    with state.db.Session() as session:
        rows_before = session.scalar(select(func.count()).select_from(RolePermission))
    assert svc.apply_defaults(state) == []
    assert migrate.upgrade(state)  # a second full upgrade
    with state.db.Session() as session:
        assert session.scalar(select(func.count()).select_from(RolePermission)) == rows_before
        events = [e for e in session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "role.change")) if e.detail["action"] == "apply_defaults"]
    assert len(events) == 1
    assert set(events[0].detail["permissions"]) == set(state.permissions)
    assert events[0].user_id is None


def test_a_changed_builtin_scope_survives_an_upgrade(make_app):
    app = make_app(plugins=[])
    change(app, svc.set_scope, "manager", "*", "own", declared=state_of(app).permissions)
    again = make_app(plugins=[])
    with state_of(again).db.Session() as session:
        assert svc.role_scopes(session, svc.get_role(session, "manager")) == {"*": "own"}


# --- role management ---------------------------------------------------------


def test_grant_refuses_a_permission_no_enabled_plugin_declares(make_app):
    app = make_app(plugins=[])
    declared = state_of(app).permissions
    change(app, svc.create_role, "auditor")
    with pytest.raises(ValueError, match=r"unknown permission 'core\.contact\.reed': no enabled plugin declares it"):
        change(app, svc.grant, "auditor", "core.contact.reed", declared=declared)
    # declared by an installed but disabled plugin: refused too
    with pytest.raises(ValueError, match="sales.deal.read"):
        change(app, svc.grant, "auditor", "sales.deal.read", declared=declared)
    with pytest.raises(LookupError, match=r"no role named 'nobody' \(roles: admin, auditor, manager, staff\)"):
        change(app, svc.grant, "nobody", "core.contact.read", declared=declared)
    assert role_perms(app, "auditor") == set()


def test_grant_and_revoke_report_changes_and_log_the_actor(make_app):
    app = make_app(plugins=[])
    declared = state_of(app).permissions
    ids = add_users(app, "boss@example.com")
    change(app, svc.create_role, "auditor", "reads the audit trail")
    with acting_as(Principal(user_id=ids["boss@example.com"])):
        assert change(app, svc.grant, "auditor", "core.audit.read", declared=declared) is True
        assert change(app, svc.grant, "auditor", "core.audit.read", declared=declared) is False
        assert change(app, svc.revoke, "auditor", "core.audit.read", declared=declared) is True
        assert change(app, svc.revoke, "auditor", "core.audit.read", declared=declared) is False
    with state_of(app).db.Session() as session:
        events = [(e.kind, e.user_id, e.detail) for e in session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "role.change").order_by(SecurityEvent.id))]
    boss = ids["boss@example.com"]
    assert events[-3:] == [
        ("role.change", None, {"action": "create_role", "role": "auditor"}),
        ("role.change", boss, {"action": "grant", "role": "auditor", "permission": "core.audit.read"}),
        ("role.change", boss, {"action": "revoke", "role": "auditor", "permission": "core.audit.read"}),
    ]
    assert len(events) == 4  # the defaults applied at the upgrade, then these three


def test_a_granted_permission_of_a_disabled_plugin_can_still_be_revoked(make_app):
    make_app(plugins=["sales"])
    app = make_app(plugins=[])
    assert "sales.deal.read" in role_perms(app, "staff")
    assert change(app, svc.revoke, "staff", "sales.deal.read", declared=state_of(app).permissions) is True
    assert "sales.deal.read" not in role_perms(app, "staff")


def test_the_admin_role_keeps_role_management(make_app):
    app = make_app(plugins=[])
    with pytest.raises(ValueError, match="admin role keeps core.role.update"):
        change(app, svc.revoke, "admin", "core.role.update", declared=state_of(app).permissions)
    assert "core.role.update" in role_perms(app, "admin")


def test_role_names_are_checked_and_builtin_roles_cannot_be_deleted(make_app):
    app = make_app(plugins=[])
    with pytest.raises(ValueError, match="already exists"):
        change(app, svc.create_role, "staff")
    with pytest.raises(ValueError, match="invalid role name"):
        change(app, svc.create_role, "<script>")
    with pytest.raises(ValueError, match="built-in role"):
        change(app, svc.delete_role, "manager")


def test_deleting_a_role_takes_its_permissions_from_its_users(make_app):
    app = make_app(plugins=[])
    add_users(app, "a@example.com")
    change(app, svc.create_role, "auditor")
    change(app, svc.grant, "auditor", "core.audit.read", declared=state_of(app).permissions)
    change(app, svc.set_scope, "auditor", "core.contact", "all", declared=state_of(app).permissions)
    change(app, svc.assign_role, "A@Example.com", "auditor")
    assert principal(app, "a@example.com").can("core.audit.read")
    change(app, svc.delete_role, "auditor")
    after = principal(app, "a@example.com")
    assert not after.can("core.audit.read") and after.scope_for("core.contact") == "own"
    with state_of(app).db.Session() as session:
        assert session.scalar(select(func.count()).select_from(RoleScope).join(Role, isouter=True).where(Role.id.is_(None))) == 0


def test_set_scope_validates_and_none_falls_back_to_the_default(make_app):
    app = make_app(plugins=["sales"])
    declared = state_of(app).permissions
    with pytest.raises(ValueError, match="unknown scope 'everyone'"):
        change(app, svc.set_scope, "staff", "sales.deal", "everyone", declared=declared)
    with pytest.raises(ValueError, match="invalid object type 'Sales-Deal'"):
        change(app, svc.set_scope, "staff", "Sales-Deal", "all", declared=declared)
    with pytest.raises(ValueError, match="unknown object type 'service.ticket'"):
        change(app, svc.set_scope, "staff", "service.ticket", "all", declared=declared)
    add_users(app, "rep@example.com")
    change(app, svc.assign_role, "rep@example.com", "staff")
    assert change(app, svc.set_scope, "staff", "sales.deal", "all", declared=declared) is None
    assert principal(app, "rep@example.com").scope_for("sales.deal") == "all"
    assert change(app, svc.set_scope, "staff", "sales.deal", None, declared=declared) == "all"
    assert principal(app, "rep@example.com").scope_for("sales.deal") == "own"


def test_require_totp_is_set_per_role(make_app):
    app = make_app(plugins=[])
    assert change(app, svc.set_require_totp, "admin", True) is True
    assert change(app, svc.set_require_totp, "admin", True) is False
    with state_of(app).db.Session() as session:
        assert svc.get_role(session, "admin").require_totp is True
        assert svc.get_role(session, "staff").require_totp is False
        details = [e.detail for e in session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "role.change")) if e.detail["action"] == "require_totp"]
    assert details == [{"action": "require_totp", "role": "admin", "require_totp": True}]


def test_assign_and_unassign_roles_and_unknown_users(make_app):
    app = make_app(plugins=[])
    add_users(app, "a@example.com")
    assert change(app, svc.assign_role, "a@example.com", "manager") is True
    assert change(app, svc.assign_role, "a@example.com", "manager") is False
    assert principal(app, "a@example.com").can("core.contact.delete")
    assert change(app, svc.unassign_role, "a@example.com", "manager") is True
    assert change(app, svc.unassign_role, "a@example.com", "manager") is False
    assert principal(app, "a@example.com").permissions == frozenset()
    with pytest.raises(LookupError, match="no user with e-mail 'ghost@example.com'"):
        change(app, svc.assign_role, "ghost@example.com", "staff")


# --- several roles add up ------------------------------------------------------


def test_load_principal_adds_permissions_and_takes_the_widest_scope(acme_app):
    app = acme_app
    declared = state_of(app).permissions
    add_users(app, "rep@example.com")
    change(app, svc.create_role, "exporter")
    change(app, svc.grant, "exporter", "core.contact.export", declared=declared)
    change(app, svc.set_scope, "exporter", "core.contact", "team", declared=declared)
    change(app, svc.set_scope, "exporter", "acme.record", "own", declared=declared)
    for role in ("staff", "exporter"):
        change(app, svc.assign_role, "rep@example.com", role)
    rep = principal(app, "rep@example.com")
    assert rep.permissions == role_perms(app, "staff") | {"core.contact.export"}
    assert rep.scope_for("core.contact") == "team"  # exporter's team beats staff's "*" own
    assert rep.scope_for("acme.record") == "own"
    assert rep.scope_for("core.task") == "own"  # nobody names it: the "*" defaults, both own
    change(app, svc.assign_role, "rep@example.com", "admin")
    rep = principal(app, "rep@example.com")
    assert rep.scope_for("core.task") == "all" and rep.permissions == set(declared)


def test_a_roles_star_default_counts_for_types_another_role_names(acme_app):
    """staff says acme.record=own explicitly; manager's "*" is team. The user
    holds both, so for acme.record the wider of (own, team) must win."""
    app = acme_app
    add_users(app, "lead@example.com")
    change(app, svc.set_scope, "staff", "acme.record", "own", declared=state_of(app).permissions)
    for role in ("staff", "manager"):
        change(app, svc.assign_role, "lead@example.com", role)
    assert principal(app, "lead@example.com").scope_for("acme.record") == "team"


# --- scope_condition on a real table ---------------------------------------------


@pytest.fixture
def scoped_world(acme_app):
    """Three users, two teams and records in every (owner, team) combination:
    ann (team north), bob (teams north and south), cat (no team)."""
    app = acme_app
    ids = add_users(app, "ann@example.com", "bob@example.com", "cat@example.com")
    north = change(app, svc.create_team, "north").id
    south = change(app, svc.create_team, "south").id
    change(app, svc.add_to_team, "ann@example.com", "north")
    change(app, svc.add_to_team, "bob@example.com", "north")
    change(app, svc.add_to_team, "bob@example.com", "south")
    ann, bob, cat = ids["ann@example.com"], ids["bob@example.com"], ids["cat@example.com"]
    records = add_records(
        app,
        [
            ("ann-north", ann, north),
            ("ann-none", ann, None),
            ("bob-south", bob, south),
            ("cat-north", cat, north),
            ("cat-none", cat, None),
            ("nobody-south", None, south),
        ],
    )
    return app, records


def titles(app, email: str) -> set[str]:
    with state_of(app).db.Session() as session:
        p = principal_for(session, email)
        return set(session.scalars(select(AcmeRecord.title).where(scope_condition(p, AcmeRecord))))


def test_scope_condition_own_team_and_all(scoped_world):
    app, records = scoped_world
    declared = state_of(app).permissions
    change(app, svc.assign_role, "ann@example.com", "staff")
    assert titles(app, "ann@example.com") == {"ann-north", "ann-none"}
    change(app, svc.set_scope, "staff", "acme.record", "team", declared=declared)
    assert titles(app, "ann@example.com") == {"ann-north", "ann-none", "cat-north"}
    change(app, svc.assign_role, "bob@example.com", "staff")
    assert titles(app, "bob@example.com") == {"ann-north", "bob-south", "cat-north", "nobody-south"}
    change(app, svc.set_scope, "staff", "acme.record", "all", declared=declared)
    assert titles(app, "ann@example.com") == set(records)
    # no role at all: own records only (and no permission to reach a route)
    assert titles(app, "cat@example.com") == {"cat-north", "cat-none"}


def test_anonymous_sees_nothing_and_the_system_everything(scoped_world):
    app, records = scoped_world
    with state_of(app).db.Session() as session:
        assert visible_ids(session, Principal(user_id=None)) == set()
        assert visible_ids(session, Principal(user_id=None, system=True)) == set(records.values())


def test_every_query_path_agrees_on_an_own_scope_record(scoped_world):
    app, records = scoped_world
    for email in ("ann@example.com", "cat@example.com"):
        change(app, svc.assign_role, email, "staff")
    check_scope_access(app, model=AcmeRecord, record_id=records["ann-none"], owner_email="ann@example.com", other_email="cat@example.com")
    with state_of(app).db.Session() as session:
        assert visible_count(session, principal_for(session, "cat@example.com")) == 2


def test_team_moves_change_what_a_team_scope_user_sees(scoped_world):
    app, records = scoped_world
    change(app, svc.set_scope, "manager", "acme.record", "team", declared=state_of(app).permissions)
    change(app, svc.assign_role, "ann@example.com", "manager")
    assert titles(app, "ann@example.com") == {"ann-north", "ann-none", "cat-north"}
    change(app, svc.remove_from_team, "ann@example.com", "north")
    change(app, svc.add_to_team, "ann@example.com", "south")
    assert titles(app, "ann@example.com") == {"ann-north", "ann-none", "bob-south", "nobody-south"}
    with state_of(app).db.Session() as session:
        ann = principal_for(session, "ann@example.com")
        assert not visible(ann, session.get(AcmeRecord, records["cat-north"]))
        assert visible(ann, session.get(AcmeRecord, records["nobody-south"]))
    change(app, svc.remove_from_team, "ann@example.com", "south")
    assert titles(app, "ann@example.com") == {"ann-north", "ann-none"}  # no team left: own only
    with state_of(app).db.Session() as session:
        logged = [(e.kind, e.detail["action"], e.detail.get("team")) for e in session.scalars(select(SecurityEvent).where(SecurityEvent.subject_user_id == ann.user_id).order_by(SecurityEvent.id))]
    assert logged == [
        ("team.change", "add_member", "north"),
        ("role.change", "assign", None),
        ("team.change", "remove_member", "north"),
        ("team.change", "add_member", "south"),
        ("team.change", "remove_member", "south"),
    ]


def test_deleting_a_team_keeps_its_records_with_their_owner(scoped_world):
    app, records = scoped_world
    change(app, svc.delete_team, "north")
    with state_of(app).db.Session() as session:
        assert session.get(AcmeRecord, records["ann-north"]).team_id is None
        assert session.get(AcmeRecord, records["ann-north"]).owner_id is not None
        assert [t.name for t in session.get(User, principal(app, "bob@example.com").user_id).teams] == ["south"]


# --- the command line ----------------------------------------------------------


@pytest.fixture
def run_cli(make_app):
    """``run_cli(*args)`` runs `mosaic ARGS` in-process against one app."""
    app = make_app(plugins=["sales"])

    def runner(*args: str):
        holder = AppHolder()
        holder._app = app
        return CliRunner().invoke(cli, list(args), obj=holder)

    runner.app = app
    return runner


def test_cli_roles_create_grant_scope_and_show(run_cli):
    assert run_cli("roles", "create", "closer", "--description", "closes deals").exit_code == 0
    result = run_cli("roles", "grant", "closer", "sales.deal.read", "sales.deal.update")
    assert result.exit_code == 0, result.output
    assert "Granted: sales.deal.read" in result.output
    assert run_cli("roles", "scope", "closer", "sales.deal", "team").exit_code == 0
    assert run_cli("roles", "scope", "closer", "*", "own").exit_code == 0
    assert run_cli("roles", "require-2fa", "closer", "on").exit_code == 0
    assert role_perms(run_cli.app, "closer") == {"sales.deal.read", "sales.deal.update"}
    shown = run_cli("roles", "show", "closer")
    assert shown.exit_code == 0
    lines = [line.strip() for line in shown.output.splitlines()]
    assert "Description: closes deals" in lines
    assert "Requires two-factor sign-in: yes" in lines
    assert "sales.deal team" in [" ".join(line.split()) for line in lines]
    assert "* (default) own" in [" ".join(line.split()) for line in lines]
    assert lines.index("sales:") < lines.index("sales.deal.read") < lines.index("sales.deal.update")
    listed = run_cli("roles", "list")
    assert [line.split()[0] for line in listed.output.splitlines()] == ["admin", "manager", "staff", "closer"]
    assert "requires 2FA" in listed.output.splitlines()[3]


def test_cli_grant_with_an_unknown_permission_changes_nothing(run_cli):
    run_cli("roles", "create", "closer")
    result = run_cli("roles", "grant", "closer", "sales.deal.read", "sales.deal.wreck")
    assert result.exit_code == 1
    assert "Error: unknown permission 'sales.deal.wreck'" in result.output
    assert role_perms(run_cli.app, "closer") == set()


@pytest.mark.parametrize(
    "args, message",
    [
        (("roles", "show", "nobody"), "no role named 'nobody'"),
        (("roles", "grant", "nobody", "sales.deal.read"), "no role named 'nobody'"),
        (("roles", "revoke", "staff", "sales.nothing.read"), "unknown permission 'sales.nothing.read'"),
        (("roles", "scope", "staff", "service.ticket", "all"), "unknown object type 'service.ticket'"),
        (("roles", "assign", "ghost@example.com", "staff"), "no user with e-mail 'ghost@example.com'"),
        (("roles", "unassign", "rep@example.com", "nobody"), "no role named 'nobody'"),
        (("roles", "delete", "admin"), "'admin' is a built-in role"),
        (("teams", "add", "rep@example.com", "nowhere"), "no team named 'nowhere' (teams: none)"),
        (("teams", "remove", "ghost@example.com", "north"), "no user with e-mail 'ghost@example.com'"),
    ],
)
def test_cli_unknown_names_fail_with_one_clear_line(run_cli, args, message):
    add_users(run_cli.app, "rep@example.com")
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.output


def test_cli_assign_unassign_and_teams(run_cli):
    app = run_cli.app
    add_users(app, "rep@example.com", "lead@example.com")
    assert "rep@example.com now has role staff." in run_cli("roles", "assign", "rep@example.com", "staff").output
    assert "already has" in run_cli("roles", "assign", "REP@example.com", "staff").output
    assert principal(app, "rep@example.com").can("sales.deal.read")
    assert run_cli("teams", "list").output.strip() == "No teams."
    assert run_cli("teams", "create", "north").exit_code == 0
    assert run_cli("teams", "create", "north").exit_code == 1
    for email in ("rep@example.com", "lead@example.com"):
        assert run_cli("teams", "add", email, "north").exit_code == 0
    assert " ".join(run_cli("teams", "list").output.split()) == "north 2 members lead@example.com, rep@example.com"
    assert run_cli("teams", "remove", "lead@example.com", "north").exit_code == 0
    assert principal(app, "lead@example.com").team_ids == frozenset()
    assert len(principal(app, "rep@example.com").team_ids) == 1
    assert "no longer has" in run_cli("roles", "unassign", "rep@example.com", "staff").output
    assert not principal(app, "rep@example.com").can("sales.deal.read")


# --- the admin pages ---------------------------------------------------------------


class FormReader(HTMLParser):
    """What a browser would submit from the form posting to ``action``:
    hidden and text inputs, checked checkboxes, each select's selected option."""

    def __init__(self, action: str):
        super().__init__()
        self.action, self.inside, self.select = action, False, None
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("action") == self.action
        elif not self.inside:
            return
        elif tag == "input" and a.get("name") and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self.select = a["name"]
        elif tag == "option" and self.select and "selected" in a:
            self.fields.append((self.select, a["value"]))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None


def form_of(client, page: str, action: str) -> MultiDict:
    response = client.get(page)
    assert response.status_code == 200, f"{page}: {response.status_code}"
    reader = FormReader(action)
    reader.feed(response.get_data(as_text=True))
    assert reader.fields, f"no form posting to {action} on {page}"
    return MultiDict(reader.fields)


def role_id(app, name: str) -> int:
    with state_of(app).db.Session() as session:
        return svc.get_role(session, name).id


def role_scopes_of(app, name: str) -> dict[str, str]:
    with state_of(app).db.Session() as session:
        return svc.role_scopes(session, svc.get_role(session, name))


@pytest.mark.with_plugins("sales")
def test_admin_pages_need_the_role_permissions(app, signed_in):
    staff = signed_in("rep@example.com", roles=("staff",))
    lead = signed_in("lead@example.com", roles=("manager",))
    staff_id = role_id(app, "staff")
    assert app.test_client().get("/admin/roles").status_code == 302  # to the login page
    assert staff.get("/admin/roles").status_code == 403
    assert staff.get(f"/admin/roles/{staff_id}").status_code == 403
    page = lead.get("/admin/roles")  # core.role.read, not core.role.update
    assert page.status_code == 200 and "New role" not in page.get_data(as_text=True)
    token = csrf_token(lead, "/admin/roles")
    assert lead.post("/admin/roles", data={"name": "x", "csrf_token": token}).status_code == 403
    assert lead.post(f"/admin/roles/{staff_id}", data={"permission": "sales.deal.delete", "csrf_token": token}).status_code == 403
    assert lead.get("/admin/teams").status_code == 200  # core.team.read
    assert lead.post("/admin/teams", data={"name": "x", "csrf_token": token}).status_code == 403
    assert "sales.deal.delete" not in role_perms(app, "staff")


@pytest.mark.with_plugins("sales")
def test_the_role_page_saves_permissions_scopes_and_two_factor(app, admin_client):
    staff = role_id(app, "staff")
    page, action = f"/admin/roles/{staff}", f"/admin/roles/{staff}"
    html = admin_client.get(page).get_data(as_text=True)
    assert html.index("<legend>Core</legend>") < html.index("<legend>Sales</legend>") < html.index('value="sales.deal.read"')
    form = form_of(admin_client, page, action)
    assert "sales.deal.read" in form.getlist("permission") and "sales.deal.delete" not in form.getlist("permission")
    assert form["scope:*"] == "own" and form["scope:sales.deal"] == ""
    form.setlist("permission", [p for p in form.getlist("permission") if p != "sales.deal.update"] + ["sales.deal.delete"])
    form["scope:sales.deal"] = "team"
    form["require_totp"] = "1"
    response = admin_client.post(action, data=form)
    assert response.status_code == 303
    assert "Saved staff: 4 changes." in admin_client.get(page).get_data(as_text=True)
    perms = role_perms(app, "staff")
    assert "sales.deal.delete" in perms and "sales.deal.update" not in perms and "sales.deal.read" in perms
    assert role_scopes_of(app, "staff") == {"*": "own", "sales.deal": "team"}
    with state_of(app).db.Session() as session:
        assert svc.get_role(session, "staff").require_totp is True
        admin_id = session.scalar(select(User.id).where(User.email == "admin@example.com"))
        logged = [(e.user_id, e.detail["action"], e.ip) for e in session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "role.change").order_by(SecurityEvent.id))][-4:]
    assert logged == [(admin_id, a, "127.0.0.1") for a in ("grant", "revoke", "set_scope", "require_totp")]
    # the same page submitted again unchanged changes nothing
    admin_client.post(action, data=form_of(admin_client, page, action))
    assert "Nothing changed." in admin_client.get(page).get_data(as_text=True)


@pytest.mark.with_plugins("sales")
def test_a_stale_role_page_does_not_undo_another_admins_changes(app, admin_client):
    staff = role_id(app, "staff")
    page = f"/admin/roles/{staff}"
    stale = form_of(admin_client, page, page)
    declared = state_of(app).permissions
    change(app, svc.grant, "staff", "sales.deal.delete", declared=declared)  # meanwhile, elsewhere
    change(app, svc.set_scope, "staff", "*", "team", declared=declared)
    stale.setlist("permission", [p for p in stale.getlist("permission") if p != "core.task.delete"])  # unchanged: not granted
    stale.setlist("permission", [p for p in stale.getlist("permission") if p != "sales.deal.update"])
    assert admin_client.post(page, data=stale).status_code == 303
    assert "sales.deal.delete" in role_perms(app, "staff")  # kept: the page never showed it
    assert "sales.deal.update" not in role_perms(app, "staff")  # the one change this admin made
    assert role_scopes_of(app, "staff")["*"] == "team"


@pytest.mark.with_plugins("sales")
def test_the_role_page_refuses_what_the_service_refuses(app, admin_client):
    admin = role_id(app, "admin")
    page = f"/admin/roles/{admin}"
    form = form_of(admin_client, page, page)
    form.setlist("permission", [p for p in form.getlist("permission") if p not in ("core.role.update", "sales.deal.read")])
    response = admin_client.post(page, data=form)
    assert response.status_code == 422
    assert "the admin role keeps core.role.update" in response.get_data(as_text=True)
    assert {"core.role.update", "sales.deal.read"} <= role_perms(app, "admin")  # nothing of the form applied
    token = csrf_token(admin_client, page)
    response = admin_client.post(f"/admin/roles/{admin}/delete", data={"csrf_token": token})
    assert response.status_code == 422 and "built-in role" in response.get_data(as_text=True)
    assert admin_client.post(page, data={"permission": "sales.deal.read"}).status_code == 400  # no CSRF token


@pytest.mark.with_plugins("sales")
def test_roles_are_created_assigned_and_deleted_from_the_admin_pages(app, admin_client):
    make_user(app, "rep@example.com", roles=())
    token = csrf_token(admin_client, "/admin/roles")
    response = admin_client.post("/admin/roles", data={"name": "closer", "description": "<b>closes</b>", "csrf_token": token})
    assert response.status_code == 303
    closer = role_id(app, "closer")
    assert response.headers["Location"].endswith(f"/admin/roles/{closer}")
    listing = admin_client.get("/admin/roles").get_data(as_text=True)
    assert "&lt;b&gt;closes&lt;/b&gt;" in listing and "<b>closes</b>" not in listing
    duplicate = admin_client.post("/admin/roles", data={"name": "closer", "csrf_token": token})
    assert duplicate.status_code == 422 and "a role named &#39;closer&#39; already exists" in duplicate.get_data(as_text=True)

    members = f"/admin/roles/{closer}/members"
    assert admin_client.post(members, data={"email": "REP@example.com", "csrf_token": token}).status_code == 303
    assert "rep@example.com" in admin_client.get(f"/admin/roles/{closer}").get_data(as_text=True)
    unknown = admin_client.post(members, data={"email": "ghost@example.com", "csrf_token": token})
    assert unknown.status_code == 422 and "no user with e-mail" in unknown.get_data(as_text=True)
    with state_of(app).db.Session() as session:
        assert [r.name for r in session.scalar(select(User).where(User.email == "rep@example.com")).roles] == ["closer"]
    assert admin_client.post(f"{members}/remove", data={"email": "rep@example.com", "csrf_token": token}).status_code == 303
    assert admin_client.post(f"/admin/roles/{closer}/delete", data={"csrf_token": token}).status_code == 303
    assert admin_client.get(f"/admin/roles/{closer}").status_code == 404


@pytest.mark.with_plugins("sales")
def test_teams_are_managed_from_the_admin_pages(app, admin_client):
    make_user(app, "rep@example.com", roles=("staff",))
    token = csrf_token(admin_client, "/admin/teams")
    assert admin_client.post("/admin/teams", data={"name": "north", "csrf_token": token}).status_code == 303
    with state_of(app).db.Session() as session:
        north = svc.get_team(session, "north").id
    assert admin_client.post(f"/admin/teams/{north}/members", data={"email": "rep@example.com", "csrf_token": token}).status_code == 303
    page = admin_client.get("/admin/teams").get_data(as_text=True)
    assert "rep@example.com added to north." in page and "&lt;rep@example.com&gt;" in page
    assert principal(app, "rep@example.com").team_ids == {north}
    unknown = admin_client.post(f"/admin/teams/{north}/members", data={"email": "ghost@example.com", "csrf_token": token})
    assert unknown.status_code == 422 and "no user with e-mail" in unknown.get_data(as_text=True)
    assert admin_client.post(f"/admin/teams/{north}/members/remove", data={"email": "rep@example.com", "csrf_token": token}).status_code == 303
    assert principal(app, "rep@example.com").team_ids == frozenset()
    assert admin_client.post("/admin/teams/999/members", data={"email": "rep@example.com", "csrf_token": token}).status_code == 404
