"""``mosaic personal-data export|erase CONTACT_ID --as EMAIL``: data-subject
requests from the command line, with the permissions and record scope of
the user named by ``--as`` (no default: an erasure cannot be undone, so the
operator says who answers for it). Added through the host's ``mosaic_cli``.
"""

from __future__ import annotations

import json
import sys

import click

NOT_FOUND = 1


def register(cli: click.Group) -> None:
    cli.add_command(personal_data)


@click.group("personal-data")
def personal_data() -> None:
    """Export or erase everything known about one contact."""


def _acting(email: str):
    """(session, principal) of ``email``, or exit with the reason."""
    from flask import current_app

    from host.security.access import load_principal
    from host.security.users import find_user

    session = current_app.extensions["mosaic"].db.WriteSession()
    user = find_user(session, email)
    if user is None or not user.active:
        session.close()
        raise click.UsageError(f"--as {email}: no such active user")
    return session, load_principal(session, user)


def _contact(session, principal, contact_id: int, permission: str):
    from .personal_data_api import reachable_contact

    if not principal.can(permission):
        raise click.UsageError(f"--as {principal.email}: needs the permission {permission}")
    contact = reachable_contact(session, principal, contact_id)
    if contact is None:
        click.echo(f"Error: no contact {contact_id} (or out of {principal.email}'s scope)", err=True)
        sys.exit(NOT_FOUND)
    return contact


@personal_data.command("export")
@click.argument("contact_id", type=int)
@click.option("--as", "as_email", required=True, help="The user who asks (needs core.personal_data.export).")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Where to write the JSON (default: stdout).")
def export_command(contact_id: int, as_email: str, output) -> None:
    """Write the contact's data-subject export as JSON."""
    from host.security import personal_data as service
    from host.security.access import acting_as

    session, principal = _acting(as_email)
    with session, acting_as(principal):
        contact = _contact(session, principal, contact_id, "core.personal_data.export")
        document = service.export_person(session, contact)
        session.commit()
    json.dump(document, output, ensure_ascii=False, indent=2)
    output.write("\n")


@personal_data.command("erase")
@click.argument("contact_id", type=int)
@click.option("--as", "as_email", required=True, help="The user who erases (needs core.personal_data.erase).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_command(contact_id: int, as_email: str, yes: bool) -> None:
    """Anonymise the contact everywhere, for good."""
    from host.security import personal_data as service
    from host.security.access import acting_as

    session, principal = _acting(as_email)
    with session, acting_as(principal):
        contact = _contact(session, principal, contact_id, "core.personal_data.erase")
        if not yes:
            click.confirm(f"Erase contact {contact_id} ({contact.name}) and its history everywhere? This cannot be undone",
                          abort=True)
        entry = service.erase_person(session, contact)
        parts, journal_id = ", ".join(entry.done_by), entry.id
        session.commit()
    click.echo(f"Erased contact {contact_id} ({parts}); journal entry {journal_id}.")
