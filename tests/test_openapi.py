"""The OpenAPI document: only enabled plugins, and every operation states
its security and the errors the host can answer."""

from __future__ import annotations

import pytest

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200, "the document is public"
    return response.get_json()


def test_bearer_scheme_is_declared(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"]
    }


def test_every_operation_declares_security_and_errors(spec):
    found = list(operations(spec))
    assert len(found) >= 5
    for path, method, operation in found:
        assert operation["security"] == [{"bearerAuth": []}], f"{method} {path}"
        codes = set(operation["responses"])
        assert {"401", "403", "429", "default"} <= codes, f"{method} {path}: {codes}"
        if "{" in path:
            assert "404" in codes, f"{method} {path}"
        if method in ("post", "put", "patch"):
            assert {"415", "422"} <= codes, f"{method} {path}"
        if method == "patch":
            assert {"409", "412", "428"} <= codes, f"{method} {path}"


def test_error_responses_resolve_to_the_error_schema(spec):
    unauthorized = spec["components"]["responses"]["UNAUTHORIZED"]
    schema = unauthorized["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Error"}
    assert {"code", "status", "message"} <= set(spec["components"]["schemas"]["Error"]["properties"])


@pytest.mark.with_plugins("sales")
def test_document_holds_only_enabled_plugins(spec):
    paths = set(spec["paths"])
    assert "/api/v1/sales/deals" in paths
    assert not any(p.startswith(("/api/v1/service", "/api/v1/marketing", "/api/v1/reports")) for p in paths)
