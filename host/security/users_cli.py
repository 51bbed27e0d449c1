"""``mosaic users``: accounts from the command line (the first admin, above all).

Only click at module level: ``mosaic --help`` must stay fast."""

from __future__ import annotations

import sys

import click


def _app():
    from host.cli import AppHolder

    return click.get_current_context().ensure_object(AppHolder).get()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; the newline that ends it is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.group()
def users() -> None:
    """User accounts."""


@users.command("create")
@click.argument("email")
@click.option("--role", "roles", multiple=True, default=("staff",), show_default=True, help="Role (repeatable).")
@click.option("--name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create(email: str, roles: tuple[str, ...], name: str, password_stdin: bool) -> None:
    """Create a user; e.g. the first admin: mosaic users create ana@example.com --role admin"""
    from .users import AccountError, create_user

    password = _read_password(password_stdin)
    app = _app()
    try:
        with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
            user = create_user(session, email, password, roles=roles, display_name=name)
            click.echo(f"Created {user.email} with role(s) {', '.join(roles)}.")
    except AccountError as exc:
        _fail(str(exc))


@users.command("list")
def list_users() -> None:
    """List users with their roles."""
    from sqlalchemy import select

    from .models import User

    app = _app()
    with app.app_context(), app.extensions["mosaic"].db.transaction(write=False) as session:
        for user in session.scalars(select(User).order_by(User.email)):
            roles = ",".join(sorted(r.name for r in user.roles)) or "-"
            click.echo(f"{user.email:<40} {'active' if user.active else 'inactive':<9} {roles}")


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password_command(email: str, password_stdin: bool) -> None:
    """Set EMAIL's password (ends their sessions everywhere)."""
    from . import seclog
    from .users import AccountError, find_user, set_password

    password = _read_password(password_stdin)
    app = _app()
    try:
        with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
            user = find_user(session, email) or _fail(f"no user {email}")
            set_password(user, password)
            seclog.record(session, "password.change", subject_user_id=user.id, detail={"by": "cli"})
    except AccountError as exc:
        _fail(str(exc))
    click.echo(f"Password changed for {email}.")


@users.command("deactivate")
@click.argument("email")
@click.option("--to", "colleague", help="A colleague who receives EMAIL's records.")
def deactivate(email: str, colleague: str | None) -> None:
    """Deactivate EMAIL, ending their sessions and tokens, and hand their records over."""
    from . import seclog
    from .users import AccountError, deactivate_user, find_user

    app = _app()
    if colleague is None and sys.stdin.isatty():
        colleague = click.prompt("Hand their records over to (e-mail, empty to keep them)", default="", show_default=False) or None
    try:
        with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
            user = find_user(session, email) or _fail(f"no user {email}")
            receiver = None
            if colleague:
                receiver = find_user(session, colleague) or _fail(f"no user {colleague}")
            moved = deactivate_user(session, user, receiver)
            seclog.record(session, "user.deactivate", subject_user_id=user.id,
                          detail={"hand_over_to": receiver.id if receiver else None, "moved": moved})
    except AccountError as exc:
        _fail(str(exc))
    total = sum(moved.values())
    click.echo(f"Deactivated {email}." + (f" {total} record(s) now belong to {colleague}." if colleague else ""))
