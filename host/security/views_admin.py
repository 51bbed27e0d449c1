"""Admin pages for roles and teams (blueprint ``admin``, under ``/admin``).

The pages are a thin layer over ``host.security.roles``: every change goes
through the same service functions as ``mosaic roles`` and ``mosaic teams``,
so it is validated and written to the security log the same way.

Saving a role applies only what the admin changed on the page: the form
carries the state it was rendered with (``was_*`` fields), and a permission,
scope or flag is changed only where the submitted value differs from it. Two
admins editing the same role at once therefore do not undo each other's
changes, and a permission granted meanwhile is not revoked by a stale page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, get_flashed_messages, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext

from host.db import session as db_session
from host.i18n import N_

from . import roles as svc
from .access import require
from .models import SCOPES, Role, Team

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: The select value meaning "no setting for this type: the role's '*' applies".
DEFAULT_CHOICE = ""


def _declared() -> dict[str, Any]:
    return current_app.extensions["mosaic"].permissions


def _role_or_404(role_id: int) -> Role:
    role = db_session().get(Role, role_id)
    if role is None:
        abort(404)
    return role


def _by_plugin(names) -> list[tuple[str, list[str]]]:
    """Permission names grouped by plugin ("core" for the host's), sorted."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    return sorted(groups.items(), key=lambda item: (item[0] != "core", item[0]))


def _plugin_titles() -> dict[str, str]:
    state = current_app.extensions["mosaic"]
    titles = {p.name: p.info.title for p in state.plugins}
    titles["core"] = "Core"
    return titles


# --- roles -------------------------------------------------------------------------


@bp.get("/roles")
@require("core.role.read")
def roles():
    return _render_roles()


def _render_roles(status: int = 200, error: str | None = None, form: dict[str, str] | None = None):
    session = db_session()
    counts = svc.role_member_counts(session)
    rows = [
        {
            "role": role,
            "members": counts.get(role.id, 0),
            "permissions": len(svc.role_permissions(session, role)),
            "scope": svc.role_scopes(session, role).get(svc.DEFAULT_OBJECT_TYPE, "own"),
        }
        for role in svc.list_roles(session)
    ]
    body = render_template(
        "core/admin/roles.html",
        rows=rows,
        error=error,
        form=form or {"name": "", "description": ""},
        messages=get_flashed_messages(),
    )
    return body, status


@bp.post("/roles")
@require("core.role.update")
def create_role():
    form = {"name": request.form.get("name", ""), "description": request.form.get("description", "")}
    session = db_session()
    try:
        role = svc.create_role(session, form["name"], form["description"])
    except svc.RoleError as exc:
        session.rollback()
        return _render_roles(422, str(exc), form)
    session.commit()
    flash(gettext("Role %(name)s created. Grant it permissions below.", name=role.name), "success")
    return redirect(url_for("admin.role", role_id=role.id), 303)


@bp.get("/roles/<int:role_id>")
@require("core.role.read")
def role(role_id: int):
    return _render_role(_role_or_404(role_id))


def _render_role(role: Role, status: int = 200, error: str | None = None):
    session = db_session()
    declared = _declared()
    granted = set(svc.role_permissions(session, role))
    scopes = svc.role_scopes(session, role)
    body = render_template(
        "core/admin/role.html",
        role=role,
        groups=_by_plugin(declared),
        titles=_plugin_titles(),
        declared=declared,
        granted=granted,
        inactive=sorted(granted - set(declared)),
        scopes=scopes,
        default_scope=scopes.get(svc.DEFAULT_OBJECT_TYPE, "own"),
        object_types=svc.object_types(declared),
        scope_choices=SCOPES,
        members=svc.role_members(session, role),
        error=error,
        messages=get_flashed_messages(),
    )
    return body, status


@bp.post("/roles/<int:role_id>")
@require("core.role.update")
def save_role(role_id: int):
    """Apply the changes made on the role page (see the module docstring)."""
    session = db_session()
    role = _role_or_404(role_id)
    name = role.name
    try:
        changes = _apply_role_form(session, name, request.form)
    except svc.RoleError as exc:
        session.rollback()
        return _render_role(_role_or_404(role_id), 422, str(exc))
    session.commit()
    flash(ngettext("Saved %(name)s: %(num)d change.", "Saved %(name)s: %(num)d changes.", changes, name=name)
          if changes else gettext("Nothing changed."), "success")
    return redirect(url_for("admin.role", role_id=role_id), 303)


def _apply_role_form(session, name: str, form) -> int:
    """Grant, revoke, set scopes and the two-factor flag where the submitted
    form differs from the state it was rendered with; returns the count."""
    declared = _declared()
    was = set(form.getlist("was_permission"))
    wanted = set(form.getlist("permission"))
    changes = 0
    for permission in sorted(wanted - was):
        changes += svc.grant(session, name, permission, declared=declared)
    for permission in sorted(was - wanted):
        changes += svc.revoke(session, name, permission, declared=declared)
    for object_type in [svc.DEFAULT_OBJECT_TYPE, *svc.object_types(declared)]:
        field = f"scope:{object_type}"
        if field not in form:
            continue
        submitted, before = form[field], form.get(f"was_{field}", DEFAULT_CHOICE)
        if submitted != before:
            if object_type == svc.DEFAULT_OBJECT_TYPE and submitted == DEFAULT_CHOICE:
                raise svc.RoleError("the role's default scope must be own, team or all")
            svc.set_scope(session, name, object_type, submitted or None, declared=declared)
            changes += 1
    if "was_require_totp" in form:
        wanted_totp, was_totp = "require_totp" in form, form["was_require_totp"] == "1"
        if wanted_totp != was_totp:
            changes += svc.set_require_totp(session, name, wanted_totp)
    return changes


@bp.post("/roles/<int:role_id>/delete")
@require("core.role.update")
def delete_role(role_id: int):
    session = db_session()
    role = _role_or_404(role_id)
    name = role.name
    try:
        svc.delete_role(session, name)
    except svc.RoleError as exc:
        session.rollback()
        return _render_role(_role_or_404(role_id), 422, str(exc))
    session.commit()
    flash(gettext("Role %(name)s deleted.", name=name), "success")
    return redirect(url_for("admin.roles"), 303)


@bp.post("/roles/<int:role_id>/members")
@require("core.role.update")
def assign_role(role_id: int):
    return _member_change(role_id, svc.assign_role, N_("%(email)s now has this role."), N_("%(email)s already had this role."))


@bp.post("/roles/<int:role_id>/members/remove")
@require("core.role.update")
def unassign_role(role_id: int):
    return _member_change(role_id, svc.unassign_role, N_("%(email)s no longer has this role."), N_("%(email)s did not have this role."))


def _member_change(role_id: int, change, done: str, unchanged: str):
    session = db_session()
    role = _role_or_404(role_id)
    email = request.form.get("email", "").strip()
    try:
        changed = change(session, email, role.name)
    except svc.RoleError as exc:
        session.rollback()
        return _render_role(_role_or_404(role_id), 422, str(exc))
    session.commit()
    flash(gettext(done if changed else unchanged, email=email), "success")
    return redirect(url_for("admin.role", role_id=role_id), 303)


# --- teams -------------------------------------------------------------------------


@bp.get("/teams")
@require("core.team.read")
def teams():
    return _render_teams()


def _render_teams(status: int = 200, error: str | None = None, name: str = ""):
    session = db_session()
    body = render_template(
        "core/admin/teams.html",
        teams=svc.list_teams(session),
        error=error,
        name=name,
        messages=get_flashed_messages(),
    )
    return body, status


@bp.post("/teams")
@require("core.team.update")
def create_team():
    session = db_session()
    name = request.form.get("name", "")
    try:
        team = svc.create_team(session, name)
    except svc.RoleError as exc:
        session.rollback()
        return _render_teams(422, str(exc), name)
    session.commit()
    flash(gettext("Team %(name)s created.", name=team.name), "success")
    return redirect(url_for("admin.teams"), 303)


@bp.post("/teams/<int:team_id>/members")
@require("core.team.update")
def add_member(team_id: int):
    return _team_change(team_id, svc.add_to_team, N_("%(email)s added to %(team)s."), N_("%(email)s was already in %(team)s."))


@bp.post("/teams/<int:team_id>/members/remove")
@require("core.team.update")
def remove_member(team_id: int):
    return _team_change(team_id, svc.remove_from_team, N_("%(email)s removed from %(team)s."), N_("%(email)s was not in %(team)s."))


def _team_change(team_id: int, change, done: str, unchanged: str):
    session = db_session()
    team = session.get(Team, team_id) or abort(404)
    email = request.form.get("email", "").strip()
    try:
        changed = change(session, email, team.name)
    except svc.RoleError as exc:
        session.rollback()
        return _render_teams(422, str(exc))
    session.commit()
    flash(gettext(done if changed else unchanged, email=email, team=team.name), "success")
    return redirect(url_for("admin.teams"), 303)
