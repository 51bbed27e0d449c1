"""Shared test setup. The app fixtures (app, client, make_app, database_url,
redis_url) come from ``host.testing``, the pytest plugin that ships with
mosaic-crm for plugin authors too; this file adds what only our suite needs."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

BUILTIN_PLUGINS = ("marketing", "reports", "sales", "service")

#: Every subset of the built-in plugins, the empty one (host alone) included.
PLUGIN_SUBSETS = [
    combo for size in range(len(BUILTIN_PLUGINS) + 1) for combo in itertools.combinations(BUILTIN_PLUGINS, size)
]


class SitePackages:
    """A throw-away site directory holding real distributions with
    ``mosaic.plugins`` entry points: plugins installed the way pip would."""

    def __init__(self, root: Path):
        self.root = root
        self.packages: list[str] = []

    def install(self, name: str, files: dict[str, str], *, entry_point: str | None = None, package: str | None = None) -> Path:
        package = package or f"mosaic_test_{name}"
        pkg_dir = self.root / package
        for rel, text in files.items():
            path = pkg_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        dist = self.root / f"{package}-0.1.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        target = entry_point or f"{package}:PLUGIN"
        (dist / "entry_points.txt").write_text(f"[mosaic.plugins]\n{name} = {target}\n")
        self.packages.append(package)
        return pkg_dir

    def uninstall(self, package: str) -> None:
        import shutil

        shutil.rmtree(self.root / package, ignore_errors=True)
        shutil.rmtree(self.root / f"{package}-0.1.dist-info", ignore_errors=True)
        _forget_modules(package)


def _forget_modules(package: str) -> None:
    for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[mod]


@pytest.fixture
def site_packages(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    site = SitePackages(root)
    yield site
    for package in site.packages:
        _forget_modules(package)


def plugin_init(name: str, **fields: str) -> str:
    """The ``__init__.py`` of a test plugin package."""
    extra = "".join(f"    {key}={value},\n" for key, value in fields.items())
    return f'from hooks import Plugin\nPLUGIN = Plugin(\n    name="{name}",\n    title="{name.title()}",\n    version="0.1",\n{extra})\n'
