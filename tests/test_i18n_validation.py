"""Validation messages in the user's language on pages: marshmallow's and
the services' English messages are translated where a page shows them (the
import's dry-run report here; forms in test_web_forms), keeping the values
they carry, while the REST API keeps answering in English."""

from __future__ import annotations

import inspect
import io

import pytest
from flask_babel import refresh
from marshmallow import ValidationError, fields, validate

from host.web import validation

from .test_web_import import BAD_FILE, MANAGER, csv_bytes, dry_run, table_rows, token_of

pytestmark = pytest.mark.with_plugins()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], jobs_inline=True)


@pytest.fixture
def manager(app, signed_in):
    return signed_in(MANAGER, roles=("manager",))


def test_the_dry_run_report_speaks_the_users_language(app, manager):
    token, english = dry_run(manager, csv_bytes(BAD_FILE))
    page = manager.get(f"/import/{token}/check", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert '<html lang="bg">' in page
    assert table_rows(page, "rejected-rows") == [
        ("3", "E-mail", "Невалиден имейл адрес."),
        ("4", "Lifecycle stage", "Трябва да е едно от: lead, prospect, customer, loyal, churned."),
        ("5", "name", "Въведете име или собствено или фамилно име."),
    ]
    assert table_rows(english, "rejected-rows")[0] == ("3", "E-mail", "Not a valid email address.")


def test_a_rejected_duplicate_is_reported_in_the_language_with_its_contact(app, manager):
    from .core_support import make_contact

    existing = make_contact(app, MANAGER, name="Old Ann", email="ann@example.com")
    content = csv_bytes([["Name", "E-mail"], ["Ann Lee", "ANN@example.com"]])
    token, _english = dry_run(manager, content, on_duplicate="reject")
    page = manager.get(f"/import/{token}/check", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert table_rows(page, "rejected-rows") == [
        ("2", "E-mail", f"Возможный дубликат контакта {existing} (тот же адрес эл. почты).")]


def _rejected_download(manager, body: str, language: str):
    import re

    url = re.search(r'href="(/import/jobs/\d+/rejected)"', body).group(1)
    return manager.get(url, headers={"Accept-Language": language})


def test_the_rejected_rows_download_speaks_the_users_language(app, manager):
    import csv

    _token, body = dry_run(manager, csv_bytes(BAD_FILE))
    english = list(csv.reader(io.StringIO(_rejected_download(manager, body, "en").get_data(as_text=True))))
    bulgarian = list(csv.reader(io.StringIO(_rejected_download(manager, body, "bg").get_data(as_text=True))))
    assert [row[-1] for row in english[1:]] == [
        "E-mail: Not a valid email address.",
        "Lifecycle stage: Must be one of: lead, prospect, customer, loyal, churned.",
        "name: Give a name, or a first or last name."]
    assert [row[-1] for row in bulgarian[1:]] == [
        "E-mail: Невалиден имейл адрес.",
        "Lifecycle stage: Трябва да е едно от: lead, prospect, customer, loyal, churned.",
        "name: Въведете име или собствено или фамилно име."]
    # Everything but the messages is the file as written: the columns, the cells.
    assert [row[:-1] for row in bulgarian] == [row[:-1] for row in english]
    assert english[0][-1] == bulgarian[0][-1] == "error"


def test_the_rejected_rows_workbook_speaks_the_users_language(app, manager):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in BAD_FILE:
        sheet.append(row)
    content = io.BytesIO()
    workbook.save(content)
    _token, body = dry_run(manager, content.getvalue(), filename="people.xlsx")
    download = _rejected_download(manager, body, "sk")
    assert download.status_code == 200 and download.headers["Content-Disposition"].startswith("attachment;")
    rows = list(openpyxl.load_workbook(io.BytesIO(download.get_data()), read_only=True).worksheets[0].iter_rows(values_only=True))
    assert rows[0][-1] == "error"
    assert rows[1][:3] == ("Žofia", "Nováková", "not-an-address")
    assert rows[1][-1].startswith("E-mail: ") and "Not a valid" not in rows[1][-1]


@pytest.fixture
def in_language(app):
    contexts = []

    def enter(language: str):
        context = app.test_request_context(headers={"Accept-Language": language})
        context.push()
        contexts.append(context)
        refresh()

    yield enter
    for context in reversed(contexts):
        context.pop()


def test_joined_messages_are_each_translated_and_keep_their_values(in_language):
    in_language("sk")
    text = ("email: Not a valid email address. size: Must be one of: S, M, L. "
            "item 2: phone: Not a valid phone number: give 7 to 15 digits. Something a plugin said.")
    assert validation.translate_text(text) == (
        "email: Neplatná e-mailová adresa. size: Musí byť jedno z: S, M, L. "
        "item 2: phone: Neplatné telefónne číslo: zadajte 7 až 15 číslic. Something a plugin said.")
    assert validation.translate_messages({"custom_fields": {"size": ["Length must be between 1 and 200."]},
                                          "name": ["Unknown field."]}) == {
        "custom_fields": {"size": ["Dĺžka musí byť od 1 do 200."]}, "name": ["Neznáme pole."]}
    in_language("en")
    assert validation.translate_text(text) == text
    # The matcher only tries positions that start with a capital letter.
    assert all(message[0].isupper() for message in validation.MESSAGES)


def _default_messages():
    """Every message marshmallow itself words for the fields and validators
    the host's schemas use, filled in as marshmallow fills it."""
    found = set()
    for cls in (fields.Field, fields.String, fields.Integer, fields.Number, fields.Float, fields.Boolean,
                fields.Date, fields.DateTime, fields.AwareDateTime, fields.Email, fields.Url, fields.List,
                fields.Dict, fields.Nested):
        for klass in inspect.getmro(cls):
            for key, message in getattr(klass, "default_error_messages", {}).items():
                if "{input" in message:
                    continue  # the input in quotes: shown as marshmallow words it
                if "{awareness}" in message and not hasattr(cls, "AWARENESS"):
                    continue  # only the aware and naive date-times say it
                found.add(message.format(obj_type=getattr(cls, "OBJ_TYPE", "datetime"),
                                         awareness=getattr(cls, "AWARENESS", "aware")))
    found.add(validate.OneOf(["a", "b"]).error.format(choices="a, b"))
    length, bounds = validate.Length, {"min": 1, "max": 5, "equal": 3}
    for message in (length.message_min, length.message_max, length.message_all, length.message_equal):
        found.add(message.format(**bounds))
    for bounded in (validate.Range(min=1), validate.Range(max=5), validate.Range(min=1, max=5)):
        found.add(_range_message(bounded))
    found.add(validate.Regexp("x").error)
    return found


def _range_message(bounded: validate.Range) -> str:
    try:
        bounded(-100 if bounded.min is not None else 100)
    except ValidationError as error:
        return error.messages[0]
    raise AssertionError("the value is out of range")


def test_marshmallows_own_messages_are_all_translated(in_language):
    """A marshmallow upgrade that rewords a message must not quietly bring
    English back to the forms."""
    in_language("ru")
    untranslated = sorted(m for m in _default_messages() if validation.translate_text(m) == m)
    assert untranslated == []


def test_a_refused_file_is_explained_in_the_language(app, manager):
    def upload(content: bytes, language: str):
        return manager.post("/import", content_type="multipart/form-data", headers={"Accept-Language": language},
                            data={"csrf_token": token_of(manager), "type": "contacts",
                                  "file": (io.BytesIO(content), "people.csv")})

    latin1 = upload("name\nJosé\n".encode("latin-1"), "sk")
    assert latin1.status_code == 422
    assert ("Súbor nie je text v UTF-8 (bajt 0xe9 na pozícii 8): uložte ho ako CSV UTF-8 alebo ako .xlsx."
            in latin1.get_data(as_text=True))
    twice = upload(b"name,email,name\nAnn,a@example.com,Ann\n", "bg")
    assert "Колоната &#39;name&#39; се среща два пъти (колони 1 и 3)." in twice.get_data(as_text=True)


def test_list_filter_errors_are_translated_and_readable(app, signed_in):
    """A custom field filter's error is nested (custom_fields -> key): shown
    as text in the language, not as JSON with escaped letters."""
    from host.core import services
    from host.security.access import SYSTEM

    from .core_support import run_as

    run_as(app, SYSTEM, lambda s: services.create_custom_field(s, {"key": "seats", "label": "Seats", "type": "number"}))
    client = signed_in("rep@example.com")
    response = client.get("/contacts?cf:seats=lots", headers={"Accept-Language": "ru"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "custom_fields: seats: Недопустимое число.</li>" in html and "\\u" not in html
    response = client.get("/contacts?kind=robot", headers={"Accept-Language": "ru"})
    assert "kind: Должно быть одним из: person, company.</li>" in response.get_data(as_text=True)
