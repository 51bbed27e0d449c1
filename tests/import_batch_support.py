"""What the batch-versus-per-row import tests share (tests/test_import_batch.py,
tests/test_import_batch_linked.py): an event recorder and a second empty
database for the per-row reference."""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from hooks import hookimpl
from host.testing import _postgres_schema, plugin_candidate


class Listener:
    """A plugin that keeps every event delivered to it."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def mosaic_event(self, event):
        self.events.append((event.id, event.type, dict(event.data)))


@pytest.fixture
def reference_url(tmp_path):
    """A second empty database for the per-row reference."""
    base = os.environ.get("MOSAIC_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    yield from _postgres_schema(base)


def make_pair(make_app, reference_url: str, setup: Callable[[Any], None]) -> list[tuple[Any, Listener]]:
    """[(batch app, its listener), (per-row app, its listener)], each set up
    by ``setup``: the second on the reference database."""
    built = []
    for config in ({}, {"database_url": reference_url}):
        listener = Listener()
        app = make_app(plugins=["listener"], extra_plugins=[plugin_candidate("listener", listener)], jobs_inline=True,
                       **config)
        setup(app)
        built.append((app, listener))
    return built
