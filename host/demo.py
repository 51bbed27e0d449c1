"""Demo data for ``mosaic serve --demo``: seeded once per plugin per database.

Each contributor (the host, then each plugin in dependency order) is seeded in
its own transaction and marked done in the ``setting`` table, so a second run
reuses the data, and a plugin enabled later gets its demo records then.
"""

from __future__ import annotations

import logging
import random

from sqlalchemy import select

from .models import Setting

log = logging.getLogger("mosaic.demo")

DEMO_SEED = 20261123


def seed_demo_data(app) -> list[str]:
    """Seed every contributor not seeded yet; returns their names."""
    with app.app_context():  # contributors use the app's services (the host's go through host.core.services)
        return _seed(app.extensions["mosaic"])


def _seed(state) -> list[str]:
    seeded = []
    for plugin, thunk_factory in _contributors(state):
        key = f"demo_seeded:{plugin}"
        with state.db.transaction() as session:
            if session.scalar(select(Setting).where(Setting.key == key)) is not None:
                continue
            thunk_factory(session, random.Random(f"{DEMO_SEED}:{plugin}"))
            session.add(Setting(key=key, value=True))
        seeded.append(plugin)
    return seeded


def _contributors(state):
    for plugin, impl in state.pm.impls_in_order("mosaic_demo_data"):
        def run(session, rng, impl=impl):
            kwargs = {"session": session, "rng": rng}
            impl.function(*[kwargs[a] for a in impl.argnames])

        yield plugin, run


DEMO_USERS = (
    ("admin@example.com", "Ada Admin", ("admin",)),
    ("manager@example.com", "Milan Manager", ("manager",)),
    ("rep@example.com", "Rita Rep", ("staff",)),
)
LOGINS_FILE = "demo_logins.txt"


def ensure_demo_users(app) -> bool:
    """Create the demo accounts once, each with its own random password,
    kept (0600) in the instance folder so every later start can print them.
    Returns whether they were created now."""
    import os
    import secrets

    from .security.users import create_user, find_user

    state = app.extensions["mosaic"]
    path = state.config.instance_path / LOGINS_FILE
    with state.db.transaction() as session:
        if find_user(session, DEMO_USERS[0][0]) is not None:
            return False
        lines = []
        for email, name, roles in DEMO_USERS:
            password = "demo-" + secrets.token_urlsafe(9)
            create_user(session, email, password, roles=roles, display_name=name)
            lines.append(f"{email} {password}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return True


def demo_logins(app) -> list[str]:
    """Lines telling a new user how to sign in to the demo."""
    path = app.extensions["mosaic"].config.instance_path / LOGINS_FILE
    if not path.exists():
        return ["Log in with an account made by `mosaic users create EMAIL --role admin`."]
    pairs = [line.split(" ", 1) for line in path.read_text().splitlines() if " " in line]
    lines = ["Log in as one of (e-mail / password):"]
    lines += [f"  {email} / {password}" for email, password in pairs]
    lines.append(f"(kept in {path})")
    return lines
