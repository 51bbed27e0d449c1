"""Admin pages of the staff UI: users (invite, deactivate with hand-over,
reset two-factor), custom fields, webhooks with their log, company settings
and the recycle bin. Status, permission (403 without, 302 to login signed
out), content, CSRF, escaping, stale saves."""

from __future__ import annotations

import logging
import re

import pytest

from host.core.models import Contact, CustomFieldDefinitionRow, Webhook
from host.db import utcnow
from host.security.access import SYSTEM, acting_as
from host.security.models import SecurityEvent, User
from host.testing import csrf_token, login, make_user

pytestmark = pytest.mark.with_plugins()

XSS = '<script>alert("x")</script>'
PAGES = {
    "/admin/users": "core.user.read",
    "/admin/custom-fields": "core.customfield.update",
    "/admin/webhooks": "core.webhook.update",
    "/admin/settings": "core.settings.update",
    "/admin/recycle-bin": "core.contact.delete",
}


def _in_db(app, fn):
    state = app.extensions["mosaic"]
    with app.app_context(), state.db.transaction() as session, acting_as(SYSTEM):
        return fn(session)


def _html(response) -> str:
    return response.get_data(as_text=True)


def _post(client, path, data, page=None):
    token = csrf_token(client, page or path)
    return client.post(path, data={**data, "csrf_token": token})


@pytest.fixture
def admin(signed_in):
    return signed_in("admin@example.com", roles=("admin",))


def test_pages_need_their_permission(client, signed_in, admin):
    staff = signed_in("rep@example.com", roles=("staff",))
    for path in PAGES:
        assert client.get(path).status_code == 302, path
        assert staff.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    assert client.post("/admin/users", data={}).status_code in (302, 400)
    assert staff.post("/admin/settings", data={"csrf_token": csrf_token(staff, "/")}).status_code == 403


def test_admin_navigation_lists_only_permitted_pages(app, signed_in):
    manager = signed_in("lead@example.com", roles=("manager",))
    html = _html(manager.get("/admin/users"))
    nav = html.split('aria-label="Administration"')[1].split("</nav>")[0]
    assert ">Users</a>" in nav and ">Roles</a>" in nav and ">Webhooks</a>" not in nav and ">Company settings</a>" not in nav


# --- users ---------------------------------------------------------------------------------------------


def test_invite_creates_the_user_and_mails_a_working_link(make_app, caplog):
    app = make_app(plugins=[], mail_log_body=True)
    make_user(app, "admin@example.com", roles=("admin",))
    admin = app.test_client()
    login(admin, "admin@example.com")
    with caplog.at_level(logging.INFO, logger="mosaic.mail"):
        response = _post(admin, "/admin/users", {"email": "New@Example.com", "display_name": XSS, "role": "staff"})
    assert response.status_code == 303
    page = _html(admin.get(response.headers["Location"]))
    assert "new@example.com was invited" in page and XSS not in page and "&lt;script&gt;" in page
    (link,) = [m.group(1) for r in caplog.records for m in [re.search(r"(/password-reset/[\w-]{43})", r.getMessage())] if m]
    newcomer = app.test_client()
    assert newcomer.get(link).status_code == 200
    token = csrf_token(newcomer, link)
    done = newcomer.post(link, data={"password": "a long new password 1", "password_confirm": "a long new password 1",
                                     "csrf_token": token})
    assert done.status_code == 303
    assert login(newcomer, "new@example.com", "a long new password 1").status_code == 303
    kinds = _in_db(app, lambda s: [e.kind for e in s.query(SecurityEvent).filter_by(kind="user.create")])
    assert kinds == ["user.create"]


def test_invite_errors_name_the_field_and_keep_input(admin):
    response = _post(admin, "/admin/users", {"email": "admin@example.com", "display_name": "Keep me", "role": "staff"})
    html = _html(response)
    assert response.status_code == 422 and 'id="email-error"' in html and "already exists" in html
    assert 'value="Keep me"' in html
    response = _post(admin, "/admin/users", {"email": "x@example.com", "role": "no-such-role"})
    assert response.status_code == 422 and 'id="role-error"' in _html(response)


def test_deactivate_hands_records_over(app, admin):
    leaver = make_user(app, "leaver@example.com")
    heir = make_user(app, "heir@example.com")
    _in_db(app, lambda s: s.add(Contact(name="Kept customer", kind="person", owner_id=leaver)))
    page = _html(admin.get(f"/admin/users/{leaver}"))
    assert "heir@example.com" in page and 'name="hand_over_to"' in page
    response = _post(admin, f"/admin/users/{leaver}/deactivate", {"hand_over_to": str(heir)}, f"/admin/users/{leaver}")
    assert response.status_code == 303
    assert "1 record(s) now belong to heir@example.com" in _html(admin.get(response.headers["Location"]))
    assert _in_db(app, lambda s: s.query(Contact).filter_by(name="Kept customer").one().owner_id) == heir
    assert _in_db(app, lambda s: s.get(User, leaver).active) is False
    leaver_client = app.test_client()
    assert login(leaver_client, "leaver@example.com").status_code == 200  # refused: form shown again


def test_deactivate_refuses_self_and_unknown_colleague(app, admin):
    me = _in_db(app, lambda s: s.query(User).filter_by(email="admin@example.com").one().id)
    response = _post(admin, f"/admin/users/{me}/deactivate", {"hand_over_to": ""}, f"/admin/users/{me}")
    assert response.status_code == 409 and "your own account" in _html(response)
    other = make_user(app, "other@example.com")
    response = _post(admin, f"/admin/users/{other}/deactivate", {"hand_over_to": "999999"}, f"/admin/users/{other}")
    assert response.status_code == 422 and 'id="hand_over_to-error"' in _html(response)
    assert _in_db(app, lambda s: s.get(User, other).active) is True
    assert _post(admin, "/admin/users/999999/deactivate", {}, "/admin/users").status_code == 404


def test_manager_can_list_but_not_change_users(app, signed_in):
    target = make_user(app, "target@example.com")
    manager = signed_in("lead@example.com", roles=("manager",))
    assert manager.get(f"/admin/users/{target}").status_code == 200
    assert "Deactivate" not in _html(manager.get(f"/admin/users/{target}"))
    token = csrf_token(manager, "/")
    assert manager.post(f"/admin/users/{target}/deactivate", data={"csrf_token": token}).status_code == 403
    assert manager.post("/admin/users", data={"csrf_token": token, "email": "x@example.com"}).status_code == 403


def test_reset_two_factor(app, admin):
    target = make_user(app, "phone-lost@example.com")

    def enrol(session):
        user = session.get(User, target)
        user.totp_secret, user.totp_enabled = "JBSWY3DPEHPK3PXP", True

    _in_db(app, enrol)
    response = _post(admin, f"/admin/users/{target}/reset-two-factor", {}, f"/admin/users/{target}")
    assert response.status_code == 303
    user = _in_db(app, lambda s: (lambda u: (u.totp_enabled, u.totp_secret))(s.get(User, target)))
    assert user == (False, None)
    events = _in_db(app, lambda s: [(e.kind, e.subject_user_id, e.detail) for e in s.query(SecurityEvent).filter_by(kind="totp.disable")])
    assert events == [("totp.disable", target, {"by_admin": True})]


# --- custom fields ----------------------------------------------------------------------------------


def test_custom_fields_create_list_delete(app, admin):
    response = _post(admin, "/admin/custom-fields", {"label": XSS, "key": "contract_no", "type": "text"})
    assert response.status_code == 303
    html = _html(admin.get("/admin/custom-fields"))
    assert "<code>contract_no</code>" in html and XSS not in html and "&lt;script&gt;" in html
    row_id = _in_db(app, lambda s: s.query(CustomFieldDefinitionRow).filter_by(key="contract_no").one().id)
    response = _post(admin, f"/admin/custom-fields/{row_id}/delete", {}, "/admin/custom-fields")
    assert response.status_code == 303
    assert _in_db(app, lambda s: s.query(CustomFieldDefinitionRow).count()) == 0
    assert _post(admin, f"/admin/custom-fields/{row_id}/delete", {}, "/admin/custom-fields").status_code == 404


def test_custom_field_errors_name_the_field(admin):
    response = _post(admin, "/admin/custom-fields", {"label": "Tier", "key": "Bad Key", "type": "choice", "choices": ""})
    html = _html(response)
    assert response.status_code == 422 and 'id="key-error"' in html and 'value="Tier"' in html
    response = _post(admin, "/admin/custom-fields", {"label": "Tier", "key": "tier", "type": "choice", "choices": ""})
    assert response.status_code == 422 and 'id="choices-error"' in _html(response)


# --- webhooks ---------------------------------------------------------------------------------------------


@pytest.fixture
def private_ok(make_app):
    app = make_app(plugins=[], webhooks_allow_private=True)
    make_user(app, "admin@example.com", roles=("admin",))
    client = app.test_client()
    login(client, "admin@example.com")
    return app, client


def test_webhook_create_shows_secret_once_then_edit_test_delete(private_ok):
    app, admin = private_ok
    response = _post(admin, "/admin/webhooks", {"url": "http://127.0.0.1:9/hook", "event_types": "contact.created\ncontact.updated"})
    assert response.status_code == 201
    secret = re.search(r'id="webhook-secret" type="text" readonly value="(whsec_[^"]+)"', _html(response)).group(1)
    hook_id = _in_db(app, lambda s: s.query(Webhook).one().id)
    page = _html(admin.get(f"/admin/webhooks/{hook_id}"))
    assert secret not in page and "contact.updated" in page and "No deliveries yet." in page

    assert _post(admin, f"/admin/webhooks/{hook_id}/test", {}, f"/admin/webhooks/{hook_id}").status_code == 303
    page = _html(admin.get(f"/admin/webhooks/{hook_id}"))
    assert "webhook.test" in page and "pending" in page

    response = _post(admin, f"/admin/webhooks/{hook_id}", {"url": "http://127.0.0.1:9/other", "event_types": "*"},
                     f"/admin/webhooks/{hook_id}")
    assert response.status_code == 303
    assert _in_db(app, lambda s: (lambda h: (h.url, h.event_types, h.active))(s.get(Webhook, hook_id))) == (
        "http://127.0.0.1:9/other", ["*"], False)

    rotated = _post(admin, f"/admin/webhooks/{hook_id}/rotate-secret", {}, f"/admin/webhooks/{hook_id}")
    assert rotated.status_code == 200 and "whsec_" in _html(rotated) and secret not in _html(rotated)
    assert _post(admin, f"/admin/webhooks/{hook_id}/delete", {}, f"/admin/webhooks/{hook_id}").status_code == 303
    assert _in_db(app, lambda s: s.query(Webhook).count()) == 0


def test_webhook_refuses_a_private_address_naming_the_url(admin):
    response = _post(admin, "/admin/webhooks", {"url": "http://127.0.0.1/hook", "event_types": "*"})
    html = _html(response)
    assert response.status_code == 422 and 'id="url-error"' in html and 'value="http://127.0.0.1/hook"' in html


# --- company settings ------------------------------------------------------------------------------------


SETTINGS = {"name": "Acme <Ltd>", "base_currency": "BGN", "default_language": "bg", "default_time_zone": "Europe/Sofia"}


def _version(html: str) -> str:
    return re.search(r'name="version" value="(\d+)"', html).group(1)


def test_settings_save_and_show(app, admin):
    version = _version(_html(admin.get("/admin/settings")))
    response = _post(admin, "/admin/settings", {**SETTINGS, "version": version})
    assert response.status_code == 303
    html = _html(admin.get("/admin/settings"))
    assert 'value="Acme &lt;Ltd&gt;"' in html and "<option selected>BGN</option>" in html
    assert "Acme &lt;Ltd&gt;</a>" in html  # the brand in the top bar
    # the default language applies when the browser names none of ours
    login_page = _html(app.test_client().get("/login", headers={"Accept-Language": "de"}))
    assert '<html lang="bg">' in login_page


def test_settings_stale_save_answers_409_and_keeps_input(app, admin, signed_in):
    other = signed_in("admin2@example.com", roles=("admin",))
    version = _version(_html(admin.get("/admin/settings")))
    assert _post(other, "/admin/settings", {**SETTINGS, "name": "Theirs", "version": version}).status_code == 303
    response = _post(admin, "/admin/settings", {**SETTINGS, "name": "Mine", "base_currency": "USD", "version": version})
    html = _html(response)
    assert response.status_code == 409 and 'value="Mine"' in html and "<option selected>USD</option>" in html
    assert "Theirs" in html
    # saving again from the 409 page (which carries their version) goes through
    assert _post(admin, "/admin/settings", {**SETTINGS, "name": "Mine", "version": _version(html)}).status_code == 303
    from host import company

    assert _in_db(app, lambda s: company.get_company(s)["name"]) == "Mine"


def test_settings_errors_name_the_field(admin):
    version = _version(_html(admin.get("/admin/settings")))
    response = _post(admin, "/admin/settings", {**SETTINGS, "base_currency": "XXXX", "default_time_zone": "Mars/Base",
                                                "version": version})
    html = _html(response)
    assert response.status_code == 422 and 'id="base_currency-error"' in html and 'id="default_time_zone-error"' in html
    assert 'value="Acme &lt;Ltd&gt;"' in html


# --- recycle bin ---------------------------------------------------------------------------------------------


def test_recycle_bin_lists_and_restores_within_scope(app, signed_in):
    lead = signed_in("lead@example.com", roles=("manager",))
    me = _in_db(app, lambda s: s.query(User).filter_by(email="lead@example.com").one().id)

    def seed(session):
        session.add(Contact(name=XSS, kind="person", owner_id=me, deleted_at=utcnow()))
        session.add(Contact(name="Alive", kind="person", owner_id=me))

    _in_db(app, seed)
    html = _html(lead.get("/admin/recycle-bin"))
    assert "&lt;script&gt;" in html and XSS not in html and "Alive" not in html
    contact_id = _in_db(app, lambda s: s.query(Contact).filter(Contact.deleted_at.isnot(None)).one().id)
    response = _post(lead, f"/admin/recycle-bin/{contact_id}/restore", {}, "/admin/recycle-bin")
    assert response.status_code == 303
    assert "The recycle bin is empty." in _html(lead.get("/admin/recycle-bin"))
    assert _in_db(app, lambda s: s.get(Contact, contact_id).deleted_at) is None
    assert _post(lead, "/admin/recycle-bin/999999/restore", {}, "/admin/recycle-bin").status_code == 404
    assert lead.get("/admin/recycle-bin?cursor=%%%").status_code == 400


# --- roles in the user's language ---------------------------------------------------------------------


@pytest.mark.with_plugins("marketing")
def test_roles_pages_describe_the_hosts_permissions_and_roles_in_the_language(app, admin):
    """The host's permission and built-in role descriptions are translated;
    a plugin's descriptions and an admin's own text are shown as written."""
    from host.security import roles
    from host.security.models import Role

    def prepare(session):
        roles.set_description(session, "manager", "Our regional leads")
        roles.create_role(session, "auditors", "See campaigns")  # an admin's text, even if it reads like one
        return session.query(Role).filter_by(name="admin").one().id

    admin_id = _in_db(app, prepare)
    russian = {"Accept-Language": "ru"}
    listing = _html(admin.get("/admin/roles", headers=russian))
    assert "<small>Администраторы: все права, все записи.</small>" in listing
    assert "<small>Все остальные: свои записи.</small>" in listing
    assert "<small>Our regional leads</small>" in listing, "a changed built-in description is the admin's text"
    assert "<small>See campaigns</small>" in listing
    page = _html(admin.get(f"/admin/roles/{admin_id}", headers=russian))
    assert "<p>Администраторы: все права, все записи.</p>" in page
    assert "<legend>Основные</legend>" in page
    assert "<legend>Маркетинг</legend>" in page, "a plugin's title through its own catalogue"
    assert "core.contact.read <small>Просмотр контактов</small>" in page
    assert "core.role.update <small>Управление ролями, правами и областями видимости</small>" in page
    assert "core.contact.merge <small>Объединение контактов</small>" in page
    assert "marketing.campaign.read <small>See campaigns</small>" in page, "a plugin's text as it declares it"
    assert "See contacts" not in page and "Administrators:" not in page
    english = _html(admin.get(f"/admin/roles/{admin_id}", headers={"Accept-Language": "en"}))
    assert "core.contact.read <small>See contacts</small>" in english and "<legend>Core</legend>" in english


def test_every_builtin_role_description_is_marked_for_translation():
    """The roles pages translate a built-in role's description only while it
    is the text in ``BUILTIN_ROLE_DESCRIPTIONS``: it must follow the service's."""
    from host.hookimpls import BUILTIN_ROLE_DESCRIPTIONS
    from host.security.roles import BUILTIN_DESCRIPTIONS

    assert BUILTIN_ROLE_DESCRIPTIONS == BUILTIN_DESCRIPTIONS


def test_settings_errors_speak_the_users_language(admin):
    version = _version(_html(admin.get("/admin/settings")))
    token = csrf_token(admin, "/admin/settings")
    response = admin.post("/admin/settings", headers={"Accept-Language": "sk"}, data={
        **SETTINGS, "base_currency": "XXXX", "default_time_zone": "Mars/Base", "version": version, "csrf_token": token})
    html = _html(response)
    assert response.status_code == 422
    assert 'id="base_currency-error">Vyberte kód meny podľa ISO 4217, napríklad EUR alebo BGN.<' in html
    assert 'id="default_time_zone-error">Vyberte časové pásmo zo zoznamu, napríklad Europe/Sofia.<' in html


def test_custom_field_errors_speak_the_users_language(admin):
    token = csrf_token(admin, "/admin/custom-fields")
    bulgarian = {"Accept-Language": "bg"}
    response = admin.post("/admin/custom-fields", headers=bulgarian, data={
        "label": "Tier", "key": "Bad Key", "type": "colour", "choices": "", "csrf_token": token})
    html = _html(response)
    assert response.status_code == 422
    assert ('id="key-error">Използвайте малки латински букви, цифри и _, като започнете с буква (най-много 100).<'
            in html)
    assert 'id="type-error">Трябва да е едно от: text, number, date, bool, choice.<' in html
    response = admin.post("/admin/custom-fields", headers=bulgarian, data={
        "label": "Tier", "key": "tier", "type": "choice", "choices": "", "csrf_token": token})
    assert 'id="choices-error">Полето за избор изисква поне една възможност.<' in _html(response)
