"""Search-as-you-type for the top bar's box: ``GET /search/suggest?q=``.

The REST API takes tokens only, so the box's script calls this small JSON
endpoint with the session instead. It runs the same global search as the
search page (``host.core.search.search_all``: the record scope applies, the
recycle bin is left out, plugins contribute through ``mosaic_search``) and
answers only what a suggestion list needs. Links that are not paths on this
site are dropped, so a plugin's result cannot smuggle in a ``javascript:`` URL.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from host.core.search import search_all
from host.db import session as db_session
from host.security.access import current_principal, require

from .notifications import safe_link

bp = Blueprint("suggest", __name__)

LIMIT = 8
MIN_LENGTH = 2
MAX_LENGTH = 200


@bp.get("/search/suggest")
@require("core.contact.read")
def suggest():
    query = (request.args.get("q") or "").strip()[:MAX_LENGTH]
    if len(query) < MIN_LENGTH:
        return jsonify({"query": query, "items": []})
    found = search_all(db_session(), current_principal(), query, LIMIT)
    items = []
    for result in found:
        link = safe_link(getattr(result, "url", None))
        if getattr(result, "is_placeholder", False) or link is None:
            continue
        items.append({"title": str(result.title), "url": link, "kind": str(result.kind or ""),
                      "snippet": str(result.snippet or "")})
    return jsonify({"query": query, "items": items})
