"""Staff UI benchmark (issue 6, "Performance"): server time and page weight
of the staff pages over the core record benchmark's data set.

Reuses ``bench/contacts.py``: its cached data set (``bench/data/
contacts-<size>.sqlite`` or the ``mosaic_bench_<size>`` PostgreSQL database;
generated there when missing, which takes a while at 1M), its app settings
(all four built-in plugins enabled) and its users: a sales rep of the first
team (own scope) and the admin (everything).

Server time, through the Flask test client (no network, no browser), median
and p95 of ``--runs`` requests after a warm-up, wall and CPU time:

- the 360 page ``/contacts/<id>``, cycling over 200 busy contacts the user
  may see (key accounts with many interactions: a full timeline page);
- the contact list ``/contacts`` (first page, default sort) and the list
  filtered by stage and tag;
- the search page ``/search?q=иван`` (a common Cyrillic prefix) and
  ``?q=zofia`` (accent-insensitive).

Page weight: each main page's HTML plus every stylesheet and script it
references, as the app serves them (the app does not compress; the gzip
figure shows what a compressing proxy would send). Images: the UI has none
but inline SVG, so ``<img>`` is counted too in case one appears.

    python bench/ui_pages.py                   # SQLite 1M (else say --size 10k)
    python bench/ui_pages.py --size 10k --runs 50
    python bench/ui_pages.py --pg              # PostgreSQL
    python bench/ui_pages.py --weight-only

Prints numbers; asserts nothing (a non-200 answer stops it, though).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contacts as core_bench  # noqa: E402  (bench/contacts.py: data set, app, users, sampler)

TARGET_P95_MS = 80
TARGET_WEIGHT_KB = 150
BUSY = 200


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class UiBench:
    """The app over one data set and a signed-in test client per user."""

    def __init__(self, target: core_bench.Target):
        self.target = target
        self.app = core_bench.make_app(target)
        self.state = self.app.extensions["mosaic"]
        self.emails = {"rep": core_bench.REP_EMAIL, "admin": core_bench.ADMIN_EMAIL}
        self.user_ids = {who: self._user_id(email) for who, email in self.emails.items()}
        self.clients = {who: self._signed_in(email) for who, email in self.emails.items()}

    def _user_id(self, email: str) -> int:
        from host.security.users import find_user

        with self.state.db.Session() as session:
            return find_user(session, email).id

    def _signed_in(self, email: str):
        client = self.app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        answer = client.post("/login", data={"email": email, "password": core_bench.PASSWORD,
                                             "csrf_token": token.group(1) if token else ""})
        if answer.status_code != 303:
            raise SystemExit(f"signing in as {email} failed ({answer.status_code})")
        return client

    def busy_contacts(self, who: str, count: int = BUSY) -> list[int]:
        """Key accounts (every 50th id carries 30 % of the interactions) the
        user may see: the 360 pages with the fullest timelines."""
        from sqlalchemy import select

        from host.core.models import Contact

        stmt = select(Contact.id).where(Contact.id % 50 == 0, Contact.deleted_at.is_(None))
        if who == "rep":
            stmt = stmt.where(Contact.owner_id == self.user_ids["rep"])
        with self.state.db.Session() as session:
            return list(session.scalars(stmt.order_by(Contact.id.desc()).limit(count)))

    def get(self, who: str, path: str):
        answer = self.clients[who].get(path)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path} as {who} answered {answer.status_code}: {answer.get_data(as_text=True)[:300]}")
        return answer

    def sampler(self, who: str, paths: list[str]) -> core_bench.Sampler:
        return core_bench.Sampler(lambda i: self.get(who, paths[i % len(paths)]))

    def cases(self) -> list[tuple[str, str, core_bench.Sampler]]:
        found = []
        for who in ("rep", "admin"):
            busy = [f"/contacts/{i}" for i in self.busy_contacts(who)]
            found += [
                ("360 page /contacts/<id>", who, self.sampler(who, busy)),
                ("list /contacts", who, self.sampler(who, ["/contacts"])),
                ("list /contacts?stage&tag", who, self.sampler(who, ["/contacts?lifecycle_stage=customer&tag=newsletter"])),
                ("search /search?q=иван", who, self.sampler(who, ["/search?q=%D0%B8%D0%B2%D0%B0%D0%BD"])),
                ("search /search?q=zofia", who, self.sampler(who, ["/search?q=zofia"])),
            ]
        return found

    def close(self) -> None:
        self.state.db.dispose()


# --- server time -------------------------------------------------------------------------------


def measure(bench: UiBench, runs: int) -> list[dict[str, Any]]:
    rows = []
    for label, who, sampler in bench.cases():
        sampler.take(runs)
        figures = sampler.figures()
        rows.append({"page": label, "user": who, **figures, "load": os.getloadavg()[0]})
        log(f"{label:28} {who:5} median {figures['median']:6.1f} p95 {figures['p95']:6.1f} ms"
            f" | CPU median {figures['cpu_median']:6.1f} p95 {figures['cpu_p95']:6.1f} ms (load {rows[-1]['load']:.1f})")
    return rows


def print_times(rows: list[dict[str, Any]], target: core_bench.Target) -> None:
    print(f"\nServer time, {target.label}, {rows[0]['runs']} requests each (Flask test client):\n")
    print("| Page | User | Median ms | p95 ms | CPU median ms | CPU p95 ms | p95 < 80 ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        verdict = "meets" if r["p95"] < TARGET_P95_MS else "**misses**"
        print(f"| {r['page']} | {r['user']} | {r['median']:.1f} | {r['p95']:.1f} | {r['cpu_median']:.1f} | "
              f"{r['cpu_p95']:.1f} | {verdict} |")


# --- page weight -------------------------------------------------------------------------------


class _Assets(HTMLParser):
    """The stylesheets, scripts and images a page makes the browser fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "link" and "stylesheet" in (named.get("rel") or "").split() and named.get("href"):
            self.urls.append(named["href"])
        elif tag in ("script", "img") and named.get("src"):
            self.urls.append(named["src"])


def page_weight(bench: UiBench, who: str, path: str) -> dict[str, Any]:
    answer = bench.get(who, path)
    html = answer.get_data()
    parser = _Assets()
    parser.feed(html.decode("utf-8"))
    assets = {}
    for url in dict.fromkeys(parser.urls):
        if url.startswith(("http://", "https://", "//")):
            raise SystemExit(f"{path} loads {url} from elsewhere: the UI must serve its own assets")
        assets[url] = bench.get(who, url).get_data()
    everything = [html, *assets.values()]
    return {"path": path, "html": len(html), "assets": {u: len(b) for u, b in assets.items()},
            "total": sum(len(b) for b in everything),
            "gzip": sum(len(gzip.compress(b, 6)) for b in everything)}


def weights(bench: UiBench) -> list[dict[str, Any]]:
    """The main pages as the admin sees them (every menu entry, every panel);
    the 360 page of the busiest contact, the list at its default page size."""
    busiest = bench.busy_contacts("admin", 1)[0]
    pages = ["/", "/contacts", f"/contacts/{busiest}", f"/contacts/{busiest}/edit", "/contacts/new", "/tasks",
             "/interactions", "/search?q=%D0%B8%D0%B2%D0%B0%D0%BD", "/admin/users"]
    if any(rule.rule == "/import" for rule in bench.app.url_map.iter_rules()):
        pages.append("/import")
    return [page_weight(bench, "admin", path) for path in pages]


def print_weights(rows: list[dict[str, Any]]) -> None:
    print("\nPage weight (HTML + the CSS and script it references, as served; admin):\n")
    print("| Page | HTML KB | CSS+JS KB | Total KB | gzip KB | < 150 KB |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in sorted(rows, key=lambda r: -r["total"]):
        verdict = "meets" if r["total"] < TARGET_WEIGHT_KB * 1024 else "**misses**"
        path = re.sub(r"/contacts/\d+", "/contacts/<id>", r["path"]).replace("%D0%B8%D0%B2%D0%B0%D0%BD", "иван")
        print(f"| {path} | {r['html'] / 1024:.1f} | {sum(r['assets'].values()) / 1024:.1f} | "
              f"{r['total'] / 1024:.1f} | {r['gzip'] / 1024:.1f} | {verdict} |")
    heaviest = max(rows, key=lambda r: r["total"])
    print(f"\nHeaviest: {heaviest['path']} {heaviest['total'] / 1024:.1f} KB; its assets: "
          + ", ".join(f"{url} {size / 1024:.1f} KB" for url, size in heaviest["assets"].items()))


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1m", choices=sorted(core_bench.SIZES), help="data set (default 1m)")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--pg-url", default=os.environ.get("MOSAIC_BENCH_PG_URL", "postgresql://127.0.0.1:5432/postgres"))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--weight-only", action="store_true", help="page weight only, no timing")
    args = parser.parse_args()

    target = core_bench.Target("postgresql" if args.pg else "sqlite", args.size, args.pg_url)
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, load average {os.getloadavg()[0]:.2f}; data set {target.label} "
          f"({target.contacts:,} contacts); plugins: {', '.join(core_bench.PLUGINS)}", flush=True)
    core_bench.ensure(target, regenerate=False)
    bench = UiBench(target)
    try:
        weight_rows = weights(bench)
        times = [] if args.weight_only else measure(bench, args.runs)
    finally:
        bench.close()
    if times:
        print_times(times, target)
    print_weights(weight_rows)


if __name__ == "__main__":
    main()
