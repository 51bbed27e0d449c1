"""Validation messages in the user's language, for pages only.

The schemas and services keep raising their messages in English: the REST
API answers with those (its error bodies are a machine-facing contract), and
forms, filters and imports run the very same validation. A page translates
the messages where it shows them: ``translate_messages`` walks a
``ValidationError``'s messages, ``translate_text`` one string, which may be
several messages already joined (an import's rejected row:
``"email: Not a valid email address. name: Give a name."``).

Each message below is its msgid; ``%(name)s`` marks a value the English
message carries (the allowed choices, a length), which the translation
keeps. A message not listed here is shown as it is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from flask_babel import gettext

from host.i18n import N_

#: marshmallow's own messages, as the fields and validators the schemas use
#: word them (``{obj_type}`` of dates spelled out: a translation needs the
#: whole sentence, not the English word for "date").
MARSHMALLOW_MESSAGES = (
    N_("Missing data for required field."),
    N_("Field may not be null."),
    N_("Invalid value."),
    N_("Invalid type."),
    N_("Invalid input type."),
    N_("Unknown field."),
    N_("Not a valid list."),
    N_("Not a valid string."),
    N_("Not a valid utf-8 string."),
    N_("Not a valid number."),
    N_("Number too large."),
    N_("Not a valid integer."),
    N_("Special numeric values (nan or infinity) are not permitted."),
    N_("Not a valid boolean."),
    N_("Not a valid date."),
    N_("Not a valid datetime."),
    N_("Not a valid aware datetime."),
    N_("Not a valid naive datetime."),
    N_("Not a valid mapping type."),
    N_("Not a valid URL."),
    N_("Not a valid email address."),
    N_("Must be one of: %(choices)s."),
    N_("Must be greater than or equal to %(min)s."),
    N_("Must be less than or equal to %(max)s."),
    N_("Must be greater than or equal to %(min)s and less than or equal to %(max)s."),
    N_("Shorter than minimum length %(min)s."),
    N_("Longer than maximum length %(max)s."),
    N_("Length must be between %(min)s and %(max)s."),
    N_("Length must be %(equal)s."),
    N_("String does not match expected pattern."),
)

#: The host's schemas' own messages (``host.core.schemas``, ``host.pagination``).
SCHEMA_MESSAGES = (
    N_("Use lower-case letters, digits and _, starting with a letter (at most 100)."),
    N_("Use a two-letter country code."),
    N_("Not a valid cursor: use the `next` value of the previous page."),
)

#: Messages of services other modules own (``host.core.services``,
#: ``imports``, ``import_batch``, ``bulk``, ``lists``, ``saved_filters``):
#: they reach the forms and the import report in English.
SERVICE_MESSAGES = (
    N_("Another record already has this external id."),
    N_("An admin-defined field already has this key."),
    N_("The plugin %(plugin)s defines this key."),
    N_("A choice field needs at least one choice."),
    N_("Only choice fields take choices."),
    N_("Choices must differ."),
    N_("Not a valid phone number: give %(min)s to %(max)s digits."),
    N_("Only a person belongs to a company."),
    N_("A contact cannot belong to itself."),
    N_("No such company."),
    N_("This company has people; move them first."),
    N_("Give a name."),
    N_("Give a name, or a first or last name."),
    N_("Only people have a birthday."),
    N_("A consent source needs marketing_consent."),
    N_("A contact cannot be merged into itself."),
    N_("Cannot merge a %(merged)s into a %(survivor)s."),
    N_("Not a field a merge can choose."),
    N_('Choose "survivor" or "merged".'),
    N_("No such contact."),
    N_("No such active user."),
    N_("The contact is in the recycle bin: restore the contact."),
    N_("The database refused this row (it conflicts with a stored record)."),
    N_("Names another contact than contact_external_id."),
    N_("Give contact_id or contact_external_id."),
    N_("Possible duplicate of contact %(ids)s (the same e-mail)."),
    N_("Possible duplicate of contact %(ids)s (the same phone)."),
    N_("Possible duplicate of contact %(ids)s (a very similar name in the same company)."),
    N_("Rejected."),
    N_("Choose at least one contact."),
    N_("Choose at most %(max)s contacts at once."),
    N_("Give a tag of 1 to 100 characters."),
    N_("Choose one of: %(choices)s."),
    N_("This filter is too long to save."),
    N_("Give the filter a name."),
    N_("Use at most %(max)s characters."),
    N_("You have %(max)s saved filters: delete one first."),
    # host.company.validate (the company settings)
    N_("Choose an ISO 4217 currency code such as EUR or BGN."),
    N_("Choose one of the listed languages."),
    N_("Choose a time zone from the list, such as Europe/Sofia."),
)

#: Why the import service refuses a whole file (``ImportFileError``): the
#: upload, mapping and check pages show them.
FILE_MESSAGES = (
    N_("The file is larger than the limit of %(limit)s."),
    N_("The file is empty."),
    N_("The first row must hold the column names."),
    N_("The column %(column)s appears twice (columns %(first)s and %(second)s)."),
    N_("The file has more than %(max)s rows: split it."),
    N_("The file is not a valid XLSX workbook (it is not a zip archive)."),
    N_("Old Excel (.xls) files are not supported: save the sheet as .xlsx or CSV UTF-8."),
    N_("The file is not UTF-8 text (byte %(byte)s at position %(position)s): save it as CSV UTF-8, or as .xlsx."),
    N_("The file is not a text file (it holds NUL characters): upload CSV UTF-8 or .xlsx."),
    N_("The file is not valid CSV (row %(row)s): %(error)s."),
    N_("The file is not a valid XLSX workbook (a damaged zip archive)."),
    N_("The workbook unpacks to too much data: save it as CSV UTF-8, or split it."),
    N_("The file is not a valid XLSX workbook."),
    N_("The workbook has no sheet."),
    N_("The mapping names the column %(column)s, which the file does not have."),
    N_("The mapping maps %(column)s to %(field)s, which is not a field of this type."),
    N_("The mapping maps two columns to the field %(field)s."),
    N_("The file has no column for the required field %(field)s."),
    N_("The file has no column for the required field %(field)s (or %(others)s)."),
    N_("The uploaded file is gone (was the job run twice?)."),
)

MESSAGES = MARSHMALLOW_MESSAGES + SCHEMA_MESSAGES + SERVICE_MESSAGES + FILE_MESSAGES

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
#: Values that are numbers: matching them strictly keeps a sentence from
#: swallowing the next one when several are joined.
_NUMERIC = {"min", "max", "equal"}


def _pattern(index: int, msgid: str) -> str:
    parts, names, position = [], [], 0
    for found in _PLACEHOLDER.finditer(msgid):
        parts.append(re.escape(msgid[position:found.start()]))
        name = found.group(1)
        value = r"-?\d+(?:\.\d+)?" if name in _NUMERIC else r".+?"
        parts.append(f"(?P<m{index}_{name}>{value})")
        names.append(name)
        position = found.end()
    parts.append(re.escape(msgid[position:]))
    return f"(?P<m{index}>{''.join(parts)})"


@lru_cache(maxsize=1)
def _matcher() -> tuple[re.Pattern[str], tuple[str, ...]]:
    # Longest first: where two messages could start at one place, the whole
    # sentence wins over a shorter one.
    ordered = tuple(sorted(set(MESSAGES), key=len, reverse=True))
    alternatives = "|".join(_pattern(index, msgid) for index, msgid in enumerate(ordered))
    # Every message starts with a capital: other positions are skipped at once.
    return re.compile(rf"(?<!\w)(?=[A-Z])(?:{alternatives})"), ordered


def _translated(found: re.Match[str], ordered: tuple[str, ...]) -> str:
    index = int(found.lastgroup[1:]) if found.lastgroup else -1
    if index < 0:
        return found.group(0)
    msgid = ordered[index]
    values = {name: found.group(f"m{index}_{name}") for name in _PLACEHOLDER.findall(msgid)}
    return gettext(msgid, **values) if values else gettext(msgid)


def translate_text(text: str) -> str:
    """``text`` with every known English message in it in the user's
    language (values kept); the rest of the text as it is."""
    if not text:
        return text
    pattern, ordered = _matcher()
    return pattern.sub(lambda found: _translated(found, ordered), text)


def translate_messages(messages: Any) -> Any:
    """A ``ValidationError``'s messages (dicts, lists, strings) with every
    string translated; keys (field names) are kept."""
    if isinstance(messages, Mapping):
        return {key: translate_messages(value) for key, value in messages.items()}
    if isinstance(messages, (list, tuple)):
        return [translate_messages(item) for item in messages]
    if isinstance(messages, str):
        return translate_text(messages)
    return messages
