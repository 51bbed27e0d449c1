"""Plugins translate their own UI strings: each built-in plugin's catalogue
covers what is extracted from it, the host merges the enabled plugins'
catalogues into the user's language (the host's own translation winning for
a msgid both have), and a disabled plugin's catalogue stays out."""

from __future__ import annotations

import gettext
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask_babel import gettext as flask_gettext
from flask_babel import refresh

import plugins
from host import i18n

from .conftest import BUILTIN_PLUGINS, plugin_init
from .test_i18n import KEYWORDS, TRANSLATIONS, _forms, _key, placeholder_mismatches

PLUGINS_ROOT = Path(plugins.__file__).parent
LANGUAGES = ("bg", "ru", "sk")
#: The host's keywords plus the contexts the plugins use for stored codes
#: ("New" as a deal's stage is not the host's "New").
PLUGIN_KEYWORDS = {**KEYWORDS, "pgettext": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3)}
CASES = [(plugin, language) for plugin in BUILTIN_PLUGINS for language in LANGUAGES]


def _translations(plugin: str) -> Path:
    return PLUGINS_ROOT / plugin / "translations"


def _extracted(plugin: str) -> dict[tuple[str | None, str], set[str]]:
    """(context, msgid) -> the kinds of file it comes from, as the plugin's
    own babel.cfg extracts them (so a broken mapping shows here too)."""
    with open(_translations(plugin) / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[tuple[str | None, str], set[str]] = {}
    for filename, _line, message, _comments, context in extract_from_dir(
        str(PLUGINS_ROOT / plugin), method_map, options_map, keywords=PLUGIN_KEYWORDS
    ):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault((context, msgid), set()).add(Path(filename).suffix)
    return found


def _catalogue(folder: Path, language: str):
    with open(folder / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po)


def _msgid(message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


@pytest.mark.parametrize("plugin,language", CASES)
def test_plugin_catalogue_translates_every_extracted_message(plugin, language):
    extracted = _extracted(plugin)
    kinds = set().union(*extracted.values())
    assert {".py", ".html"} <= kinds, f"{plugin}'s babel.cfg extracts from its Python and its templates"
    catalogue = _catalogue(_translations(plugin), language)
    translated = set()
    for message in catalogue:
        if not message.id:
            continue
        forms = _forms(message)
        if all(forms) and not message.fuzzy and len(forms) == (catalogue.num_plurals if message.pluralizable else 1):
            translated.add((message.context, _msgid(message)))
    missing = sorted(set(extracted) - translated, key=str)
    assert missing == [], f"untranslated in {plugin} for {language} (see its translations/babel.cfg): {missing}"


@pytest.mark.parametrize("plugin,language", CASES)
def test_plugin_translations_keep_the_placeholders_of_their_message(plugin, language):
    assert placeholder_mismatches(_catalogue(_translations(plugin), language)) == []


@pytest.mark.parametrize("plugin,language", CASES)
def test_plugin_catalogue_agrees_with_the_host_on_shared_msgids_and_plurals(plugin, language):
    """The host's translation is the one shown for a msgid both have, and
    Flask-Babel picks plural forms with the last merged catalogue's rule (the
    host's): a plugin that says otherwise would show one thing in its
    catalogue and another on the page."""
    host = _catalogue(TRANSLATIONS, language)
    own = _catalogue(_translations(plugin), language)
    # Keyed like the compiled catalogue: a plural message is not the same
    # entry as a singular one with its msgid (the host has "active" alone).
    host_strings = {(m.context, _key(m.id)): _key(m.string) for m in host if m.id}
    differs = [(m.id, m.string) for m in own if m.id and (m.context, _key(m.id)) in host_strings
               and _key(m.string) != host_strings[(m.context, _key(m.id))]]
    assert differs == []
    assert own.num_plurals == host.num_plurals
    rule_own = gettext.c2py(own.plural_expr)
    rule_host = gettext.c2py(host.plural_expr)
    assert [rule_own(n) for n in range(130)] == [rule_host(n) for n in range(130)]


@pytest.mark.parametrize("plugin,language", CASES)
def test_plugin_compiled_catalogues_are_current(plugin, language):
    folder = _translations(plugin) / language / "LC_MESSAGES"

    def entries(messages):
        return {(m.context, _msgid(m)): tuple(_forms(m)) for m in messages if m.id and all(_forms(m))}

    with open(folder / "messages.po", "rb") as po, open(folder / "messages.mo", "rb") as mo:
        assert entries(read_po(po)) == entries(read_mo(mo))


def test_dashboard_and_navigation_show_the_plugins_in_bulgarian(app, signed_in):
    client = signed_in("rep@example.com")
    html = client.get("/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    for text in (">Продажби</a>", ">Маркетинг</a>", ">Обслужване</a>", ">Отчети</a>",  # navigation
                 "Фуния на продажбите", "Стойност на отворените сделки:",  # sales widget
                 "Текущи кампании", "Отворени заявки", "Запазени отчети",  # the other widgets' titles
                 "<strong>0</strong> отворени"):  # a count's plural form
        assert text in html, text
    for english in (">Sales</a>", ">Service</a>", "Open pipeline", "Campaigns running", "Saved reports"):
        assert english not in html, english
    page = client.get("/sales/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert "<h1>Сделки</h1>" in page and "Все още няма сделки." in page and "<th scope=\"col\">Етап</th>" in page
    assert ">Sales</a>" in client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)


def test_plugin_pages_label_stored_codes_and_counts_in_the_language(app, signed_in):
    from plugins.marketing.models import Campaign
    from plugins.sales.models import Deal

    client = signed_in("rep@example.com")
    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session:
        session.add(Deal(title="Fleet upgrade", stage="new"))
        session.add_all([Campaign(name=f"Campaign {i}", status="running") for i in range(5)])
    page = client.get("/sales/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    # The deal's own "New" (feminine in Bulgarian), not the host's "Ново".
    assert "<td>Fleet upgrade</td><td>Нова</td>" in page
    dashboard = client.get("/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "<strong>5</strong> активных" in dashboard  # Russian's third form, for 5
    campaigns = client.get("/marketing/", headers={"Accept-Language": "sk"}).get_data(as_text=True)
    assert "<td>Beží</td>" in campaigns and "<td>running</td>" not in campaigns


def _in_language(app, language: str, *messages: str) -> list[str]:
    with app.test_request_context(headers={"Accept-Language": language}):
        refresh()
        return [flask_gettext(message) for message in messages]


def test_a_disabled_plugins_catalogue_is_not_loaded(tmp_path, make_app):
    """"Pipeline" is only the sales plugin's msgid: with sales left out of
    MOSAIC_PLUGINS, it stays English while marketing's words translate; an
    app with sales, built in the same process, translates it."""
    from host import create_app

    settings = {"instance_path": str(tmp_path / "instance"), "database_url": f"sqlite:///{tmp_path / 'env.db'}",
                "testing": True, "secret_key": "test-secret-key-not-for-production"}
    without_sales = create_app(settings, environ={"MOSAIC_PLUGINS": "marketing"})
    try:
        _check_catalogues_per_app(without_sales, make_app(plugins=["marketing", "sales"], migrate=False))
    finally:
        without_sales.extensions["mosaic"].db.dispose()


def _check_catalogues_per_app(without_sales, with_sales) -> None:
    assert without_sales.extensions["mosaic"].pm.plugin_names == ["marketing"]
    assert _in_language(without_sales, "bg", "Pipeline", "Campaigns running") == ["Pipeline", "Текущи кампании"]
    assert _in_language(with_sales, "bg", "Pipeline", "Campaigns running") == ["Фуния на продажбите", "Текущи кампании"]
    # The first app's merged catalogue did not pick up the second's plugins.
    assert _in_language(without_sales, "bg", "Pipeline") == ["Pipeline"]
    assert i18n.plugin_translation_directories(without_sales) == [str(_translations("marketing"))]


def _compile(folder: Path, language: str, messages: dict[str, str]) -> None:
    catalogue = Catalog(locale=language)
    for msgid, msgstr in messages.items():
        catalogue.add(msgid, msgstr)
    target = folder / language / "LC_MESSAGES"
    target.mkdir(parents=True)
    with open(target / "messages.mo", "wb") as mo:
        write_mo(mo, catalogue)


def test_the_hosts_translation_wins_over_an_installed_plugins(make_app, site_packages):
    package = site_packages.install(
        "acme",
        {
            "__init__.py": plugin_init("acme"),
            "plugin.py": """
                from flask_babel import gettext as _
                from hooks import MenuItem, hookimpl

                @hookimpl
                def mosaic_menu_items(user):
                    return [MenuItem(label=_("Acme machines"), endpoint="core.index", order=90)]
            """,
        },
    )
    _compile(package / "translations", "bg", {"Contacts": "Хора на Акме", "Acme machines": "Машини на Акме"})
    app = make_app(plugins=["acme"])
    assert _in_language(app, "bg", "Contacts", "Acme machines") == ["Контакти", "Машини на Акме"]
    from host.testing import client_for

    html = client_for(app).get("/", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert ">Машини на Акме</a>" in html and ">Контакти</a>" in html and "Хора на Акме" not in html
