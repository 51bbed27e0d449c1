"""``mosaic import TYPE FILE``: import contacts, interactions, tasks (or a
plugin's type) from CSV or XLSX, as a job run in this process with a
progress bar.

    mosaic import contacts people.csv --dry-run --map "Full name=name" --as ann@example.com

It acts with the permissions and record scope of ``--as`` (default: the
first active admin), prints one line per rejected row, ``row N, column C:
message``, then a summary, and exits 1 when any row was rejected (or the
file could not be imported at all), 0 otherwise.

Only click is imported at module level (``mosaic --help`` stays fast).
"""

from __future__ import annotations

import functools
import shutil
import sys
from typing import Any, Callable

import click


def _with_app(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        from host.cli import AppHolder

        app = ctx.ensure_object(AppHolder).get()
        with app.app_context():
            return func(app, *args, **kwargs)

    return functools.update_wrapper(wrapper, func)


def _parse_map(pairs: tuple[str, ...]) -> dict[str, str | None] | None:
    if not pairs:
        return None
    mapping: dict[str, str | None] = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep or not column.strip():
            raise click.BadParameter(f"{pair!r} is not COLUMN=FIELD", param_hint="--map")
        mapping[column.strip()] = field.strip() or None
    return mapping


def _acting_user(app, email: str | None) -> Any:
    """The user the import acts as: ``--as``, else the first active admin."""
    from sqlalchemy import select

    from host.security.models import Role, User, UserRole

    state = app.extensions["mosaic"]
    with state.db.Session() as session:
        if email:
            user = session.scalar(select(User).where(User.email == email.strip().lower()))
            if user is None or not user.active:
                raise click.BadParameter(f"no active user {email}", param_hint="--as")
        else:
            user = session.scalar(select(User).join(UserRole, UserRole.user_id == User.id).join(Role, Role.id == UserRole.role_id)
                                  .where(Role.name == "admin", User.active.is_(True)).order_by(User.id).limit(1))
            if user is None:
                raise click.UsageError("no active admin to act as: create one (`mosaic users create EMAIL --role admin`) or pass --as")
        return user.id, user.email


@click.command("import")
@click.argument("type_key", metavar="TYPE")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--dry-run", is_flag=True, help="Validate every row and write nothing.")
@click.option("--map", "pairs", multiple=True, metavar="COLUMN=FIELD",
              help="Map a column to a field (repeatable); COLUMN= ignores the column. Others map by header name.")
@click.option("--as", "as_email", metavar="EMAIL", help="Act as this user (default: the first admin).")
@click.option("--on-duplicate", type=click.Choice(["report", "reject"]), default="report", show_default=True,
              help="Contacts: report possible duplicates, or reject those rows.")
@_with_app
def import_command(app, type_key: str, path: str, dry_run: bool, pairs: tuple[str, ...], as_email: str | None,
                   on_duplicate: str) -> None:
    """Import FILE (CSV UTF-8 or XLSX) as TYPE: contacts, interactions,
    tasks, or a type an enabled plugin adds."""
    from host import jobs
    from host.jobs_cli import _watch
    from host.security.access import load_principal
    from host.security.models import User

    from . import imports

    mapping = _parse_map(pairs)
    user_id, email = _acting_user(app, as_email)
    state = app.extensions["mosaic"]
    try:
        target = imports.get_target(type_key, state)
    except imports.ImportFileError as exc:
        raise click.BadParameter(exc.message, param_hint="TYPE") from None
    with state.db.Session() as session:
        principal = load_principal(session, session.get(User, user_id))
    if target.permission and not principal.can(target.permission):
        click.echo(f"Error: {email} may not import {type_key} (needs {target.permission}).", err=True)
        sys.exit(1)
    name = imports.new_upload_name(path)
    shutil.copyfile(path, imports.stored_path(app.instance_path, name))
    args = {"type": type_key, "stored_name": name, "filename": path, "mapping": mapping, "dry_run": dry_run,
            "on_duplicate": on_duplicate}
    job_id, thread = jobs.run_in_thread(app, imports.JOB_NAME, args, user_id=user_id)
    job = _watch(app, job_id, f"import {type_key}")
    thread.join()
    job = jobs.get_job(job_id, app)
    if job["status"] == "failed":
        click.echo(f"Error: {_without_class(job['error'])}", err=True)
        sys.exit(1)
    result = job["result"] or {}
    for item in result.get("rejected_rows", []):
        click.echo(f"row {item['row']}, column {item['column'] or '-'}: {item['message']}")
    if result.get("rejected_rows_truncated"):
        click.echo(f"(only the first {imports.MAX_REPORTED} rejections are listed; the rejected file has them all)")
    verb = "would be" if dry_run else "were"
    click.echo(f"{result.get('total', 0)} rows: {result.get('created', 0)} {verb} created, {result.get('updated', 0)} updated, "
               f"{result.get('unchanged', 0)} unchanged, {result.get('rejected', 0)} rejected.")
    if result.get("unknown_columns"):
        click.echo(f"Columns not imported: {', '.join(result['unknown_columns'])}")
    if result.get("rejected_file"):
        click.echo(f"Rejected rows: {imports.folder(app.instance_path) / result['rejected_file']}")
    sys.exit(1 if result.get("rejected") else 0)


def _without_class(error: str | None) -> str:
    """The job's error without the exception class the runner prefixes."""
    text = error or "the import failed"
    for prefix in ("ImportFileError: ", "PermissionError: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text
