"""The ``mosaic`` command as integrators use it: a real subprocess of the
installed console script, configured through the environment."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import BUILTIN_PLUGINS, plugin_init


def mosaic_command() -> list[str]:
    script = Path(sys.executable).with_name("mosaic")
    return [str(script)] if script.exists() else [sys.executable, "-m", "host.cli"]


@pytest.fixture
def run(tmp_path, database_url):
    """Run ``mosaic ARGS`` with a clean MOSAIC_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    base.update(MOSAIC_INSTANCE=str(tmp_path / "instance"), MOSAIC_DATABASE_URL=database_url, PYTHONUNBUFFERED="1")

    def runner(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            mosaic_command() + list(args),
            env={**base, **(env or {})},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    runner.env = base
    return runner


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "plugins", "worker", "routes"):
        assert f"  {command} " in result.stdout


def test_plugins_list_json(run):
    result = run("plugins", "list", "--json", env={"MOSAIC_PLUGINS": "sales,reports"})
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == sorted(BUILTIN_PLUGINS)
    for row in rows:
        assert set(row) == {"name", "version", "enabled", "depends", "description"}
        assert row["enabled"] == (row["name"] in ("sales", "reports"))
        assert isinstance(row["depends"], list) and row["version"]


def test_trace_plugins_shows_hook_calls_on_the_command_line(run):
    traced = run("routes", env={"MOSAIC_PLUGINS": "sales", "MOSAIC_TRACE_PLUGINS": "1"})
    assert traced.returncode == 0, traced.stderr
    lines = [line for line in traced.stderr.splitlines() if " mosaic.plugins.trace: hook " in line]
    assert any(" plugin=sales " in line for line in lines), traced.stderr[-2000:]
    quiet = run("routes", env={"MOSAIC_PLUGINS": "sales"})
    assert "mosaic.plugins.trace" not in quiet.stderr


def test_plugins_list_text(run):
    result = run("plugins", "list", env={"MOSAIC_PLUGINS": "service"})
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "enabled" in lines["service"] and "disabled" in lines["sales"]


def test_unknown_plugin_fails_fast_with_one_line(run):
    result = run("db", "upgrade", env={"MOSAIC_PLUGINS": "sales,nosuch"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: plugin 'nosuch': is not installed (installed plugins: ")


def test_broken_installed_plugin_fails_fast_naming_it(run, tmp_path):
    site = tmp_path / "site"
    (site / "brokenpkg").mkdir(parents=True)
    (site / "brokenpkg" / "__init__.py").write_text(plugin_init("broken", hooks_api='"9.0"'))
    dist = site / "brokenpkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mosaic.plugins]\nbroken = brokenpkg:PLUGIN\n")
    result = run("routes", env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: plugin 'broken': needs hooks API 9.0, but this host offers 1.0"


def test_bad_config_value_fails_fast_naming_the_key(run):
    result = run("db", "current", env={"MOSAIC_REDIS_URL": "localhost"})
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: MOSAIC_REDIS_URL: Must be a redis:// URL."


def test_db_upgrade_then_current(run):
    env = {"MOSAIC_PLUGINS": "sales"}
    before = run("db", "current", env=env)
    assert "host: empty" in before.stdout and "(needs upgrade)" in before.stdout
    upgraded = run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert [line.split(":")[0] for line in upgraded.stdout.splitlines()] == ["host", "sales"]
    after = run("db", "current", env=env)
    assert "needs upgrade" not in after.stdout
    again = run("db", "upgrade", env={"MOSAIC_PLUGINS": "sales,service"})
    assert "sales: at " in again.stdout and "service: empty -> " in again.stdout


def test_routes_shows_plugin_routes_only_when_enabled(run):
    only_sales = run("routes", env={"MOSAIC_PLUGINS": "sales"}).stdout
    assert "/sales/" in only_sales and "/api/v1/sales/deals" in only_sales and "/service/" not in only_sales


def test_serve_refuses_an_unmigrated_database(run):
    result = run("serve", "--port", "1", env={"MOSAIC_PLUGINS": "sales"})
    assert result.returncode == 1
    assert "not migrated" in result.stderr and "mosaic db upgrade" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5)
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def sign_in_and_get(port: int, logins_file: Path, path: str) -> str:
    """Sign in through the real form with the first demo login, then fetch ``path``."""
    import http.cookiejar
    import re
    import urllib.parse

    email, password = logins_file.read_text().splitlines()[0].split(" ", 1)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(f"http://127.0.0.1:{port}/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    home = opener.open(f"http://127.0.0.1:{port}/login", data=data)
    assert home.url == f"http://127.0.0.1:{port}/", "signed in and sent to the dashboard"
    return opener.open(f"http://127.0.0.1:{port}{path}").read().decode()


def serve_demo(run, tmp_path, env=None) -> tuple[str, dict]:
    port = free_port()
    proc = subprocess.Popen(
        mosaic_command() + ["serve", "--demo", "--port", str(port)],
        env={**run.env, **(env or {})},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        home = wait_for(f"http://127.0.0.1:{port}/", proc)
        assert home.status == 200
        health = json.load(wait_for(f"http://127.0.0.1:{port}/health", proc))
        login_page = wait_for(f"http://127.0.0.1:{port}/sales/", proc)
        assert login_page.url.startswith(f"http://127.0.0.1:{port}/login?next="), "signed out: the login page"
        sales = sign_in_and_get(port, tmp_path / "instance" / "demo_logins.txt", "/sales/")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    return out, {"health": health, "sales": sales, "port": port}


def test_serve_demo_migrates_seeds_once_and_serves(run, tmp_path):
    out, seen = serve_demo(run, tmp_path)
    assert f"http://localhost:{seen['port']}/" in out
    assert str(tmp_path / "instance") in out
    assert "Demo data added for: " in out
    assert "Log in as one of" in out
    logins = dict(line.strip().split(" / ") for line in out.splitlines() if line.startswith("  ") and " / " in line)
    assert set(logins) == {"admin@example.com", "manager@example.com", "rep@example.com"}
    assert oct((tmp_path / "instance" / "demo_logins.txt").stat().st_mode & 0o777) == "0o600"
    assert seen["health"]["status"] == "ok" and seen["health"]["plugins"] == sorted(BUILTIN_PLUGINS)
    assert "<td>" in seen["sales"], "signed in, the demo deals are listed"

    again, _ = serve_demo(run, tmp_path)
    assert "Demo data added" not in again, "a second run reuses the demo data"
    assert all(f"  {email} / {password}" in again for email, password in logins.items()), "same logins"


def test_serve_demo_with_a_subset(run, tmp_path):
    out, seen = serve_demo(run, tmp_path, env={"MOSAIC_PLUGINS": "sales,reports"})
    assert seen["health"]["plugins"] == ["reports", "sales"]
    assert "Plugins: reports, sales" in out
