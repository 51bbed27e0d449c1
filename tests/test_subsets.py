"""Rule 3 of the design: every subset of the built-in plugins boots, migrates
from an empty database, serves its pages, and leaves no trace of the others."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from host import migrate
from host.testing import api_token, bearer, client_for

from .conftest import BUILTIN_PLUGINS, PLUGIN_SUBSETS

#: One API endpoint per built-in plugin, to prove its API is (not) mounted.
API_ENDPOINTS = {
    "sales": "/api/v1/sales/deals",
    "marketing": "/api/v1/marketing/campaigns",
    "service": "/api/v1/service/tickets",
    "reports": "/api/v1/reports/reports",
}


@pytest.mark.parametrize("enabled", PLUGIN_SUBSETS, ids=lambda s: "+".join(s) or "host-only")
def test_subset_boots_migrates_and_serves_only_its_plugins(make_app, enabled):
    app = make_app(plugins=list(enabled))
    state = app.extensions["mosaic"]
    client = client_for(app)
    headers = bearer(api_token(app, "admin@example.com"))

    assert state.pm.plugin_names == list(enabled)
    assert all(cur == head for _, cur, head in migrate.current(state))
    assert client.get("/").status_code == 200
    health = client.get("/health").get_json()
    assert health == {"status": "ok", "database": "ok", "plugins": list(enabled)}

    tables = set(inspect(state.db.engine).get_table_names())
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for name in BUILTIN_PLUGINS:
        plugin_tables = {t for t in tables if t.startswith(f"{name}_")}
        if name in enabled:
            assert client.get(f"/{name}/").status_code == 200
            assert client.get(API_ENDPOINTS[name], headers=headers).status_code == 200
            assert plugin_tables, f"{name} enabled but has no tables"
            assert f"alembic_version_{name}" in tables
            assert API_ENDPOINTS[name] in paths
        else:
            assert client.get(f"/{name}/").status_code == 404
            assert client.get(API_ENDPOINTS[name], headers=headers).status_code == 404
            assert not plugin_tables, f"{name} disabled but its tables exist: {plugin_tables}"
            assert API_ENDPOINTS[name] not in paths
