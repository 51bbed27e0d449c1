"""The staff web UI's pages (lists, the 360-degree contact page, forms, my
tasks, search, import, admin). Each module here has one area and one
blueprint ``bp``; ``register`` adds them all to the app.

Add a module by naming it in ``PAGE_MODULES`` in the same commit.
"""

from __future__ import annotations

import importlib

from flask import Flask

PAGE_MODULES: tuple[str, ...] = (
    "shell", "notifications", "suggest",
    "admin_users", "admin_fields", "admin_webhooks", "admin_settings", "admin_bin",
    "contacts", "contact_page", "contact_edit", "merge", "interactions", "tasks", "search", "imports",
)


def register(app: Flask) -> None:
    for name in PAGE_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        app.register_blueprint(module.bp)
