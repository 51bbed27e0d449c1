"""Synthetic CRM data for ``bench/contacts.py``: rows for the core record's
tables, generated deterministically (one seed), as plain tuples ready for
``executemany`` (SQLite) or ``COPY`` (PostgreSQL).

The shape is what the benchmark's queries are sensitive to:

- ids grow with time (``created_at`` rises with the id), as in a database
  that grew organically, so "newest first" walks the primary key backwards;
- names: about 40 % Cyrillic (Bulgarian and Russian), 30 % Latin with
  diacritics (Slovak, Czech, Polish, German, French, Spanish), 30 % plain
  Latin; one person in nine or so is an "Иван…", like the 5 % "иван"
  prefix the design measured;
- one contact in ten is a company; most people belong to one;
- owners: the sales reps and managers of five teams, unevenly loaded;
- lifecycle stages and tags with skewed frequencies, so a filter such as
  ``stage=customer & tag=newsletter`` keeps about 8 % of the rows;
- interactions: 70 % spread evenly, 30 % on a "hot" 2 % of contacts (key
  accounts with hundreds of entries, the timeline's hard case).

Timestamps are produced as UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``, the
form SQLAlchemy stores on SQLite (checked at load time against the real
type's bind processor); the PostgreSQL writer appends ``+00``.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from array import array
from dataclasses import dataclass
from typing import Iterator

SEED = 20261124
#: The data set's "now": contacts are created over the five years before it.
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
SPAN_S = 5 * 365 * 24 * 3600
START = NOW - dt.timedelta(seconds=SPAN_S)
START_TS = int(START.timestamp())

STAGES = ("lead", "prospect", "customer", "loyal", "churned")
STAGE_WEIGHTS = (40, 25, 20, 8, 7)
#: (tag, share of contacts carrying it)
TAGS = (
    ("newsletter", 0.40), ("vip", 0.03), ("partner", 0.05), ("wholesale", 0.06), ("retail", 0.15),
    ("event-2025", 0.08), ("event-2026", 0.08), ("webinar", 0.10), ("referral", 0.04), ("trade-fair", 0.05),
    ("key-account", 0.01), ("do-not-call", 0.02), ("bulgaria", 0.12), ("slovakia", 0.08), ("czechia", 0.07),
    ("poland", 0.06), ("germany", 0.05), ("export", 0.04), ("public-sector", 0.02), ("startup", 0.03),
)
CHANNELS = ("phone", "email", "meeting", "chat", "web_form", "social", "event", "visit", "letter")
CHANNEL_WEIGHTS = (30, 35, 8, 8, 6, 4, 3, 4, 2)
SOURCES = ("web", "referral", "trade fair", "cold call", "import", "partner", "campaign", None)
TEAM_NAMES = ("Sofia", "Plovdiv", "Bratislava", "Prague", "Warsaw")
REPS_PER_TEAM = 9  # plus one manager each: 50 users, and an admin

# --- names -------------------------------------------------------------------------

CYR_MALE = ("Иван", "Иван", "Иван", "Петър", "Георги", "Димитър", "Николай", "Александър", "Стефан", "Христо",
            "Йордан", "Сергей", "Алексей", "Михаил", "Владимир", "Тодор", "Васил", "Стоян", "Борис", "Ёжеф")
CYR_FEMALE = ("Мария", "Елена", "Анна", "Ивана", "Татьяна", "Ольга", "Наталья", "Светлана", "Екатерина",
              "Десислава", "Гергана", "Цветелина", "Юлия", "Яна", "Радослава", "Милена")
CYR_LAST = ("Иванов", "Петров", "Георгиев", "Димитров", "Николов", "Стоянов", "Тодоров", "Василев", "Смирнов",
            "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков", "Христов", "Йорданов", "Ёлкин",
            "Ангелов", "Маринов", "Колев", "Илиев", "Атанасов", "Панайотов")
ACC_FIRST = ("Žofia", "Ľubomír", "Šimon", "Jiří", "Tomáš", "Zuzana", "Łukasz", "Małgorzata", "François", "Zoë",
             "José", "Jürgen", "Agnieszka", "Ondřej", "Michał", "Ľudmila", "Renée", "Søren", "Ágnes", "Dušan")
ACC_LAST = ("Dvořák", "Novák", "Horváth", "Kováč", "Wójcik", "Łęcki", "Müller", "Grün", "Nuñez", "Černý",
            "Procházková", "Šťastný", "Brzęczyszczykiewicz", "Lefèvre", "Bäcker", "Hájek", "Žák", "Krejčí",
            "Głowacki", "Sørensen", "Ferenčík", "Kráľ")
LAT_FIRST = ("John", "Mary", "Peter", "Anna", "David", "Laura", "Michael", "Sarah", "Thomas", "Emma", "Daniel",
             "Olivia", "Robert", "Sophie", "Martin", "Julia", "Ivan", "Eva", "George", "Helen")
LAT_LAST = ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright", "Baker", "Turner",
            "Parker", "Collins", "Stewart", "Morris", "Cooper", "Reed", "Bell", "Murphy", "Ivanovic", "Petersen")
COMPANY_WORDS = ("Balkan", "Danube", "Tatra", "Vitosha", "Rila", "Morava", "Vistula", "Nord", "Alpha", "Orion",
                 "Atlas", "Helios", "Vector", "Pinnacle", "Summit", "Harbor", "Квант", "Балкан", "Стара планина",
                 "Родопи", "Žilina", "Košice", "Plzeň", "Łódź", "Kraków", "Brno")
COMPANY_KINDS = ("Ltd", "AD", "EOOD", "s.r.o.", "a.s.", "GmbH", "Sp. z o.o.", "ООД", "ЕООД", "Group", "Trading", "Logistics")
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "firma.example", "corp.example")
SUBJECTS = {
    "phone": ("Call about the offer", "Follow-up call", "Разговор за договора", "Telefonát o objednávke", "Missed call"),
    "email": ("Re: quotation", "Invoice question", "Запитване за цена", "Dotaz na dodávku", "Newsletter reply"),
    "meeting": ("Quarterly review", "On-site meeting", "Среща в офиса", "Stretnutie s vedením"),
    "chat": ("Chat: delivery date", "Chat: login problem", "Чат: статус на поръчка"),
    "web_form": ("Contact form", "Demo request", "Форма за контакт"),
    "social": ("LinkedIn message", "Comment on our post"),
    "event": ("Met at the trade fair", "Webinar attendance", "Konferencia Bratislava"),
    "visit": ("Visit to the showroom", "Посещение в магазина"),
    "letter": ("Signed contract received", "Reklamácia poštou"),
}
OUTCOMES = (None, None, "interested", "not interested", "call back", "order placed", "no answer")
BODY = ("Discussed the next steps; they want a revised quote with volume discounts and delivery by the end of "
        "the month. Обсъдихме следващите стъпки. Zhrnutie: zákazník čaká na cenovú ponuku.")

_TRANSLIT = str.maketrans({
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ж": "zh", "з": "z", "и": "i", "й": "y",
    "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sht", "ъ": "a", "ь": "", "ю": "yu", "я": "ya",
    "ё": "yo", "ы": "y", "э": "e", "ł": "l", "ø": "o", "ß": "ss",
})


def ascii_slug(text: str) -> str:
    """An e-mail-safe form of a name: transliterated, accents dropped."""
    text = text.lower().translate(_TRANSLIT)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isascii() and ch.isalnum())


def stamp(ts: float) -> str:
    """UTC text as SQLAlchemy stores a datetime on SQLite."""
    value = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond:06d}"


# --- the plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    contacts: int
    interactions: int
    tasks: int

    @classmethod
    def of(cls, contacts: int) -> "Plan":
        return cls(contacts, contacts * 5, contacts // 5)


@dataclass(frozen=True)
class People:
    """The users rows are owned by, as created in the database."""

    owners: tuple[int, ...]  # reps and managers
    weights: tuple[float, ...]  # how busy each is
    team_of: dict[int, int]  # user id -> team id


class Generator:
    """Rows for one plan. ``contacts()`` must run before ``interactions()``
    and ``tasks()`` (they pick contacts and owners it decided)."""

    def __init__(self, plan: Plan, people: People, tag_ids: dict[str, int]):
        self.plan = plan
        self.people = people
        self.tag_ids = tag_ids
        self.owner_of = array("i", bytes(4 * (plan.contacts + 1)))
        self.companies: list[int] = []

    def created_ts(self, contact_id: int) -> float:
        return START_TS + SPAN_S * (contact_id - 1) / self.plan.contacts

    # contact, contact_email, contact_phone, contact_tag
    def contacts(self) -> Iterator[tuple[str, tuple]]:
        """("contact" | "contact_email" | "contact_phone" | "contact_tag", row) pairs."""
        rng = random.Random(SEED)
        owners, weights, team_of = self.people.owners, self.people.weights, self.people.team_of
        tags = [(self.tag_ids[name], share) for name, share in TAGS]
        email_id = phone_id = 0
        for cid in range(1, self.plan.contacts + 1):
            owner = rng.choices(owners, weights)[0]
            self.owner_of[cid] = owner
            team = team_of[owner]
            created = stamp(self.created_ts(cid) + rng.random())
            script = rng.random()
            is_company = cid <= 20 or rng.random() < 0.1
            first = last = None
            company_id = None
            if is_company:
                name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)}"
                local = "office"
                self.companies.append(cid)
            else:
                if script < 0.4:
                    female = rng.random() < 0.5
                    first = rng.choice(CYR_FEMALE if female else CYR_MALE)
                    last = rng.choice(CYR_LAST) + ("а" if female else "")
                elif script < 0.7:
                    first, last = rng.choice(ACC_FIRST), rng.choice(ACC_LAST)
                else:
                    first, last = rng.choice(LAT_FIRST), rng.choice(LAT_LAST)
                name = f"{first} {last}"
                local = f"{ascii_slug(first)}.{ascii_slug(last)}"
                if self.companies and rng.random() < 0.6:
                    company_id = rng.choice(self.companies)
            email = f"{local}{cid}@{rng.choice(DOMAINS)}"
            national = rng.randrange(10_000_000, 99_999_999)
            phone = f"+359 88 {national}"
            digits = f"+35988{national}"
            stage = rng.choices(STAGES, STAGE_WEIGHTS)[0]
            birthday = None if is_company or rng.random() < 0.7 else f"{rng.randrange(1950, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            consent = rng.random() < 0.3
            yield "contact", (
                cid, "company" if is_company else "person", name, first, last, company_id, email, phone, digits,
                None, rng.choice(("Sofia", "Plovdiv", "Bratislava", "Praha", "Warszawa", "Berlin")), None, None,
                rng.choice(("BG", "SK", "CZ", "PL", "DE")), None, None, stage, rng.choice(SOURCES), birthday,
                rng.choice(("bg", "en", "sk", "cs", "pl", None)), consent, created if consent else None,
                "web form" if consent else None, None, "{}", None, None, None,
                owner, team, owner, owner, created, created, 1,
            )
            email_id += 1
            yield "contact_email", (email_id, cid, email, "work")
            if rng.random() < 0.1:
                email_id += 1
                yield "contact_email", (email_id, cid, f"{local}{cid}@home.example", "home")
            phone_id += 1
            yield "contact_phone", (phone_id, cid, phone, digits, "mobile")
            for tag_id, share in tags:
                if rng.random() < share:
                    yield "contact_tag", (cid, tag_id)

    def interactions(self) -> Iterator[tuple]:
        rng = random.Random(SEED + 1)
        n, contacts = self.plan.interactions, self.plan.contacts
        owners, team_of = self.people.owners, self.people.team_of
        subjects = {channel: SUBJECTS[channel] for channel in CHANNELS}
        for iid in range(1, n + 1):
            ts = START_TS + SPAN_S * (iid - 1) / n + rng.random()
            # Only contacts that exist by then; 30 % go to the hot 2 % (every 50th id).
            upto = max(1, min(contacts, int((ts - START_TS) / SPAN_S * contacts) + 1))
            if rng.random() < 0.3 and upto >= 50:
                cid = 50 * rng.randrange(1, upto // 50 + 1)
            else:
                cid = rng.randrange(1, upto + 1)
            owner = self.owner_of[cid] if rng.random() < 0.85 else rng.choice(owners)
            channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
            when = stamp(ts)
            yield (
                iid, cid, channel, "in" if rng.random() < 0.4 else "out", rng.choice(subjects[channel]),
                BODY if rng.random() < 0.3 else None, when, rng.choice(OUTCOMES), None, None,
                owner, team_of[owner], owner, owner, when, when, 1,
            )

    def tasks(self) -> Iterator[tuple]:
        rng = random.Random(SEED + 2)
        n, contacts = self.plan.tasks, self.plan.contacts
        team_of = self.people.team_of
        now = NOW.timestamp()
        for tid in range(1, n + 1):
            cid = rng.randrange(1, contacts + 1)
            owner = self.owner_of[cid]
            created_ts = max(self.created_ts(cid), now - rng.random() * SPAN_S)
            due_ts = created_ts + rng.randrange(1, 60) * 86400
            done = due_ts < now and rng.random() < 0.8
            created = stamp(created_ts)
            yield (
                tid, cid, rng.choice(("Call back", "Send the quote", "Изпрати оферта", "Zavolať zákazníkovi",
                                      "Prepare the contract", "Check payment")),
                None, stamp(due_ts), rng.choice(("low", "normal", "normal", "high", "urgent")), done,
                stamp(due_ts + 3600) if done else None, None, None, None,
                owner, team_of[owner], owner, owner, created, created, 1,
            )


CONTACT_COLUMNS = (
    "id", "kind", "name", "first_name", "last_name", "company_id", "email", "phone", "phone_digits", "street",
    "city", "postal_code", "region", "country", "website", "tax_number", "lifecycle_stage", "source", "birthday",
    "language", "marketing_consent", "consent_at", "consent_source", "notes", "custom_fields", "external_id",
    "last_activity_at", "deleted_at", "owner_id", "team_id", "created_by", "updated_by", "created_at",
    "updated_at", "version",
)
INTERACTION_COLUMNS = (
    "id", "contact_id", "channel", "direction", "subject", "body", "occurred_at", "outcome", "external_id",
    "deleted_at", "owner_id", "team_id", "created_by", "updated_by", "created_at", "updated_at", "version",
)
TASK_COLUMNS = (
    "id", "contact_id", "title", "notes", "due_at", "priority", "done", "done_at", "snoozed_until", "external_id",
    "deleted_at", "owner_id", "team_id", "created_by", "updated_by", "created_at", "updated_at", "version",
)
COLUMNS = {
    "contact": CONTACT_COLUMNS,
    "contact_email": ("id", "contact_id", "email", "label"),
    "contact_phone": ("id", "contact_id", "phone", "number_digits", "label"),
    "contact_tag": ("contact_id", "tag_id"),
    "interaction": INTERACTION_COLUMNS,
    "task": TASK_COLUMNS,
}
#: Columns holding UTC timestamps (text here; PostgreSQL needs "+00").
TIMESTAMP_COLUMNS = frozenset({
    "consent_at", "last_activity_at", "deleted_at", "created_at", "updated_at", "occurred_at", "due_at",
    "done_at", "snoozed_until",
})
