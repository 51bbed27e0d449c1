from host.testing import client_for


def test_dashboard_and_plugin_pages_answer(app):
    client = client_for(app)
    assert client.get("/").status_code == 200
    for name in ("sales", "marketing", "service", "reports"):
        assert client.get(f"/{name}/").status_code == 200


def test_signed_out_visitor_is_sent_to_the_login_page(client):
    response = client.get("/sales/?page=2")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fsales%2F%3Fpage%3D2"
