"""The ``mosaic`` command line.

Only click is imported at module level so ``mosaic --help`` answers quickly;
each command builds the app (and imports Flask, SQLAlchemy ...) when it runs.
A misconfiguration prints its one line to stderr and exits with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

import click

STARTUP_FAILED = 2


class AppHolder:
    """Builds the app once per invocation, on first use."""

    def __init__(self) -> None:
        self._app = None

    def get(self):
        if self._app is None:
            from . import create_app
            from .errors import MosaicStartupError

            try:
                self._app = create_app()
            except MosaicStartupError as exc:
                click.echo(f"Error: {exc}", err=True)
                sys.exit(STARTUP_FAILED)
        return self._app


def with_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command inside an application context; pass the app first."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        app = ctx.ensure_object(AppHolder).get()
        with app.app_context():
            return ctx.invoke(func, app, *args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return click.decorators.update_wrapper(wrapper, func)


class MosaicGroup(click.Group):
    """Built-in commands, plus the ones enabled plugins add through ``mosaic_cli``
    (looked up only when a name is not built in, so ``--help`` stays fast)."""

    def get_command(self, ctx: click.Context, name: str):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        app = ctx.ensure_object(AppHolder).get()
        command = app.extensions["mosaic"].plugin_cli().get_command(ctx, name)
        if command is not None:
            ctx.with_resource(app.app_context())
        return command


@click.group(
    cls=MosaicGroup,
    epilog="Enabled plugins may add commands of their own; `mosaic plugins list` shows the plugins.",
)
@click.version_option(package_name="mosaic-crm", prog_name="mosaic")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Mosaic CRM: a customer-relationship system assembled from plugins.

    Configuration comes from MOSAIC_* environment variables and the instance
    folder's mosaic.toml (MOSAIC_INSTANCE, default ./instance)."""
    ctx.ensure_object(AppHolder)


# --- serve -----------------------------------------------------------------


@cli.command()
@click.option("--demo", is_flag=True, help="Migrate, seed demo data once, then serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
@with_app
def serve(app, demo: bool, host: str, port: int, threads: int) -> None:
    """Serve Mosaic with a production WSGI server (waitress)."""
    import waitress

    from . import jobs, migrate
    from .demo import demo_logins, ensure_demo_users, seed_demo_data

    state = app.extensions["mosaic"]
    if demo:
        migrate.upgrade(state)
        ensure_demo_users(app)
        seeded = seed_demo_data(app)
        if seeded:
            click.echo(f"Demo data added for: {', '.join(seeded)}")
    else:
        stale = [name for name, cur, head in migrate.current(state) if cur != head]
        if stale:
            click.echo(f"Error: the database is not migrated ({', '.join(stale)}): run `mosaic db upgrade`", err=True)
            sys.exit(1)
    jobs.start_in_process(app)

    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    click.echo(f"Mosaic CRM on http://{shown_host}:{port}/")
    click.echo(f"Instance folder: {state.config.instance_path}")
    click.echo(f"Plugins: {', '.join(state.pm.plugin_names) or 'none (host only)'}")
    for line in demo_logins(app) if demo else ():
        click.echo(line)
    waitress.serve(app, host=host, port=port, threads=threads, ident="mosaic", _quiet=True)


# --- db --------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database migrations (the host's, then each enabled plugin's)."""


@db.command("upgrade")
@with_app
def db_upgrade(app) -> None:
    """Migrate the host, then each enabled plugin, to the newest revision."""
    from . import migrate

    for name, before, after in migrate.upgrade(app.extensions["mosaic"]):
        change = f"{before or 'empty'} -> {after}" if before != after else f"at {after or 'no revisions'}"
        click.echo(f"{name}: {change}")


@db.command("current")
@with_app
def db_current(app) -> None:
    """Show each history's current and newest revision."""
    from . import migrate

    for name, cur, head in migrate.current(app.extensions["mosaic"]):
        mark = "" if cur == head else "  (needs upgrade)"
        click.echo(f"{name}: {cur or 'empty'} (head {head}){mark}")


@db.command("revision")
@click.argument("history")
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option("--empty", is_flag=True, help="Write an empty revision instead of comparing models.")
@with_app
def db_revision(app, history: str, message: str, empty: bool) -> None:
    """Write a new migration for HISTORY ("host" or a plugin name)."""
    from . import migrate

    try:
        migrate.revision(app.extensions["mosaic"], history, message, autogenerate=not empty)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None


# --- plugins ---------------------------------------------------------------


@cli.group()
def plugins() -> None:
    """Installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def plugins_list(as_json: bool) -> None:
    """List installed plugins: name, version, enabled, depends, description."""
    from .config import load_config
    from .errors import MosaicStartupError
    from .plugins import installed_candidates, load_info

    try:
        allow = load_config().plugins
        candidates = installed_candidates()
    except MosaicStartupError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(STARTUP_FAILED)
    rows = []
    for name in sorted(candidates):
        try:
            info = load_info(candidates[name])
            row = {"name": name, "version": info.version, "depends": list(info.depends), "description": info.description}
        except MosaicStartupError as exc:
            row = {"name": name, "version": None, "depends": [], "description": f"cannot be loaded: {exc}"}
        row["enabled"] = allow is None or name in allow
        rows.append({k: row[k] for k in ("name", "version", "enabled", "depends", "description")})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        flag = "enabled " if row["enabled"] else "disabled"
        deps = f" (depends: {', '.join(row['depends'])})" if row["depends"] else ""
        click.echo(f"{row['name']:<14} {row['version'] or '?':<8} {flag}  {row['description']}{deps}")


# --- worker, routes --------------------------------------------------------


@cli.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@with_app
def worker(app, burst: bool) -> None:
    """Run background jobs from Redis (RQ) and the periodic schedule."""
    from . import jobs

    jobs.run_worker(app, burst=burst)


@cli.command()
@with_app
def routes(app) -> None:
    """List every URL rule with its endpoint and methods."""
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
    for rule in rules:
        methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        click.echo(f"{rule.rule:<50} {methods:<20} {rule.endpoint}")


from .jobs_cli import jobs as jobs_group  # noqa: E402  (click only: --help stays fast)
cli.add_command(jobs_group)

from .security.tokens_cli import tokens as tokens_group  # noqa: E402
from .security.users_cli import users as users_group  # noqa: E402

cli.add_command(users_group)
cli.add_command(tokens_group)

from .security.roles_cli import roles as roles_group  # noqa: E402  (click only)
from .security.roles_cli import teams as teams_group  # noqa: E402

cli.add_command(roles_group)
cli.add_command(teams_group)

from .core.imports_cli import import_command  # noqa: E402  (click only)

cli.add_command(import_command)


def _configure_logging() -> None:
    """Log to stderr, unless something (a wrapper, the embedding program) set
    logging up first: without a handler, only warnings would show, through
    Python's last-resort handler, and INFO lines asked for (the plugin trace
    of ``MOSAIC_TRACE_PLUGINS=1``, set to INFO by ``create_app``) would vanish."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    _configure_logging()
    cli(prog_name="mosaic")


if __name__ == "__main__":  # pragma: no cover
    main()
