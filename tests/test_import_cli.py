"""``mosaic import TYPE FILE``: its rejected-row lines, exit codes, --map,
--dry-run and --as (whose permissions and scope it uses)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from host.cli import AppHolder, cli
from host.core.models import Contact
from host.testing import make_user

from .core_support import make_contact, state

ADMIN = "admin@example.com"


class Holder(AppHolder):
    """Hands the test's app to the command instead of building one."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    def get(self):
        return self.app


@pytest.fixture
def app(make_app):
    app = make_app(plugins=[])
    make_user(app, ADMIN, roles=("admin",))
    return app


def invoke(app, *args: str):
    return CliRunner().invoke(cli, ["import", *args], obj=Holder(app))


def contacts(app) -> int:
    with state(app).db.Session() as session:
        return session.scalar(select(func.count()).select_from(Contact))


def rejected_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"^row \d+, column ", line)]


def test_rejected_rows_are_printed_one_per_line_and_exit_1(app, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("Name,E-mail,Lifecycle stage\nAnn Lee,ann@example.com,lead\nBob,not-mail,lead\nCleo,,royalty\n", encoding="utf-8")
    dry = invoke(app, "contacts", str(path), "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert rejected_lines(dry.output) == [
        "row 3, column E-mail: Not a valid email address.",
        "row 4, column Lifecycle stage: Must be one of: lead, prospect, customer, loyal, churned.",
    ]
    assert "3 rows: 1 would be created, 0 updated, 0 unchanged, 2 rejected." in dry.output
    assert contacts(app) == 0
    done = invoke(app, "contacts", str(path))
    assert done.exit_code == 1
    assert len(rejected_lines(done.output)) == 2
    assert "Rejected rows: " in done.output
    assert contacts(app) == 1


def test_a_clean_file_exits_0_and_map_renames_columns(app, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("Full name;Mail;Shoe size\nИван Петров;ivan@example.com;44\n", encoding="utf-8-sig")
    result = invoke(app, "contacts", str(path), "--map", "Full name=name", "--map", "Mail=email", "--map", "Shoe size=")
    assert result.exit_code == 0, result.output
    assert rejected_lines(result.output) == []
    assert "Columns not imported" not in result.output
    with state(app).db.Session() as session:
        assert session.execute(select(Contact.name, Contact.email)).one() == ("Иван Петров", "ivan@example.com")


def test_a_bad_file_is_one_error_line_and_exit_1(app, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes("name\nИван\n".encode("cp1251"))
    result = invoke(app, "contacts", str(path))
    assert result.exit_code == 1
    assert "Error: The file is not UTF-8 text" in result.output
    assert contacts(app) == 0
    missing = tmp_path / "calls.csv"
    missing.write_text("subject\nHello\n")
    result = invoke(app, "interactions", str(missing))
    assert result.exit_code == 1
    assert "Error: The file has no column for the required field 'contact_id'" in result.output


def test_as_acts_with_that_users_permissions_and_scope(app, tmp_path):
    make_user(app, "mia@example.com", roles=("manager",), teams=("north",))
    make_user(app, "max@example.com", roles=("manager",), teams=("south",))
    make_user(app, "rep@example.com", roles=("staff",))
    make_contact(app, "mia@example.com", name="Mia's client", external_id="m-1")
    path = tmp_path / "people.csv"
    path.write_text("external_id,name\nm-1,Overwritten\nm-2,New One\n")
    result = invoke(app, "contacts", str(path), "--as", "max@example.com")
    assert result.exit_code == 1
    assert rejected_lines(result.output) == ["row 2, column external_id: Another record already has this external id."]
    with state(app).db.Session() as session:
        owners = dict(session.execute(select(Contact.name, Contact.owner_id)).all())
    assert set(owners) == {"Mia's client", "New One"}
    denied = invoke(app, "contacts", str(path), "--as", "rep@example.com")
    assert denied.exit_code == 1 and "may not import contacts (needs core.contact.import)" in denied.output
    unknown = invoke(app, "contacts", str(path), "--as", "nobody@example.com")
    assert unknown.exit_code == 2 and "no active user nobody@example.com" in unknown.output


def test_default_actor_is_the_first_admin(app, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("name\nAnn\n")
    assert invoke(app, "contacts", str(path)).exit_code == 0
    with state(app).db.Session() as session:
        from host.security.models import User

        admin_id = session.scalar(select(User.id).where(User.email == ADMIN))
        assert session.scalar(select(Contact.owner_id)) == admin_id
    unknown_type = invoke(app, "planets", str(path))
    assert unknown_type.exit_code == 2 and "Not an importable type: 'planets'" in unknown_type.output
