"""Mosaic host: the Flask app factory and the platform plugins build on.

Kept import-light on purpose: ``mosaic --help`` imports this package, and
Flask plus SQLAlchemy cost most of a second to import on a small machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask


def create_app(config: dict[str, Any] | None = None, **kwargs: Any) -> "Flask":
    """Build a Mosaic application. See ``host.app.create_app``."""
    from .app import create_app as _create_app

    return _create_app(config, **kwargs)


__all__ = ["create_app"]
