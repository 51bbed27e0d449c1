"""Translated labels of the core record's fields and choices, shared by the
record pages (forms, lists, the 360-degree page). Functions, not constants:
gettext needs the request's language."""

from __future__ import annotations

from flask_babel import gettext as _


def stages() -> dict[str, str]:
    return {"lead": _("Lead"), "prospect": _("Prospect"), "customer": _("Customer"), "loyal": _("Loyal"),
            "churned": _("Churned")}


def kinds() -> dict[str, str]:
    return {"person": _("Person"), "company": _("Company")}


def channels() -> dict[str, str]:
    return {"phone": _("Phone"), "email": _("E-mail"), "meeting": _("Meeting"), "chat": _("Chat"),
            "web_form": _("Web form"), "social": _("Social"), "event": _("Event"), "visit": _("Visit"),
            "letter": _("Letter")}


def directions() -> dict[str, str]:
    return {"in": _("Incoming"), "out": _("Outgoing")}


def priorities() -> dict[str, str]:
    return {"low": _("Low"), "normal": _("Normal"), "high": _("High"), "urgent": _("Urgent")}


def choices() -> dict[str, str]:
    """Every choice value's label, for ``schema_fields(choice_labels=...)``."""
    return {**stages(), **kinds(), **channels(), **directions(), **priorities()}


def contact_fields() -> dict[str, str]:
    return {
        "kind": _("Kind"), "name": _("Name"), "first_name": _("First name"), "last_name": _("Last name"),
        "company_id": _("Company"), "email": _("E-mail"), "phone": _("Phone"), "street": _("Street"),
        "city": _("City"), "postal_code": _("Postal code"), "region": _("Region"), "country": _("Country"),
        "website": _("Website"), "tax_number": _("Tax / registration number"), "lifecycle_stage": _("Stage"),
        "source": _("Source"), "birthday": _("Birthday"), "language": _("Preferred language"),
        "marketing_consent": _("Agrees to marketing"), "consent_source": _("Consent source"), "notes": _("Notes"),
        "tags": _("Tags"), "external_id": _("External id"), "custom_fields": _("Custom fields"),
    }


def interaction_fields() -> dict[str, str]:
    return {"channel": _("Channel"), "direction": _("Direction"), "subject": _("Subject"), "body": _("Notes"),
            "occurred_at": _("When"), "outcome": _("Outcome"), "contact_id": _("Contact")}


def task_fields() -> dict[str, str]:
    return {"title": _("Title"), "notes": _("Notes"), "due_at": _("Due"), "priority": _("Priority"),
            "assignee_id": _("Assignee"), "done": _("Done"), "contact_id": _("Contact")}
