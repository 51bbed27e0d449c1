"""The host's demo data (``mosaic serve --demo``): a living CRM of a few
hundred contacts, made through the real services so the search index, the
audit trail, lifecycle history and events are exactly what use would make.

- Companies in Bulgaria, Russia, Slovakia, the Czech Republic, Poland and the
  UK, with their people: names in Cyrillic and in Latin with diacritics, so
  search can be tried with "иван" or "zofia" as typed on any keyboard.
- Owners spread over the demo users (admin, manager, rep; ``host.demo``), so
  the rep's own scope visibly hides the others' records.
- Lifecycle stages reached step by step (lead, prospect, customer, loyal or
  churned), each step kept with its date.
- Interactions on every channel over the last half year, and tasks assigned
  mostly to the rep: some overdue, some due today, some upcoming, some done.

Everything depends only on ``rng`` (seeded by ``host.demo``) and the time of
seeding. Plugins seed after the host, so their demo data can pick contacts
(``select(Contact)``) to hang deals, tickets or campaigns on.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from host.db import utcnow
from host.security.access import SYSTEM, acting_as
from host.security.models import User

from . import services
from .models import CHANNELS, LifecycleChange

COMPANIES = 30
PEOPLE = 170
#: The demo users by role (``host.demo.DEMO_USERS``) and each one's share of the records.
OWNER_SHARES = (("rep@example.com", 4), ("manager@example.com", 3), ("admin@example.com", 3))
TAGS = ("VIP", "newsletter", "partner", "reseller", "key account", "trade fair 2025", "public sector")
STAGE_PATHS = (
    (("lead",), 3),
    (("lead", "prospect"), 3),
    (("lead", "prospect", "customer"), 4),
    (("lead", "prospect", "customer", "loyal"), 2),
    (("lead", "prospect", "customer", "churned"), 1),
)


@dataclass(frozen=True)
class Locale:
    country: str
    language: str
    phone_prefix: str
    domain: str
    male: Sequence[str]
    female: Sequence[str]
    #: (male form, female form) of each surname.
    surnames: Sequence[tuple[str, str]]
    cities: Sequence[str]
    company_words: Sequence[str]
    company_kinds: Sequence[str]


LOCALES = (
    Locale("BG", "bg", "+359 88", "bg", ("Иван", "Георги", "Димитър", "Николай", "Йордан", "Стоян", "Петър"),
           ("Мария", "Елена", "Десислава", "Йоана", "Цветелина", "Радостина", "Гергана"),
           (("Петров", "Петрова"), ("Иванов", "Иванова"), ("Георгиев", "Георгиева"), ("Димитров", "Димитрова"),
            ("Стоянов", "Стоянова"), ("Христов", "Христова"), ("Тодоров", "Тодорова")),
           ("София", "Пловдив", "Варна", "Бургас", "Русе"),
           ("Балкан", "Родопи", "Дунав", "Витоша", "Черноморец", "Тракия"),
           ("Софтуер ООД", "Логистик ЕООД", "Строй АД", "Трейд ООД")),
    Locale("RU", "ru", "+7 916", "ru", ("Иван", "Сергей", "Алексей", "Дмитрий", "Пётр", "Николай", "Андрей"),
           ("Анна", "Ольга", "Татьяна", "Екатерина", "Наталья", "Юлия", "Светлана"),
           (("Смирнов", "Смирнова"), ("Кузнецов", "Кузнецова"), ("Попов", "Попова"), ("Соколов", "Соколова"),
            ("Волков", "Волкова"), ("Фёдоров", "Фёдорова"), ("Новиков", "Новикова")),
           ("Москва", "Санкт-Петербург", "Казань", "Новосибирск", "Екатеринбург"),
           ("Сибирь", "Волга", "Север", "Урал", "Нева", "Байкал"),
           ("Логистика ООО", "Технологии АО", "Снаб ООО", "Энерго ПАО")),
    Locale("SK", "sk", "+421 905", "sk", ("Ľubomír", "Štefan", "Ján", "Matúš", "Juraj", "Peter"),
           ("Žofia", "Zuzana", "Ľudmila", "Katarína", "Mária", "Jana"),
           (("Kováč", "Kováčová"), ("Horváth", "Horváthová"), ("Varga", "Vargová"), ("Tóth", "Tóthová"),
            ("Hríb", "Hríbová"), ("Baláž", "Balážová")),
           ("Bratislava", "Košice", "Žilina", "Prešov", "Banská Bystrica"),
           ("Tatra", "Dunaj", "Fatra", "Považie", "Orava"),
           ("s.r.o.", "a.s.", "Stroj s.r.o.", "Systémy a.s.")),
    Locale("CZ", "cs", "+420 603", "cz", ("Jiří", "Tomáš", "Ondřej", "Lukáš", "Petr", "Jakub"),
           ("Kateřina", "Tereza", "Lucie", "Markéta", "Jitka", "Alžběta"),
           (("Dvořák", "Dvořáková"), ("Novák", "Nováková"), ("Černý", "Černá"), ("Procházka", "Procházková"),
            ("Svoboda", "Svobodová"), ("Růžička", "Růžičková")),
           ("Praha", "Brno", "Ostrava", "Plzeň", "České Budějovice"),
           ("Vltava", "Šumava", "Krkonoše", "Morava", "Labe"),
           ("Data a.s.", "Technika s.r.o.", "Obchod s.r.o.", "Služby a.s.")),
    Locale("PL", "pl", "+48 501", "pl", ("Łukasz", "Paweł", "Michał", "Krzysztof", "Tomasz", "Grzegorz"),
           ("Zofia", "Małgorzata", "Agnieszka", "Katarzyna", "Joanna", "Magdalena"),
           (("Wójcik", "Wójcik"), ("Kowalski", "Kowalska"), ("Wiśniewski", "Wiśniewska"), ("Zieliński", "Zielińska"),
            ("Woźniak", "Woźniak"), ("Dąbrowski", "Dąbrowska")),
           ("Warszawa", "Kraków", "Łódź", "Wrocław", "Gdańsk"),
           ("Wisła", "Mazowsze", "Bałtyk", "Tatry", "Śląsk"),
           ("Meble sp. z o.o.", "Serwis S.A.", "Handel sp. z o.o.", "Energia S.A.")),
    Locale("GB", "en", "+44 7700", "co.uk", ("James", "Oliver", "Harry", "George", "William", "Thomas"),
           ("Emily", "Olivia", "Charlotte", "Sophie", "Amelia", "Grace"),
           (("Smith", "Smith"), ("Clarke", "Clarke"), ("Taylor", "Taylor"), ("Brown", "Brown"),
            ("Wilson", "Wilson"), ("O'Neill", "O'Neill")),
           ("London", "Manchester", "Leeds", "Bristol", "Edinburgh"),
           ("Northwind", "Thames", "Pennine", "Highland", "Harbour"),
           ("Traders Ltd", "Logistics plc", "Consulting Ltd", "Foods Ltd")),
)

#: Fixed first people (locale index, first, last, owner e-mail): what the
#: tests and a first-time visitor can rely on finding.
ANCHORS = (
    (0, "Иван", "Петров", "rep@example.com"),
    (2, "Žofia", "Kováčová", "rep@example.com"),
    (4, "Łukasz", "Wójcik", "rep@example.com"),
    (1, "Ольга", "Смирнова", "manager@example.com"),
    (3, "Jiří", "Dvořák", "manager@example.com"),
    (5, "Emily", "Clarke", "admin@example.com"),
)

SUBJECTS = {
    "phone": ("Call about the {topic}", "Called back about the {topic}"),
    "email": ("E-mail: the {topic}", "Sent the {topic} by e-mail"),
    "meeting": ("Meeting on the {topic}", "Review of the {topic}"),
    "chat": ("Chat about the {topic}",),
    "web_form": ("Web form: question on the {topic}",),
    "social": ("LinkedIn message about the {topic}",),
    "event": ("Met at the trade fair", "Webinar on the {topic}"),
    "visit": ("Visit at their office", "Showroom visit"),
    "letter": ("Letter about the {topic}",),
}
TOPICS = ("offer", "contract renewal", "invoice", "delivery", "new price list", "support plan", "pilot project")
BODIES = (
    "Interested; wants a call back next week.",
    "Asked for a discount on the yearly plan.",
    "Happy with the service so far.",
    "Needs approval from their finance team.",
    "Compared us with a competitor; price matters most.",
    None,
)
OUTCOMES = ("Interested", "Offer sent", "No answer", "Call back", "Closed", None)
TASK_TITLES = ("Call back {first}", "Send the offer to {first}", "Prepare the contract for {company}",
               "Follow up on the meeting with {first}", "Check the invoice of {company}", "Book a visit at {company}")
PRIORITIES = ("low", "normal", "normal", "high", "urgent")

_LATIN = {"ł": "l", "Ł": "L", "ø": "o", "ß": "ss"}
_CYRILLIC = dict(zip("абвгдежзийклмнопрстуфхцчшщъьюяыэё",
                     "a b v g d e zh z i y k l m n o p r s t u f h ts ch sh sht a y yu ya y e e".split(), strict=True))


def seed(session: Session, rng: Any) -> None:
    """Add the demo records (``mosaic_demo_data`` of the host)."""
    owners = _owners(session)
    now = utcnow()
    with acting_as(SYSTEM):
        seeder = _Seeder(session, rng, owners, now)
        seeder.companies()
        seeder.people()
        seeder.tasks()


def _owners(session: Session) -> dict[str, int | None]:
    """Demo user e-mail -> id; missing demo users fall back to the first
    active user (or nobody), so seeding works on any database."""
    emails = [email for email, _share in OWNER_SHARES]
    found = {user.email: user.id for user in session.scalars(select(User).where(User.email.in_(emails)))}
    fallback = session.scalar(select(User.id).where(User.active.is_(True)).order_by(User.id).limit(1))
    return {email: found.get(email, fallback) for email in emails}


class _Seeder:
    def __init__(self, session: Session, rng: Any, owners: dict[str, int | None], now: dt.datetime) -> None:
        self.session, self.rng, self.owners, self.now = session, rng, owners, now
        self.owner_pool = [email for email, share in OWNER_SHARES for _ in range(share)]
        self.companies_made: list[tuple[int, str, str, Locale]] = []  # id, name, owner e-mail, locale
        self.people_made: list[tuple[int, str, str, str]] = []  # id, first name, company name, owner e-mail
        self.used_emails: set[str] = set()

    # --- contacts ---------------------------------------------------------------------------

    def companies(self) -> None:
        names: set[str] = set()
        for index in range(COMPANIES):
            locale = LOCALES[index % len(LOCALES)]
            name = self._company_name(locale, names)
            owner = self.owner_pool[index % len(self.owner_pool)]
            slug = _ascii(name.split()[0]).lower()
            data = {
                "kind": "company", "name": name, "city": self.rng.choice(locale.cities), "country": locale.country,
                "website": f"https://www.{slug}{index}.example.{locale.domain}", "language": locale.language,
                "email": self._unique_email(f"office@{slug}{index}.example.{locale.domain}"),
                "phone": self._phone(locale), "tax_number": f"{locale.country}{self.rng.randrange(10**8, 10**9)}",
                "source": self.rng.choice(("trade fair", "website", "referral", "cold call")),
                "tags": self.rng.sample(TAGS, self.rng.randrange(0, 3)),
            }
            contact_id = self._contact(data, owner)
            self.companies_made.append((contact_id, name, owner, locale))

    def _company_name(self, locale: Locale, taken: set[str]) -> str:
        while True:
            name = f"{self.rng.choice(locale.company_words)} {self.rng.choice(locale.company_kinds)}"
            if name not in taken:
                taken.add(name)
                return name

    def people(self) -> None:
        for index in range(PEOPLE):
            if index < len(ANCHORS):
                locale_index, first, last, owner = ANCHORS[index]
                company = next(c for c in self.companies_made if c[3] is LOCALES[locale_index] and c[2] == owner)
            else:
                company = self.rng.choice(self.companies_made)
                first, last = self._name(company[3])
                # Mostly the company's owner looks after its people too.
                owner = company[2] if self.rng.random() < 0.8 else self.rng.choice(self.owner_pool)
            company_id, company_name, _company_owner, locale = company
            domain = company_name.split()[0]
            data = {
                "kind": "person", "first_name": first, "last_name": last, "company_id": company_id,
                "email": self._unique_email(f"{_ascii(first)}.{_ascii(last)}@{_ascii(domain)}.example.{locale.domain}".lower()),
                "phone": self._phone(locale), "city": self.rng.choice(locale.cities), "country": locale.country,
                "language": locale.language, "tags": self.rng.sample(TAGS, self.rng.choice((0, 0, 1, 1, 2))),
                "source": self.rng.choice(("trade fair", "website", "referral", "cold call", "newsletter")),
            }
            if self.rng.random() < 0.4:
                data.update(marketing_consent=True, consent_source=self.rng.choice(("web form", "trade fair", "newsletter sign-up")))
            if self.rng.random() < 0.3:
                data["birthday"] = dt.date(self.rng.randrange(1960, 2000), self.rng.randrange(1, 13), self.rng.randrange(1, 29))
            contact_id = self._contact(data, owner)
            self.people_made.append((contact_id, first, company_name, owner))
            self._interactions(contact_id, owner, first_index=index)

    def _name(self, locale: Locale) -> tuple[str, str]:
        male = self.rng.random() < 0.5
        first = self.rng.choice(locale.male if male else locale.female)
        last = self.rng.choice(locale.surnames)[0 if male else 1]
        return first, last

    def _unique_email(self, address: str) -> str:
        local, _, domain = address.partition("@")
        candidate, n = address, 1
        while candidate in self.used_emails:
            n += 1
            candidate = f"{local}{n}@{domain}"
        self.used_emails.add(candidate)
        return candidate

    def _phone(self, locale: Locale) -> str:
        digits = f"{self.rng.randrange(10**6, 10**7)}"
        return f"{locale.phone_prefix} {digits[:3]} {digits[3:]}"

    def _contact(self, data: dict[str, Any], owner: str) -> int:
        """Create the contact at the end of its stage path; the steps before
        are history (a CRM shows years of it on its first day), so they are
        written as the lifecycle rows the services would have left, dated
        back over the past year."""
        path = _weighted(self.rng, STAGE_PATHS)
        contact = services.create_contact(self.session, {**data, "lifecycle_stage": path[-1]}, owner_id=self.owners[owner])
        self._backdate_history(contact.id, path)
        return contact.id

    def _backdate_history(self, contact_id: int, path: Sequence[str]) -> None:
        days = sorted((self.rng.randrange(1, 365) for _ in path), reverse=True)
        steps = list(zip((None, *path[:-1]), path, days))
        *earlier, (last_from, _last_to, last_days) = steps
        # The row create_contact wrote (nothing -> final stage) becomes the last step.
        self.session.execute(update(LifecycleChange).where(LifecycleChange.contact_id == contact_id)
                             .values(from_stage=last_from, changed_at=self.now - dt.timedelta(days=last_days))
                             .execution_options(synchronize_session=False))
        self.session.add_all(LifecycleChange(contact_id=contact_id, from_stage=before, to_stage=after,
                                             changed_at=self.now - dt.timedelta(days=days_ago))
                             for before, after, days_ago in earlier)

    # --- what happened, what is next -----------------------------------------------------------

    def _interactions(self, contact_id: int, owner: str, first_index: int) -> None:
        count = self.rng.choice((0, 1, 1, 1, 2, 2, 3))
        for n in range(count):
            # The first people cycle through every channel, so each one shows.
            channel = CHANNELS[(first_index + n) % len(CHANNELS)] if first_index < 2 * len(CHANNELS) else self.rng.choice(CHANNELS)
            subject = self.rng.choice(SUBJECTS[channel]).format(topic=self.rng.choice(TOPICS))
            services.create_interaction(self.session, {
                "contact_id": contact_id, "channel": channel, "subject": subject,
                "direction": self.rng.choice(("in", "out")), "body": self.rng.choice(BODIES),
                "outcome": self.rng.choice(OUTCOMES),
                "occurred_at": self.now - dt.timedelta(days=self.rng.randrange(0, 180), minutes=self.rng.randrange(0, 600)),
            }, owner_id=self.owners[owner])

    def tasks(self) -> None:
        """The rep's day: overdue, due today, upcoming and done tasks on
        their own contacts; a few for the manager and the admin."""
        plan = (("rep@example.com", "overdue", 5), ("rep@example.com", "today", 4), ("rep@example.com", "upcoming", 10),
                ("rep@example.com", "done", 6), ("manager@example.com", "overdue", 2), ("manager@example.com", "upcoming", 5),
                ("admin@example.com", "upcoming", 4), ("admin@example.com", "today", 1))
        for assignee, when, count in plan:
            own = [p for p in self.people_made if p[3] == assignee] or self.people_made
            for _ in range(count):
                contact_id, first, company, _owner = self.rng.choice(own)
                title = self.rng.choice(TASK_TITLES).format(first=first, company=company)
                data: dict[str, Any] = {"title": title, "contact_id": contact_id, "priority": self.rng.choice(PRIORITIES),
                                        "due_at": self._due(when), "assignee_id": self.owners[assignee]}
                if when == "done":
                    data["done"] = True
                services.create_task(self.session, data)

    def _due(self, when: str) -> dt.datetime:
        if when == "overdue":
            return self.now - dt.timedelta(days=self.rng.randrange(1, 10), hours=self.rng.randrange(0, 8))
        if when == "today":
            later = self.now + dt.timedelta(minutes=self.rng.randrange(30, 240))
            return later if later.date() == self.now.date() else self.now - dt.timedelta(minutes=self.rng.randrange(5, 60))
        if when == "done":
            return self.now - dt.timedelta(days=self.rng.randrange(1, 30))
        return self.now + dt.timedelta(days=self.rng.randrange(1, 21), hours=self.rng.randrange(0, 8))


def _weighted(rng: Any, choices: Sequence[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices)
    return rng.choices(values, weights=weights)[0]


def _ascii(text: str) -> str:
    """A name as it goes into an e-mail address: Cyrillic transliterated,
    accents dropped, only letters and digits kept."""
    out = []
    for char in text:
        lower = char.lower()
        if lower in _CYRILLIC:
            out.append(_CYRILLIC[lower])
            continue
        char = _LATIN.get(char, char)
        out.append("".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)))
    return "".join(c for c in "".join(out) if c.isascii() and c.isalnum())
