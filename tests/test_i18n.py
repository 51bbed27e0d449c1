"""Localisation: the catalogues cover the UI, the language follows the
profile, else Accept-Language, else the company default, and dates,
numbers and money are formatted for the locale and time zone."""

from __future__ import annotations

import datetime as dt
import gettext
import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import host
from host import i18n
from host.testing import csrf_token

pytestmark = pytest.mark.with_plugins()

ROOT = Path(host.__file__).parent
TRANSLATIONS = ROOT / "translations"
METHOD_MAP = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "N_": None}


def _extracted() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), METHOD_MAP, keywords=KEYWORDS, options_map={"**/templates/**.html": {}}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _catalogue(language: str):
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po)


def _forms(message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


@pytest.mark.parametrize("language", ["bg", "ru", "sk"])
def test_catalogue_translates_every_extracted_message(language):
    catalogue = _catalogue(language)
    translated = set()
    for message in catalogue:
        if not message.id:
            continue
        forms = _forms(message)
        if all(forms) and not message.fuzzy and len(forms) == (catalogue.num_plurals if message.pluralizable else 1):
            translated.add(message.id if isinstance(message.id, str) else message.id[0])
    missing = sorted(_extracted() - translated)
    assert missing == [], f"untranslated for {language} (run pybabel extract/update and translate): {missing[:20]}"


#: A printf conversion as Python's ``%`` operator reads it (``%%`` included:
#: a lone ``%`` in a translation breaks formatting just as a wrong name does).
PLACEHOLDER = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa%])")


def _placeholders(text: str) -> Counter:
    return Counter(PLACEHOLDER.findall(text))


def _sample_values(text: str) -> dict[str, object]:
    # A number fits every conversion (%s, %d, %.1f); names are what a view passes.
    return {name: 1 for name, kind in PLACEHOLDER.findall(text) if name}


@pytest.mark.parametrize("language", ["bg", "ru", "sk"])
def test_translations_keep_the_placeholders_of_their_message(language):
    """Views and templates format every translation with the msgid's names
    (``_("Hello %(name)s", name=...)``); a renamed, dropped or extra
    placeholder, or a stray ``%``, would only fail when the page renders."""
    assert placeholder_mismatches(_catalogue(language)) == []


def placeholder_mismatches(catalogue) -> list[tuple[str, str]]:
    """(msgid, translation) pairs whose placeholders differ from the msgid's
    or that the msgid's values cannot format (also used for the plugins')."""
    wrong = []
    for message in catalogue:
        if not message.id:
            continue
        original = message.id[1] if isinstance(message.id, (list, tuple)) else message.id
        for form in filter(None, _forms(message)):
            if _placeholders(form) != _placeholders(original):
                wrong.append((original, form))
                continue
            try:
                form % _sample_values(original)
            except (KeyError, ValueError, TypeError) as error:
                wrong.append((original, f"{form} ({error})"))
    return wrong


#: Which plural form each count takes: Bulgarian 1 / other; Russian 1, 21 /
#: 2-4, 22-24 / 5-20, 11-14, 25...; Slovak 1 / 2-4 / 5 and more (and 0).
PLURAL_FORM_OF = {
    "bg": {0: 1, 1: 0, 2: 1, 5: 1, 21: 1},
    "ru": {0: 2, 1: 0, 2: 1, 4: 1, 5: 2, 11: 2, 12: 2, 14: 2, 21: 0, 22: 1, 25: 2, 111: 2, 101: 0},
    "sk": {0: 2, 1: 0, 2: 1, 4: 1, 5: 2, 11: 2, 21: 2, 22: 2},
}


@pytest.mark.parametrize("language", ["bg", "ru", "sk"])
def test_plural_forms_follow_the_languages_rule(language):
    """The compiled catalogue's Plural-Forms header picks the right form, and
    every plural message has exactly as many forms as the language uses."""
    catalogue = _catalogue(language)
    plurals = [m for m in catalogue if m.id and m.pluralizable]
    assert plurals and all(len(_forms(m)) == catalogue.num_plurals for m in plurals)
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    distinct = [m for m in plurals if len(set(_forms(m))) == catalogue.num_plurals]
    assert distinct, "some plural message reads differently in each form"
    singular, plural = distinct[0].id
    forms = _forms(distinct[0])
    for count, form in PLURAL_FORM_OF[language].items():
        assert compiled.ngettext(singular, plural, count) == forms[form], count


def _key(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("language", ["bg", "ru", "sk"])
def test_compiled_catalogues_are_current(language):
    """The .mo shipped is compiled from the .po beside it (nobody forgot
    ``pybabel compile -d host/translations``)."""
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    po = {_key(m.id): _key(m.string) for m in read_po(open(folder / "messages.po", "rb"))
          if m.id and m.string and all(_key(m.string) if isinstance(m.string, (list, tuple)) else [m.string])}
    mo = {_key(m.id): _key(m.string) for m in read_mo(open(folder / "messages.mo", "rb")) if m.id}
    assert po == mo


def test_accept_language_bg_renders_the_dashboard_in_bulgarian(app, signed_in):
    client = signed_in("rep@example.com")
    html = client.get("/", headers={"Accept-Language": "bg-BG,bg;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="bg">' in html
    for text in ("<h1>Табло</h1>", "Моите отворени задачи", "Последни взаимодействия", ">Изход<", "Към съдържанието"):
        assert text in html
    english = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "<h1>Dashboard</h1>" in english and '<html lang="en">' in english


def test_profile_language_beats_the_browser(app, signed_in):
    client = signed_in("rep@example.com")
    token = csrf_token(client, "/profile")
    response = client.post("/profile/details", data={"display_name": "Rep", "language": "sk", "time_zone": "",
                                                     "csrf_token": token})
    assert response.status_code == 303
    html = client.get("/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert '<html lang="sk">' in html and "<h1>Nástenka</h1>" in html


def test_signed_out_pages_follow_the_browser(client):
    html = client.get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="ru">' in html and "Войти" in html


def test_filters_format_for_locale_and_time_zone(app):
    moment = dt.datetime(2024, 3, 5, 22, 30, tzinfo=dt.timezone.utc)
    with app.test_request_context(headers={"Accept-Language": "bg"}):
        from flask_babel import refresh

        refresh()
        assert i18n.number_filter(1234567.5) == "1\xa0234\xa0567,5"
        assert "лв" in i18n.money_filter("12.50", "BGN") and "12,50" in i18n.money_filter("12.50", "BGN")
        assert i18n.datetime_filter(moment, "yyyy-MM-dd HH:mm") == "2024-03-05 22:30"
        assert i18n.date_filter(None) == "" and i18n.money_filter(None) == ""
    with app.test_request_context(headers={"Accept-Language": "en"}):
        refresh()
        assert i18n.number_filter(1234567.5) == "1,234,567.5"
        assert i18n.money_filter("1000") == "€1,000.00"  # the company's base currency (default EUR)


def test_datetimes_show_in_the_users_time_zone(app, signed_in):
    from host.core.models import Notification
    from host.security.models import User

    client = signed_in("rep@example.com")
    token = csrf_token(client, "/profile")
    client.post("/profile/details", data={"display_name": "Rep", "language": "en", "time_zone": "Europe/Sofia",
                                          "csrf_token": token})
    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        user = session.query(User).filter_by(email="rep@example.com").one()
        session.add(Notification(user_id=user.id, kind="note", title="Late call",
                                 created_at=dt.datetime(2024, 3, 5, 22, 30, tzinfo=dt.timezone.utc)))
    html = client.get("/notifications").get_data(as_text=True)
    assert "3/6/24, 12:30" in html, "22:30 UTC is half past midnight the next day in Sofia"


def test_sign_in_errors_follow_the_browser(client):
    token = csrf_token(client, "/login")
    html = client.post("/login", data={"email": "nobody@example.com", "password": "not the password",
                                       "csrf_token": token}, headers={"Accept-Language": "sk"}).get_data(as_text=True)
    assert '<html lang="sk">' in html and "Tieto údaje nezodpovedajú žiadnemu aktívnemu účtu." in html


def test_error_pages_speak_the_users_language(app, signed_in):
    client = signed_in("manager@example.com", roles=("manager",))
    page = client.get("/no-such-page", headers={"Accept-Language": "bg"})
    html = page.get_data(as_text=True)
    assert page.status_code == 404 and "<h1>404 Не е намерено</h1>" in html and "На този адрес няма нищо." in html
    english = client.get("/no-such-page", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "<h1>404 Not Found</h1>" in english and "There is nothing at this address." in english
    # A view's own explanation is kept, in the user's language.
    gone = client.get("/import/no-such-upload/columns", headers={"Accept-Language": "ru"})
    assert gone.status_code == 404 and "Этой загрузки больше нет" in gone.get_data(as_text=True)


def test_record_values_show_as_labels_of_the_language(app, signed_in):
    """Stored codes (a channel, a contact's kind) reach the page as the
    language's labels: the dashboard's recent interactions, search results."""
    from .core_support import make_contact, make_interaction

    client = signed_in("rep@example.com")
    contact = make_contact(app, "rep@example.com", name="Zora Novak")
    make_interaction(app, "rep@example.com", contact, channel="meeting", subject="Quarterly review")
    dashboard = client.get("/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert "Quarterly review" in dashboard and "Среща ·" in dashboard and "meeting ·" not in dashboard
    found = client.get("/search?q=Zora", headers={"Accept-Language": "sk"}).get_data(as_text=True)
    assert "Zora" in found and '<span class="kind">Osoba</span>' in found


def test_role_scopes_are_named_in_the_language(app, signed_in):
    client = signed_in("admin@example.com", roles=("admin",))
    html = client.get("/admin/roles", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "<td>Все записи</td>" in html and "<td>Свои записи</td>" in html and "<td>all</td>" not in html
