"""Browser tests: a live Mosaic server and headless Chromium driven by Playwright.

Import the fixtures into a test module (pytest finds fixtures in a module's
namespace)::

    from .browser import browser, browser_page, live_server  # noqa: F401  (fixtures)

    @pytest.mark.browser
    def test_something(live_server, browser_page):
        browser_page.goto(live_server.url + "/login")

- ``live_server``: the ``app`` fixture served on 127.0.0.1 at a free port by
  werkzeug in a thread (``serve(app)`` does the same for an app a test built
  itself); ``.url`` and ``.app``.
- ``browser``: one headless Chromium for the whole run. Debian's ``chromium``
  is used, never Playwright's own download (which cannot be fetched here):
  ``MOSAIC_TEST_CHROMIUM`` names the binary, else ``chromium`` on PATH. When
  the ``playwright`` package or the binary is missing the tests skip saying
  which; when ``MOSAIC_TEST_CHROMIUM`` is set (as CI does) they fail instead,
  so a broken install is never mistaken for a pass.
- ``browser_page``: a fresh context (no cookies) and page per test.
- ``sign_in(page, base_url, email, password)``: through the real form.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from host.testing import TEST_PASSWORD

#: Flags for a root user on a machine with a closed network: without the
#: background-networking ones Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
NAVIGATION_TIMEOUT_MS = 15_000


@dataclass
class LiveServer:
    app: Any
    url: str


@contextlib.contextmanager
def serve(app) -> Iterator[LiveServer]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the block ends."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="mosaic-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with serve(app) as server:
        yield server


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine without a browser; fail where one was promised."""
    named = os.environ.get("MOSAIC_TEST_CHROMIUM")
    if named:
        pytest.fail(f"MOSAIC_TEST_CHROMIUM={named} promises browser tests, but {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    named = os.environ.get("MOSAIC_TEST_CHROMIUM")
    if named:
        return named if os.path.isfile(named) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


#: Each test module imports ``browser`` into its namespace, which makes pytest
#: hold one session fixture per module; Playwright's sync API allows only one
#: running instance per thread, so they share this one (counted, stopped
#: when the last module's fixture is torn down).
_shared: dict[str, Any] = {"users": 0}


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the browser tests need the playwright package (pip install playwright; no `playwright install`)")
    executable = chromium_path()
    if executable is None:
        _unavailable("the browser tests need Chromium: apt-get install chromium (or set MOSAIC_TEST_CHROMIUM to its path)")
    if _shared["users"] == 0:
        playwright = sync_playwright().start()
        try:
            _shared["chromium"] = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Exception:
            playwright.stop()
            raise
        _shared["playwright"] = playwright
    _shared["users"] += 1
    try:
        yield _shared["chromium"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared.pop("chromium").close()
            _shared.pop("playwright").stop()


@pytest.fixture
def browser_page(browser):
    context = browser.new_context()
    context.set_default_timeout(NAVIGATION_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def sign_in(page, base_url: str, email: str, password: str = TEST_PASSWORD) -> None:
    """Sign in through the login form as a person would: type, click, land."""
    page.goto(f"{base_url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
