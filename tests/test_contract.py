"""The plugin contract stays documented and tested (Datasette's checks):
every hook specification has a heading in docs/plugins.md and a
``test_hook_<name>`` test, and its docstring says since when it exists."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import hooks

ROOT = Path(__file__).resolve().parent.parent


def hookspec_names() -> list[str]:
    marker = f"{hooks.PROJECT_NAME}_spec"
    return sorted(name for name, obj in vars(hooks).items() if callable(obj) and hasattr(obj, marker))


def test_hookspecs_are_found():
    names = hookspec_names()
    assert "mosaic_menu_items" in names and "mosaic_event" in names
    assert len(names) >= 25


@pytest.mark.parametrize("name", hookspec_names())
def test_hook_is_documented_in_plugins_md(name):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{name}`" in docs, f"docs/plugins.md needs a '### `{name}`' section"


def test_hook_tests_exist_for_every_hook():
    test_names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                test_names.add(node.name)
    missing = [n for n in hookspec_names() if not any(t == f"test_hook_{n}" or t.startswith(f"test_hook_{n}_") for t in test_names)]
    assert missing == [], f"hooks without a test_hook_<name> test: {missing}"


@pytest.mark.parametrize("name", hookspec_names())
def test_hook_docstring_says_when_it_was_added(name):
    doc = inspect.getdoc(getattr(hooks, name)) or ""
    assert re.search(r"Since \d+\.\d+\.", doc), f"{name}: docstring must end with 'Since MAJOR.MINOR.'"
    assert len(doc.split()) >= 8, f"{name}: say when it is called and what it returns"


def test_hooks_api_version_is_major_minor():
    assert re.fullmatch(r"\d+\.\d+", hooks.HOOKS_API_VERSION)
