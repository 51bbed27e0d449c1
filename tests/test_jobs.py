"""Background jobs (host.jobs): the thread, inline and RQ backends, progress,
failures, periodic runs across processes, recovery of interrupted runs, and
`mosaic jobs`. Real SQLite/PostgreSQL and a real Redis; no mocks."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hooks import JobDefinition, hookimpl
from host import jobs
from host.cli import AppHolder, cli
from host.db import utcnow
from host.models import Job, JobPeriod, Setting
from host.security.access import Principal, acting_as, current_principal
from host.security.models import User
from host.testing import plugin_candidate

PLUGIN = "jobtest"


# --- helpers ---------------------------------------------------------------


def jobs_plugin(*definitions: JobDefinition):
    class Hooks:
        @hookimpl
        def mosaic_jobs():
            return list(definitions)

    return plugin_candidate(PLUGIN, Hooks)


@pytest.fixture
def jobs_app(make_app):
    """An app whose only plugin declares the given jobs."""

    def factory(*definitions: JobDefinition, **config):
        return make_app(plugins=[PLUGIN], extra_plugins=[jobs_plugin(*definitions)], **config)

    return factory


def own(names):
    """The host declares periodic jobs of its own; these tests watch theirs."""
    return [name for name in names if name.startswith("jobtest.")]


def wait_for(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_job(app, job_id: int, timeout: float = 10.0) -> dict:
    return wait_for(
        lambda: (job := jobs.get_job(job_id, app))["status"] in ("done", "failed") and job,
        timeout,
        f"job {job_id} to finish",
    )


def db_of(app):
    return app.extensions["mosaic"].db


def settings_with_prefix(app, prefix: str) -> dict:
    with db_of(app).Session() as session:
        rows = session.scalars(select(Setting).where(Setting.key.startswith(prefix)))
        return {row.key: row.value for row in rows}


def insert_job(app, name: str, **values) -> int:
    fields = dict(name=name, args={}, status="queued", backend="thread", done=0, attempts=0,
                  max_attempts=3, created_at=utcnow())
    fields.update(values)
    with db_of(app).transaction() as session:
        row = Job(**fields)
        session.add(row)
        session.flush()
        return row.id


def make_user(app, email: str, active: bool = True) -> int:
    with db_of(app).transaction() as session:
        user = User(email=email, active=active)
        session.add(user)
        session.flush()
        return user.id


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@contextmanager
def restored_signals():
    """RQ's worker installs its own SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class Holder(AppHolder):
    """Hands the test's app to `mosaic` commands instead of building one."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    def get(self):
        return self.app


# --- job functions -----------------------------------------------------------


def count_rows(ctx, n=3, prefix="row"):
    """Writes rows inside its open transaction and reports progress per row."""
    for i in range(n):
        ctx.session.add(Setting(key=f"{prefix}-{ctx.job_id}-{i}", value=i))
        ctx.session.flush()  # on SQLite this session now holds the write lock
        ctx.progress(i + 1, n, f"row {i + 1} of {n}")
    return {"count": n}


def boom(ctx, password=None):
    ctx.session.add(Setting(key=f"boom-{ctx.job_id}", value=1))
    ctx.session.flush()
    ctx.progress(1, 2, "half way")
    raise ValueError("boom: cannot parse row 7")


def answer(ctx, x=None):
    return 42


# --- backends ----------------------------------------------------------------


def test_thread_backend_runs_a_job_with_progress_and_result(jobs_app):
    app = jobs_app(JobDefinition("jobtest.count", count_rows))
    with app.app_context():  # current_app is the default app
        job_id = jobs.enqueue("jobtest.count", {"n": 3, "prefix": "t"})

    job = wait_job(app, job_id)

    assert job["status"] == "done", job["error"]
    assert job["backend"] == "thread"
    assert (job["done"], job["total"], job["message"]) == (3, 3, "row 3 of 3")
    assert job["result"] == {"count": 3}
    assert (job["attempts"], job["error"]) == (1, None)
    assert job["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        assert job[key].utcoffset() == dt.timedelta(0), key
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert len(settings_with_prefix(app, f"t-{job_id}-")) == 3  # the runner committed the work


def test_a_failing_job_records_the_error_and_rolls_back_its_work(jobs_app, caplog):
    app = jobs_app(JobDefinition("jobtest.boom", boom))
    caplog.set_level(logging.INFO, logger="mosaic.jobs")

    job_id = jobs.enqueue("jobtest.boom", {"password": "s3cret-value"}, app=app)
    job = wait_job(app, job_id)

    assert job["status"] == "failed"
    assert job["error"] == "ValueError: boom: cannot parse row 7"
    assert job["attempts"] == 1 and job["finished_at"] is not None
    assert (job["done"], job["total"], job["message"]) == (1, 2, "half way")
    assert settings_with_prefix(app, f"boom-{job_id}") == {}
    failure = [r for r in caplog.records if r.levelno == logging.ERROR and f"#{job_id} failed" in r.getMessage()]
    assert failure and failure[0].exc_info is not None  # the traceback is logged
    assert "s3cret-value" not in caplog.text  # arguments never are


def test_progress_is_visible_from_another_session_while_the_job_runs(jobs_app):
    reached, release = threading.Event(), threading.Event()

    def chunked(ctx):
        ctx.session.add(Setting(key=f"chunk-{ctx.job_id}", value=1))
        ctx.session.commit()  # a committed chunk; the job goes on
        ctx.progress(1, 2, "first chunk committed")
        reached.set()
        assert release.wait(10)
        ctx.progress(2, 2, "all chunks committed")
        return {"chunks": 2}

    app = jobs_app(JobDefinition("jobtest.chunked", chunked))
    job_id = jobs.enqueue("jobtest.chunked", app=app)
    try:
        assert reached.wait(10)
        job = wait_for(lambda: (j := jobs.get_job(job_id, app))["done"] == 1 and j, what="live progress")
        assert (job["status"], job["total"], job["message"]) == ("running", 2, "first chunk committed")
        assert settings_with_prefix(app, f"chunk-{job_id}") == {f"chunk-{job_id}": 1}
    finally:
        release.set()
    job = wait_job(app, job_id)
    assert (job["status"], job["done"], job["message"]) == ("done", 2, "all chunks committed")


def test_progress_inside_the_jobs_open_transaction_never_waits_for_its_own_lock(jobs_app):
    """On SQLite the job's session holds the write lock from its first flush:
    progress must be buffered, not wait for that lock (a second per call)."""
    app = jobs_app(JobDefinition("jobtest.count", count_rows))
    started = time.monotonic()
    job_id = jobs.enqueue("jobtest.count", {"n": 30, "prefix": "lock"}, app=app)
    job = wait_job(app, job_id)

    assert job["status"] == "done", job["error"]
    assert time.monotonic() - started < 5
    assert (job["done"], job["total"], job["message"]) == (30, 30, "row 30 of 30")
    assert len(settings_with_prefix(app, f"lock-{job_id}-")) == 30


def test_progress_during_an_open_transaction_is_live_on_postgresql_and_buffered_on_sqlite(jobs_app):
    reached, release = threading.Event(), threading.Event()

    def open_transaction(ctx):
        ctx.session.add(Setting(key=f"open-{ctx.job_id}", value=1))
        ctx.session.flush()
        ctx.progress(1, 2, "inside the transaction")
        reached.set()
        assert release.wait(10)
        return None

    app = jobs_app(JobDefinition("jobtest.open", open_transaction))
    job_id = jobs.enqueue("jobtest.open", app=app)
    try:
        assert reached.wait(10)
        if db_of(app).is_sqlite:
            time.sleep(2 * jobs.FLUSH_SECONDS)  # the ticker tried, and left the lock alone
            assert jobs.get_job(job_id, app)["done"] == 0
        else:
            wait_for(lambda: jobs.get_job(job_id, app)["done"] == 1, what="progress on PostgreSQL")
    finally:
        release.set()
    job = wait_job(app, job_id)
    assert (job["status"], job["done"], job["message"], job["result"]) == ("done", 1, "inside the transaction", None)


def test_heartbeat_is_written_while_a_quiet_job_runs(jobs_app, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(jobs, "FLUSH_SECONDS", 0.05)
    release = threading.Event()

    def quiet(ctx):
        assert release.wait(10)

    app = jobs_app(JobDefinition("jobtest.quiet", quiet))
    job_id = jobs.enqueue("jobtest.quiet", app=app)
    try:
        first = wait_for(lambda: (j := jobs.get_job(job_id, app))["status"] == "running" and j)["heartbeat_at"]
        wait_for(lambda: jobs.get_job(job_id, app)["heartbeat_at"] > first, what="a newer heartbeat")
    finally:
        release.set()
    assert wait_job(app, job_id)["status"] == "done"


def test_jobs_inline_runs_the_job_inside_enqueue(jobs_app):
    seen = {}

    def record(ctx, x):
        seen.update(thread=threading.get_ident(), x=x, user_id=ctx.user_id)
        return 42

    app = jobs_app(JobDefinition("jobtest.record", record), jobs_inline=True)
    user_id = make_user(app, "inline@example.com")
    job_id = jobs.enqueue("jobtest.record", {"x": (1, 2)}, user_id=user_id, app=app)

    job = jobs.get_job(job_id, app)
    assert job["status"] == "done", job["error"]
    assert (job["backend"], job["result"], job["user_id"]) == ("inline", {"value": 42}, user_id)
    # Same thread, and the arguments went through JSON as on every backend.
    assert seen == {"thread": threading.get_ident(), "x": [1, 2], "user_id": user_id}
    runtime = getattr(app.extensions["mosaic"], "jobs_runtime", None)
    assert runtime is None or runtime.runner is None


def test_a_job_acts_as_the_user_who_started_it_or_as_the_system(jobs_app):
    def whoami(ctx):
        principal = current_principal()
        assert principal is ctx.principal
        return {"user_id": principal.user_id, "system": principal.system, "email": principal.email}

    app = jobs_app(JobDefinition("jobtest.whoami", whoami), jobs_inline=True)
    alice = make_user(app, "alice@example.com")
    bob = make_user(app, "bob@example.com", active=False)

    as_alice = jobs.get_job(jobs.enqueue("jobtest.whoami", user_id=alice, app=app), app)
    assert as_alice["result"] == {"user_id": alice, "system": False, "email": "alice@example.com"}
    # Started while Alice acts (a request of hers): the job is hers by default.
    with acting_as(Principal(user_id=alice)):
        inherited = jobs.get_job(jobs.enqueue("jobtest.whoami", app=app), app)
    assert (inherited["user_id"], inherited["result"]["user_id"]) == (alice, alice)
    # Nobody started it (a periodic job): the system.
    assert jobs.get_job(jobs.enqueue("jobtest.whoami", app=app), app)["result"]["system"] is True
    # A disabled user cannot act through a queued job.
    refused = jobs.get_job(jobs.enqueue("jobtest.whoami", user_id=bob, app=app), app)
    assert (refused["status"], refused["error"]) == ("failed", f"PermissionError: user {bob} is disabled or no longer exists")
    assert current_principal().user_id is None  # nothing leaked into the caller


def test_unknown_job_and_non_json_arguments_are_clear_errors(jobs_app):
    app = jobs_app(JobDefinition("jobtest.answer", answer))

    with pytest.raises(KeyError) as unknown:
        jobs.enqueue("jobtest.nope", app=app)
    message = str(unknown.value)
    assert message.startswith("unknown job 'jobtest.nope' (the enabled plugins declare: ") and "jobtest.answer" in message
    with pytest.raises(TypeError, match=r"^job 'jobtest.answer': arguments must be JSON-serialisable"):
        jobs.enqueue("jobtest.answer", {"x": utcnow()}, app=app)
    with pytest.raises(TypeError, match=r"^job 'jobtest.answer': args must be a dict"):
        jobs.enqueue("jobtest.answer", [1], app=app)
    with pytest.raises(TypeError, match=r"^job 'jobtest.answer': argument names must be strings"):
        jobs.enqueue("jobtest.answer", {1: "x"}, app=app)
    assert jobs.list_jobs(app) == []


def test_enqueue_in_a_transaction_starts_only_after_commit(jobs_app):
    def chain(ctx):
        ctx.session.add(Setting(key=f"chain-{ctx.job_id}", value=1))
        ctx.session.flush()  # holds SQLite's write lock: a plain enqueue here would wait for it
        ctx.enqueue("jobtest.answer", {"x": "follow-up"})
        return {"chained": True}

    app = jobs_app(JobDefinition("jobtest.answer", answer), JobDefinition("jobtest.chain", chain))
    db = db_of(app)

    with pytest.raises(RuntimeError):
        with db.transaction() as session:
            jobs.enqueue("jobtest.answer", app=app, session=session)
            raise RuntimeError("the caller's transaction rolls back")
    assert jobs.list_jobs(app) == []

    with db.transaction() as session:
        job_id = jobs.enqueue("jobtest.chain", app=app, session=session)
        assert jobs.get_job(job_id, app) is None  # not committed yet
    started = time.monotonic()
    assert wait_job(app, job_id)["result"] == {"chained": True}
    follow_up = wait_for(lambda: [j for j in jobs.list_jobs(app, name="jobtest.answer") if j["status"] == "done"])
    assert follow_up[0]["args"] == {"x": "follow-up"} and follow_up[0]["result"] == {"value": 42}
    assert time.monotonic() - started < 5


# --- RQ ----------------------------------------------------------------------


def test_rq_backend_end_to_end(jobs_app, redis_url):
    from redis import Redis
    from rq import Queue, SimpleWorker

    app = jobs_app(JobDefinition("jobtest.count", count_rows), redis_url=redis_url)
    job_id = jobs.enqueue("jobtest.count", {"n": 4, "prefix": "rq"}, app=app)

    queued = jobs.get_job(job_id, app)
    assert (queued["status"], queued["backend"], queued["worker"]) == ("queued", "rq", None)
    connection = Redis.from_url(redis_url)
    try:
        queue = Queue(jobs.QUEUE_NAME, connection=connection)
        assert queue.count == 1
        jobs._push_rq(app, job_id)  # dispatched twice (a recovery racing): still runs once
        assert queue.count == 2
        with restored_signals():
            jobs.run_worker(app, burst=True, worker_class=SimpleWorker)
        assert queue.count == 0
    finally:
        connection.close()

    job = jobs.get_job(job_id, app)
    assert job["status"] == "done", job["error"]
    assert (job["done"], job["total"], job["result"], job["attempts"]) == (4, 4, {"count": 4}, 1)
    assert len(settings_with_prefix(app, f"rq-{job_id}-")) == 4


def test_rq_forking_worker_runs_jobs_in_a_child_and_recovers_a_killed_one(jobs_app, redis_url):
    def fragile(ctx):
        if ctx.attempt == 1:
            os._exit(1)  # the work horse dies, as if killed for memory
        pool = id(ctx.app.extensions["mosaic"].db.engine.pool)
        ctx.session.add(Setting(key=f"fragile-{ctx.job_id}", value={"pid": os.getpid(), "pool": pool}))
        ctx.progress(1, 1, "survived")
        return {"attempt": ctx.attempt}

    app = jobs_app(JobDefinition("jobtest.fragile", fragile, max_attempts=3), redis_url=redis_url)
    job_id = jobs.enqueue("jobtest.fragile", app=app)
    with restored_signals():
        jobs.run_worker(app, burst=True)  # rq.Worker: one forked child per job

    job = jobs.get_job(job_id, app)
    assert job["status"] == "done", job["error"]
    assert (job["attempts"], job["result"], job["message"]) == (2, {"attempt": 2}, "survived")
    child = settings_with_prefix(app, f"fragile-{job_id}")[f"fragile-{job_id}"]
    assert child["pid"] != os.getpid()
    assert job["worker"] == f"{socket.gethostname()}:{child['pid']}"
    # The child dropped the connections it inherited and opened its own.
    assert child["pool"] != id(db_of(app).engine.pool)


# --- periodic jobs -------------------------------------------------------------


def test_a_periodic_job_runs_once_per_period_however_many_workers(jobs_app):
    runs, lock = [], threading.Lock()

    def tick(ctx):
        with lock:
            runs.append(ctx.job_id)

    definition = JobDefinition("jobtest.tick", tick, every=60)
    workers = {"a": jobs_app(definition, jobs_inline=True), "b": jobs_app(definition, jobs_inline=True, migrate=False)}
    start = 1_800_000_000.0 + 5  # the first second of a 60 s period, plus 5

    def both_at(now):
        barrier, results = threading.Barrier(2), {}

        def work(key, app):
            barrier.wait()
            results[key] = own(jobs.run_due_periodic(app, now=now))

        threads = [threading.Thread(target=work, args=item) for item in workers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        return sorted(results.values())

    assert both_at(start) == [[], ["jobtest.tick"]]
    assert len(runs) == 1
    assert both_at(start + 30) == [[], []]  # same period
    assert len(runs) == 1
    assert both_at(start + 60) == [[], ["jobtest.tick"]]
    assert len(runs) == 2
    later = dt.datetime.fromtimestamp(start + 120, dt.timezone.utc)
    assert own(jobs.run_due_periodic(workers["a"], now=later)) == ["jobtest.tick"]
    assert len(runs) == 3

    with db_of(workers["a"]).Session() as session:
        periods = session.scalars(select(JobPeriod.period).where(JobPeriod.name == "jobtest.tick")).all()
        assert sorted(periods) == [30_000_000, 30_000_001, 30_000_002]
        done = select(func.count()).select_from(Job).where(Job.status == "done", Job.name == "jobtest.tick")
        assert session.scalar(done) == 3


def test_start_in_process_runs_the_schedule_and_the_queue(jobs_app):
    runs = []
    app = jobs_app(JobDefinition("jobtest.hourly", lambda ctx: runs.append(ctx.job_id), every=3600))

    jobs.start_in_process(app)

    wait_for(lambda: runs, what="the periodic job")
    job = wait_job(app, runs[0])
    assert (job["status"], job["backend"]) == ("done", "thread")
    assert own(jobs.run_due_periodic(app)) == []  # this period is taken


# --- interrupted runs ----------------------------------------------------------


def test_recover_interrupted_requeues_and_reruns_or_gives_up(jobs_app):
    attempts = {}

    def work(ctx):
        attempts[ctx.job_id] = ctx.attempt
        return {"attempt": ctx.attempt}

    app = jobs_app(JobDefinition("jobtest.work", work, max_attempts=3))
    here, gone, hour_ago = socket.gethostname(), dead_pid(), utcnow() - dt.timedelta(hours=1)
    ids = {
        "dead pid": insert_job(app, "jobtest.work", status="running", worker=f"{here}:{gone}", attempts=1,
                               started_at=utcnow(), heartbeat_at=utcnow()),
        "stale elsewhere": insert_job(app, "jobtest.work", status="running", worker="elsewhere.example:4242",
                                      attempts=1, started_at=hour_ago, heartbeat_at=hour_ago),
        "exhausted": insert_job(app, "jobtest.work", status="running", worker=f"{here}:{gone}", attempts=3,
                                started_at=hour_ago, heartbeat_at=hour_ago),
        "left queued": insert_job(app, "jobtest.work", status="queued", worker=f"{here}:{gone}"),
        "alive here": insert_job(app, "jobtest.work", status="running", worker=f"{here}:{os.getpid()}",
                                 attempts=1, started_at=hour_ago, heartbeat_at=hour_ago),
        "fresh elsewhere": insert_job(app, "jobtest.work", status="running", worker="elsewhere.example:4242",
                                      attempts=1, started_at=utcnow(), heartbeat_at=utcnow()),
        "finished": insert_job(app, "jobtest.work", status="done", worker=f"{here}:{gone}", attempts=1),
    }

    recovered = jobs.recover_interrupted(app)

    assert sorted(recovered) == sorted(ids[k] for k in ("dead pid", "stale elsewhere", "exhausted", "left queued"))
    gave_up = jobs.get_job(ids["exhausted"], app)
    assert (gave_up["status"], gave_up["error"]) == ("failed", "interrupted (gave up after 3 attempts)")
    for key, attempt in (("dead pid", 2), ("stale elsewhere", 2), ("left queued", 1)):
        job = wait_job(app, ids[key])
        assert (job["status"], job["attempts"], job["message"]) == ("done", attempt, "re-queued after interruption"), key
        assert job["result"] == {"attempt": attempt}
    for key, status in (("alive here", "running"), ("fresh elsewhere", "running"), ("finished", "done")):
        assert jobs.get_job(ids[key], app)["status"] == status, key
    assert ids["alive here"] not in attempts
    assert jobs.recover_interrupted(app) == []


# --- command line ---------------------------------------------------------------


def test_cli_jobs_run_shows_progress_and_exits_by_outcome(jobs_app):
    app = jobs_app(JobDefinition("jobtest.count", count_rows), JobDefinition("jobtest.boom", boom))
    runner = CliRunner()

    ok = runner.invoke(cli, ["jobs", "run", "jobtest.count", "--arg", "n=3", "-a", "prefix=cli"], obj=Holder(app))
    assert ok.exit_code == 0, ok.output
    assert "jobtest.count: 3/3 (100%) row 3 of 3" in ok.output
    assert 'done: {"count": 3}' in ok.output
    assert len(settings_with_prefix(app, "cli-")) == 3

    failed = runner.invoke(cli, ["jobs", "run", "jobtest.boom"], obj=Holder(app))
    assert failed.exit_code == 1
    assert "failed: ValueError: boom: cannot parse row 7" in failed.output

    unknown = runner.invoke(cli, ["jobs", "run", "jobtest.nope"], obj=Holder(app))
    assert unknown.exit_code == 2 and "unknown job 'jobtest.nope'" in unknown.output

    listed = runner.invoke(cli, ["jobs", "list", "--status", "failed"], obj=Holder(app))
    assert listed.exit_code == 0
    assert "jobtest.boom" in listed.output and "jobtest.count" not in listed.output

    job_id = jobs.list_jobs(app, name="jobtest.count")[0]["id"]
    shown = runner.invoke(cli, ["jobs", "show", str(job_id)], obj=Holder(app))
    assert shown.exit_code == 0 and "status:       done" in shown.output and '{"count": 3}' in shown.output
    missing = runner.invoke(cli, ["jobs", "show", "999999"], obj=Holder(app))
    assert missing.exit_code == 1 and "no job 999999" in missing.output


def test_cli_no_wait_queues_for_a_worker_without_redis(jobs_app):
    app = jobs_app(JobDefinition("jobtest.count", count_rows))

    queued = CliRunner().invoke(cli, ["jobs", "run", "jobtest.count", "--no-wait", "-a", "n=2"], obj=Holder(app))
    assert queued.exit_code == 0, queued.output
    job_id = jobs.list_jobs(app, name="jobtest.count")[0]["id"]
    assert f"Queued job {job_id}" in queued.output
    time.sleep(0.2)
    assert jobs.get_job(job_id, app)["status"] == "queued"  # no runner died with the command

    gone = dead_pid()
    left = insert_job(app, "jobtest.count", status="running", worker=f"{socket.gethostname()}:{gone}", attempts=1,
                      args={"n": 1}, started_at=utcnow(), heartbeat_at=utcnow())

    jobs.run_worker(app, burst=True)  # without Redis: the database-polling runner, in the foreground

    assert jobs.get_job(job_id, app)["status"] == "done"
    assert (jobs.get_job(left, app)["status"], jobs.get_job(left, app)["attempts"]) == ("done", 2)
    runtime = app.extensions["mosaic"].jobs_runtime
    assert runtime.runner is None  # nothing left running in the background after a burst


def test_the_cli_module_stays_import_light():
    code = (
        "import sys, host.cli; assert 'jobs' in host.cli.cli.commands; "
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'host.jobs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prune_deletes_only_old_finished_runs(jobs_app):
    app = jobs_app(JobDefinition("jobtest.answer", answer))
    old = utcnow() - dt.timedelta(days=20)
    kept = [
        insert_job(app, "jobtest.answer", status="done", finished_at=utcnow()),
        insert_job(app, "jobtest.answer", status="running", started_at=old),
        insert_job(app, "jobtest.answer", status="queued"),
    ]
    gone = [
        insert_job(app, "jobtest.answer", status="done", finished_at=old),
        insert_job(app, "jobtest.answer", status="failed", finished_at=old),
    ]
    job_id = jobs.enqueue("core.prune_jobs", app=app)
    wait_job(app, job_id)
    assert jobs.get_job(job_id, app)["result"] == {"deleted": 2}
    assert all(jobs.get_job(i, app) is not None for i in kept)
    assert all(jobs.get_job(i, app) is None for i in gone)
