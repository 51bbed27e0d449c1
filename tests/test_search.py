"""Contact search (host.core.search) on the real database: SQLite FTS5, or
PostgreSQL full-text when MOSAIC_TEST_DATABASE_URL is set.

What must hold: case and accents never matter in any script; words are
prefixes that must all match; e-mails and phone digits are found; the best
match comes first, however many newer partial matches there are, while only a
bounded candidate set is ranked; the record scope and the recycle bin apply;
and the index follows every way a contact can change (ORM, bulk Core updates,
raw SQL, cascades), because database triggers keep it, not callers.
"""

from __future__ import annotations

import time

import pytest
from alembic import command
from sqlalchemy import delete, func, insert, select, text, update

import hooks
from hooks import hookimpl
from host import migrate
from host.core import search
from host.core.models import Contact, ContactEmail, ContactPhone
from host.core.search import (
    contact_ids_matching,
    contact_match_condition,
    search_all,
    search_contacts,
)
from host.security.access import ANONYMOUS, SYSTEM, Principal
from host.security.audit import audited_bulk_update
from host.security.models import Team
from host.testing import make_user, plugin_candidate
from host.ui import Placeholder

pytestmark = pytest.mark.with_plugins()  # the host alone

EVERYONE = Principal(user_id=1, scopes={"*": "all"})
SEARCH_REVISION = "aee127614dcf"


# --- helpers -------------------------------------------------------------------------


def db(app):
    return app.extensions["mosaic"].db


def add(app, name: str, *, emails=(), phones=(), **fields) -> int:
    """A contact made with the ORM, as services will; ``first_name`` and
    ``last_name`` default to the name's first and remaining words."""
    first, _, last = name.partition(" ")
    fields.setdefault("first_name", first)
    fields.setdefault("last_name", last or None)
    with db(app).transaction() as session:
        contact = Contact(kind=fields.pop("kind", "person"), name=name, **fields)
        contact.emails = [ContactEmail(email=e) for e in emails]
        contact.phones = [ContactPhone(phone=p, number_digits="".join(ch for ch in p if ch.isdigit())) for p in phones]
        session.add(contact)
        session.flush()
        return contact.id


def names(app, query: str, principal: Principal = EVERYONE, limit: int = 20) -> list[str]:
    with db(app).Session() as session:
        return [hit.name for hit in search_contacts(session, principal, query, limit)]


def ids(app, query: str, principal: Principal = EVERYONE, limit: int = 100) -> list[int]:
    with db(app).Session() as session:
        return contact_ids_matching(session, principal, query, limit)


def index_rows(app) -> int:
    with db(app).Session() as session:
        return session.scalar(text("SELECT count(*) FROM contact_search"))


def run_sql(app, *statements, **params) -> None:
    with db(app).transaction() as session:
        for statement in statements:
            session.execute(statement, params)


# --- matching ------------------------------------------------------------------------

PEOPLE = [
    "Иван Петров", "Иван Сидоров", "Алёна Ёжикова", "Žofia Nováková", "Ödön Erdős", "François Garçon",
    "Jürgen Groß", "Łukasz Żółw", "Σωκράτης Παπαδόπουλος", "ΝΙΚΟΣ ΑΛΕΞΊΟΥ", "Ελένη Άννα", "İlker Çelik",
    "Søren Ærø", "Petr Petrov",
]

#: query -> every contact it must find (and nothing else of PEOPLE).
SCRIPT_CASES = {
    "иван": {"Иван Петров", "Иван Сидоров"},
    "ИВАН": {"Иван Петров", "Иван Сидоров"},
    "ива": {"Иван Петров", "Иван Сидоров"},
    "алена": {"Алёна Ёжикова"},  # ё typed as е
    "ЁЖИК": {"Алёна Ёжикова"},
    "zofia": {"Žofia Nováková"},
    "ZOFIA": {"Žofia Nováková"},
    "Žofia": {"Žofia Nováková"},
    "novakova": {"Žofia Nováková"},
    "erdos": {"Ödön Erdős"},
    "ODON": {"Ödön Erdős"},
    "garcon": {"François Garçon"},
    "gross": {"Jürgen Groß"},  # ß is ss, as a German reader expects
    "groß": {"Jürgen Groß"},
    "lukasz zolw": {"Łukasz Żółw"},
    "σωκρατης": {"Σωκράτης Παπαδόπουλος"},
    "ΣΩΚΡΆΤΗΣ": {"Σωκράτης Παπαδόπουλος"},  # capitals with tonos, final sigma
    "παπαδο": {"Σωκράτης Παπαδόπουλος"},
    "νίκος": {"ΝΙΚΟΣ ΑΛΕΞΊΟΥ"},  # ς against Σ
    "αλεξιου": {"ΝΙΚΟΣ ΑΛΕΞΊΟΥ"},
    "αννα": {"Ελένη Άννα"},
    "ilker celik": {"İlker Çelik"},
    "soren aero": {"Søren Ærø"},
    "petr": {"Petr Petrov"},
    "ｐｅｔｒ": {"Petr Petrov"},  # full-width input
}


def test_case_and_accents_never_matter_in_any_script(app):
    for person in PEOPLE:
        add(app, person)
    found = {query: set(names(app, query)) for query in SCRIPT_CASES}
    assert found == SCRIPT_CASES


def test_every_letter_the_tokenizer_misses_is_folded_in_the_index_and_the_query(app):
    """The SQLite triggers fold these letters with replace(), queries in
    Python: both must agree (PostgreSQL's unaccent does the same)."""
    letters = sorted({chr(k): v for k, v in search.SQLITE_FOLD.items()}.items())
    for n, (char, _plain) in enumerate(letters):
        add(app, f"Qq{n}{char}zz")
    missed = {}
    for n, (char, plain) in enumerate(letters):
        for query in (f"qq{n}{plain}zz", f"QQ{n}{char}ZZ"):
            if names(app, query) != [f"Qq{n}{char}zz"]:
                missed[query] = names(app, query)
    assert missed == {}


def test_every_word_must_match_as_a_prefix(app):
    for person in ("Иван Петров", "Иван Сидоров", "Petr Ivanov"):
        add(app, person)
    assert names(app, "иван пет") == ["Иван Петров"]
    assert names(app, "петров иван") == ["Иван Петров"]  # any order
    assert names(app, "иван zzz") == []
    assert names(app, "van") == []  # prefixes, not substrings
    assert sorted(names(app, "iv")) == ["Petr Ivanov"]


def test_query_syntax_is_never_interpreted(app):
    add(app, "Ivan Petrov")
    add(app, "Žofia Nováková")
    assert names(app, "ivan OR zofia") == []  # OR is a word to match, not an operator
    assert names(app, "NOT zofia") == []
    for query in ['"', "*", "(", ")", "'", "\\", ":", "::", ":*", "&|!", "<->", "💡", "", "   ", "--", 'a"b',
                  "name:ivan", "^ivan", "{name}: x", "NEAR(ivan petrov)", "ivan*", "_", "ivan & petrov"]:
        assert isinstance(names(app, query), list), query
    assert names(app, "ivan*") == ["Ivan Petrov"]  # the star is punctuation: still a prefix search


def test_email_found_by_address_prefix_and_part(app):
    add(app, "Ivan Petrov", email="ivan.petrov@example.com", emails=["ivan.petrov@example.com", "vanya@home.ru"])
    add(app, "Other Person", email="someone@else.org", emails=["someone@else.org"])
    assert names(app, "ivan.petrov@example.com") == ["Ivan Petrov"]
    assert names(app, "IVAN.PETROV@EXAMPLE.COM") == ["Ivan Petrov"]
    assert names(app, "ivan.pet") == ["Ivan Petrov"]
    assert names(app, "vanya@home") == ["Ivan Petrov"]  # a second address, only in contact_email
    assert names(app, "home.ru") == ["Ivan Petrov"]
    assert names(app, "petrov@example.com") == ["Ivan Petrov"]  # a phrase inside the address
    assert names(app, "ivan@example.com") == []  # not adjacent in any address
    with db(app).Session() as session:
        (hit,) = search_contacts(session, EVERYONE, "ivan.petrov@example.com")
    assert (hit.matched, hit.score, hit.email) == ("email", 0.95, "ivan.petrov@example.com")


def test_phone_found_by_digits_whatever_the_punctuation(app):
    add(app, "Petr Novák", phone="+420 601 234 567", phone_digits="420601234567", phones=["+420 601 234 567", "+49 30 1234"])
    add(app, "Someone Else", phone="+1 555 0100", phone_digits="15550100", phones=["+1 555 0100"])
    for query in ("420601234567", "+420 601 234 567", "+420-601-234", "(420) 601.234/567", "4930"):
        assert names(app, query) == ["Petr Novák"], query
    assert names(app, "601 234") == []  # a prefix of the number, not a piece of it
    with db(app).Session() as session:
        (hit,) = search_contacts(session, EVERYONE, "+420 601 234 567")
    assert (hit.matched, hit.score) == ("phone", 0.95)


def test_company_name_finds_its_people(app):
    acme = add(app, "Acme Rockets", kind="company", first_name=None, last_name=None)
    add(app, "Wile Coyote", company_id=acme)
    assert names(app, "acme") == ["Acme Rockets", "Wile Coyote"]  # the company itself first
    assert names(app, "acme wile") == ["Wile Coyote"]


# --- ranking -------------------------------------------------------------------------


def test_exact_name_then_name_prefix_then_the_rest(app):
    # Created best-last-is-oldest, so newest-first order alone would fail.
    add(app, "Anna")
    add(app, "Anna Berg")
    add(app, "Annabel Lee")
    add(app, "Maria Anna")
    add(app, "Olga Annenkova")
    add(app, "Zed Zorro", email="anna.z@example.com", emails=["anna.z@example.com"])
    firm = add(app, "Annaco Ltd", kind="company", first_name=None, last_name=None)
    add(app, "Bob Brown", company_id=firm)
    assert names(app, "anna") == [
        "Anna",  # exact
        "Anna Berg",  # starts with the whole word
        "Annaco Ltd",  # starts with it, cut short (newest first among equals)
        "Annabel Lee",
        "Maria Anna",  # holds the word
        "Zed Zorro",  # an e-mail starts with it
        "Bob Brown",  # only the company matches
    ]  # and not "Olga Annenkova"


def test_exact_name_wins_over_many_newer_prefix_matches(app, monkeypatch):
    """The whole-word query finds the old exact match the newest-first
    prefix candidates (bounded) would miss."""
    monkeypatch.setattr(search, "CANDIDATES", 10)
    oldest = add(app, "Ivan")
    bulk_contacts(app, [f"Ivanova {n}" for n in range(30)])
    with db(app).Session() as session:
        hits = search_contacts(session, EVERYONE, "ivan", 5)
    assert [hit.id for hit in hits][:1] == [oldest] and hits[0].score == 1.0
    assert len(hits) == 5


def _whole_word_queries(monkeypatch) -> list[bool]:
    """Records each candidate query's ``exact_name`` flag."""
    calls: list[bool] = []
    original = search._candidates
    monkeypatch.setattr(search, "_candidates", lambda session, principal, parsed, exact_name, limit: (
        calls.append(exact_name) or original(session, principal, parsed, exact_name, limit)))
    return calls


def test_an_old_exact_name_still_beats_newer_names_starting_with_the_word(app, monkeypatch):
    """Newest candidates that all start with the whole word (0.9) can only be
    beaten by an exact name: that is what is looked for (on PostgreSQL by
    the folded-name index, not the whole-word GIN query); an older name
    starting with the word loses the tie to the newer ones."""
    if db(app).is_sqlite:
        pytest.skip("SQLite has no folded-name index: its whole-word query takes the newest CANDIDATES "
                    "whole-word names, so an exact name older than that many is not fetched (docs/architecture.md)")
    monkeypatch.setattr(search, "CANDIDATES", 10)
    exact = add(app, "Ívan")
    older_tie = add(app, "Ivan Older")
    bulk_contacts(app, [f"Ivan {n}" for n in range(30)])
    calls = _whole_word_queries(monkeypatch)
    with db(app).Session() as session:
        hits = search_contacts(session, EVERYONE, "ivan", 5)
    assert hits[0].id == exact and hits[0].score == 1.0
    assert older_tie not in [hit.id for hit in hits] and [hit.score for hit in hits[1:]] == [0.9] * 4
    assert calls == [False], "the folded-name index is asked instead of the whole-word GIN query"


def test_no_second_query_when_the_newest_candidates_are_exact_names(app, monkeypatch):
    monkeypatch.setattr(search, "CANDIDATES", 10)
    add(app, "Ivan Petrov")
    bulk_contacts(app, ["Ivan"] * 30)
    calls = _whole_word_queries(monkeypatch)
    with db(app).Session() as session:
        hits = search_contacts(session, EVERYONE, "ivan", 5)
    assert [hit.score for hit in hits] == [1.0] * 5
    assert calls == [False], "nothing older can rank above five exact names"


def test_an_old_name_starting_with_the_word_beats_newer_partial_matches(app, monkeypatch):
    """Below 0.9 the whole-word query still runs: an old "Petrov Ivan" (0.9)
    outranks thirty newer "Ivan Petrov…" (0.7, the word later in the name)."""
    monkeypatch.setattr(search, "CANDIDATES", 10)
    old = add(app, "Petrov Ivan")
    bulk_contacts(app, [f"Ivan Petrov{n}" for n in range(30)])
    with db(app).Session() as session:
        hits = search_contacts(session, EVERYONE, "petrov", 3)
    assert hits[0].id == old and hits[0].score == 0.9


def test_a_common_prefix_returns_limit_hits_ranking_only_a_bounded_set(app, monkeypatch):
    bulk_contacts(app, [f"Ivanov {n}" for n in range(3 * search.CANDIDATES)])
    ranked = []
    original = search.rank
    monkeypatch.setattr(search, "rank", lambda parsed, rows: ranked.append(len(list(rows))) or original(parsed, rows))
    with db(app).Session() as session:
        started = time.perf_counter()
        hits = search_contacts(session, EVERYONE, "iva", 20)
        elapsed = time.perf_counter() - started
    assert len(hits) == 20
    assert ranked and ranked[0] <= 2 * search.CANDIDATES, "every match was ranked"
    assert elapsed < 2.0
    newest = ids(app, "iva", limit=50)
    assert len(newest) == 50 and newest == sorted(newest, reverse=True)
    monkeypatch.setattr(search, "MAX_IDS", 100)
    assert len(ids(app, "iva", limit=10_000)) == 100


def test_newest_first_across_the_postgresql_probe_window(app, monkeypatch):
    """PostgreSQL tests the newest PG_PROBE_ALL index rows first, then asks
    the GIN index for older matches only: together still newest first."""
    monkeypatch.setattr(search, "PG_PROBE_ALL", 4)
    old = add(app, "Ivan Old")
    bulk_contacts(app, [f"Zed {n}" for n in range(5)])
    new = add(app, "Ivan New")
    bulk_contacts(app, [f"Yak {n}" for n in range(2)])
    assert ids(app, "ivan") == [new, old]
    assert ids(app, "ivan", limit=1) == [new]
    assert names(app, "ivan") == ["Ivan New", "Ivan Old"]
    assert names(app, "zed") == [f"Zed {n}" for n in reversed(range(5))]  # all older than the window


def test_a_reps_newest_first_across_their_probe_window(app, monkeypatch):
    """PostgreSQL probes a scoped user's own newest PG_PROBE contacts
    first, then asks the GIN indexes (words AND access tokens) for older
    matches only: together still newest first, and nothing of anyone else's."""
    monkeypatch.setattr(search, "PG_PROBE", 4)
    monkeypatch.setattr(search, "PG_PROBE_FIRST", 2)
    rep = make_user(app, "rep@example.com")
    other = make_user(app, "other@example.com")
    old = add(app, "Ivan Old", owner_id=rep)
    bulk_contacts(app, [f"Ivan Theirs {n}" for n in range(3)], owner_id=other)
    bulk_contacts(app, [f"Zed {n}" for n in range(5)], owner_id=rep)
    new = add(app, "Ivan New", owner_id=rep)
    bulk_contacts(app, [f"Yak {n}" for n in range(2)], owner_id=rep)
    bulk_contacts(app, [f"Ivan Later {n}" for n in range(3)], owner_id=other)
    assert ids(app, "ivan", own(rep)) == [new, old]
    assert ids(app, "ivan", own(rep), limit=1) == [new]
    assert names(app, "ivan", own(rep)) == ["Ivan New", "Ivan Old"]
    assert names(app, "zed", own(rep)) == [f"Zed {n}" for n in reversed(range(5))]  # some older than the window
    assert names(app, "ivan", own(other)) == [f"Ivan Later {n}" for n in reversed(range(3))] + [
        f"Ivan Theirs {n}" for n in reversed(range(3))]


@pytest.mark.parametrize(("first", "probe"), [(2, 4), (1, 4), (4, 4), (2, 100)])
def test_a_reps_candidates_are_the_newest_matches_whatever_the_probe_steps(app, monkeypatch, first, probe):
    """PostgreSQL walks a scoped user's newest contacts in two steps (the
    second only after a first step full of matches), then asks GIN for
    older ones. However the steps fall, the candidates are their newest
    matches, in order, and nobody else's. (SQLite: the same answer.)"""
    monkeypatch.setattr(search, "PG_PROBE_FIRST", first)
    monkeypatch.setattr(search, "PG_PROBE", probe)
    rep = make_user(app, "rep@example.com")
    other = make_user(app, "other@example.com")
    a = add(app, "Ivan A", owner_id=rep)
    bulk_contacts(app, [f"Zed {n}" for n in range(3)], owner_id=rep)
    bulk_contacts(app, ["Ivan Theirs"], owner_id=other)
    b, c, d = (add(app, f"Ivan {letter}", owner_id=rep) for letter in "BCD")
    parsed = search.parse_query("ivan")
    with db(app).Session() as session:
        for limit in (1, 2, 3, 4, 10):
            got = [row.id for row in search._candidates(session, own(rep), parsed, False, limit)]
            assert got == [d, c, b, a][:limit], (first, probe, limit)


def bulk_contacts(app, names_: list[str], **fields) -> None:
    """Many contacts in one Core statement, the way an import writes."""
    rows = [{"kind": "person", "name": name, "lifecycle_stage": "lead", "marketing_consent": False,
             "custom_fields": {}, "version": 1, **fields} for name in names_]
    run_sql(app, insert(Contact.__table__).values(rows))


# --- scope and recycle bin ---------------------------------------------------------


def test_scope_applies_to_hits_and_counts(app):
    ann = make_user(app, "ann@example.com")
    bob = make_user(app, "bob@example.com", teams=("north",))
    with db(app).Session() as session:
        north = session.scalar(select(Team.id).where(Team.name == "north"))
    add(app, "Secret Sauerkraut", owner_id=ann)
    add(app, "Shared Sauerbraten", owner_id=ann, team_id=north)
    add(app, "Bobs Sauerteig", owner_id=bob)
    own = lambda uid: Principal(user_id=uid, scopes={"*": "own"})
    assert names(app, "sauer", own(bob)) == ["Bobs Sauerteig"]
    assert len(ids(app, "sauer", own(bob))) == 1
    assert names(app, "secret", own(bob)) == []
    assert names(app, "secret", own(ann)) == ["Secret Sauerkraut"]
    team = Principal(user_id=bob, scopes={"core.contact": "team"}, team_ids=frozenset({north}))
    assert sorted(names(app, "sauer", team)) == ["Bobs Sauerteig", "Shared Sauerbraten"]
    assert len(names(app, "sauer", EVERYONE)) == 3
    assert names(app, "sauer", ANONYMOUS) == [] and ids(app, "sauer", ANONYMOUS) == []


def test_deleted_contacts_vanish_and_return_on_restore(app):
    kept = add(app, "Ivan Kept")
    binned = add(app, "Ivan Binned")
    run_sql(app, update(Contact).where(Contact.id == binned).values(deleted_at=func.now()))
    assert names(app, "ivan") == ["Ivan Kept"]
    assert ids(app, "ivan") == [kept]
    run_sql(app, update(Contact).where(Contact.id == binned).values(deleted_at=None))
    assert sorted(names(app, "ivan")) == ["Ivan Binned", "Ivan Kept"]


def own(uid: int) -> Principal:
    return Principal(user_id=uid, scopes={"*": "own"})


def everything_found(app, principal: Principal, query: str) -> tuple[list[str], list[int], list[int]]:
    """What ``principal`` gets for ``query`` from every search entry point:
    ranked names, the ``q=`` ids, and the ids of a keyset list joined to
    the index (``join_matches``, as the contact list does)."""
    from host.security.access import scope_condition

    with db(app).Session() as session:
        listed, key = search.join_matches(
            session, select(Contact.id).where(scope_condition(principal, Contact), Contact.deleted_at.is_(None)),
            query, principal)
        page = list(session.scalars(listed.order_by(key.desc())))
    return names(app, query, principal, 100), ids(app, query, principal), page


def test_owner_changes_move_a_contact_in_and_out_of_a_reps_search(app):
    """The index carries each contact's owner (the rep's search asks it for
    theirs only), so every way the owner changes must reach it: the ORM,
    ``audited_bulk_update`` (bulk actions), the hand-over on deactivation,
    raw SQL, and an import's Core insert."""
    from host.security.models import User
    from host.security.users import deactivate_user

    ann = make_user(app, "ann@example.com")
    bob = make_user(app, "bob@example.com")
    cid = add(app, "Ivan Owned", owner_id=ann)
    add(app, "Ivan Other", owner_id=ann)
    assert everything_found(app, own(bob), "ivan") == ([], [], [])
    assert everything_found(app, own(ann), "ivan owned") == (["Ivan Owned"], [cid], [cid])

    with db(app).transaction() as session:  # ORM
        session.get(Contact, cid).owner_id = bob
    assert everything_found(app, own(bob), "ivan") == (["Ivan Owned"], [cid], [cid])
    assert everything_found(app, own(ann), "ivan owned") == ([], [], [])

    with db(app).transaction() as session:  # a bulk action's audited Core update
        audited_bulk_update(session, Contact, Contact.id == cid, {"owner_id": ann}, principal=SYSTEM)
    assert everything_found(app, own(bob), "ivan") == ([], [], [])
    assert names(app, "ivan owned", own(ann)) == ["Ivan Owned"]

    run_sql(app, text("UPDATE contact SET owner_id = :bob WHERE id = :cid"), bob=bob, cid=cid)  # raw SQL
    assert names(app, "ivan", own(bob)) == ["Ivan Owned"]

    with db(app).transaction() as session:  # deactivation hands all of Ann's contacts to Bob
        deactivate_user(session, session.get(User, ann), session.get(User, bob))
    assert sorted(names(app, "ivan", own(bob))) == ["Ivan Other", "Ivan Owned"]
    assert names(app, "ivan", own(ann)) == []

    bulk_contacts(app, ["Ivan Imported"], owner_id=bob)  # an import's multi-row insert
    assert names(app, "ivan imp", own(bob)) == ["Ivan Imported"]
    assert names(app, "ivan imp", own(ann)) == []


def test_team_scope_sees_the_teams_contacts_and_follows_team_changes(app):
    ann = make_user(app, "ann@example.com", teams=("north",))
    bob = make_user(app, "bob@example.com", teams=("north",))
    cat = make_user(app, "cat@example.com", teams=("south",))
    with db(app).Session() as session:
        teams = dict(session.execute(select(Team.name, Team.id)).all())
    north, south = teams["north"], teams["south"]
    mine = add(app, "Zofia Mine", owner_id=bob)  # no team: Bob's own
    team = add(app, "Žofia North", owner_id=ann, team_id=north)
    other = add(app, "Zofia South", owner_id=cat, team_id=south)
    manager = Principal(user_id=bob, scopes={"core.contact": "team"}, team_ids=frozenset({north}))
    assert everything_found(app, manager, "zofia") == (["Žofia North", "Zofia Mine"], [team, mine], [team, mine])
    both = Principal(user_id=bob, scopes={"core.contact": "team"}, team_ids=frozenset({north, south}))
    assert sorted(names(app, "zofia", both)) == ["Zofia Mine", "Zofia South", "Žofia North"]
    # Team scope without a team is own scope (as scope_condition has it).
    assert names(app, "zofia", Principal(user_id=bob, scopes={"core.contact": "team"})) == ["Zofia Mine"]

    run_sql(app, update(Contact).where(Contact.id == other).values(team_id=north))
    run_sql(app, update(Contact).where(Contact.id == team).values(team_id=None))
    assert everything_found(app, manager, "zofia") == (["Zofia South", "Zofia Mine"], [other, mine], [other, mine])
    assert names(app, "zofia", own(ann)) == ["Žofia North"]


def test_scoped_search_equals_everyones_search_filtered_by_the_scope_rule(app):
    """The access tokens in the index only narrow: what each kind of user
    finds is exactly what the admin finds, kept by ``visible`` (the scope
    rule for one record), in the same order."""
    from host.security.access import visible

    ann = make_user(app, "ann@example.com", teams=("north",))
    bob = make_user(app, "bob@example.com", teams=("north", "south"))
    with db(app).Session() as session:
        teams = dict(session.execute(select(Team.name, Team.id)).all())
    owners = (None, ann, bob)
    team_ids = (None, teams["north"], teams["south"])
    for n, name in enumerate(("Иван", "Ivan", "Ivana", "Иванова Мария", "Jan Ivanko", "Ívan Ñ", "Peter")):
        for m in range(6):
            add(app, f"{name} {n}{m}", owner_id=owners[m % 3], team_id=team_ids[(n + m) % 3],
                email=f"ivan{n}{m}@ex.com", emails=[f"ivan{n}{m}@ex.com"])
    principals = [own(ann), own(bob),
                  Principal(user_id=ann, scopes={"core.contact": "team"}, team_ids=frozenset({teams["north"]})),
                  Principal(user_id=bob, scopes={"*": "team"}, team_ids=frozenset(teams.values())),
                  Principal(user_id=ann, scopes={"core.contact": "own", "*": "all"})]
    with db(app).Session() as session:
        for query in ("ivan", "иван", "ivan 3", "ivan1", "Ivana 2", "iva", "+359"):
            every = search_contacts(session, EVERYONE, query, 100)
            for principal in principals:
                allowed = [hit.name for hit in every if visible(principal, session.get(Contact, hit.id))]
                assert [hit.name for hit in search_contacts(session, principal, query, 100)] == allowed, (query, principal)
                assert contact_ids_matching(session, principal, query, 100) == sorted(
                    (hit.id for hit in every if visible(principal, session.get(Contact, hit.id))), reverse=True)


def test_query_words_never_match_the_owner_and_team_tokens(app):
    ann = make_user(app, "ann@example.com", teams=("north",))
    with db(app).Session() as session:
        north = session.scalar(select(Team.id).where(Team.name == "north"))
    add(app, "Plain Person", owner_id=ann, team_id=north)
    add(app, f"Agent O{ann}", owner_id=None)
    for principal in (EVERYONE, own(ann)):
        assert names(app, f"o{ann}", principal) == ([f"Agent O{ann}"] if principal is EVERYONE else [])
        assert names(app, f"t{north}", principal) == []
        assert ids(app, f"o{ann}", principal) == ([] if principal is not EVERYONE else ids(app, "agent"))


# --- keeping the index in sync ------------------------------------------------------


def test_orm_writes_are_indexed_in_the_same_transaction(app):
    with db(app).transaction() as session:
        contact = Contact(kind="person", name="Vasilisa Premudraya")
        session.add(contact)
        # Before commit: the flush's trigger already indexed it, for this transaction only.
        assert [h.name for h in search_contacts(session, EVERYONE, "vasilisa")] == ["Vasilisa Premudraya"]
        assert names(app, "vasilisa") == []  # another session does not see it yet
    assert names(app, "vasilisa") == ["Vasilisa Premudraya"]


def test_a_rolled_back_write_leaves_no_trace(app):
    before = index_rows(app)
    with db(app).WriteSession() as session:
        session.add(Contact(kind="person", name="Koschei Bessmertny"))
        session.flush()
        session.rollback()
    assert index_rows(app) == before
    assert names(app, "koschei") == []


def test_orm_update_and_delete(app):
    cid = add(app, "Old Name")
    with db(app).transaction() as session:
        contact = session.get(Contact, cid)
        contact.name, contact.first_name, contact.last_name = "Nova Persona", "Nova", "Persona"
    assert names(app, "old") == [] and names(app, "nova persona") == ["Nova Persona"]
    with db(app).transaction() as session:
        session.delete(session.get(Contact, cid))
    assert names(app, "nova") == [] and index_rows(app) == 0


def test_orm_emails_and_phones_added_changed_and_removed(app):
    cid = add(app, "Mila Jovovich", email="mila@one.com", emails=["mila@one.com"], phone_digits="111222", phones=["111222"])
    with db(app).transaction() as session:
        contact = session.get(Contact, cid)
        contact.emails.append(ContactEmail(email="mila@two.com"))
        contact.phones.append(ContactPhone(phone="333 444", number_digits="333444"))
    assert names(app, "mila@two") == ["Mila Jovovich"] and names(app, "333 444") == ["Mila Jovovich"]
    with db(app).transaction() as session:
        contact = session.get(Contact, cid)
        second = next(e for e in contact.emails if e.email == "mila@two.com")
        second.email = "mila@three.com"
        contact.phones = [p for p in contact.phones if p.number_digits != "333444"]
    assert names(app, "mila@two") == [] and names(app, "mila@three") == ["Mila Jovovich"]
    assert names(app, "333444") == []


def test_primary_address_repeated_in_contact_email_stays_found_after_the_primary_changes(app):
    """The triggers skip re-indexing a contact_email row that repeats the
    primary address (it is indexed from the contact row): the address must
    still be found through that row once the primary changes, and stop
    being found when that row goes."""
    cid = add(app, "Dana Scully", email="dana@fbi.gov", emails=["dana@fbi.gov"])
    with db(app).transaction() as session:
        session.get(Contact, cid).email = "scully@xfiles.org"
    assert names(app, "dana@fbi") == ["Dana Scully"] and names(app, "scully@xfiles") == ["Dana Scully"]
    run_sql(app, delete(ContactEmail).where(ContactEmail.contact_id == cid))
    assert names(app, "dana@fbi") == [] and names(app, "scully@xfiles") == ["Dana Scully"]


def test_bulk_core_update_and_raw_sql(app):
    first = add(app, "Ivan Ivanov")
    second = add(app, "Ivan Ivanov")
    run_sql(app, update(Contact).where(Contact.id.in_([first, second])).values(last_name="Groznyj"))
    assert sorted(ids(app, "groznyj")) == [first, second]
    run_sql(app, text("UPDATE contact SET name = 'Renamed Raw' WHERE id = :cid"), cid=first)
    assert names(app, "renamed raw") == ["Renamed Raw"]


def test_audited_bulk_update(app):
    cid = add(app, "Before Audit")
    with db(app).transaction() as session:
        changed = audited_bulk_update(session, Contact, Contact.id == cid, {"name": "After Audit", "first_name": "After"}, principal=SYSTEM)
    assert changed == 1
    assert names(app, "after audit") == ["After Audit"] and names(app, "before") == []


def test_bulk_import_is_indexed(app):
    bulk_contacts(app, ["Imported Iosif", "Imported Irina"])
    with db(app).Session() as session:
        imported = dict(session.execute(select(Contact.name, Contact.id).where(Contact.name.like("Imported%"))).all())
    rows = [{"contact_id": cid, "email": f"{name.split()[1].lower()}@import.test"} for name, cid in imported.items()]
    run_sql(app, insert(ContactEmail.__table__).values(rows))
    assert sorted(names(app, "imported")) == ["Imported Iosif", "Imported Irina"]
    assert names(app, "irina@import") == ["Imported Irina"]


def test_erasure_that_blanks_personal_data(app):
    cid = add(app, "Erika Mustermann", email="erika@example.de", emails=["erika@example.de"],
              phone_digits="491701234", phones=["491701234"])
    run_sql(
        app,
        update(Contact).where(Contact.id == cid).values(name="Erased", first_name=None, last_name=None, email=None, phone_digits=None),
        delete(ContactEmail).where(ContactEmail.contact_id == cid),
        delete(ContactPhone).where(ContactPhone.contact_id == cid),
    )
    for query in ("erika", "mustermann", "erika@example", "491701234"):
        assert names(app, query) == [], query
    assert names(app, "erased") == ["Erased"]


def test_merge_moves_addresses_to_the_survivor(app):
    survivor = add(app, "Sam Survivor", email="sam@keep.com", emails=["sam@keep.com"])
    merged = add(app, "Sam Merged", email="sam@gone.com", emails=["sam@gone.com"])
    run_sql(
        app,
        update(ContactEmail).where(ContactEmail.contact_id == merged).values(contact_id=survivor),
        update(Contact).where(Contact.id == merged).values(deleted_at=func.now()),
    )
    assert ids(app, "sam@gone") == [survivor]
    assert names(app, "sam") == ["Sam Survivor"]


def test_company_rename_and_removal_reach_its_people(app):
    firm = add(app, "Initech", kind="company", first_name=None, last_name=None)
    person = add(app, "Peter Gibbons", company_id=firm)
    run_sql(app, update(Contact).where(Contact.id == firm).values(name="Initrode"))
    assert ids(app, "initrode peter") == [person] and ids(app, "initech") == []
    run_sql(app, delete(Contact).where(Contact.id == firm))  # company_id SET NULL by the foreign key
    assert ids(app, "initrode") == [] and names(app, "peter") == ["Peter Gibbons"]


def test_migration_indexes_existing_contacts_and_downgrade_removes_the_index(app):
    state = app.extensions["mosaic"]
    add(app, "Existing Before")
    host = migrate.histories(state)[0]
    with migrate._migration_connection(state.db) as conn:
        command.downgrade(migrate._config(host, conn), "15912894cebc")
        conn.commit()
    with db(app).Session() as session:
        assert "contact_search" not in _tables(session)
    add(app, "Added Meanwhile")  # no triggers now
    migrate.upgrade(state)
    assert sorted(names(app, "existing")) == ["Existing Before"]
    assert names(app, "added meanwhile") == ["Added Meanwhile"]
    assert migrate.schema_differences(state) == []


def _tables(session) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(session.connection()).get_table_names())


def test_index_tables_are_left_out_of_the_schema_comparison_explicitly(app):
    state = app.extensions["mosaic"]
    with db(app).Session() as session:
        assert "contact_search" in _tables(session)
    assert "contact_search" in migrate.UNMODELLED_TABLES
    assert migrate.schema_differences(state) == []


# --- list filter and global search --------------------------------------------------


def test_match_condition_composes_with_a_keyset_list(app):
    first = add(app, "Ivan One")
    second = add(app, "Ivan Two")
    add(app, "Petr Three")
    with db(app).Session() as session:
        condition = contact_match_condition(session, "ivan")
        page = session.scalars(select(Contact.id).where(condition, Contact.id < second).order_by(Contact.id.desc())).all()
        nothing = session.scalars(select(Contact.id).where(contact_match_condition(session, "--"))).all()
    assert page == [first] and nothing == []


class Finder:
    def __init__(self):
        self.users = []

    @hookimpl
    def mosaic_search(self, query, user, limit):
        self.users.append(user)
        return [hooks.SearchResult(title=f"Deal for {query}", url="/deals/1", kind="deal", score=0.85)]


class Broken:
    @hookimpl
    def mosaic_search(self, query, user, limit):
        raise RuntimeError("index offline")


def test_search_all_merges_plugin_results_by_score_and_isolates_failures(make_app, caplog):
    finder = Finder()
    app = make_app(plugins=["finder", "broken"],
                   extra_plugins=[plugin_candidate("finder", finder), plugin_candidate("broken", Broken())])
    uid = make_user(app, "searcher@example.com")
    ivan = add(app, "Ivan")
    ivanka = add(app, "Ivanka Smith")
    principal = Principal(user_id=uid, scopes={"*": "all"})
    with app.app_context(), db(app).Session() as session:
        results = search_all(session, principal, "ivan", 10)
    found = [r for r in results if isinstance(r, hooks.SearchResult)]
    assert [(r.title, r.url, r.kind, r.score) for r in found] == [
        ("Ivan", f"/contacts/{ivan}", "person", 1.0),
        ("Deal for ivan", "/deals/1", "deal", 0.85),
        ("Ivanka Smith", f"/contacts/{ivanka}", "person", 0.8),
    ]
    assert [(p.plugin, p.hook) for p in results if isinstance(p, Placeholder)] == [("broken", "mosaic_search")]
    assert results[-1] == Placeholder("broken", "mosaic_search")
    assert finder.users[0].id == uid  # plugins get the user, to apply their own scope
    assert "broken failed in mosaic_search" in caplog.text

    # Outside an app context (a job): the plugin manager, same isolation.
    with db(app).Session() as session:
        limited = search_all(session, principal, "ivan", 2, pm=app.extensions["mosaic"].pm)
    assert [r.title for r in limited if isinstance(r, hooks.SearchResult)] == ["Ivan", "Deal for ivan"]
    assert isinstance(limited[-1], Placeholder)
    with db(app).Session() as session:
        assert search_all(session, principal, "  ", 10, pm=app.extensions["mosaic"].pm) == []
