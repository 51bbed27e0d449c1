"""Boot-time benchmark: how long Mosaic takes to start.

Measures, with all four built-in plugins enabled:

1. ``create_app()`` in this process after a warm-up (modules already
   imported): the median of N builds. This is what a test pays per app.
2. The first ``create_app()`` in a fresh process, imports included: the time
   from before ``from host import create_app`` to the returned app, measured
   inside a new interpreter (median of N processes), and that process's whole
   wall time (interpreter start-up included).
3. ``mosaic --help``: wall time of the console script, median of N.

Target: under 300 ms each. Prints numbers; asserts nothing.

    python bench/boot.py [--runs 20]

Run it with the virtualenv's Python (the one that has mosaic-crm installed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 300.0
PLUGINS = ("sales", "marketing", "service", "reports")

FRESH_PROCESS = """
import time
t0 = time.perf_counter()
from host import create_app
app = create_app()
t1 = time.perf_counter()
assert sorted(app.extensions["mosaic"].pm.plugin_names) == sorted({plugins!r})
print(f"{{(t1 - t0) * 1000:.3f}}")
"""


def _env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    env["MOSAIC_INSTANCE"] = str(instance)
    env["MOSAIC_PLUGINS"] = ",".join(PLUGINS)
    env.pop("PYTHONPATH", None)
    return env


def _stats(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values):7.1f} ms   min {values[0]:7.1f}   p95 {p95:7.1f}   (n={len(values)})"


def _verdict(median_ms: float) -> str:
    return f"{'meets' if median_ms < TARGET_MS else 'MISSES'} the {TARGET_MS:.0f} ms target"


def bench_in_process(instance: Path, runs: int) -> list[float]:
    from host import create_app

    config = {"instance_path": str(instance), "plugins": list(PLUGINS)}
    env = {}  # no MOSAIC_* from the caller's environment
    for _ in range(3):  # warm-up: imports, first template/regex compilations
        create_app(config, environ=env).extensions["mosaic"].db.dispose()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        app = create_app(config, environ=env)
        times.append((time.perf_counter() - t0) * 1000)
        app.extensions["mosaic"].db.dispose()
    return times


def bench_fresh_process(instance: Path, runs: int) -> tuple[list[float], list[float]]:
    code = FRESH_PROCESS.format(plugins=list(PLUGINS))
    env = _env(instance)
    inside, wall = [], []
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # warm the OS cache
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        wall.append((time.perf_counter() - t0) * 1000)
        inside.append(float(out.stdout.strip().splitlines()[-1]))
    return inside, wall


def bench_help(instance: Path, runs: int) -> list[float]:
    mosaic = Path(sys.executable).with_name("mosaic")
    cmd = [str(mosaic), "--help"] if mosaic.exists() else [sys.executable, "-m", "host.cli", "--help"]
    env = _env(instance)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per figure (default 20)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; plugins: {', '.join(PLUGINS)}")
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as tmp:
        instance = Path(tmp) / "instance"
        inproc = bench_in_process(instance, args.runs)
        inside, wall = bench_fresh_process(instance, args.runs)
        helps = bench_help(instance, args.runs)

    rows = [
        ("create_app(), warm process", inproc),
        ("first create_app() incl. imports", inside),
        ("  same, whole process wall time", wall),
        ("mosaic --help, wall time", helps),
    ]
    print()
    for label, values in rows:
        print(f"{label:<36} {_stats(values)}   {_verdict(statistics.median(values))}")


if __name__ == "__main__":
    main()
