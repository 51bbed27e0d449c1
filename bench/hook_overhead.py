"""Hook-machinery overhead benchmark: the dashboard with four plugins.

Three ways to produce the same dashboard page, on the same SQLite database
with the same demo data, each request timed server-side:

- **mosaic** ``/``: ``create_app()`` with sales, marketing, service and
  reports, signed in as an admin. Each request goes through the host's
  security gate and calls the UI hooks of every plugin through the host
  (``mosaic_menu_items`` for the navigation, ``mosaic_dashboard_widgets``
  for the widgets, ``mosaic_template_slot`` for the header and footer).
- **direct** ``/bench/direct``: a view the benchmark adds to that same app
  (same gate, same signed-in session, same request database session) that
  renders the same template with the same data but calls no hook: the menu
  entries are precomputed, the widgets are built by calling the plugins'
  service functions directly (the same SQL queries, the same markup rendered
  the same way). ``mosaic - direct`` is the hook machinery's cost.
- **plain**: a bare Flask app (same secret key, so Flask's cookie session
  runs too) rendering the same template with the same context and the same
  queries, with no host at all: no security gate, no hooks. ``mosaic -
  plain`` is everything the host adds, security included.

Time is measured by the same WSGI middleware on every app, around the call
with the body included, as wall time and as the thread's CPU time (which other
processes on a busy 2-core machine do not inflate); Flask's test client drives
the requests, which alternate between the variants in blocks of 20.
Target: the hook machinery costs under 10 % of the request time.

    python bench/hook_overhead.py [--requests 2000] [--profile]

``--profile`` also runs cProfile over mosaic requests and prints where the
time goes. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_SHARE = 0.10
PLUGINS = ("sales", "marketing", "service", "reports")
WARMUP = 200
#: Requests alternate between the variants in blocks this small, so a change
#: in machine load hits all of them alike.
BLOCK = 20
ADMIN = "bench-admin@example.com"
CSRF_FIELD = re.compile(r'name="csrf_token" value="[^"]*"')


class Timed:
    """WSGI middleware: server-side time per request, wall and thread CPU,
    kept per path."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, environ, start_response):
        c0, t0 = time.thread_time(), time.perf_counter()
        body = b"".join(self.wsgi_app(environ, start_response))
        t1, c1 = time.perf_counter(), time.thread_time()
        path = environ.get("PATH_INFO", "")
        self.wall.setdefault(path, []).append((t1 - t0) * 1000)
        self.cpu.setdefault(path, []).append((c1 - c0) * 1000)
        return [body]

    def clear(self) -> None:
        self.wall.clear()
        self.cpu.clear()


def dashboard_widgets(session):
    """The plugins' four dashboard widgets, built without hooks: the same
    service calls and the same markup as their ``mosaic_dashboard_widgets``."""
    from flask import render_template_string
    from markupsafe import Markup

    from hooks import Widget
    from plugins.marketing import services as marketing
    from plugins.reports import services as reports
    from plugins.sales import services as sales
    from plugins.service import services as service

    total = sales.open_pipeline_total(session)
    return [
        Widget(key="sales-pipeline", title="Pipeline", order=10, html=Markup(render_template_string(
            "<p>Open pipeline: <strong>{{ total }}</strong></p>", total=f"{total:,.2f}"))),
        Widget(key="marketing-summary", title="Campaigns running", order=20, html=Markup(render_template_string(
            "<p><strong>{{ count }}</strong> running</p>", count=marketing.count_by_status(session, "running")))),
        Widget(key="service-summary", title="Open tickets", order=30, html=Markup(render_template_string(
            "<p><strong>{{ count }}</strong> open</p>", count=service.count_by_status(session, "open")))),
        Widget(key="reports-summary", title="Saved reports", order=40, html=Markup(render_template_string(
            "<p><strong>{{ count }}</strong> active</p>", count=reports.count_by_status(session, "active")))),
    ]


def _shell_menu(app):
    """The navigation as the host's shell builds it (calls the menu hooks once)."""
    shell = {}
    for processor in app.template_context_processors[None]:
        shell.update(processor())
    return [dict(entry) for entry in shell["menu_items"]()]


def build_mosaic(instance: Path):
    from flask import render_template
    from markupsafe import Markup

    import host.testing as testing
    from host import create_app, migrate
    from host.db import session as request_session
    from host.demo import seed_demo_data

    app = create_app(
        {"instance_path": str(instance), "plugins": list(PLUGINS), "secret_key": "bench-secret-key-0123456789"},
        environ={},
    )
    migrate.upgrade(app.extensions["mosaic"])
    seed_demo_data(app)

    menu_cache: list[dict] = []
    empty = Markup("")

    def direct():
        if not menu_cache:  # first request only (a warm-up one)
            menu_cache.extend(_shell_menu(app))
        return render_template(
            "core/index.html",
            widgets=dashboard_widgets(request_session()),
            menu_items=lambda: menu_cache,
            slot=lambda name, **context: empty,
        )

    try:
        from host.security.access import login_required
    except ImportError:  # a host without the security layer
        login_required = lambda view: view  # noqa: E731
    app.add_url_rule("/bench/direct", "bench_direct", login_required(direct))

    client = app.test_client()
    if hasattr(testing, "make_user"):
        testing.make_user(app, ADMIN, roles=("admin",), display_name="Bench Admin")
        response = testing.login(client, ADMIN)
        print(f"signed in as {ADMIN} (admin): login answered {response.status_code}")
    return app, client, menu_cache


def build_plain(mosaic_app, menu):
    """The same page with no host: Flask, the template, the same queries."""
    import host
    from flask import Blueprint, Flask, render_template
    from markupsafe import Markup
    from sqlalchemy.orm import sessionmaker

    from host.ui import render_html

    host_dir = Path(host.__file__).parent
    app = Flask("plain", root_path=str(host_dir), template_folder="templates", static_folder="static")
    app.secret_key = mosaic_app.secret_key
    Session = sessionmaker(mosaic_app.extensions["mosaic"].db.engine, expire_on_commit=False)
    empty = Markup("")

    class User:  # what the shell shows of the signed-in user
        is_authenticated = True
        display_name = "Bench Admin"

    core = Blueprint("core", "plain")
    auth = Blueprint("auth", "plain")
    auth.add_url_rule("/logout", "logout", lambda: "", methods=["POST"])

    @core.get("/")
    def index():
        session = Session()
        try:
            return render_template(
                "core/index.html",
                widgets=dashboard_widgets(session),
                menu_items=lambda: menu,
                slot=lambda name, **context: empty,
                render_html=render_html,
                current_user=User(),
                csrf_token=lambda: "token",
            )
        finally:
            session.close()

    app.register_blueprint(core)
    app.register_blueprint(auth)
    return app


def _stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per variant (default 2000)")
    parser.add_argument("--profile", action="store_true", help="profile mosaic requests with cProfile")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}; plugins: {', '.join(PLUGINS)}")
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as tmp:
        mosaic_app, mosaic_client, menu = build_mosaic(Path(tmp) / "instance")
        timer = Timed(mosaic_app.wsgi_app)
        mosaic_app.wsgi_app = timer
        first = mosaic_client.get("/")
        mosaic_client.get("/bench/direct")  # fills the menu cache
        plain_app = build_plain(mosaic_app, menu)
        plain_timer = Timed(plain_app.wsgi_app)
        plain_app.wsgi_app = plain_timer
        plain_client = plain_app.test_client()

        variants = {
            "mosaic": (mosaic_client, "/", timer),
            "direct": (mosaic_client, "/bench/direct", timer),
            "plain": (plain_client, "/", plain_timer),
        }
        bodies = {}
        for name, (client, path, _t) in variants.items():
            response = client.get(path)
            bodies[name] = CSRF_FIELD.sub('name="csrf_token" value="…"', response.get_data(as_text=True))
            if response.status_code != 200:
                print(f"{name}: {path} answered {response.status_code}, not 200: the comparison is void")
        print(f"dashboard answered {first.status_code}; menu: {', '.join(e.get('label', '?') for e in menu)}")
        for name in ("direct", "plain"):
            same = bodies[name] == bodies["mosaic"]
            print(f"page of {name} identical to mosaic's (CSRF token aside): {'yes' if same else 'NO'}")
            if not same:
                import difflib

                diff = difflib.unified_diff(bodies["mosaic"].splitlines(), bodies[name].splitlines(), "mosaic", name, lineterm="")
                print("\n".join(list(diff)[:30]))

        for client, path, _t in variants.values():
            for _ in range(WARMUP):
                client.get(path)
        timer.clear()
        plain_timer.clear()

        order = list(variants)
        for block in range(max(1, args.requests // BLOCK)):
            if block % 10 == 0:
                gc.collect()
            for name in order:
                client, path, _t = variants[name]
                for _ in range(BLOCK):
                    client.get(path)
            order.reverse()

        results = {}
        print()
        print(f"{'variant':<8} {'wall median':>12} {'wall p95':>9} {'CPU median':>11} {'CPU p95':>8} {'requests':>9}   (ms)")
        for name, (_c, path, t) in variants.items():
            wall, cpu = _stats(t.wall[path]), _stats(t.cpu[path])
            results[name] = {"wall": wall[0], "CPU": cpu[0]}
            print(f"{name:<8} {wall[0]:>12.3f} {wall[1]:>9.3f} {cpu[0]:>11.3f} {cpu[1]:>8.3f} {len(t.wall[path]):>9}")
        print()
        for kind in ("wall", "CPU"):
            m, d, p = results["mosaic"][kind], results["direct"][kind], results["plain"][kind]
            print(f"{kind:<4} medians: hook machinery (mosaic - direct) {m - d:+.3f} ms = {(m - d) / m:+.1%} of the "
                  f"request; whole host (mosaic - plain Flask) {m - p:+.3f} ms = {(m - p) / m:+.1%}")
        # Paired estimate: the blocks of the variants ran next to each other,
        # so the difference of block medians cancels drifts in machine load.
        print()
        for kind in ("wall", "CPU"):
            series = {name: getattr(t, "wall" if kind == "wall" else "cpu")[path] for name, (_c, path, t) in variants.items()}
            blocks = min(len(v) for v in series.values()) // BLOCK
            med = {name: [statistics.median(v[i * BLOCK:(i + 1) * BLOCK]) for i in range(blocks)] for name, v in series.items()}
            hook = statistics.median(a - b for a, b in zip(med["mosaic"], med["direct"]))
            whole = statistics.median(a - b for a, b in zip(med["mosaic"], med["plain"]))
            base = statistics.median(med["mosaic"])
            verdict = "meets" if hook / base < TARGET_SHARE else "MISSES"
            print(f"{kind:<4} paired ({blocks} blocks): hook machinery {hook:+.3f} ms = {hook / base:+.1%} of a "
                  f"{base:.3f} ms request ({verdict} the {TARGET_SHARE:.0%} target); "
                  f"whole host {whole:+.3f} ms = {whole / base:+.1%}")

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(500):
                mosaic_client.get("/")
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
            print(out.getvalue())


if __name__ == "__main__":
    main()
