"""Background jobs: long work (imports, campaign sends, scheduled reports,
reminders) runs outside the request, and reports progress the UI and CLI show.

Plugins declare jobs through the ``mosaic_jobs`` hook (``hooks.JobDefinition``);
anyone starts one with ``enqueue(name, args)``. The ``job`` table is the truth
about every run (status, progress, result, error, attempts, heartbeat), so the
plugin's code path is the same wherever the job runs. Where it runs depends on
the configuration only:

``jobs_inline``
    synchronously inside ``enqueue`` (tests, scripts).
``redis_url`` set
    RQ on Redis. ``mosaic worker`` runs the RQ worker (one forked child per
    job, as RQ normally does) and the periodic scheduler; ``mosaic serve`` only
    recovers interrupted runs at start.
neither
    a daemon thread in the app process runs queued rows one at a time.
    ``mosaic serve`` starts it with the periodic scheduler (``start_in_process``);
    ``enqueue`` starts it lazily, so an app hosted by gunicorn runs its jobs too.
    Runners claim rows from the database, so a row queued by a process that
    died is run by any live one (or by ``mosaic worker``, which without Redis
    polls the database).

Every run is claimed with a conditional ``UPDATE ... WHERE status = 'queued'``,
so a job that is dispatched twice (a recovery racing a worker) still runs once.

A job acts as the user who started it (``user_id``, by default the acting
user of the request that enqueued it), resolved when the run starts, so a
user disabled meanwhile cannot act through it; a job nobody started (periodic
ones) acts as ``SYSTEM``.

Transactions: a job does its work in ``ctx.session`` (a writing session). The
runner commits it when the function returns and rolls it back when it raises.
A long job may commit in chunks itself (``ctx.session.commit()``): committed
chunks stay committed if a later step fails. Progress is written in its own
short transaction, never in ``ctx.session``'s, so readers see it at once. On
SQLite only one transaction writes at a time: while ``ctx.session`` holds its
write lock, progress is buffered and written as soon as that transaction ends
(committing in chunks is what makes progress live there). Nothing waits on its
own lock, so a job cannot deadlock itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from flask import Flask, current_app
from sqlalchemy import and_, delete, event as sa_event, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from hooks import JobDefinition

from .db import SQLITE_BUSY_TIMEOUT_MS, Database, utcnow
from .models import Job, JobPeriod

log = logging.getLogger("mosaic.jobs")

#: The RQ queue every Mosaic job goes through. One Redis database per install:
#: a worker runs whatever is in it against its own database.
QUEUE_NAME = "mosaic"
#: How often a running job's heartbeat is written when it reports nothing.
HEARTBEAT_SECONDS = 30.0
#: A running job on another host whose heartbeat is older is taken as dead.
STALE_AFTER = dt.timedelta(minutes=10)
#: Progress reported faster than this is coalesced (a job may call it per row).
PROGRESS_MIN_INTERVAL = 0.25
#: How soon coalesced or lock-blocked progress is written by the job's ticker.
FLUSH_SECONDS = 0.5
#: SQLite lock wait for best-effort progress writes (the full timeout is 10 s);
#: a write that cannot get the lock stays buffered and is retried.
PROGRESS_BUSY_MS = 1000
TICKER_BUSY_MS = 200
#: How often an idle in-process runner looks for rows queued by other processes.
POLL_SECONDS = 5.0
SCHEDULER_TICK_SECONDS = 5.0
#: Long imports must not hit RQ's default 180 s limit.
RQ_JOB_TIMEOUT = 24 * 3600
#: Period claims older than this many periods are deleted as new ones are made.
KEEP_PERIODS = 10
MAX_TEXT = 4000

STATUSES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")
INTERRUPTED_MESSAGE = "re-queued after interruption"

_FIELDS = (
    "id", "name", "args", "status", "backend", "done", "total", "message", "result", "error",
    "attempts", "max_attempts", "user_id", "worker", "created_at", "started_at", "finished_at",
    "heartbeat_at",
)


class UnknownJobError(KeyError):
    """``enqueue`` was given a name no enabled plugin declares."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = sorted(known)

    def __str__(self) -> str:  # KeyError would show the repr of the bare name
        known = ", ".join(self.known) or "none"
        return f"unknown job {self.name!r} (the enabled plugins declare: {known})"


# ---------------------------------------------------------------------------
# What a job function gets
# ---------------------------------------------------------------------------


class JobContext:
    """The first argument of a job function: ``func(ctx, **args)``.

    - ``session``: a writing session for the job's work, opened on first use.
      The runner commits it when the function returns and rolls it back when
      it raises; commit in chunks yourself for long jobs.
    - ``read_session``: a reading session; on SQLite it does not take the write
      lock, so a long report does not hold up every other writer.
    - ``progress(done, total=None, message=None)``: shown live by the UI and CLI.
    - ``enqueue(name, args)``: a follow-up job, dispatched when ``session`` commits.
    - ``job_id``, ``name``, ``user_id`` (who started it, or ``None``), ``app``,
      ``attempt`` (1 on the first run; higher when re-run after an interruption,
      so a job can skip work it finished before).
    - ``principal``: whom the job acts as (also ``current_principal()`` while
      it runs): its user, resolved when the run starts, or ``SYSTEM`` for a
      job nobody started (periodic ones). Filter records with
      ``scope_condition(ctx.principal, Model)`` as a request would.
    """

    def __init__(self, app: Flask, job_id: int, name: str, user_id: int | None, attempt: int):
        self.app = app
        self.job_id = job_id
        self.name = name
        self.user_id = user_id
        self.attempt = attempt
        self.principal: Any = None
        self._db: Database = _state(app).db
        self._session: Session | None = None
        self._read_session: Session | None = None
        self._holds_write_lock = False
        self._lock = threading.Lock()  # guards the fields below
        self._flush_lock = threading.Lock()  # keeps buffered writes in order
        self._pending: dict[str, Any] = {}
        self._last_write = 0.0
        self._last_beat = time.monotonic()

    @property
    def session(self) -> Session:
        if self._session is None:
            session = self._db.WriteSession()
            if self._db.is_sqlite:
                # Know when this session holds SQLite's write lock, so progress
                # is buffered instead of waiting for a lock its own job holds.
                sa_event.listen(session, "after_begin", self._on_begin)
                sa_event.listen(session, "after_transaction_end", self._on_end)
            self._session = session
        return self._session

    @property
    def read_session(self) -> Session:
        if self._read_session is None:
            self._read_session = self._db.Session()
        return self._read_session

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record how far the job is. ``total=None`` and ``message=None`` keep
        the previous values. Cheap to call often: writes are coalesced, and a
        failed write never fails the job (it is retried)."""
        values: dict[str, Any] = {"done": int(done)}
        if total is not None:
            values["total"] = int(total)
        if message is not None:
            values["message"] = str(message)[:MAX_TEXT]
        with self._lock:
            self._pending.update(values)
            due = time.monotonic() - self._last_write >= PROGRESS_MIN_INTERVAL
        if due:
            self._flush(PROGRESS_BUSY_MS)

    def enqueue(self, name: str, args: dict[str, Any] | None = None) -> int:
        """Queue a follow-up job in this job's transaction (it starts once
        ``session`` commits, and never if it rolls back)."""
        return enqueue(name, args, user_id=self.user_id, app=self.app, session=self.session)

    # -- runner side -------------------------------------------------------

    def _on_begin(self, _session, _transaction, _connection) -> None:
        with self._lock:
            self._holds_write_lock = True

    def _on_end(self, _session, transaction) -> None:
        if transaction.parent is None:
            with self._lock:
                self._holds_write_lock = False

    def _flush(self, busy_ms: int, *, heartbeat: bool = False) -> bool:
        """Write buffered progress (and a heartbeat) in a short transaction of
        its own; keep it buffered when the lock is not to be had right now."""
        with self._flush_lock:
            with self._lock:
                if self._holds_write_lock or not (self._pending or heartbeat):
                    return False
                values, self._pending = self._pending, {}
            values["heartbeat_at"] = utcnow()
            try:
                _write_job(self._db, self.job_id, values, busy_ms=busy_ms)
            except SQLAlchemyError as exc:
                with self._lock:
                    self._pending = {**values, **self._pending}  # newer values win
                log.debug("job %s #%s: progress not written yet (%s)", self.name, self.job_id, type(exc).__name__)
                return False
            with self._lock:
                self._last_write = self._last_beat = time.monotonic()
            return True

    def _tick(self) -> None:
        with self._lock:
            pending = bool(self._pending)
            beat_due = time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS
        if pending or beat_due:
            self._flush(TICKER_BUSY_MS, heartbeat=True)

    def _take_pending(self) -> dict[str, Any]:
        with self._lock:
            values, self._pending = self._pending, {}
        return values

    def _commit(self) -> None:
        if self._session is not None:
            self._session.commit()

    def _rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()

    def _close(self) -> None:
        for session in (self._session, self._read_session):
            if session is not None:
                session.close()


class _Ticker(threading.Thread):
    """Writes coalesced progress and the heartbeat while a job runs, so a job
    that reports rarely (or is inside a long SQLite transaction) still shows
    up-to-date progress soon after it becomes writable, and is seen alive."""

    def __init__(self, ctx: JobContext):
        super().__init__(daemon=True, name=f"mosaic-job-{ctx.job_id}-ticker")
        self.ctx = ctx
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.wait(FLUSH_SECONDS):
            try:
                self.ctx._tick()
            except Exception:  # the ticker must never take the job down
                log.exception("job #%s: heartbeat failed", self.ctx.job_id)

    def stop(self) -> None:
        self._finished.set()
        self.join(timeout=5)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def enqueue(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    user_id: int | None = None,
    app: Flask | None = None,
    session: Session | None = None,
) -> int:
    """Start job ``name`` with keyword arguments ``args``; return its id.

    ``app`` defaults to ``current_app``. ``args`` must be JSON-serialisable
    (a job may run in another process); the function receives them after a
    JSON round trip on every backend, so tuples arrive as lists everywhere.
    Raises ``UnknownJobError`` (a ``KeyError``) for a name no enabled plugin
    declares and ``TypeError`` naming the job for arguments that are not JSON.

    ``user_id`` defaults to the acting user (``current_principal()``), so a job
    started from a request sees what that user may see; a job with no user
    runs as ``SYSTEM``.

    With ``session``, the job row is written in that session's transaction and
    dispatched only after it commits. Use it when you hold a writing session
    (on SQLite a second writer in the same thread would wait for your lock).
    With ``jobs_inline``, the job has run when this returns; like on the other
    backends, its failure is recorded on the row, not raised.
    """
    app = _resolve_app(app)
    state = _state(app)
    backend = _backend(state)
    if user_id is None:
        user_id = _acting_user_id()
    job_id = _insert_job(app, name, args, user_id=user_id, backend=backend, session=session)
    if session is not None:
        _after_commit(session, functools.partial(_dispatch, app, job_id, backend))
    else:
        _dispatch(app, job_id, backend)
    return job_id


def get_job(job_id: int, app: Flask | None = None) -> dict[str, Any] | None:
    """The job row as a plain dict (datetimes aware UTC), or ``None``."""
    state = _state(_resolve_app(app))
    with state.db.Session() as session:
        row = session.get(Job, int(job_id))
        return _as_dict(row) if row is not None else None


def list_jobs(
    app: Flask | None = None, *, status: str | None = None, name: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest jobs first, optionally of one status and/or name."""
    state = _state(_resolve_app(app))
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    if name is not None:
        query = query.where(Job.name == name)
    with state.db.Session() as session:
        return [_as_dict(row) for row in session.scalars(query)]


def run_in_thread(
    app: Flask, name: str, args: dict[str, Any] | None = None, *, user_id: int | None = None
) -> tuple[int, threading.Thread]:
    """Run a job now, in a new thread of this process, whatever the backend;
    ``mosaic jobs run`` uses it to show progress while the job works."""
    if user_id is None:
        user_id = _acting_user_id()
    job_id = _insert_job(app, name, args, user_id=user_id, backend="inline")
    thread = threading.Thread(target=_run_safely, args=(app, job_id), daemon=True, name=f"mosaic-job-{job_id}")
    thread.start()
    return job_id, thread


def start_in_process(app: Flask) -> None:
    """Called by ``mosaic serve``: recover interrupted runs, then, unless Redis
    is configured (``mosaic worker`` runs jobs and the schedule then), start
    the in-process runner and the periodic scheduler threads."""
    recover_interrupted(app)
    if _state(app).config.redis_url:
        return
    runtime = _runtime(app)
    runtime.start_runner()
    runtime.start_scheduler()


def run_worker(app: Flask, burst: bool = False, *, worker_class: type | None = None) -> None:
    """Called by ``mosaic worker``: recover interrupted runs, then run jobs
    until stopped (``burst``: until none are left, after one scheduling pass).

    With Redis, an RQ worker (``worker_class``, default a forking
    ``rq.Worker``) plus the periodic scheduler in a thread. Without Redis, the
    database-polling runner in the foreground, for installs that keep jobs out
    of the web processes without running Redis.
    """
    state = _state(app)
    # Without Redis the loop below runs what recovery re-queues; a background
    # runner started for it could be cut off when a burst ends.
    _recover(app, STALE_AFTER, start_runner=bool(state.config.redis_url))
    runtime = _runtime(app)
    runtime.foreground = not state.config.redis_url
    if burst:
        run_due_periodic(app)
    else:
        runtime.start_scheduler()
    try:
        if state.config.redis_url:
            _work_rq(app, runtime, burst, worker_class)
        else:
            log.info("no Redis configured: running jobs queued in the database")
            _runner_loop(app, threading.Event(), threading.Event(), burst=burst)
    finally:
        runtime.foreground = False
        runtime.stop_scheduler()


def recover_interrupted(app: Flask, *, stale_after: dt.timedelta = STALE_AFTER) -> list[int]:
    """Find runs that died with their process and re-queue or fail them.

    Interrupted: ``running`` on this host with a dead pid, ``running`` on
    another host with a heartbeat older than ``stale_after``, or ``queued`` for
    an in-process runner by a process of this host that is gone. A run is
    re-queued (message "re-queued after interruption") while ``attempts <
    max_attempts``, else failed with "interrupted (gave up after N attempts)".
    Returns the ids it changed.
    """
    return _recover(app, stale_after, start_runner=True)


def _recover(app: Flask, stale_after: dt.timedelta, *, start_runner: bool) -> list[int]:
    state = _state(app)
    now = utcnow()
    candidates = or_(
        Job.status == "running",
        and_(Job.status == "queued", Job.backend.in_(("thread", "inline"))),
    )
    with state.db.Session() as session:
        rows = session.execute(
            select(Job.id, Job.name, Job.status, Job.worker, Job.attempts, Job.max_attempts,
                   Job.heartbeat_at, Job.started_at).where(candidates)
        ).all()
    changed = [row for row in rows if _is_interrupted(row, now, stale_after) and _recover_one(app, row)]
    # Dispatch only after every row is settled: a runner started for the first
    # row claims any queued row, and would otherwise race the later updates.
    backend = _backend(state)
    for row in changed:
        if row.attempts < row.max_attempts and (backend != "thread" or start_runner):
            try:
                _dispatch(app, row.id, backend)
            except Exception:
                log.exception("job %s #%s: could not re-dispatch", row.name, row.id)
    return [row.id for row in changed]


def run_due_periodic(app: Flask, now: float | dt.datetime | None = None) -> list[str]:
    """One scheduling pass: enqueue each periodic job whose current period
    (``int(now // every)``) no process has claimed yet; return their names.

    The claim is an insert into ``job_period`` whose unique key makes it atomic
    across processes, so the job runs once per period however many run this.
    """
    return _schedule_pass(app, _epoch(now))


def rq_perform(job_id: int) -> None:
    """The function RQ runs. Only the job id crosses Redis; the arguments are
    on the row, and the app (with the worker's plugin set) is this process's."""
    app, forked = _process_app()
    try:
        _run(app, int(job_id))
    finally:
        if forked:
            # A forked child exits right after one job: close what it opened.
            _state(app).db.engine.dispose()


# ---------------------------------------------------------------------------
# Creating and dispatching rows
# ---------------------------------------------------------------------------


def _state(app: Flask):
    return app.extensions["mosaic"]


def _resolve_app(app: Flask | None) -> Flask:
    return app if app is not None else current_app._get_current_object()


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _backend(state) -> str:
    if state.config.jobs_inline:
        return "inline"
    return "rq" if state.config.redis_url else "thread"


def _definition(state, name: str) -> JobDefinition:
    definition = state.jobs.get(name)
    if definition is None:
        raise UnknownJobError(name, list(state.jobs))
    return definition


def _json_args(name: str, args: Any) -> dict[str, Any]:
    """Check ``args`` the way another process would receive them, and return
    them as that process will see them."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise TypeError(f"job {name!r}: args must be a dict of keyword arguments, not {type(args).__name__}")
    for key in args:
        if not isinstance(key, str):
            raise TypeError(f"job {name!r}: argument names must be strings, not {key!r}")
    try:
        text = json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job {name!r}: arguments must be JSON-serialisable (it may run in another process): {exc}") from None
    return json.loads(text)


def _insert_job(
    app: Flask, name: str, args: Any, *, user_id: int | None, backend: str, session: Session | None = None
) -> int:
    state = _state(app)
    definition = _definition(state, name)
    row = Job(
        name=name,
        args=_json_args(name, args),
        status="queued",
        backend=backend,
        done=0,
        attempts=0,
        max_attempts=max(1, int(definition.max_attempts)),
        user_id=user_id,
        # For in-process rows: the process whose runner was told, so recovery
        # can tell a row left behind by a dead process.
        worker=None if backend == "rq" else _worker_id(),
        created_at=utcnow(),
    )
    if session is not None:
        session.add(row)
        session.flush()
        return row.id
    with state.db.transaction() as tx:
        tx.add(row)
        tx.flush()
        return row.id


_PENDING_KEY = "mosaic_pending_jobs"
_HOOKED_KEY = "mosaic_jobs_hooked"


def _after_commit(session: Session, dispatch: Callable[[], None]) -> None:
    """Dispatch once ``session``'s transaction commits; forget on rollback."""
    session.info.setdefault(_PENDING_KEY, []).append(dispatch)
    if not session.info.get(_HOOKED_KEY):
        session.info[_HOOKED_KEY] = True
        sa_event.listen(session, "after_commit", _dispatch_pending)
        sa_event.listen(session, "after_soft_rollback", _drop_pending)


def _dispatch_pending(session: Session) -> None:
    for dispatch in session.info.pop(_PENDING_KEY, []):
        try:
            dispatch()
        except Exception:
            log.exception("could not dispatch a job after commit")


def _drop_pending(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


def _dispatch(app: Flask, job_id: int, backend: str) -> None:
    if backend == "inline":
        _run(app, job_id)
    elif backend == "rq":
        _push_rq(app, job_id)
    else:
        runtime = _runtime(app)
        # A foreground worker (``mosaic worker`` without Redis) runs the queue
        # itself; a background runner started now could be cut off at its end.
        if not getattr(runtime, "foreground", False):
            runtime.start_runner()


def _import_rq():
    """rq and redis are optional: say how to get them when Redis is configured."""
    try:
        import rq
    except ImportError:
        raise RuntimeError("redis_url is set but the rq package is missing: pip install 'mosaic-crm[redis]'") from None
    return rq


def _push_rq(app: Flask, job_id: int) -> None:
    runtime = _runtime(app)
    try:
        _import_rq().Queue(QUEUE_NAME, connection=runtime.redis()).enqueue(
            rq_perform, job_id, job_timeout=RQ_JOB_TIMEOUT, result_ttl=0, description=f"mosaic job #{job_id}"
        )
    except Exception as exc:
        # The row is committed already: say why it will never run.
        _write_job(_state(app).db, job_id, {
            "status": "failed", "finished_at": utcnow(),
            "error": f"could not queue on Redis: {type(exc).__name__}: {exc}"[:MAX_TEXT],
        })
        raise


# ---------------------------------------------------------------------------
# Running one job
# ---------------------------------------------------------------------------


def _claim(db: Database, job_id: int) -> bool:
    """Move a queued row to running for this process; False if another
    process got it first or it is no longer queued."""
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", attempts=Job.attempts + 1, worker=_worker_id(),
                started_at=now, heartbeat_at=now, finished_at=None, error=None)
        .execution_options(synchronize_session=False)
    )
    with db.transaction() as session:
        return session.execute(stmt).rowcount == 1


def _run(app: Flask, job_id: int) -> None:
    if _claim(_state(app).db, job_id):
        _execute_claimed(app, job_id)


def _run_safely(app: Flask, job_id: int) -> None:
    try:
        _run(app, job_id)
    except Exception:
        log.exception("job #%s: the runner failed", job_id)


def _execute_claimed(app: Flask, job_id: int) -> None:
    state = _state(app)
    with state.db.Session() as session:
        row = session.get(Job, job_id)
        name, args, user_id, attempt = row.name, dict(row.args or {}), row.user_id, row.attempts
    definition = state.jobs.get(name)
    if definition is None:
        _finish(state.db, job_id, {"status": "failed", "error": f"unknown job {name!r}: no enabled plugin declares it"})
        return
    ctx = JobContext(app, job_id, name, user_id, attempt)
    ticker = _Ticker(ctx)
    ticker.start()
    log.info("job %s #%s started (attempt %s)", name, job_id, attempt)
    try:
        outcome = _call(app, definition, ctx, args)
    finally:
        ticker.stop()
        ctx._close()
    _finish(state.db, job_id, {**ctx._take_pending(), **outcome})
    log.info("job %s #%s %s", name, job_id, outcome["status"])


def _call(app: Flask, definition: JobDefinition, ctx: JobContext, args: dict[str, Any]) -> dict[str, Any]:
    """Run the function as its user and commit its session; the outcome as row values."""
    from .security.access import acting_as

    with app.app_context():
        try:
            ctx.principal = _principal_for(ctx._db, ctx.user_id)
            with acting_as(ctx.principal):
                value = definition.func(ctx, **args)
            ctx._commit()
        except Exception as exc:
            try:
                ctx._rollback()
            except Exception:
                log.exception("job %s #%s: rollback failed", ctx.name, ctx.job_id)
            # The traceback goes to the log; the arguments never do (secrets).
            log.exception("job %s #%s failed", ctx.name, ctx.job_id)
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:MAX_TEXT]}
    return {"status": "done", "result": _result(value)}


def _acting_user_id() -> int | None:
    from .security.access import current_principal

    principal = current_principal()
    return None if principal.system else principal.user_id


def _principal_for(db: Database, user_id: int | None):
    """Resolved when the run starts, not at enqueue: a user disabled (or
    stripped of a role) meanwhile must not act through a queued job."""
    from .security.access import SYSTEM, load_principal
    from .security.models import User

    if user_id is None:
        return SYSTEM
    with db.Session() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            raise PermissionError(f"user {user_id} is disabled or no longer exists")
        return load_principal(session, user)


def _result(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    payload = value if isinstance(value, dict) else {"value": value}
    try:
        return json.loads(json.dumps(payload, default=str, allow_nan=False))
    except (TypeError, ValueError):
        return {"value": repr(value)[:MAX_TEXT]}


def _finish(db: Database, job_id: int, values: dict[str, Any]) -> None:
    now = utcnow()
    try:
        _write_job(db, job_id, {**values, "finished_at": now, "heartbeat_at": now})
    except SQLAlchemyError:
        # The row stays "running"; recovery finds it once this process is gone.
        log.exception("job #%s: could not record its outcome %s", job_id, values.get("status"))


def _write_job(db: Database, job_id: int, values: dict[str, Any], *, busy_ms: int | None = None) -> None:
    """Update the job row in a transaction of its own. ``busy_ms`` shortens
    SQLite's lock wait for writes that may simply be retried later."""
    stmt = update(Job).where(Job.id == job_id).values(**values).execution_options(synchronize_session=False)
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(stmt)
        return
    with db.engine.execution_options(mosaic_immediate=True).connect() as conn:
        raw = conn.connection.driver_connection
        if busy_ms is not None:
            raw.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        try:
            with conn.begin():
                conn.execute(stmt)
        finally:
            if busy_ms is not None:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _as_dict(row: Job) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _FIELDS}


# ---------------------------------------------------------------------------
# Recovery
# ---------------------------------------------------------------------------


def _parse_worker(worker: str | None) -> tuple[str | None, int | None]:
    if not worker or ":" not in worker:
        return None, None
    host, _, pid = worker.rpartition(":")
    return host, int(pid) if pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _is_interrupted(row, now: dt.datetime, stale_after: dt.timedelta) -> bool:
    host, pid = _parse_worker(row.worker)
    here = host == socket.gethostname() and pid is not None
    if row.status == "queued":
        # Any live runner claims such rows anyway; this catches them for
        # re-dispatch (to RQ if Redis is configured now).
        return here and not _pid_alive(pid)
    if here:
        return not _pid_alive(pid)
    beat = row.heartbeat_at or row.started_at
    return beat is None or now - beat > stale_after


def _recover_one(app: Flask, row) -> bool:
    state = _state(app)
    requeue = row.attempts < row.max_attempts
    backend = _backend(state)
    if requeue:
        values = {"status": "queued", "backend": backend, "message": INTERRUPTED_MESSAGE, "heartbeat_at": None,
                  "worker": None if backend == "rq" else _worker_id()}
    else:
        values = {"status": "failed", "finished_at": utcnow(),
                  "error": f"interrupted (gave up after {row.attempts} attempts)"}
    # Conditional, so two processes recovering at once act only once.
    same_worker = Job.worker == row.worker if row.worker is not None else Job.worker.is_(None)
    stmt = (update(Job).where(Job.id == row.id, Job.status == row.status, same_worker)
            .values(**values).execution_options(synchronize_session=False))
    with state.db.transaction() as session:
        if session.execute(stmt).rowcount != 1:
            return False
    log.warning("job %s #%s was interrupted (worker %s): %s", row.name, row.id, row.worker,
                "re-queued" if requeue else values["error"])
    return True


# ---------------------------------------------------------------------------
# Periodic jobs
# ---------------------------------------------------------------------------


def _epoch(now: float | dt.datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one")
        return now.timestamp()
    return float(now)


def _schedule_pass(app: Flask, now: float, seen: dict[str, int] | None = None) -> list[str]:
    """Claim and enqueue due periods. ``seen`` (the scheduler thread's memory)
    skips periods this process has tried already, so an idle tick costs no SQL."""
    state = _state(app)
    started = []
    for definition in list(state.jobs.values()):
        if not definition.every or definition.every <= 0:
            continue
        period = int(now // definition.every)
        if seen is not None and seen.get(definition.name) == period:
            continue
        if _claim_period(state.db, definition.name, period):
            try:
                enqueue(definition.name, {}, app=app)
            except Exception:
                log.exception("periodic job %s: could not enqueue period %s", definition.name, period)
                _release_period(state.db, definition.name, period)  # let a later pass retry
                continue
            started.append(definition.name)
        if seen is not None:
            seen[definition.name] = period
    return started


def _claim_period(db: Database, name: str, period: int) -> bool:
    try:
        with db.transaction() as session:
            session.add(JobPeriod(name=name, period=period, claimed_by=_worker_id(), claimed_at=utcnow()))
            session.flush()
            session.execute(delete(JobPeriod).where(JobPeriod.name == name, JobPeriod.period < period - KEEP_PERIODS))
    except IntegrityError:
        return False  # another process has this period
    return True


def _release_period(db: Database, name: str, period: int) -> None:
    try:
        with db.transaction() as session:
            session.execute(delete(JobPeriod).where(JobPeriod.name == name, JobPeriod.period == period))
    except SQLAlchemyError:
        log.exception("periodic job %s: could not release period %s", name, period)


# ---------------------------------------------------------------------------
# Threads of one app in one process
# ---------------------------------------------------------------------------


class _Runtime:
    """The in-process runner, the scheduler and the Redis connection of one app."""

    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.scheduler_stopping = threading.Event()
        self.runner: threading.Thread | None = None
        self.scheduler: threading.Thread | None = None
        self._redis = None
        self._lock = threading.Lock()

    def start_runner(self) -> None:
        with self._lock:
            if self.stopping.is_set():
                return  # shutting down: the row waits in the database
            if self.runner is None or not self.runner.is_alive():
                self.runner = threading.Thread(
                    target=_runner_loop, args=(self.app, self.stopping, self.wake), daemon=True, name="mosaic-jobs-runner"
                )
                self.runner.start()
        self.wake.set()

    def start_scheduler(self) -> None:
        with self._lock:
            if self.stopping.is_set() or (self.scheduler is not None and self.scheduler.is_alive()):
                return
            self.scheduler_stopping.clear()
            self.scheduler = threading.Thread(
                target=_scheduler_loop, args=(self.app, self.scheduler_stopping), daemon=True, name="mosaic-jobs-scheduler"
            )
            self.scheduler.start()

    def stop_scheduler(self, timeout: float = 10) -> None:
        self.scheduler_stopping.set()
        if self.scheduler is not None:
            self.scheduler.join(timeout)

    def redis(self):
        with self._lock:
            if self._redis is None:
                from redis import Redis

                self._redis = Redis.from_url(_state(self.app).config.redis_url)
            return self._redis

    def stop(self, timeout: float = 10) -> None:
        """Stop the threads (a running job is waited for up to ``timeout``)."""
        self.stopping.set()
        self.wake.set()
        self.stop_scheduler(timeout)
        if self.runner is not None:
            self.runner.join(timeout)
        if self._redis is not None:
            self._redis.close()


_RUNTIME_LOCK = threading.Lock()


def _runtime(app: Flask) -> _Runtime:
    state = _state(app)
    runtime = getattr(state, "jobs_runtime", None)
    if runtime is not None:
        return runtime
    with _RUNTIME_LOCK:
        runtime = getattr(state, "jobs_runtime", None)
        if runtime is None:
            runtime = _Runtime(app)
            state.jobs_runtime = runtime
            state.stop_background = _chain(getattr(state, "stop_background", None), runtime.stop)
    return runtime


def _chain(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
    """Keep another subsystem's ``stop_background`` working next to ours."""
    if first is None:
        return second

    def both() -> None:
        try:
            first()
        finally:
            second()

    return both


def _runner_loop(app: Flask, stopping: threading.Event, wake: threading.Event, *, burst: bool = False) -> None:
    """Run queued in-process rows one at a time, oldest first. Rows are
    claimed from the database, so every process's runner shares one queue."""
    state = _state(app)
    while not stopping.is_set():
        wake.clear()  # before looking, so a job queued meanwhile wakes the wait
        try:
            job_id = _claim_next(state)
        except Exception:
            log.exception("job runner: cannot read the queue")
            job_id = None
        if job_id is not None:
            try:
                _execute_claimed(app, job_id)
            except Exception:
                log.exception("job #%s: the runner failed", job_id)
            continue
        if burst:
            return
        wake.wait(POLL_SECONDS)


def _claim_next(state) -> int | None:
    names = list(state.jobs)
    if not names:
        return None
    query = (select(Job.id)
             .where(Job.status == "queued", Job.backend == "thread", Job.name.in_(names))
             .order_by(Job.id).limit(10))
    with state.db.Session() as session:
        ids = list(session.scalars(query))
    return next((job_id for job_id in ids if _claim(state.db, job_id)), None)


def _scheduler_loop(app: Flask, stopping: threading.Event) -> None:
    seen: dict[str, int] = {}
    while True:
        try:
            _schedule_pass(app, time.time(), seen)
        except Exception:
            log.exception("job scheduler: pass failed")
        if stopping.wait(SCHEDULER_TICK_SECONDS):
            return


# ---------------------------------------------------------------------------
# RQ
# ---------------------------------------------------------------------------

#: The app of this process for ``rq_perform``, and the pid that registered it:
#: a forked child sees another pid and drops the connections it inherited.
_PROCESS_APP: dict[str, Any] = {}


def _register_process_app(app: Flask) -> None:
    _PROCESS_APP.update(app=app, pid=os.getpid())


def _process_app() -> tuple[Flask, bool]:
    """The app for a job in this process; ``True`` when it was forked."""
    app = _PROCESS_APP.get("app")
    if app is None:
        # Started by a plain `rq worker`: build the app as `mosaic` would.
        from . import create_app

        app = create_app()
        _register_process_app(app)
        return app, False
    if _PROCESS_APP["pid"] != os.getpid():
        # The parent's pooled connections are the parent's: never use or close them here.
        _state(app).db.engine.dispose(close=False)
        _PROCESS_APP["pid"] = os.getpid()
        return app, True
    return app, False


def _work_rq(app: Flask, runtime: _Runtime, burst: bool, worker_class: type | None) -> None:
    rq = _import_rq()
    _register_process_app(app)
    try:
        connection = runtime.redis()
        cls = worker_class or _mosaic_worker_class()
        worker = cls([rq.Queue(QUEUE_NAME, connection=connection)], connection=connection)
        worker.work(burst=burst)
    finally:
        if _PROCESS_APP.get("app") is app:
            _PROCESS_APP.clear()


@functools.lru_cache(maxsize=None)
def _mosaic_worker_class() -> type:
    class MosaicWorker(_import_rq().Worker):
        """RQ's forking worker; when a job's child dies (killed, out of
        memory), its row is recovered at once instead of at the next start."""

        def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
            super().handle_work_horse_killed(job, retpid, ret_val, rusage)
            app = _PROCESS_APP.get("app")
            if app is not None:
                try:
                    recover_interrupted(app)
                except Exception:
                    log.exception("could not recover after a killed job")

    return MosaicWorker


# --- housekeeping ------------------------------------------------------------------

#: Finished runs are kept this long for the UI and CLI, then pruned.
KEEP_FINISHED = dt.timedelta(days=14)


def prune_finished(ctx, days: int | None = None) -> dict[str, int]:
    """Delete finished job rows older than ``days`` (default 14): periodic jobs
    that run every few seconds would otherwise grow the table without end."""
    keep = dt.timedelta(days=days) if days is not None else KEEP_FINISHED
    cutoff = utcnow() - keep
    result = ctx.session.execute(
        delete(Job).where(Job.status.in_(("done", "failed")), Job.finished_at < cutoff)
    )
    return {"deleted": result.rowcount or 0}


def housekeeping_jobs() -> list[JobDefinition]:
    return [JobDefinition("core.prune_jobs", prune_finished, every=24 * 3600, description="Delete old finished job rows.")]
