"""``mosaic tokens``: personal API tokens from the command line.

Only click at module level: ``mosaic --help`` must stay fast."""

from __future__ import annotations

import sys

import click


def _app():
    from host.cli import AppHolder

    return click.get_current_context().ensure_object(AppHolder).get()


@click.group()
def tokens() -> None:
    """Personal API tokens for the REST API."""


@tokens.command("create")
@click.argument("email")
@click.option("--name", default="", help="What the token is for.")
@click.option("--read-only", is_flag=True, help="The token can only read.")
def create(email: str, name: str, read_only: bool) -> None:
    """Create a token for EMAIL; the token is printed once, alone on the last line."""
    from .tokens import create_token
    from .users import find_user

    app = _app()
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        user = find_user(session, email)
        if user is None or not user.active:
            click.echo(f"Error: no active user {email}", err=True)
            sys.exit(1)
        token, plain = create_token(session, user, name=name, read_only=read_only)
        click.echo(f"Token {token.prefix}… for {user.email} ({'read-only' if read_only else 'read-write'}); it is shown only now:")
    click.echo(plain)


@tokens.command("list")
@click.argument("email")
def list_tokens(email: str) -> None:
    """List EMAIL's tokens (never the tokens themselves)."""
    from sqlalchemy import select

    from .models import ApiToken
    from .users import find_user

    app = _app()
    with app.app_context(), app.extensions["mosaic"].db.transaction(write=False) as session:
        user = find_user(session, email)
        if user is None:
            click.echo(f"Error: no user {email}", err=True)
            sys.exit(1)
        for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)):
            state = "revoked" if token.revoked_at else ("read-only" if token.read_only else "read-write")
            used = token.last_used_at.isoformat(timespec="minutes") if token.last_used_at else "never used"
            click.echo(f"{token.id:>5}  {token.prefix}…  {state:<10}  {used}  {token.name}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
def revoke(token_id: int) -> None:
    """Revoke the token with TOKEN_ID."""
    from .models import ApiToken
    from .tokens import revoke_token

    app = _app()
    with app.app_context(), app.extensions["mosaic"].db.transaction() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            click.echo(f"Error: no token {token_id}", err=True)
            sys.exit(1)
        revoke_token(session, token)
    click.echo(f"Revoked token {token_id}.")
