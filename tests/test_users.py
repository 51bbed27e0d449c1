"""Accounts from the command line: the first admin, passwords, deactivation
with a hand-over, and API tokens (``mosaic users`` / ``mosaic tokens``)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from host.cli import AppHolder, cli
from host.security.models import ApiToken, AuditEntry, SecurityEvent, User
from host.testing import TEST_PASSWORD, bearer, login, make_user

from .records_support import Note, create_note_table

STRONG = "a long and unusual passphrase"


def invoke(app, *args, input=None):
    holder = AppHolder()
    holder._app = app
    return CliRunner().invoke(cli, list(args), obj=holder, input=input)


def user_row(app, email):
    with app.extensions["mosaic"].db.Session() as session:
        return session.scalar(select(User).where(User.email == email))


def test_first_admin_from_the_command_line_can_sign_in(make_app):
    app = make_app(plugins=["sales"])
    result = invoke(app, "users", "create", "Ana@Example.com", "--role", "admin", "--password-stdin", input=STRONG + "\n")
    assert result.exit_code == 0, result.output
    assert "Created ana@example.com with role(s) admin." in result.output
    assert login(app.test_client(), "ana@example.com", STRONG).status_code == 303
    assert {r.name for r in user_row(app, "ana@example.com").roles} == {"admin"}


def test_password_from_stdin_keeps_spaces_and_is_not_truncated(make_app):
    app = make_app(plugins=[])
    long_password = "  spaces around and " + "x" * 200 + "  "
    invoke(app, "users", "create", "bo@example.com", "--password-stdin", input=long_password + "\n")
    assert login(app.test_client(), "bo@example.com", long_password).status_code == 303
    assert login(app.test_client(), "bo@example.com", long_password.strip()).status_code == 200, "nothing stripped"
    assert login(app.test_client(), "bo@example.com", long_password[:72]).status_code == 200, "nothing truncated"


def test_weak_password_duplicate_and_unknown_role_are_refused(make_app):
    app = make_app(plugins=[])
    weak = invoke(app, "users", "create", "cy@example.com", "--password-stdin", input="password1\n")
    assert weak.exit_code == 1 and "too common" in weak.output
    short = invoke(app, "users", "create", "cy@example.com", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    role = invoke(app, "users", "create", "cy@example.com", "--role", "wizard", "--password-stdin", input=STRONG + "\n")
    assert role.exit_code == 1 and "No role named 'wizard'" in role.output
    assert user_row(app, "cy@example.com") is None, "nothing half-created"
    invoke(app, "users", "create", "cy@example.com", "--password-stdin", input=STRONG + "\n")
    again = invoke(app, "users", "create", "CY@example.com", "--password-stdin", input=STRONG + "\n")
    assert again.exit_code == 1 and "already exists" in again.output


def test_list_shows_roles_and_state(make_app):
    app = make_app(plugins=[])
    make_user(app, "di@example.com", roles=("manager", "staff"))
    assert "di@example.com" in invoke(app, "users", "list").output
    line = next(l for l in invoke(app, "users", "list").output.splitlines() if l.startswith("di@example.com"))
    assert line.split()[1:] == ["active", "manager,staff"]


def test_set_password_ends_sessions_and_logs_it(make_app):
    app = make_app(plugins=[])
    make_user(app, "ed@example.com")
    client = app.test_client()
    login(client, "ed@example.com")
    assert client.get("/").status_code == 200
    result = invoke(app, "users", "set-password", "ed@example.com", "--password-stdin", input=STRONG + "\n")
    assert result.exit_code == 0, result.output
    assert client.get("/").status_code == 302, "the old session is over"
    assert login(app.test_client(), "ed@example.com", STRONG).status_code == 303
    with app.extensions["mosaic"].db.Session() as session:
        kinds = session.scalars(select(SecurityEvent.kind)).all()
    assert "password.change" in kinds


def test_deactivate_hands_records_over_and_ends_access(make_app):
    app = make_app(plugins=["sales"])
    create_note_table(app)
    leaver = make_user(app, "fi@example.com")
    heir = make_user(app, "gus@example.com")
    with app.extensions["mosaic"].db.transaction() as session:
        session.add_all([Note(title="a", owner_id=leaver), Note(title="b", owner_id=leaver), Note(title="c", owner_id=heir)])
    client = app.test_client()
    login(client, "fi@example.com")
    token = invoke(app, "tokens", "create", "fi@example.com").output.splitlines()[-1]
    assert app.test_client().get("/api/v1/sales/deals", headers=bearer(token)).status_code == 200

    result = invoke(app, "users", "deactivate", "fi@example.com", "--to", "gus@example.com")
    assert result.exit_code == 0, result.output
    assert "2 record(s) now belong to gus@example.com" in result.output
    with app.extensions["mosaic"].db.Session() as session:
        owners = dict(session.execute(select(Note.title, Note.owner_id)).all())
        versions = dict(session.execute(select(Note.title, Note.version)).all())
    assert owners == {"a": heir, "b": heir, "c": heir}
    assert versions["a"] == 2 and versions["c"] == 1, "a hand-over is an edit: versions move on"
    with app.extensions["mosaic"].db.Session() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.object_type == "acme.note", AuditEntry.action == "update")).all()
    assert sorted(e.changes["owner_id"] for e in audited) == [[leaver, heir], [leaver, heir]]
    assert client.get("/").status_code == 302, "their session is over"
    assert app.test_client().get("/api/v1/sales/deals", headers=bearer(token)).status_code == 401, "tokens revoked"
    assert login(app.test_client(), "fi@example.com").status_code == 200, "cannot sign in again"


def test_deactivate_refuses_handing_over_to_themselves(make_app):
    app = make_app(plugins=[])
    make_user(app, "hu@example.com")
    result = invoke(app, "users", "deactivate", "hu@example.com", "--to", "hu@example.com")
    assert result.exit_code == 1 and "another, active user" in result.output
    assert user_row(app, "hu@example.com").active


def test_token_create_prints_the_token_alone_on_the_last_line(make_app):
    app = make_app(plugins=["sales"])
    make_user(app, "io@example.com")
    result = invoke(app, "tokens", "create", "io@example.com", "--name", "ERP sync", "--read-only")
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[-1]
    assert token.startswith("mos_") and " " not in token and len(token) >= 40
    with app.extensions["mosaic"].db.Session() as session:
        stored = session.scalar(select(ApiToken))
    assert stored.token_hash != token and token not in stored.token_hash, "stored hashed"
    assert stored.read_only and stored.name == "ERP sync"
    assert app.test_client().get("/api/v1/sales/deals", headers=bearer(token)).status_code == 200

    listed = invoke(app, "tokens", "list", "io@example.com").output
    assert token not in listed and stored.prefix in listed and "read-only" in listed
    assert invoke(app, "tokens", "revoke", str(stored.id)).exit_code == 0
    assert app.test_client().get("/api/v1/sales/deals", headers=bearer(token)).status_code == 401


def test_token_for_unknown_user(make_app):
    app = make_app(plugins=[])
    result = invoke(app, "tokens", "create", "nobody@example.com")
    assert result.exit_code == 1 and "no active user" in result.output
