"""The search page (``/search?q=``): contacts from the host's index and
every plugin's ``mosaic_search`` results, grouped by where they come from,
with the query's words marked.

Everything a result carries is text: it is escaped, and only the matched
parts are wrapped in ``<mark>`` by ``highlight`` (a plugin's HTML is never
trusted). A plugin that fails shows as a placeholder naming it. The page is
a plain GET form, so it works without script.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask_babel import gettext as _
from markupsafe import Markup, escape

from hooks import SearchResult
from host.core import search as search_service
from host.db import session as db_session
from host.security.access import current_principal, login_required

from . import labels
from .common import hook_user

log = logging.getLogger("mosaic.ui")

bp = Blueprint("search", __name__)

PER_SOURCE = 20
MAX_QUERY = 200
_WORD = re.compile(r"\w+")


@dataclass
class Group:
    """The results of one source: ``core`` (contacts) or a plugin."""

    key: str
    title: str
    results: list[SearchResult] = field(default_factory=list)
    failed: bool = False


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.casefold().translate(search_service.SQLITE_FOLD)


def query_terms(query: str) -> tuple[str, ...]:
    """The query's words as ``highlight`` compares them (folded like the index)."""
    parsed = search_service.parse_query(query)
    if parsed is None:
        return ()
    return tuple(sorted({_fold(w) for word in parsed.words for w in _WORD.findall(word)}, key=len, reverse=True))


def highlight(text: Any, terms: tuple[str, ...]) -> Markup:
    """``text`` escaped, with the start of each word that begins with a
    query term in ``<mark>`` (case- and accent-insensitive: "zofia" marks
    "Žofia"). When folding changes a word's length the whole word is marked."""
    text = "" if text is None else str(text)
    parts: list[Any] = []
    position = 0
    for match in _WORD.finditer(text):
        word = match.group()
        folded = _fold(word)
        term = next((t for t in terms if folded.startswith(t)), None)
        if term is None:
            continue
        cut = len(term) if len(folded) == len(word) else len(word)
        parts += [escape(text[position:match.start()]), Markup("<mark>"), escape(word[:cut]), Markup("</mark>"),
                  escape(word[cut:])]
        position = match.end()
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def _plugin_titles() -> dict[str, str]:
    return {plugin.name: plugin.info.title for plugin in current_app.extensions["mosaic"].plugins}


def search_groups(query: str) -> list[Group]:
    """Contacts (for those who may read them), then each plugin's results in
    the plugins' order; a plugin that raises or answers nonsense becomes an
    empty group marked failed (logged)."""
    session = db_session()
    principal = current_principal()
    groups: list[Group] = []
    if principal.can("core.contact.read"):
        hits = search_service.search_contacts(session, principal, query, PER_SOURCE)
        kinds = labels.kinds()
        groups.append(Group("core", _("Contacts"), [
            SearchResult(title=hit.name, url=f"/contacts/{hit.id}", kind=kinds.get(hit.kind, hit.kind),
                         snippet=hit.email or "", score=hit.score)
            for hit in hits]))
    titles = _plugin_titles()
    pm = current_app.extensions["mosaic"].pm
    for plugin, thunk in pm.call_each("mosaic_search", query=query, user=hook_user(session), limit=PER_SOURCE):
        # A plugin's title through gettext: its own catalogue translates it (else it stays as declared).
        group = Group(plugin, _(titles.get(plugin, plugin)))
        try:
            results = list(thunk() or ())
            if not all(isinstance(item, SearchResult) for item in results):
                raise TypeError("mosaic_search must return hooks.SearchResult items")
            group.results = sorted(results, key=lambda r: -r.score)[:PER_SOURCE]
        except Exception:
            log.exception("plugin %s failed in mosaic_search", plugin)
            group.failed = True
        groups.append(group)
    return groups


@bp.get("/search")
@login_required
def index():
    """Anyone signed in may search; each source shows only what the user
    may see (contacts need ``core.contact.read``, plugins check their own)."""
    query = request.args.get("q", "").strip()[:MAX_QUERY]
    groups = search_groups(query) if search_service.parse_query(query) else []
    terms = query_terms(query)
    return render_template(
        "core/search/results.html", query=query, groups=groups, terms=terms, highlight=highlight,
        total=sum(len(g.results) for g in groups),
    )
