"""``mosaic jobs``: list, show and run background jobs.

Only click is imported at module level, so ``mosaic --help`` stays fast; the
app, Flask and SQLAlchemy are loaded inside the commands. ``host.cli`` imports
this module while it is itself loading, so its helpers are imported lazily.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, Callable

import click

#: How often ``jobs run`` reads the job row while it waits.
POLL_SECONDS = 0.1
#: After this long in "queued", say who is expected to pick the job up.
QUEUED_HINT_AFTER = 2.0


def _with_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``host.cli.with_app``: run inside an application context, app first.

    The app comes from the context's ``AppHolder`` (tests pass their own as
    ``obj=``), built from the environment on first use otherwise."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        from .cli import AppHolder

        app = ctx.ensure_object(AppHolder).get()
        with app.app_context():
            return func(app, *args, **kwargs)

    return functools.update_wrapper(wrapper, func)


@click.group()
def jobs() -> None:
    """Background jobs: list them, show one, run one with a progress bar."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed"]), help="Only jobs in this status.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many, newest first.")
@_with_app
def list_command(app, status: str | None, limit: int) -> None:
    """List the newest jobs: id, status, progress, created, name, message."""
    from .jobs import list_jobs

    rows = list_jobs(app, status=status, limit=limit)
    if not rows:
        click.echo("No jobs.")
        return
    for job in rows:
        created = job["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        message = job["error"] if job["status"] == "failed" else job["message"]
        click.echo(f"{job['id']:>6}  {job['status']:<8} {_progress_text(job):>13}  {created}  {job['name']}  {message or ''}".rstrip())


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the row as JSON.")
@_with_app
def show_command(app, job_id: int, as_json: bool) -> None:
    """Show every field of job JOB_ID."""
    from .jobs import get_job

    job = get_job(job_id, app)
    if job is None:
        click.echo(f"Error: no job {job_id}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(job, default=str, indent=2))
        return
    for key, value in job.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key + ':':<14}{'' if value is None else value}")


@jobs.command("run")
@click.argument("name")
@click.option("--arg", "-a", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A job argument (repeatable). VALUE is read as JSON when it parses (3, true, [1,2]), else as text.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Show progress until the job ends, or only queue it.")
@_with_app
def run_command(app, name: str, pairs: tuple[str, ...], wait: bool) -> None:
    """Start job NAME and show its progress; exit 1 if it fails.

    Without Redis the job runs right here, in this process. With Redis it is
    queued for `mosaic worker`. --no-wait only queues it (without Redis, for
    the runner inside `mosaic serve` or `mosaic worker`)."""
    from . import jobs as jobs_api

    args = _parse_pairs(pairs)
    here = wait and not app.extensions["mosaic"].config.redis_url
    try:
        if here:
            job_id, thread = jobs_api.run_in_thread(app, name, args)
        else:
            job_id, thread = _queue(app, name, args), None
    except jobs_api.UnknownJobError as exc:
        raise click.UsageError(str(exc)) from None
    except TypeError as exc:
        raise click.BadParameter(str(exc), param_hint="--arg") from None
    if not wait:
        click.echo(f"Queued job {job_id} ({name}).")
        return
    try:
        job = _watch(app, job_id, name)
    except KeyboardInterrupt:
        where = "it dies with this process and is recovered at the next start" if here else "it goes on in the worker"
        click.echo(f"\nStopped watching job {job_id}: {where}.", err=True)
        sys.exit(130)
    if thread is not None:
        thread.join()
    _report(job)


def _queue(app, name: str, args: dict[str, Any]) -> int:
    """Queue without starting a runner in this short-lived process (it would
    die with the command): the row waits for the runner of a server or worker."""
    from . import jobs as jobs_api

    state = app.extensions["mosaic"]
    if state.config.redis_url or state.config.jobs_inline:
        return jobs_api.enqueue(name, args, app=app)
    return jobs_api._insert_job(app, name, args, user_id=None, backend="thread")


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--arg")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        args[key.strip()] = value
    return args


def _progress_text(job: dict[str, Any]) -> str:
    if job["total"]:
        return f"{job['done']}/{job['total']} ({100 * job['done'] // max(job['total'], 1)}%)"
    return str(job["done"]) if job["done"] else "-"


def _watch(app, job_id: int, label: str) -> dict[str, Any]:
    """Follow the job row until it ends: a progress bar on a terminal, a line
    per change otherwise (logs, pipes), where click's bar shows nothing."""
    from .jobs import get_job

    tty = sys.stdout.isatty()
    bar = None
    shown_done = 0
    last_line = None
    started = time.monotonic()
    hinted = False
    try:
        while True:
            job = get_job(job_id, app)
            if job["total"] and bar is None:
                bar = click.progressbar(length=job["total"], label=label, show_pos=True, show_percent=True)
                bar.__enter__()
            if bar is not None:
                bar.length = max(job["total"] or 0, 1)
                done = min(job["done"], bar.length)
                if done > shown_done:
                    bar.update(done - shown_done)
                    shown_done = done
            line = f"{label}: {_progress_text(job)} {job['message'] or ''}".rstrip()
            if not tty and line != last_line and job["status"] != "queued":
                click.echo(line)
                last_line = line
            if job["status"] in ("done", "failed"):
                return job
            if job["status"] == "queued" and not hinted and time.monotonic() - started > QUEUED_HINT_AFTER:
                click.echo(f"Job {job_id} is queued, waiting for a worker (`mosaic worker`)...", err=True)
                hinted = True
            time.sleep(POLL_SECONDS)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _report(job: dict[str, Any]) -> None:
    if job["status"] == "failed":
        click.echo(f"Error: job {job['id']} ({job['name']}) failed: {job['error']}", err=True)
        sys.exit(1)
    result = "" if job["result"] is None else f": {json.dumps(job['result'])}"
    click.echo(f"Job {job['id']} ({job['name']}) done{result}")
