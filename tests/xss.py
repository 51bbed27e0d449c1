"""Stored-XSS check, reusable by every issue that adds pages or text fields.

Each payload of a corpus is saved into the text fields under test, then every
page is opened in headless Chromium. A page fails when a dialog opens, when a
payload's script ran (``window.__xss`` is set), when the DOM holds anything a
payload could have injected (an ``on*`` attribute, an inline script, a
``javascript:`` URL), or, on the pages that list the records, when the payload
is not shown as the literal text that was saved.

The browser context bypasses the Content-Security-Policy on purpose: the CSP
is the second line (``tests/test_headers.py`` checks it); this check proves
the first one, escaping, holds on its own.

Use::

    from .xss import check_stored_xss, column, get_pages

    findings = check_stored_xss(
        live_server, page,                      # page: signed in, bypass_csp context
        targets=[column("sales_deal", "title"), my_storer],
        urls=get_pages(app), text_urls=["/sales/"],
    )
    assert findings == []

A target is ``column(table, name)`` (every row of the table gets the payload,
by SQL, so no form validation stands in the way) or any callable taking the
payload and storing it however the feature does (a form, an API call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

#: Every payload sets ``window.__xss`` (or opens a dialog) if it ever runs.
PAYLOADS: tuple[str, ...] = (
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "javascript:window.__xss=4",
    '<a href="javascript:window.__xss=5">link</a>',
    "{{7*7}} {% if 1 %}ssti{% endif %} ${7*7}",
    "</title><script>window.__xss=7</script>",
    "</textarea></script><script>window.__xss=8</script>",
    '" autofocus onfocus="window.__xss=9" x="',
    "<details open ontoggle=alert(10)>",
    '<iframe srcdoc="<script>parent.__xss=11</script>"></iframe>',
    "<img src=x onerror=alert(12)>",
)

#: Run in the page after load: what an escaped page never contains.
_INJECTED = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.trim().toLowerCase();
      if (name.startsWith('on')) found.push(`<${el.tagName.toLowerCase()} ${name}>`);
      if (['href', 'src', 'action', 'formaction', 'srcdoc', 'xlink:href'].includes(name)
          && (value.startsWith('javascript:') || value.includes('<script'))) {
        found.push(`<${el.tagName.toLowerCase()} ${name}="${attr.value}">`);
      }
    }
  }
  for (const script of document.querySelectorAll('script:not([src])')) found.push('inline <script>');
  for (const frame of document.querySelectorAll('iframe')) found.push('<iframe>');
  return found;
}"""

Storer = Callable[[str], None]
Target = Union[Storer, "ColumnTarget"]


@dataclass(frozen=True)
class ColumnTarget:
    """A text column whose every row gets the payload, by SQL."""

    table: str
    column: str

    def store(self, app: Any, payload: str) -> None:
        from sqlalchemy import text

        state = app.extensions["mosaic"]
        with state.db.transaction() as session:
            updated = session.execute(text(f'UPDATE "{self.table}" SET "{self.column}" = :payload'), {"payload": payload})
            assert updated.rowcount, f"{self.table}.{self.column}: no rows to store the payload in (seed some first)"


def column(table: str, name: str) -> ColumnTarget:
    return ColumnTarget(table, name)


@dataclass(frozen=True)
class Finding:
    url: str
    payload: str
    problem: str

    def __str__(self) -> str:
        return f"{self.url}: {self.problem} (payload {self.payload!r})"


def get_pages(app, *, exclude: Iterable[str] = ()) -> list[str]:
    """Every HTML page a signed-in user can open without arguments: the GET
    rules of ``app.url_map`` less static files, the API and the health check."""
    excluded = set(exclude)
    pages = set()
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if "GET" not in (rule.methods or ()) or rule.arguments:
            continue
        if endpoint == "static" or endpoint.endswith(".static") or rule.rule.startswith("/api/"):
            continue
        if rule.rule in ("/health", "/login") or rule.rule in excluded:
            continue
        pages.add(rule.rule)
    return sorted(pages)


def check_stored_xss(
    server: Any,
    page: Any,
    *,
    targets: Sequence[Target],
    urls: Sequence[str],
    text_urls: Sequence[str] = (),
    payloads: Sequence[str] = PAYLOADS,
) -> list[Finding]:
    """Store each payload in every target, open every URL; return what went wrong.

    ``server`` has ``.app`` and ``.url`` (``tests.browser.LiveServer``);
    ``page`` is a Playwright page whose context was made with
    ``bypass_csp=True`` and is signed in as a user who sees the records.
    The pages are first opened before anything is stored, so a template
    that is itself unsafe shows up as such rather than as a payload's fault;
    a URL that then redirected to another one in the list (a set-up page with
    nothing pending) is not opened again: its target is checked anyway.
    """
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    findings, landed = [], {}
    for url in urls:
        findings += _visit(server, page, url, "(nothing stored)", dialogs, check_text=False)
        landed[url] = page.url.removeprefix(server.url)
    rounds = [url for url in urls if url in text_urls or landed[url] == url or landed[url] not in urls]
    for payload in payloads:
        for target in targets:
            target.store(server.app, payload) if isinstance(target, ColumnTarget) else target(payload)
        for url in rounds:
            findings += _visit(server, page, url, payload, dialogs, check_text=url in text_urls)
    return findings


def _visit(server, page, url: str, payload: str, dialogs: list[str], *, check_text: bool) -> list[Finding]:
    found = []
    response = page.goto(server.url + url, wait_until="load")
    page.wait_for_timeout(30)  # toggle and focus events fire just after load
    if response is None or response.status >= 400:
        found.append(f"answered {response.status if response else 'nothing'}")
    if page.url.startswith(server.url + "/login") and not url.startswith("/login"):
        found.append("redirected to the login page: the page was not checked")
    while dialogs:
        found.append(f"a dialog opened: {dialogs.pop()!r}")
    ran = page.evaluate("() => window.__xss")
    if ran is not None:
        found.append(f"script ran: window.__xss = {ran!r}")
    found += [f"injected into the DOM: {what}" for what in page.evaluate(_INJECTED)]
    if check_text and payload not in page.inner_text("body"):
        found.append("the payload is not shown as text")
    return [Finding(url, payload, problem) for problem in found]
