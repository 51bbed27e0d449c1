"""Finding contacts by name, e-mail, phone and company, and the global search
that merges them with every plugin's ``mosaic_search`` results.

The index (``contact_search``) is declared and kept in sync by database
triggers (migration ``aee127614dcf``): every write path, ORM, bulk Core
update, foreign-key action or raw SQL, updates it in the writing transaction,
so nothing here, and no service that writes contacts, has to remember to
reindex. SQLite uses FTS5, PostgreSQL a ``tsvector`` with a GIN index.

Matching: case- and accent-insensitive in every script; each word of the query
is a prefix that must match (AND), across name, e-mails, phones and company; a
word such as ``ivan.petrov@ex`` or ``Jean-Luc`` must match as a phrase; a query
that looks like a phone number is searched as its digits run together.

Ranking is bounded (DESIGN: ranking every match of a common prefix costs ten
times the match itself): an index query fetches at most ``CANDIDATES`` ids,
newest first; when there were more matches than that, a second one fetches
as many whose name holds every query word whole (so an old "Ivan" still
beats a thousand newer "Ivanova"s). Only those are ranked, in Python. Both
queries carry the record scope (``scope_condition``) and leave out the
recycle bin, so a principal never gets, or gets counted, a contact they may
not see.

A principal whose contact scope is "own" or "team" also asks the index for
their access tokens (``access_tokens``: ``o<user id>``, ``t<team id>``;
migration ``222262f4b5cc`` keeps each contact's owner and team tokens in
the index, by the same triggers): the index then hands out only their
matches, newest first, instead of everyone's for the scope condition to
throw most away. The tokens only narrow what the index returns;
``scope_condition`` still decides every row.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    column,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    table,
)
from sqlalchemy.orm import Session

from hooks import SearchResult
from host.core.models import Contact
from host.security.access import Principal, object_type_of, scope_condition

log = logging.getLogger("mosaic.search")

#: Ids each index query may return for ranking (two queries: prefix, whole words).
CANDIDATES = 200
#: The most hits ``search_contacts`` returns.
MAX_LIMIT = 100
#: The most ids ``contact_ids_matching`` returns.
MAX_IDS = 1000
#: PostgreSQL: how many of the newest index rows are tested before the GIN
#: index is asked, for a user who sees every contact (see ``_pg_candidates``).
#: At 1M contacts (median ms, admin): 5,000 left a word on ~1 % of contacts
#: ("zofia", 13,000 matches) to a GIN query that collected and sorted every
#: match (52-65 ms); 20,000 fills the 200 candidates in the probe (19 ms), at
#: the price of a word nobody has (13 -> 25 ms, the whole probe tested).
PG_PROBE_ALL = 20_000
#: The same for a user with own or team scope: their own newest contacts
#: (see ``_pg_scoped_candidates``). Larger is worse there: a rep's common
#: prefix ("иван") went from 32 to 185-214 ms with 15,000-30,000.
PG_PROBE = 5000
#: ... tested in two steps: the first this many, then the rest of PG_PROBE
#: only when the first step found a common word. A rarer word ("zofia", ~1 %
#: of contacts) goes to GIN after the small step instead of walking 5,000
#: contacts for ~65 of the 200 candidates (28-33 ms at 1M).
PG_PROBE_FIRST = 1000

#: What SQLite's unicode61 tokenizer does not fold (Greek accents, ё, letters
#: without a Unicode decomposition). The migration's triggers apply the same
#: map to the indexed text (the same pairs, in the same order, as its
#: ``FOLD``); queries get it here, ``rebuild_index`` in SQL. PostgreSQL's
#: unaccent folds all of them already.
_FOLD_PAIRS = (
    ("ß", "ss"), ("ẞ", "ss"), ("Ł", "l"), ("ł", "l"), ("Ø", "o"), ("ø", "o"),
    ("Đ", "d"), ("đ", "d"), ("Æ", "ae"), ("æ", "ae"), ("Œ", "oe"), ("œ", "oe"),
    ("Þ", "th"), ("þ", "th"), ("ı", "i"), ("Ħ", "h"), ("ħ", "h"), ("Ŧ", "t"),
    ("ŧ", "t"), ("Ŋ", "n"), ("ŋ", "n"), ("Ё", "е"), ("ё", "е"),
    ("Ά", "α"), ("ά", "α"), ("Έ", "ε"), ("έ", "ε"), ("Ή", "η"), ("ή", "η"),
    ("Ί", "ι"), ("ί", "ι"), ("Ϊ", "ι"), ("ϊ", "ι"), ("ΐ", "ι"), ("Ό", "ο"),
    ("ό", "ο"), ("Ύ", "υ"), ("ύ", "υ"), ("Ϋ", "υ"), ("ϋ", "υ"), ("ΰ", "υ"),
    ("Ώ", "ω"), ("ώ", "ω"),
)
SQLITE_FOLD = {ord(char): replacement for char, replacement in _FOLD_PAIRS}

_PHONE_LIKE = re.compile(r"^[\d\s+\-().\/]+$")
#: Fewer digits than this is not a phone number worth running together.
_MIN_PHONE_DIGITS = 3

_SQLITE_INDEX = table("contact_search", column("rowid"), column("contact_search"), *(
    column(name) for name in ("name", "emails", "phones", "company", "access")
))
_PG_INDEX = table("contact_search", column("contact_id"), column("document"), *(
    column(name) for name in ("name", "emails", "phones", "company", "access")
))
#: The FTS5 columns a query's words are matched in (never ``access``).
_SQLITE_TEXT_COLUMNS = "{name emails phones company}"


@dataclass(frozen=True)
class ContactHit:
    """One contact found, with why it ranks where it does.

    ``matched`` names the field that earned the score: "name", "email",
    "phone", "company", or "" when the words matched across fields."""

    id: int
    name: str
    kind: str
    email: str | None
    score: float
    matched: str


@dataclass(frozen=True)
class Query:
    """A query as the index sees it: whitespace-separated words that hold a
    letter or digit (NFKC-normalised, so full-width or decomposed input
    matches), and, when it looks like a phone number (only digits, spaces and
    ``+-()./``, at least three digits), the digits run together: then those
    are searched instead of the words, as a phone is stored as digits."""

    words: tuple[str, ...]
    digits: str = ""


def parse_query(text: str | None) -> Query | None:
    """``None`` when nothing in ``text`` can match (blank, punctuation only)."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    words = tuple(word for word in text.split() if any(char.isalnum() for char in word))
    if not words:
        return None
    digits = ""
    if _PHONE_LIKE.match(text):
        digits = re.sub(r"\D", "", text)
        if len(digits) < _MIN_PHONE_DIGITS:
            digits = ""
    return Query(words, digits)


# --- public API ------------------------------------------------------------------


def search_contacts(session: Session, principal: Principal, query: str, limit: int = 20) -> list[ContactHit]:
    """The best ``limit`` (at most ``MAX_LIMIT``) contacts matching ``query``
    that ``principal`` may see, best first: the exact name, then an exact
    e-mail or phone number, then names starting with the query, names holding
    every word, e-mail and phone prefixes, company names, the rest."""
    parsed = parse_query(query)
    limit = min(limit, MAX_LIMIT)
    if parsed is None or limit <= 0:
        return []
    rows = {row.id: row for row in _candidates(session, principal, parsed, False, CANDIDATES)}
    if len(rows) == CANDIDATES and not parsed.digits:
        # More matches than fetched. Those not fetched are older than every
        # candidate, so they lose ties and matter only when they score above
        # the last hit shown; only whole-word names can (see ``score``).
        to_beat = _score_to_beat(parsed, rows.values(), limit)
        if to_beat < 1.0:
            exact_only = to_beat >= _STARTS_WITH_WORDS_SCORE and not _is_sqlite(session)
            older = (_pg_exact_name_candidates(session, principal, parsed, CANDIDATES) if exact_only
                     else _candidates(session, principal, parsed, True, CANDIDATES))
            rows.update((row.id, row) for row in older)
    return rank(parsed, rows.values())[:limit]


def _score_to_beat(parsed: Query, rows: Iterable[Any], limit: int) -> float:
    """The score of the ``limit``-th best of ``rows`` (0 when fewer)."""
    scoring = _Scoring.of(parsed)
    scores = sorted((score(scoring, row)[0] for row in rows), reverse=True)
    return scores[limit - 1] if len(scores) >= limit else 0.0


def contact_ids_matching(session: Session, principal: Principal, query: str, limit: int) -> list[int]:
    """Ids of up to ``limit`` (at most ``MAX_IDS``) contacts matching
    ``query`` that ``principal`` may see and that are not deleted, newest
    (highest id) first, unranked: the ``q=`` filter of a list. An empty or
    punctuation-only query matches nothing."""
    parsed = parse_query(query)
    limit = min(limit, MAX_IDS)
    if parsed is None or limit <= 0:
        return []
    return [row.id for row in _candidates(session, principal, parsed, False, limit)]


def contact_match_condition(session: Session, query: str) -> ColumnElement[bool]:
    """``contact.id IN (ids matching query)``, for a list that pages by
    keyset through every match. Only the text match: add
    ``scope_condition`` and the recycle-bin filter as for any list."""
    parsed = parse_query(query)
    if parsed is None:
        return false()
    if _is_sqlite(session):
        index = _SQLITE_INDEX
        return Contact.id.in_(select(index.c.rowid).where(_sqlite_match(parsed, exact_name=False)))
    index = _PG_INDEX
    return Contact.id.in_(select(index.c.contact_id).where(_pg_match(parsed, exact_name=False)))


def join_matches(session: Session, stmt: Select, query: str,
                 principal: Principal | None = None) -> tuple[Select, ColumnElement[int]]:
    """``stmt`` (a select of contacts) limited to those matching ``query``,
    and the column to order and page it by, newest first (equal to
    ``contact.id``). Only the text match: ``stmt`` carries the scope and the
    recycle-bin filter as any list does.

    On SQLite the statement joins the index and pages by the index's rowid,
    so FTS5 hands out matches newest first and stops when the page is full:
    for a common prefix ("иван", 5 % of a million contacts) that is a few
    milliseconds, where ``contact_match_condition``'s ``IN`` list makes
    FTS5 produce every match first (two to three times as long). PostgreSQL
    keeps the ``IN`` form: its planner chooses between the GIN index and a
    walk down the primary key from its statistics either way (for a rep, a
    walk down their own contacts, testing each). The access tokens are not
    added there: with them the planner took the two GIN indexes, and asking
    GIN for every "иван…" made a rep's API page 100 ms median at a million
    contacts, against 39 ms without them.
    ``principal`` (the one ``stmt`` is scoped for) narrows SQLite's index
    to their access tokens, so FTS5 hands out only their matches."""
    parsed = parse_query(query)
    if parsed is None:
        return stmt.where(false()), Contact.id
    tokens = access_tokens(principal) if principal is not None else None
    if _is_sqlite(session):
        index = _SQLITE_INDEX
        joined = stmt.join(index, index.c.rowid == Contact.id).where(_sqlite_match(parsed, False, tokens))
        return joined, index.c.rowid
    return stmt.where(contact_match_condition(session, query)), Contact.id


def search_all(
    session: Session,
    principal: Principal,
    query: str,
    limit: int = 20,
    *,
    user: Any = None,
    pm: Any = None,
) -> list[Any]:
    """The global search: contacts and every plugin's ``mosaic_search``
    results, as ``hooks.SearchResult`` ordered by score (contacts first on a
    tie), at most ``limit`` of them; then a ``host.ui.Placeholder`` for each
    plugin that failed, so the page names it instead of breaking.

    Plugins get ``user`` (default: the principal's ``User`` row). Inside an
    app context plugins are called through ``host.ui.contributions``; pass
    ``pm`` (the plugin manager) to call them without one (jobs, CLI)."""
    if parse_query(query) is None or limit <= 0:
        return []
    found: list[SearchResult] = [
        SearchResult(title=hit.name, url=f"/contacts/{hit.id}", kind=hit.kind, snippet=hit.email or "", score=hit.score)
        for hit in search_contacts(session, principal, query, limit)
    ]
    if user is None:
        user = _user_of(session, principal)
    failed = []
    for item in _plugin_results(pm, query=query, user=user, limit=limit):
        if isinstance(item, SearchResult):
            found.append(item)
        elif getattr(item, "is_placeholder", False):
            failed.append(item)
    found.sort(key=lambda result: -result.score)  # stable: contacts stay first on ties
    return found[:limit] + failed


# --- candidates ------------------------------------------------------------------


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _candidates(session: Session, principal: Principal, parsed: Query, exact_name: bool, limit: int) -> list[Any]:
    """Up to ``limit`` matching contacts ``principal`` may see, newest
    first, without scoring them."""
    if _is_sqlite(session):
        # FTS5 hands out rowids in order: the database stops at ``limit``.
        index = _SQLITE_INDEX
        match = _sqlite_match(parsed, exact_name, access_tokens(principal))
        return session.execute(_candidate_select(index, index.c.rowid, match, principal, limit)).all()
    return _pg_candidates(session, principal, parsed, exact_name, limit)


def access_tokens(principal: Principal) -> tuple[str, ...] | None:
    """The index tokens of the contacts ``principal`` may see: ``o<user
    id>`` for scope "own", plus ``t<team id>`` for each of their teams for
    scope "team"; ``None`` when the index need not be narrowed (scope "all",
    the system, or no user at all, whom ``scope_condition`` refuses anyway).

    The same rule as ``scope_condition`` for ``Contact`` (owner, or team
    for scope "team" with teams), read off the same principal, so the
    tokens never leave out a contact it lets through; it is still applied
    to every row. Should ``scope_condition`` ever let a user see more (a
    share, say), this must say so too, or those contacts go missing from
    search (``tests/test_search.py`` compares the two)."""
    if principal.system or principal.user_id is None:
        return None
    scope = principal.scope_for(object_type_of(Contact))
    if scope == "all":
        return None
    tokens = [f"o{principal.user_id}"]
    if scope == "team" and principal.team_ids:
        tokens += [f"t{team}" for team in sorted(principal.team_ids)]
    return tuple(tokens)


def _candidate_select(index: Any, key: Any, match: ColumnElement[bool], principal: Principal, limit: int,
                      order: Any = None) -> Select:
    """Matching contacts the principal may see, ordered by ``order``
    descending (default: ``key``; ``False``: in no order)."""
    stmt = (
        select(
            Contact.id,
            Contact.kind,
            Contact.name,
            Contact.email,
            index.c.name.label("all_names"),
            index.c.emails,
            index.c.phones,
            index.c.company,
        )
        .select_from(index)
        .join(Contact, Contact.id == key)
        .where(match, Contact.deleted_at.is_(None), scope_condition(principal, Contact))
        .limit(_inline(limit))
    )
    if order is False:
        return stmt
    return stmt.order_by((key if order is None else order).desc())


def _pg_candidates(session: Session, principal: Principal, parsed: Query, exact_name: bool, limit: int) -> list[Any]:
    """GIN finds matches in no particular order, so newest-first through it
    means fetching every match (27,000 rows for "ivan" in 100,000: 60 ms).
    So: first test only the newest ``PG_PROBE_ALL`` index rows, walking the
    primary key backwards; a common prefix fills ``limit`` there in a few
    milliseconds. Only what that misses, older than the rows it tested,
    comes from the GIN index, ordered by ``contact_id + 0`` (by the column
    itself, the planner would walk the whole key backwards testing every
    row: 186 ms for a word no one has, against 10 ms).

    The whole-word name query only adds to those candidates: it takes any
    ``limit`` matches, in no order, which GIN does in a few milliseconds
    however many there are (all of them when they are few, the case it is
    for; when they are many, the newest are among the prefix candidates)."""
    index = _PG_INDEX
    tokens = access_tokens(principal)
    if tokens is not None:
        return _pg_scoped_candidates(session, principal, parsed, exact_name, limit, tokens)
    if exact_name:
        stmt = _candidate_select(index, index.c.contact_id, _pg_match(parsed, True), principal, limit, order=False)
        return session.execute(stmt).all()
    recent = select(index).order_by(index.c.contact_id.desc()).limit(_inline(PG_PROBE_ALL)).subquery("recent")
    match = _pg_match(parsed, False, recent.c.document)
    rows = session.execute(_candidate_select(recent, recent.c.contact_id, match, principal, limit)).all()
    if len(rows) == limit:
        return rows
    oldest_tested = session.scalar(
        select(index.c.contact_id).order_by(index.c.contact_id.desc()).offset(_inline(PG_PROBE_ALL - 1)).limit(1)
    )
    if oldest_tested is None:  # the probe saw every row
        return rows
    match = and_(_pg_match(parsed, False), index.c.contact_id < _inline(oldest_tested))
    older = _candidate_select(index, index.c.contact_id, match, principal, limit - len(rows), order=index.c.contact_id + 0)
    return rows + session.execute(older).all()


def _pg_scoped_candidates(session: Session, principal: Principal, parsed: Query, exact_name: bool, limit: int,
                          tokens: Sequence[str]) -> list[Any]:
    """``_pg_candidates`` for a principal with own or team scope.

    The newest rows of everyone's hold few of theirs, so the probe walks
    their own newest ``PG_PROBE`` contacts instead (``scope_condition``
    ordered by id: ``ix_contact_owner_id_id`` backwards for a rep) and tests
    each one's index row: a common prefix fills ``limit`` there (a rep's
    "иван" at a million contacts: 13 ms). It walks in two steps, the
    second only when the first (``PG_PROBE_FIRST`` contacts) found a common
    word. Older matches come from the words' GIN index ANDed with the access
    tokens' (``ix_contact_search_access``), just their matches, sorted:
    asking GIN for a common prefix costs 40 ms at a million contacts whoever
    asks (it collects every match of every word that begins so), which is
    why the probe comes first. The whole-word
    name query goes to GIN directly (an exact word is cheap there)."""
    index = _PG_INDEX
    access = _pg_access(tokens)
    if exact_name:
        match = and_(_pg_match(parsed, True), *access)
        return session.execute(_candidate_select(index, index.c.contact_id, match, principal, limit, order=False)).all()
    rows: list[Any] = []
    below: int | None = None  # the next window starts under this id
    first = min(PG_PROBE_FIRST, PG_PROBE)
    for stage, window in enumerate((first, PG_PROBE - first)):
        if window <= 0:
            break
        found, oldest_tested = _pg_probe_window(session, principal, parsed, limit - len(rows), window, below)
        rows += found
        if len(rows) == limit or oldest_tested is None:  # filled, or every contact they may see was tested
            return rows
        below = oldest_tested
        # Walk on only where the first window showed a common word (the
        # rest of PG_PROBE should then fill ``limit``); for a rarer word the
        # GIN query is cheaper than walking, as every tested contact costs a
        # join to its index row.
        if stage == 0 and len(found) * PG_PROBE < limit * first:
            break
    match = and_(_pg_match(parsed, False), *access, index.c.contact_id < _inline(below))
    older = _candidate_select(index, index.c.contact_id, match, principal, limit - len(rows), order=index.c.contact_id + 0)
    return rows + session.execute(older).all()


def _pg_probe_window(session: Session, principal: Principal, parsed: Query, limit: int, window: int,
                     below: int | None) -> tuple[list[Any], int | None]:
    """Up to ``limit`` matches among the ``window`` newest contacts the
    principal may see (with an id under ``below``), newest first; and the
    oldest id of that window, for the next step (``None`` when the matches
    filled ``limit`` or the window held every remaining contact)."""
    visible = [scope_condition(principal, Contact)]
    if below is not None:
        visible.append(Contact.id < _inline(below))
    newest_visible = (
        select(Contact.id).where(*visible).order_by(Contact.id.desc()).limit(_inline(window)).subquery("visible")
    )
    probe = _candidate_select(_PG_INDEX, _PG_INDEX.c.contact_id, _pg_match(parsed, False), principal, limit)
    probe = probe.join(newest_visible, newest_visible.c.id == _PG_INDEX.c.contact_id)
    found = session.execute(probe).all()
    if len(found) == limit:
        return found, None
    oldest = session.scalar(select(Contact.id).where(*visible).order_by(Contact.id.desc()).offset(_inline(window - 1)).limit(1))
    return found, oldest


def _pg_exact_name_candidates(session: Session, principal: Principal, parsed: Query, limit: int) -> list[Any]:
    """Contacts whose whole name is the query (the only ones that can beat
    a name starting with its words), through ``ix_contact_name_folded``
    (migration ``b7d41c9e2a60``): the same fold as the index's text."""
    match = func.mosaic_search_fold(Contact.name) == func.mosaic_search_fold(_inline(" ".join(parsed.words)))
    stmt = _candidate_select(_PG_INDEX, _PG_INDEX.c.contact_id, match, principal, limit, order=False)
    return session.execute(stmt).all()


def _pg_access(tokens: Sequence[str] | None) -> list[ColumnElement[bool]]:
    """``access @@ 'o7 | t3'`` for the tokens (nothing for ``None``)."""
    if tokens is None:
        return []
    query = func.to_tsquery(literal_column("'simple'"), _inline(" | ".join(tokens)))
    return [_PG_INDEX.c.access.op("@@")(query)]


def _fts5_phrase(word: str, prefix: bool) -> str:
    """A quoted FTS5 phrase: no query syntax can leak in, and punctuation
    inside the word makes its parts a phrase (``ivan.petrov@ex``)."""
    quoted = '"' + word.translate(SQLITE_FOLD).replace('"', '""') + '"'
    return quoted + "*" if prefix else quoted


def sqlite_match_expression(parsed: Query, exact_name: bool, tokens: Sequence[str] | None = None) -> str:
    """The FTS5 MATCH string: every word as a prefix in any text column, or
    (for ``exact_name``) every word whole in the name; a phone-like query is
    its digits run together, as a prefix. With ``tokens`` (``access_tokens``),
    only contacts whose ``access`` column holds one of them."""
    if exact_name:
        words = "name : (" + " AND ".join(_fts5_phrase(w, prefix=False) for w in parsed.words) + ")"
    elif parsed.digits:
        words = f"{_SQLITE_TEXT_COLUMNS} : ({_fts5_phrase(parsed.digits, prefix=True)})"
    else:
        words = f"{_SQLITE_TEXT_COLUMNS} : (" + " AND ".join(_fts5_phrase(w, prefix=True) for w in parsed.words) + ")"
    if tokens is None:
        return words
    return f"({words}) AND access : (" + " OR ".join(_fts5_phrase(t, prefix=False) for t in tokens) + ")"


def _sqlite_match(parsed: Query, exact_name: bool, tokens: Sequence[str] | None = None) -> ColumnElement[bool]:
    return _SQLITE_INDEX.c.contact_search.op("MATCH")(literal(sqlite_match_expression(parsed, exact_name, tokens)))


def _inline(value: str | int) -> ColumnElement[Any]:
    """A value rendered into the SQL as a literal, not sent as a parameter:
    psycopg prepares a statement on its fifth run, and PostgreSQL may then
    switch to a generic plan that cannot see the tsquery, the limit or the
    id bound, and scans instead of using the GIN index (the probe went from
    4 to 16 ms, the GIN query from 2 to 11 ms)."""
    return literal(value, literal_execute=True)


def _pg_word_query(word: str, exact_name: bool) -> ColumnElement[Any]:
    """A tsquery for one query word, folded by the same SQL function as the
    index: its parts adjacent (``<->``), the last one a prefix; or, for
    ``exact_name``, whole words of weight A (the name). A word that folds to
    nothing gives NULL, which matches nothing (as on SQLite)."""
    folded = func.mosaic_search_fold(_inline(word))
    if exact_name:
        text = func.replace(folded, " ", _inline(":A <-> ")).concat(_inline(":A"))
    else:
        text = func.replace(folded, " ", _inline(" <-> ")).concat(_inline(":*"))
    return case((folded == "", null()), else_=func.to_tsquery(literal_column("'simple'"), text))


def _pg_match(parsed: Query, exact_name: bool, document: Any = None) -> ColumnElement[bool]:
    """As ``sqlite_match_expression``, as a tsquery on ``document``."""
    document = _PG_INDEX.c.document if document is None else document
    if parsed.digits and not exact_name:
        # PostgreSQL's parser keeps the "+" of an international number as
        # part of the token ("+359881234567"), so ask for both forms.
        query = func.to_tsquery(literal_column("'simple'"), _inline(f"{parsed.digits}:* | +{parsed.digits}:*"))
        return document.op("@@")(query)
    query = None
    for word in parsed.words:
        part = _pg_word_query(word, exact_name)
        query = part if query is None else query.op("&&")(part)
    return document.op("@@")(query)


# --- bulk rebuild ----------------------------------------------------------------


#: A contact's access tokens (``access_tokens``), as migration
#: ``222262f4b5cc``'s triggers write them, for ``contact AS c``.
_SQLITE_ACCESS = "trim(coalesce('o' || c.owner_id, '') || ' ' || coalesce('t' || c.team_id, ''))"
_PG_ACCESS = "to_tsvector('simple'::regconfig, concat_ws(' ', 'o' || c.owner_id, 't' || c.team_id))"

#: SQLite's parser overflows on deeply nested calls, so the fold runs in
#: stages of this many ``replace()`` calls, one subquery each (as the
#: migration's triggers do).
_FOLD_STAGE = 15


def rebuild_index(connection: Connection) -> int:
    """Rebuild ``contact_search`` from the contact tables in one pass;
    returns the number of contacts indexed.

    The triggers remain THE write path and keep the index right on every
    change; this is for data loaded with them out of the way (a bulk load
    into an empty database, a restore), where one set-based statement costs a
    fraction of a million single-row trigger runs. It produces the rows the
    triggers would (``tests/test_search_rebuild.py`` compares the two).
    Runs in the caller's transaction."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DELETE FROM contact_search")
        connection.exec_driver_sql(_sqlite_rebuild_sql())
        # One b-tree instead of the many segments a bulk insert leaves behind.
        connection.exec_driver_sql("INSERT INTO contact_search (contact_search) VALUES ('optimize')")
    else:
        connection.exec_driver_sql("DELETE FROM contact_search")
        connection.exec_driver_sql(
            "INSERT INTO contact_search (contact_id, name, emails, phones, company, access)"
            " SELECT c.id, concat_ws(' ', c.name, c.first_name, c.last_name),"
            " concat_ws(' ', c.email, (SELECT string_agg(e.email, ' ') FROM contact_email AS e WHERE e.contact_id = c.id)),"
            " concat_ws(' ', c.phone_digits,"
            " (SELECT string_agg(p.number_digits, ' ') FROM contact_phone AS p WHERE p.contact_id = c.id)),"
            " coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), ''),"
            f" {_PG_ACCESS}"
            " FROM contact AS c"
        )
    return connection.exec_driver_sql("SELECT count(*) FROM contact_search").scalar_one()


def _sqlite_fold_sql(expr: str, pairs: Sequence[tuple[str, str]]) -> str:
    for char, replacement in pairs:
        expr = f"replace({expr}, '{char}', '{replacement}')"
    return expr


def _sqlite_rebuild_sql() -> str:
    rows = (
        "SELECT c.id AS id,"
        " c.name || ' ' || coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '') AS name,"
        " coalesce(c.email, '') || ' ' || coalesce((SELECT group_concat(e.email, ' ')"
        " FROM contact_email AS e WHERE e.contact_id = c.id), '') AS emails,"
        " coalesce(c.phone_digits, '') || ' ' || coalesce((SELECT group_concat(p.number_digits, ' ')"
        " FROM contact_phone AS p WHERE p.contact_id = c.id), '') AS phones,"
        " coalesce((SELECT co.name FROM contact AS co WHERE co.id = c.company_id), '') AS company,"
        f" {_SQLITE_ACCESS} AS access"
        " FROM contact AS c"
    )
    for start in range(0, len(_FOLD_PAIRS), _FOLD_STAGE):
        pairs = _FOLD_PAIRS[start:start + _FOLD_STAGE]
        rows = (
            f"SELECT id, {_sqlite_fold_sql('name', pairs)} AS name, {_sqlite_fold_sql('emails', pairs)} AS emails,"
            f" phones, {_sqlite_fold_sql('company', pairs)} AS company, access FROM ({rows})"
        )
    return ("INSERT INTO contact_search (rowid, name, emails, phones, company, access)"
            f" SELECT id, name, emails, phones, company, access FROM ({rows})")


# --- ranking ---------------------------------------------------------------------


_NOT_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=8192)
def fold(text: str | None) -> tuple[str, ...]:
    """Words of ``text`` without case, accents or punctuation, for ranking
    (matching is the database's job; this only orders what it found).
    Cached: names repeat, and ranking folds a few hundred per search."""
    if not text:
        return ()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char)).translate(SQLITE_FOLD)
    return tuple(_NOT_WORD.sub(" ", text.casefold()).split())


def _email_key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(SQLITE_FOLD)


def _starts_with_words(words: tuple[str, ...], query: tuple[str, ...]) -> bool:
    """``words`` begin with ``query``, its last word possibly cut short."""
    n = len(query)
    return len(words) >= n and words[: n - 1] == query[:-1] and words[n - 1].startswith(query[-1])


def _every_word_begins_one(words: tuple[str, ...], query: tuple[str, ...]) -> bool:
    return all(any(word.startswith(q) for word in words) for q in query)


@dataclass(frozen=True)
class _Scoring:
    """What ranking compares every candidate with, worked out once."""

    words: tuple[str, ...]  # the query folded like names
    typed: str  # the query as an e-mail address would be compared
    digits: str

    @classmethod
    def of(cls, parsed: Query) -> _Scoring:
        text = " ".join(parsed.words)
        return cls(fold(text), _email_key(text), parsed.digits)


#: What a name starting with the query's whole words scores (``score``):
#: above it only the exact name (1.0).
_STARTS_WITH_WORDS_SCORE = 0.9


def score(scoring: _Scoring, row: Any) -> tuple[float, str]:
    """(score between 0 and 1, the field that earned it) for one candidate.
    Scores share the scale of plugins' ``SearchResult.score``. Fields are
    looked at only when an earlier rule did not decide (this runs for every
    candidate)."""
    query = scoring.words
    name = fold(row.name)
    if name == query:
        return 1.0, "name"
    if "@" in scoring.typed and scoring.typed in _email_keys(row.emails):
        return 0.95, "email"
    if scoring.digits and scoring.digits in (row.phones or "").split():
        return 0.95, "phone"
    if name[: len(query)] == query:
        return _STARTS_WITH_WORDS_SCORE, "name"
    if _starts_with_words(name, query):
        return 0.8, "name"
    all_names = fold(row.all_names)
    if all(q in all_names for q in query):
        return 0.7, "name"
    if _every_word_begins_one(all_names, query):
        return 0.6, "name"
    if any(e.startswith(scoring.typed) for e in _email_keys(row.emails)):
        return 0.5, "email"
    if scoring.digits and any(p.startswith(scoring.digits) for p in (row.phones or "").split()):
        return 0.45, "phone"
    company = fold(row.company)
    if company and _every_word_begins_one(company, query):
        return 0.3, "company"
    return 0.1, ""


def _email_keys(emails: str | None) -> list[str]:
    return [_email_key(e) for e in (emails or "").split()]


def rank(parsed: Query, rows: Iterable[Any]) -> list[ContactHit]:
    """Candidates best first; newest first among equals."""
    scoring = _Scoring.of(parsed)
    hits = []
    for row in rows:
        points, matched = score(scoring, row)
        hits.append(ContactHit(row.id, row.name, row.kind, row.email, points, matched))
    hits.sort(key=lambda hit: (-hit.score, -hit.id))
    return hits


# --- plugins ---------------------------------------------------------------------


def _user_of(session: Session, principal: Principal) -> Any:
    if principal.user_id is None:
        return None
    from host.security.models import User

    return session.get(User, principal.user_id)


def _plugin_results(pm: Any, **kwargs: Any) -> Sequence[Any]:
    """Every plugin's ``mosaic_search`` results; a plugin that raises gives
    a ``Placeholder`` naming it (logged), never an error page."""
    from host import ui

    if pm is None:
        return ui.contributions("mosaic_search", **kwargs)
    items: list[Any] = []
    for plugin, thunk in pm.call_each("mosaic_search", **kwargs):
        try:
            result = thunk()
        except Exception:
            log.exception("plugin %s failed in mosaic_search", plugin)
            items.append(ui.Placeholder(plugin, "mosaic_search"))
            continue
        items.extend(result or ())
    return items
