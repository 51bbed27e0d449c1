"""The import wizard (``/import``): upload, map the columns, the dry run's
report, the import with its progress page, the rejected rows download, and
the drafts kept between the steps (tied to their user, cleaned up)."""

from __future__ import annotations

import contextlib
import csv
import html as html_lib
import io
import os
import re
import signal
import time

import pytest
from marshmallow import Schema, fields
from sqlalchemy import func, select

from hooks import ImportTarget, Permission, hookimpl
from host import jobs
from host.core import imports
from host.core.models import Contact, Task
from host.models import Job, Setting
from host.security import roles as role_service
from host.testing import csrf_token, login, make_user, plugin_candidate
from host.web import import_drafts

from .browser import browser, live_server, sign_in  # noqa: F401  (fixtures)
from .core_support import state

MANAGER = "manager@example.com"
OTHER = "other@example.com"

BAD_FILE = [
    ["First name", "Last name", "E-mail", "Lifecycle stage", "Favourite colour"],
    ["Иван", "Петров", "ivan@example.com", "lead", "blue"],
    ["Žofia", "Nováková", "not-an-address", "customer", ""],
    ["Ann", "Lee", "ann@example.com", "royalty", ""],
    ["", "", "nobody@example.com", "", ""],
]
BAD_ROWS = [
    (3, "E-mail", "Not a valid email address."),
    (4, "Lifecycle stage", "Must be one of: lead, prospect, customer, loyal, churned."),
    (5, "name", "Give a name, or a first or last name."),
]


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], jobs_inline=True)


@pytest.fixture
def manager(app, signed_in):
    return signed_in(MANAGER, roles=("manager",))


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def text_of(response) -> str:
    return response.get_data(as_text=True)


def token_of(client) -> str:
    return csrf_token(client, "/import")


def upload(client, content: bytes, filename: str = "people.csv", type_key: str = "contacts", **extra):
    data = {"csrf_token": token_of(client), "type": type_key, **extra}
    if content is not None:
        data["file"] = (io.BytesIO(content), filename)
    return client.post("/import", data=data, content_type="multipart/form-data")


def draft_token(response) -> str:
    assert response.status_code == 303, text_of(response)
    found = re.fullmatch(r"/import/([0-9a-f]{32})/columns", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def selects(page: str) -> dict[str, str]:
    """Column select name -> the selected option's value ("" = ignore)."""
    chosen = {}
    for name, body in re.findall(r'<select id="(column-\d+)" name="column-\d+".*?>(.*?)</select>', page, re.S):
        selected = re.search(r'<option value="([^"]*)" selected>', body)
        chosen[name] = selected.group(1) if selected else None
    return chosen


def type_options(page: str) -> list[str]:
    select_body = re.search(r'<select id="import-type".*?</select>', page, re.S).group(0)
    return [value for value in re.findall(r'<option value="(\w*)"', select_body) if value]


def map_columns(client, token: str, choices: dict[str, str] | None = None, **extra):
    """Post the mapping page as the browser would: its pre-selected choices,
    changed by ``choices``."""
    page = text_of(client.get(f"/import/{token}/columns"))
    data = {**selects(page), **(choices or {}), **extra, "csrf_token": token_of(client)}
    return client.post(f"/import/{token}/columns", data=data)


def dry_run(client, content: bytes, filename: str = "people.csv", type_key: str = "contacts", **choices) -> tuple[str, str]:
    token = draft_token(upload(client, content, filename, type_key))
    response = map_columns(client, token, choices)
    assert response.status_code == 303, text_of(response)
    assert response.headers["Location"] == f"/import/{token}/check"
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    return token, text_of(page)


def commit(client, token: str):
    return client.post(f"/import/{token}/commit", data={"csrf_token": token_of(client)})


def table_rows(page: str, css_class: str) -> list[tuple[str, ...]]:
    table = re.search(rf'<table class="records {css_class}">(.*?)</table>', page, re.S)
    assert table, f"no {css_class} table"
    body = table.group(1).split("<tbody>", 1)[1]
    return [tuple(html_lib.unescape(cell.strip()) for cell in re.findall(r"<td>(.*?)</td>", tr, re.S))
            for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def count(app, model=Contact) -> int:
    with state(app).db.Session() as session:
        return session.scalar(select(func.count()).select_from(model))


def job_count(app) -> int:
    return count(app, Job)


def drafts_on_disk(app) -> list[str]:
    return sorted(p.name for p in imports.folder(app.instance_path).glob("wizard-*"))


# --- access -----------------------------------------------------------------------------------------


def test_signed_out_every_step_asks_for_sign_in(app, client):
    for path in ("/import", f"/import/{'a' * 32}/columns", f"/import/{'a' * 32}/check", "/import/jobs/1",
                 "/import/jobs/1/rejected"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), path


def test_without_an_import_permission_there_is_nothing_to_import(app, signed_in):
    staff = signed_in("staff@example.com", roles=("staff",))
    page = staff.get("/import")
    assert page.status_code == 200
    body = text_of(page)
    assert "You may not import any kind of record." in body
    assert 'name="file"' not in body
    assert ">Import</a>" not in text_of(staff.get("/"))  # no menu entry either
    assert upload(staff, csv_bytes(BAD_FILE)).status_code == 403
    assert drafts_on_disk(app) == []


def test_the_types_offered_follow_the_users_permissions(app, signed_in):
    with app.app_context(), state(app).db.transaction() as session:
        role_service.create_role(session, "task-loader", "imports tasks only")
        role_service.grant(session, "task-loader", "core.task.import", declared=state(app).permissions)
    loader = signed_in("loader@example.com", roles=("task-loader",))
    body = text_of(loader.get("/import"))
    assert type_options(body) == ["tasks"]
    assert upload(loader, csv_bytes([["name"], ["Ann"]])).status_code == 403
    token = draft_token(upload(loader, csv_bytes([["Title", "Due at"], ["Call back", ""]]), type_key="tasks"))
    assert loader.get(f"/import/{token}/columns").status_code == 200


def test_the_upload_page_names_types_limit_and_carries_csrf(app, manager):
    response = manager.get("/import?type=tasks")
    assert response.status_code == 200
    body = text_of(response)
    assert type_options(body) == ["contacts", "interactions", "tasks"]
    assert '<option value="tasks" selected>' in body
    assert "up to 32 MB" in body
    assert 'enctype="multipart/form-data"' in body and 'name="csrf_token"' in body
    assert 'href="/import" aria-current="page">Import</a>' in text_of(manager.get("/import"))


def test_upload_errors_name_their_field_and_keep_the_choice(app, manager):
    no_type = upload(manager, csv_bytes(BAD_FILE), type_key="")
    assert no_type.status_code == 422
    assert 'id="import-type-error" class="field-error">Choose what to import.' in text_of(no_type)

    no_file = upload(manager, None, type_key="tasks")
    assert no_file.status_code == 422
    body = text_of(no_file)
    assert 'id="import-file-error" class="field-error">Choose a CSV or XLSX file.' in body
    assert '<option value="tasks" selected>' in body

    latin1 = upload(manager, "name\nJosé\n".encode("latin-1"), type_key="interactions")
    assert latin1.status_code == 422
    body = text_of(latin1)
    assert "The file is not UTF-8 text" in body and 'aria-invalid="true"' in body
    assert '<option value="interactions" selected>' in body
    assert drafts_on_disk(app) == []


def test_forms_without_the_csrf_token_are_refused(app, manager):
    refused = manager.post("/import", data={"type": "contacts", "file": (io.BytesIO(csv_bytes(BAD_FILE)), "a.csv")},
                           content_type="multipart/form-data")
    assert refused.status_code == 400
    assert drafts_on_disk(app) == []
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    jobs_before = job_count(app)
    assert manager.post(f"/import/{token}/columns", data={"column-0": "first_name"}).status_code == 400
    assert manager.post(f"/import/{token}/commit").status_code == 400
    assert manager.post(f"/import/{token}/cancel").status_code == 400
    assert job_count(app) == jobs_before
    assert len(drafts_on_disk(app)) == 2  # the upload and its record are still there


# --- step 2: columns --------------------------------------------------------------------------------


def test_the_mapping_page_shows_headers_samples_and_the_services_matching(app, manager):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    response = manager.get(f"/import/{token}/columns")
    assert response.status_code == 200
    body = text_of(response)
    assert "people.csv: 4 rows to import as Contacts." in body
    assert selects(body) == {"column-0": "first_name", "column-1": "last_name", "column-2": "email",
                             "column-3": "lifecycle_stage", "column-4": ""}
    first_values = re.search(r'<label for="column-0">First name</label>.*?<ul class="samples">(.*?)</ul>', body, re.S)
    assert re.findall(r"<li>(.*?)</li>", first_values.group(1)) == ["Иван", "Žofia", "Ann"]
    assert re.search(r'<label for="column-4">Favourite colour</label>.*?Ignore this column', body, re.S)
    assert "Required:" in body and "<strong>Name / First name / Last name</strong>" in body
    assert '<option value="name">Name (name), required</option>' in body


def test_in_bulgarian_the_labels_change_but_not_the_matching(app, manager):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    english = text_of(manager.get(f"/import/{token}/columns"))
    bulgarian = text_of(manager.get(f"/import/{token}/columns", headers={"Accept-Language": "bg"}))
    assert selects(bulgarian) == selects(english)
    assert '<option value="email">Имейл (email)</option>' in bulgarian
    assert '<option value="first_name">Собствено име (first_name)' in bulgarian


def test_cell_and_header_contents_are_escaped(app, manager):
    script = "<script>alert(1)</script>"
    token = draft_token(upload(manager, csv_bytes([["Name", script], [script, "<b>bold</b>"]])))
    body = text_of(manager.get(f"/import/{token}/columns"))
    assert script not in body and "<b>bold</b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;b&gt;bold&lt;/b&gt;" in body
    # In the report too: the header names the rejected column.
    token, report = dry_run(manager, csv_bytes([["Name", script], ["Ann", "bad"]]), **{"column-1": "email"})
    assert script not in report
    assert table_rows(report, "rejected-rows") == [("2", script, "Not a valid email address.")]


def test_mapping_errors_are_shown_at_their_columns_and_keep_the_choices(app, manager):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    jobs_before = job_count(app)
    twice = map_columns(manager, token, {"column-4": "email"})
    assert twice.status_code == 422
    body = text_of(twice)
    assert selects(body)["column-4"] == "email" and selects(body)["column-2"] == "email"
    assert body.count("Only one column can fill E-mail.") == 4  # at both selects and in the summary
    assert 'id="column-4" name="column-4" aria-invalid="true" aria-describedby="column-4-error"' in body

    nothing = map_columns(manager, token, {f"column-{i}": "" for i in range(5)})
    assert nothing.status_code == 422
    assert "Choose a column for the required field Name / First name / Last name." in text_of(nothing)
    assert set(selects(text_of(nothing)).values()) == {""}

    unknown = map_columns(manager, token, {"column-4": "password_hash"})
    assert unknown.status_code == 422
    assert "Choose a field of the list, or ignore the column." in text_of(unknown)
    assert job_count(app) == jobs_before  # no check ran


# --- step 3: the dry run ------------------------------------------------------------------------------


def test_the_dry_run_shows_every_bad_row_and_writes_nothing(app, manager):
    token, body = dry_run(manager, csv_bytes(BAD_FILE))
    assert count(app) == 0
    assert "Nothing has been written yet." in body
    counts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", body))
    assert counts == {"Rows in the file": "4", "Would be created": "1", "Would be updated": "0", "Unchanged": "0",
                      "Rejected": "3"}
    assert table_rows(body, "rejected-rows") == [(str(r), c, m) for r, c, m in BAD_ROWS]
    assert "Import 1 row" in body
    assert 'http-equiv="refresh"' not in body  # finished: nothing to follow
    download = manager.get(re.search(r'href="(/import/jobs/\d+/rejected)"', body).group(1))
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    rejected = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rejected[0] == BAD_FILE[0] + ["error"]
    assert [r[:5] for r in rejected[1:]] == BAD_FILE[2:]
    assert count(app) == 0
    assert len(drafts_on_disk(app)) == 2  # the draft waits for the import


def test_many_rejected_rows_are_paged_and_all_in_the_download(app, manager):
    rows = [["Name", "E-mail"]] + [[f"Person {n}", f"bad-{n}"] for n in range(120)]
    token, body = dry_run(manager, csv_bytes(rows))
    assert len(table_rows(body, "rejected-rows")) == 50
    assert "Page 1 of 3" in body
    last = text_of(manager.get(f"/import/{token}/check?page=3"))
    assert [r[0] for r in table_rows(last, "rejected-rows")] == [str(n) for n in range(102, 122)]
    assert "No row can be imported" in body and "/commit" not in body
    download = manager.get(re.search(r'href="(/import/jobs/\d+/rejected)"', body).group(1))
    assert len(list(csv.reader(io.StringIO(download.get_data(as_text=True))))) == 121


def test_possible_duplicates_are_listed_or_rejected_as_chosen(app, manager):
    from .core_support import make_contact

    existing = make_contact(app, MANAGER, name="Old Ann", email="ann@example.com")
    content = csv_bytes([["Name", "E-mail"], ["Ann Lee", "ANN@example.com"], ["Cleo", "cleo@example.com"]])
    _token, reported = dry_run(manager, content)
    assert f'href="/contacts/{existing}"' in reported and "Row 2:" in reported
    _token, rejected = dry_run(manager, content, on_duplicate="reject")
    assert table_rows(rejected, "rejected-rows") == [
        ("2", "E-mail", f"Possible duplicate of contact {existing} (the same e-mail).")]


# --- step 4: the import ------------------------------------------------------------------------------


def test_commit_writes_the_good_rows_and_the_rejected_file_is_its_owners(app, manager, signed_in):
    token, _report = dry_run(manager, csv_bytes(BAD_FILE))
    response = commit(manager, token)
    assert response.status_code == 303
    progress_url = response.headers["Location"]
    job_id = int(re.fullmatch(r"/import/jobs/(\d+)", progress_url).group(1))
    job = jobs.get_job(job_id, app)
    assert (job["status"], job["user_id"], job["args"]["dry_run"]) == ("done", _user_id(app, MANAGER), False)
    with state(app).db.Session() as session:
        assert session.execute(select(Contact.name, Contact.email, Contact.owner_id)).all() == [
            ("Иван Петров", "ivan@example.com", _user_id(app, MANAGER))]

    body = text_of(manager.get(progress_url))
    assert "The import is finished." in body
    assert dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", body))["Created"] == "1"
    assert table_rows(body, "rejected-rows") == [(str(r), c, m) for r, c, m in BAD_ROWS]
    assert 'href="/contacts"' in body
    download_url = f"{progress_url}/rejected"
    assert f'href="{download_url}"' in body
    download = manager.get(download_url)
    assert download.status_code == 200 and download.headers["Cache-Control"] == "private, no-store"
    assert [r[:5] for r in csv.reader(io.StringIO(download.get_data(as_text=True)))][1:] == BAD_FILE[2:]

    other = signed_in(OTHER, roles=("manager",))
    assert other.get(progress_url).status_code == 404
    assert other.get(download_url).status_code == 404
    admin = signed_in("admin@example.com", roles=("admin",))
    assert admin.get(download_url).status_code == 200

    assert drafts_on_disk(app) == []  # the import finished: the upload is gone
    assert commit(manager, token).status_code == 404  # a second click imports nothing
    assert count(app) == 1


def test_commit_needs_a_finished_check(app, manager):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    response = commit(manager, token)
    assert response.status_code == 303 and response.headers["Location"] == f"/import/{token}/check"
    assert count(app) == 0 and job_count(app) == 0
    assert manager.get(f"/import/{token}/check").headers["Location"] == f"/import/{token}/columns"


def test_an_import_of_tasks_through_the_wizard(app, manager):
    content = csv_bytes([["Title", "Priority", "Notes"], ["Call Ann", "high", "<i>soon</i>"], ["Bad", "asap", ""]])
    token, report = dry_run(manager, content, type_key="tasks")
    assert table_rows(report, "rejected-rows")[0][:2] == ("3", "Priority")
    response = commit(manager, token)
    assert 'href="/tasks"' in text_of(manager.get(response.headers["Location"]))
    with state(app).db.Session() as session:
        assert session.execute(select(Task.title, Task.priority, Task.notes)).all() == [("Call Ann", "high", "<i>soon</i>")]


class NoteSchema(Schema):
    text = fields.String(required=True)


def write_notes(session, rows, user):
    """A plugin's target storing each note as a setting row, in the
    import's transaction (so a dry run's rollback takes it back)."""
    for row in rows:
        session.add(Setting(key=f"note:{row['text']}", value={"by": user.email}))


class NotesPlugin:
    @hookimpl
    def mosaic_permissions(self):
        return [Permission("notes.note.import", "Import notes", ("manager",))]

    @hookimpl
    def mosaic_import_targets(self):
        return [ImportTarget("notes", "Notes", NoteSchema, write_notes, "notes.note.import")]


def notes(app) -> dict:
    with state(app).db.Session() as session:
        return dict(session.execute(select(Setting.key, Setting.value).where(Setting.key.like("note:%"))).all())


def test_a_plugins_import_target_is_offered_and_imported(make_app):
    app = make_app(plugins=["notes"], extra_plugins=[plugin_candidate("notes", NotesPlugin())], jobs_inline=True)
    make_user(app, MANAGER, roles=("manager",))
    client = app.test_client()
    assert login(client, MANAGER).status_code == 303
    assert '<option value="notes">Notes</option>' in text_of(client.get("/import"))
    token, report = dry_run(client, csv_bytes([["Text"], ["first"], ["second"]]), type_key="notes")
    assert "Import 2 rows" in report and notes(app) == {}
    commit(client, token)
    assert notes(app) == {"note:first": {"by": MANAGER}, "note:second": {"by": MANAGER}}


def test_a_running_import_page_refreshes_itself_until_the_job_is_done(make_app, redis_url):
    from rq import SimpleWorker

    app = make_app(plugins=[], redis_url=redis_url)  # queued on Redis until a worker runs it
    make_user(app, MANAGER, roles=("manager",))
    client = app.test_client()
    assert login(client, MANAGER).status_code == 303
    token = draft_token(upload(client, csv_bytes(BAD_FILE)))
    response = map_columns(client, token)
    waiting = text_of(client.get(response.headers["Location"]))
    assert '<meta http-equiv="refresh" content="2">' in waiting
    assert "Waiting for its turn" in waiting and "/commit" not in waiting
    with _restored_signals():
        jobs.run_worker(app, burst=True, worker_class=SimpleWorker)
    done = text_of(client.get(response.headers["Location"]))
    assert 'http-equiv="refresh"' not in done and "Import 1 row" in done
    progress_url = commit(client, token).headers["Location"]
    assert '<meta http-equiv="refresh" content="2">' in text_of(client.get(progress_url))
    with _restored_signals():
        jobs.run_worker(app, burst=True, worker_class=SimpleWorker)
    finished = text_of(client.get(progress_url))
    assert "The import is finished." in finished and 'http-equiv="refresh"' not in finished
    assert count(app) == 1


@contextlib.contextmanager
def _restored_signals():
    """RQ's worker installs its own signal handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _user_id(app, email: str) -> int:
    from host.security.models import User

    with state(app).db.Session() as session:
        return session.scalar(select(User.id).where(User.email == email))


# --- drafts ----------------------------------------------------------------------------------------------


def test_a_draft_belongs_to_the_user_who_uploaded_it(app, manager, signed_in):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    assert all(name.startswith(f"wizard-{_user_id(app, MANAGER)}-{token}.") for name in drafts_on_disk(app))
    other = signed_in(OTHER, roles=("manager",))
    assert other.get(f"/import/{token}/columns").status_code == 404
    assert other.post(f"/import/{token}/cancel", data={"csrf_token": token_of(other)}).status_code == 404
    for bad in ("../../secret", "A" * 32, "0" * 31):
        assert manager.get(f"/import/{bad}/columns").status_code == 404
    assert len(drafts_on_disk(app)) == 2


def test_the_uploaded_file_is_stored_under_a_generated_name(app, manager):
    draft_token(upload(manager, csv_bytes(BAD_FILE), filename="../../evil name.csv"))
    names = drafts_on_disk(app)
    assert len(names) == 2 and not any("evil" in name for name in names)
    assert not (imports.folder(app.instance_path).parent.parent / "evil name.csv").exists()


def test_cancel_discards_the_draft(app, manager):
    token = draft_token(upload(manager, csv_bytes(BAD_FILE)))
    response = manager.post(f"/import/{token}/cancel", data={"csrf_token": token_of(manager)})
    assert response.status_code == 303 and response.headers["Location"] == "/import"
    assert drafts_on_disk(app) == []
    assert manager.get(f"/import/{token}/columns").status_code == 404


def test_old_drafts_are_swept_and_an_expired_one_is_gone(app, manager):
    old, _report = dry_run(manager, csv_bytes(BAD_FILE))
    assert len(rejected_files(app)) == 1
    day_ago = time.time() - import_drafts.MAX_AGE_SECONDS - 60
    for path in imports.folder(app.instance_path).glob(f"wizard-*-{old}.*"):
        os.utime(path, (day_ago, day_ago))
    fresh = draft_token(upload(manager, csv_bytes(BAD_FILE)))  # each upload sweeps
    assert all(fresh in name for name in drafts_on_disk(app))
    assert rejected_files(app) == []  # with the old draft's check
    assert manager.get(f"/import/{old}/columns").status_code == 404

    draft = import_drafts.load(app.instance_path, _user_id(app, MANAGER), fresh)
    draft.created_at = day_ago  # an old draft whose files were touched since
    import_drafts.save(app.instance_path, draft)
    assert manager.get(f"/import/{fresh}/columns").status_code == 404
    assert drafts_on_disk(app) == []


def test_a_user_keeps_only_a_few_drafts(app, manager):
    tokens = [draft_token(upload(manager, csv_bytes(BAD_FILE))) for _ in range(import_drafts.MAX_PER_USER + 2)]
    assert len(drafts_on_disk(app)) == 2 * import_drafts.MAX_PER_USER
    assert manager.get(f"/import/{tokens[-1]}/columns").status_code == 200



def rejected_files(app) -> list[str]:
    return sorted(p.name for p in imports.folder(app.instance_path).glob("rejected-*"))


def test_a_dry_runs_rejected_file_goes_with_its_draft(app, manager):
    token, first = dry_run(manager, csv_bytes(BAD_FILE))
    first_job = re.search(r"/import/jobs/(\d+)/rejected", first).group(1)
    assert rejected_files(app) == [f"rejected-{first_job}.csv"]
    again = map_columns(manager, token, {"column-4": ""})  # a second check replaces the first's report
    second_job = re.search(r"/import/jobs/(\d+)/rejected", text_of(manager.get(again.headers["Location"]))).group(1)
    assert rejected_files(app) == [f"rejected-{second_job}.csv"]
    assert manager.get(f"/import/jobs/{first_job}/rejected").status_code == 404
    imported = commit(manager, token).headers["Location"].rsplit("/", 1)[-1]
    assert rejected_files(app) == [f"rejected-{imported}.csv"]  # the import's own stays for its download

    cancelled, _report = dry_run(manager, csv_bytes(BAD_FILE))
    manager.post(f"/import/{cancelled}/cancel", data={"csrf_token": token_of(manager)})
    assert rejected_files(app) == [f"rejected-{imported}.csv"]


def test_a_check_that_fails_says_why(make_app, redis_url):
    from rq import SimpleWorker

    app = make_app(plugins=[], redis_url=redis_url)
    make_user(app, MANAGER, roles=("manager",))
    client = app.test_client()
    assert login(client, MANAGER).status_code == 303
    token = draft_token(upload(client, csv_bytes(BAD_FILE)))
    check_url = map_columns(client, token).headers["Location"]
    with state(app).db.Session() as session:
        queued = session.scalars(select(Job).where(Job.status == "queued")).one()
        stored_name = queued.args["stored_name"]
    imports.stored_path(app.instance_path, stored_name).unlink()  # the job's copy is lost before it runs
    with _restored_signals():
        jobs.run_worker(app, burst=True, worker_class=SimpleWorker)
    body = text_of(client.get(check_url))
    assert "The file could not be checked: The uploaded file is gone" in body
    assert "/commit" not in body and f'href="/import/{token}/columns"' in body
    assert commit(client, token).headers["Location"] == check_url  # no import without a good check


# --- in a browser: every step without serious accessibility problems ----------------------------------------


@pytest.mark.browser
def test_every_step_in_a_browser_passes_the_accessibility_check(app, live_server, browser):  # noqa: F811
    from .test_a11y import FAILING_IMPACTS, axe_violations, describe

    make_user(app, MANAGER, roles=("manager",))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    failures = {}

    def check(label: str) -> None:
        bad = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
        if bad:
            failures[label] = describe(bad)

    try:
        base = live_server.url
        sign_in(page, base, MANAGER)
        page.goto(base + "/import")
        with page.expect_navigation():
            page.click("form.record-form button[type=submit]")  # nothing chosen: errors at both fields
        assert page.locator(".field-error").count() == 2
        check("upload (errors)")
        page.select_option("#import-type", "contacts")
        page.set_input_files("#import-file", {"name": "fair.csv", "mimeType": "text/csv", "buffer": csv_bytes(BAD_FILE)})
        with page.expect_navigation():
            page.click("form.record-form button[type=submit]")
        check("columns")
        page.get_by_label("Favourite colour", exact=True).select_option("email")
        with page.expect_navigation():
            page.click("form.import-mapping button[type=submit]")
        assert page.locator(".import-columns .field-error").count() == 2
        check("columns (errors)")
        page.get_by_label("Favourite colour", exact=True).select_option("")
        with page.expect_navigation():
            page.click("form.import-mapping button[type=submit]")
        page.get_by_role("heading", name="What the import would do").wait_for()
        check("check (report)")
        with page.expect_navigation():
            page.click(".import-commit button[type=submit]")
        page.get_by_text("The import is finished.").wait_for()
        check("import (finished)")
    finally:
        context.close()
    assert failures == {}, failures
    assert count(app) == 1
