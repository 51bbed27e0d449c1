"""The search page: contacts and every plugin's results grouped by source,
highlights that are escaped text with <mark>, a failing plugin shown as a
placeholder, scope respected, and no script needed."""

from __future__ import annotations

import pytest
from markupsafe import Markup

from hooks import SearchResult, hookimpl
from host.testing import client_for, make_user, plugin_candidate
from host.web.search import highlight, query_terms

from .core_support import make_contact

REP = "rep@example.com"


class DealSearch:
    @hookimpl
    def mosaic_search(self, query, user, limit):
        return [SearchResult(title=f"Deal with Ivan <script>x</script>", url="/deals/1", kind="deal",
                             snippet="<b>ivanhoe</b> renewal", score=0.5),
                SearchResult(title="Ivan's sneaky link", url="javascript:alert(1)", kind="deal", score=0.4)]


class BrokenSearch:
    @hookimpl
    def mosaic_search(self, query, user, limit):
        raise RuntimeError("index down")


@pytest.fixture
def search_app(make_app):
    return make_app(plugins=["deals", "broken"], extra_plugins=[
        plugin_candidate("deals", DealSearch(), title="Deals"), plugin_candidate("broken", BrokenSearch())])


def test_results_are_grouped_by_source_with_escaped_highlights(search_app):
    app = search_app
    client = client_for(app, REP, roles=("staff",))
    make_contact(app, REP, name="Ivan Petrov", email="ivan@example.com")
    make_contact(app, REP, name="Иван Иванов")
    response = client.get("/search?q=ivan")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    contacts, deals = html.index('id="group-core"'), html.index('id="group-deals"')
    assert contacts < deals
    assert "<mark>Ivan</mark> Petrov" in html and "Иван" not in html
    assert "<mark>Иван</mark> <mark>Иван</mark>ов" in client.get("/search?q=иван").get_data(as_text=True)
    assert "Deal with <mark>Ivan</mark> &lt;script&gt;x&lt;/script&gt;" in html, "plugin titles are text"
    assert "&lt;b&gt;<mark>ivan</mark>hoe&lt;/b&gt; renewal" in html
    assert "<script>x</script>" not in html
    assert "javascript:" not in html, "a plugin's script URL is not a link"
    assert "<mark>Ivan</mark>&#39;s sneaky link" in html
    assert "The broken plugin could not show this part." in html


def test_search_respects_scope_and_the_contact_permission(app, signed_in):
    make_user(app, "other@example.com")
    make_contact(app, "other@example.com", name="Hidden Zofia")
    rep = signed_in(REP)
    make_contact(app, REP, name="Žofia Nováková")
    html = rep.get("/search?q=zofia").get_data(as_text=True)
    assert "<mark>Žofia</mark> Nováková" in html
    assert "Hidden" not in html
    nobody = signed_in("nobody@example.com", roles=())
    response = nobody.get("/search?q=zofia")
    assert response.status_code == 200 and "Nováková" not in response.get_data(as_text=True)


def test_the_page_works_without_a_query_and_signed_out_goes_to_login(app, client, signed_in):
    response = client.get("/search?q=x")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    rep = signed_in(REP)
    html = rep.get("/search").get_data(as_text=True)
    assert '<form method="get" action="/search" role="search"' in html and '<label for="search-q">' in html
    html = rep.get("/search?q=nothing-like-this").get_data(as_text=True)
    assert "Nothing found" in html
    html = rep.get("/search?q=%22%3E%3Cscript%3E").get_data(as_text=True)
    assert 'value="&#34;&gt;&lt;script&gt;"' in html


def test_highlight_marks_word_starts_only_and_escapes_everything():
    terms = query_terms("Ivan pet")
    assert highlight("Ivanov & <Petrov>", terms) == Markup("<mark>Ivan</mark>ov &amp; &lt;<mark>Pet</mark>rov&gt;")
    assert highlight("Zivan", terms) == Markup("Zivan"), "only at a word's start"
    assert highlight(None, terms) == Markup("")
    assert highlight("Straße", query_terms("strass")) == Markup("<mark>Straße</mark>"), "length changes: whole word"
