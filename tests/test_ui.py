"""A plugin that raises inside a UI contribution degrades that piece to a
visible placeholder naming the plugin; the page renders and the error is logged."""

from __future__ import annotations

from hooks import MenuItem, Widget, hookimpl
from host.testing import client_for, plugin_candidate


class Broken:
    @hookimpl
    def mosaic_menu_items(self, user):
        raise RuntimeError("menu exploded")

    @hookimpl
    def mosaic_dashboard_widgets(self, user):
        raise KeyError("widget exploded")

    @hookimpl
    def mosaic_template_slot(self, name, context):
        raise ValueError("slot exploded")


def broken_app(make_app):
    return make_app(plugins=["broken", "sales"], extra_plugins=[plugin_candidate("broken", Broken())])


def test_raising_plugin_gives_a_placeholder_and_the_page_renders(make_app, caplog):
    client = client_for(broken_app(make_app))
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    # menu, widget and the two template slots each degrade separately
    assert html.count("The broken plugin could not show this part.") == 4
    # other plugins' pieces are unaffected
    assert "Open pipeline" in html and ">Sales</a>" in html
    logged = [r for r in caplog.records if r.name == "mosaic.ui"]
    assert {r.getMessage() for r in logged} == {
        "plugin broken failed in mosaic_menu_items",
        "plugin broken failed in mosaic_dashboard_widgets",
        "plugin broken failed in mosaic_template_slot",
    }
    assert all(r.exc_info for r in logged), "the traceback is logged"


def test_placeholder_on_plugin_pages_too(make_app):
    client = client_for(broken_app(make_app))
    response = client.get("/sales/")
    assert response.status_code == 200
    assert "The broken plugin could not show this part." in response.get_data(as_text=True)


class UnknownEndpoint:
    @hookimpl
    def mosaic_menu_items(self, user):
        return [MenuItem(label="Nowhere", endpoint="acme.missing"), MenuItem(label="Home again", endpoint="core.index")]


def test_menu_item_with_unknown_endpoint_is_left_out(make_app, caplog):
    app = make_app(plugins=["acme"], extra_plugins=[plugin_candidate("acme", UnknownEndpoint())])
    html = client_for(app).get("/").get_data(as_text=True)
    assert "Nowhere" not in html and "Home again" in html
    assert any("acme.missing" in r.getMessage() for r in caplog.records)


def test_error_pages_are_html_for_pages_and_json_for_the_api(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "404 Not Found" in page.get_data(as_text=True)
    api = client.get("/api/v1/no/such/thing")
    assert api.status_code == 404 and api.mimetype == "application/json"
    body = api.get_json()
    assert body["code"] == 404 and body["status"] == "Not Found" and body["message"]


def test_static_files_are_served_by_the_app(client):
    response = client.get("/static/mosaic.css")
    assert response.status_code == 200 and b".mosaic-placeholder" in response.data
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html and "https://" not in html, "no CDN or external asset"


def test_menu_shows_only_what_the_user_may_use(make_app):
    app = make_app(plugins=["sales"])
    staff = client_for(app, "rep@example.com", roles=("staff",)).get("/").get_data(as_text=True)
    admin = client_for(app).get("/").get_data(as_text=True)
    assert ">Sales</a>" in staff and ">Sales</a>" in admin
    for label in (">Roles</a>", ">Audit</a>", ">Security log</a>"):
        assert label in admin and label not in staff
    nobody = client_for(app, "none@example.com", roles=()).get("/").get_data(as_text=True)
    assert ">Sales</a>" not in nobody, "sales.deal.read is needed for the Sales entry"
