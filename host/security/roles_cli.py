"""``mosaic roles`` and ``mosaic teams``: manage access from the command line.

Only click is imported at module level (``host.cli`` attaches these groups
while it loads, and ``mosaic --help`` must stay fast). Each command runs in
one transaction: a command that fails (unknown role, team, user or
permission) changes nothing, prints one ``Error:`` line and exits with 1.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

FAILED = 1


def _in_transaction(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command as ``func(session, state, ...)`` inside the app context
    and one write transaction; turn a refused change into ``Error:`` + exit 1.

    The app comes from the context's ``AppHolder`` (tests pass their own as
    ``obj=``); ``host.cli`` is imported here because it imports this module."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        from host.cli import AppHolder

        from .roles import RoleError

        app = ctx.ensure_object(AppHolder).get()
        state = app.extensions["mosaic"]
        try:
            with app.app_context(), state.db.transaction() as session:
                return func(session, state, *args, **kwargs)
        except RoleError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(FAILED)

    return functools.update_wrapper(wrapper, func)


# --- roles -------------------------------------------------------------------


@click.group()
def roles() -> None:
    """Roles: their permissions, scopes and users."""


@roles.command("list")
@_in_transaction
def roles_list(session, state) -> None:
    """List roles: name, users, permissions, default scope, flags."""
    from . import roles as svc

    counts = svc.role_member_counts(session)
    for role in svc.list_roles(session):
        scope = svc.role_scopes(session, role).get(svc.DEFAULT_OBJECT_TYPE, "own")
        flags = ", ".join(f for f, on in (("built-in", role.builtin), ("requires 2FA", role.require_totp)) if on)
        n_perms = len(svc.role_permissions(session, role))
        click.echo(
            f"{role.name:<20} {counts.get(role.id, 0):>4} users  {n_perms:>4} permissions  scope {scope:<4}"
            + (f"  ({flags})" if flags else "")
        )


@roles.command("show")
@click.argument("name")
@_in_transaction
def roles_show(session, state, name: str) -> None:
    """Show a role's scopes, permissions (by plugin) and users."""
    from . import roles as svc

    role = svc.get_role(session, name)
    click.echo(f"Role: {role.name}{' (built-in)' if role.builtin else ''}")
    if role.description:
        click.echo(f"Description: {role.description}")
    click.echo(f"Requires two-factor sign-in: {'yes' if role.require_totp else 'no'}")
    scopes = svc.role_scopes(session, role)
    click.echo("Scopes:")
    click.echo(f"  {'* (default)':<30} {scopes.pop(svc.DEFAULT_OBJECT_TYPE, 'own')}")
    for object_type, scope in scopes.items():
        click.echo(f"  {object_type:<30} {scope}")
    click.echo("Permissions:")
    for plugin, names in _by_plugin(svc.role_permissions(session, role)):
        click.echo(f"  {plugin}:")
        for perm in names:
            note = "" if perm in state.permissions else "  (plugin not enabled)"
            click.echo(f"    {perm}{note}")
    members = svc.role_members(session, role)
    click.echo(f"Users: {', '.join(u.email for u in members) if members else 'none'}")


def _by_plugin(permissions: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for perm in sorted(permissions):
        groups.setdefault(perm.split(".", 1)[0], []).append(perm)
    return list(groups.items())


@roles.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the role is for.")
@_in_transaction
def roles_create(session, state, name: str, description: str) -> None:
    """Create an empty role (grant permissions with `mosaic roles grant`)."""
    from . import roles as svc

    role = svc.create_role(session, name, description)
    click.echo(f"Created role {role.name}.")


@roles.command("delete")
@click.argument("name")
@_in_transaction
def roles_delete(session, state, name: str) -> None:
    """Delete a role that is not built in; its users lose what it granted."""
    from . import roles as svc

    svc.delete_role(session, name)
    click.echo(f"Deleted role {name}.")


@roles.command("grant")
@click.argument("name")
@click.argument("permissions", nargs=-1, required=True)
@_in_transaction
def roles_grant(session, state, name: str, permissions: tuple[str, ...]) -> None:
    """Grant PERMISSIONS to role NAME (all or none: one unknown name changes nothing)."""
    from . import roles as svc

    for perm in permissions:
        changed = svc.grant(session, name, perm, declared=state.permissions)
        click.echo(f"{'Granted' if changed else 'Already granted'}: {perm}")


@roles.command("revoke")
@click.argument("name")
@click.argument("permissions", nargs=-1, required=True)
@_in_transaction
def roles_revoke(session, state, name: str, permissions: tuple[str, ...]) -> None:
    """Revoke PERMISSIONS from role NAME (all or none)."""
    from . import roles as svc

    for perm in permissions:
        changed = svc.revoke(session, name, perm, declared=state.permissions)
        click.echo(f"{'Revoked' if changed else 'Not granted'}: {perm}")


@roles.command("scope")
@click.argument("name")
@click.argument("object_type")
@click.argument("scope", type=click.Choice(["own", "team", "all", "default"]))
@_in_transaction
def roles_scope(session, state, name: str, object_type: str, scope: str) -> None:
    """Set role NAME's SCOPE for OBJECT_TYPE ('*' for every type it names no
    scope for, or e.g. 'sales.deal'); 'default' removes a type's own setting."""
    from . import roles as svc

    if scope == "default" and object_type == svc.DEFAULT_OBJECT_TYPE:
        raise click.UsageError("'*' is the default itself: give it own, team or all")
    svc.set_scope(session, name, object_type, None if scope == "default" else scope, declared=state.permissions)
    click.echo(f"{name}: {object_type} -> {scope}")


@roles.command("require-2fa")
@click.argument("name")
@click.argument("required", type=click.Choice(["on", "off"]))
@_in_transaction
def roles_require_totp(session, state, name: str, required: str) -> None:
    """Require (on) or stop requiring (off) two-factor sign-in for role NAME."""
    from . import roles as svc

    svc.set_require_totp(session, name, required == "on")
    click.echo(f"{name}: two-factor sign-in {'required' if required == 'on' else 'not required'}")


@roles.command("assign")
@click.argument("email")
@click.argument("role")
@_in_transaction
def roles_assign(session, state, email: str, role: str) -> None:
    """Give the user EMAIL the role ROLE (roles add up)."""
    from . import roles as svc

    changed = svc.assign_role(session, email, role)
    click.echo(f"{email} {'now has' if changed else 'already has'} role {role}.")


@roles.command("unassign")
@click.argument("email")
@click.argument("role")
@_in_transaction
def roles_unassign(session, state, email: str, role: str) -> None:
    """Take the role ROLE from the user EMAIL."""
    from . import roles as svc

    changed = svc.unassign_role(session, email, role)
    click.echo(f"{email} {'no longer has' if changed else 'did not have'} role {role}.")


# --- teams -------------------------------------------------------------------


@click.group()
def teams() -> None:
    """Teams: who is in which (team scope shows a team's records)."""


@teams.command("list")
@_in_transaction
def teams_list(session, state) -> None:
    """List teams with their members."""
    from . import roles as svc

    found = svc.list_teams(session)
    if not found:
        click.echo("No teams.")
    for team in found:
        members = sorted(u.email for u in team.members)
        click.echo(f"{team.name:<24} {len(members):>4} members  {', '.join(members)}".rstrip())


@teams.command("create")
@click.argument("name")
@_in_transaction
def teams_create(session, state, name: str) -> None:
    """Create a team."""
    from . import roles as svc

    team = svc.create_team(session, name)
    click.echo(f"Created team {team.name}.")


@teams.command("add")
@click.argument("email")
@click.argument("team")
@_in_transaction
def teams_add(session, state, email: str, team: str) -> None:
    """Put the user EMAIL in TEAM (a user may be in several)."""
    from . import roles as svc

    changed = svc.add_to_team(session, email, team)
    click.echo(f"{email} {'added to' if changed else 'is already in'} {team}.")


@teams.command("remove")
@click.argument("email")
@click.argument("team")
@_in_transaction
def teams_remove(session, state, email: str, team: str) -> None:
    """Take the user EMAIL out of TEAM."""
    from . import roles as svc

    changed = svc.remove_from_team(session, email, team)
    click.echo(f"{email} {'removed from' if changed else 'was not in'} {team}.")
