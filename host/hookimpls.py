"""The host's own hook implementations, registered as the plugin "host" so
its contributions travel the same path as every plugin's."""

from __future__ import annotations

from hooks import JobDefinition, MenuItem, Permission, hookimpl

from .i18n import N_

ALL_ROLES = ("admin", "manager", "staff")
LEADS = ("admin", "manager")
ADMIN = ("admin",)


#: Each record type's permission descriptions, spelled out so that they are
#: extracted for translation (the roles pages show the host's in the user's
#: language; a plugin's are shown as it declares them).
_CRUD_DESCRIPTIONS = {
    "contact": {"read": N_("See contacts"), "create": N_("Create contacts"), "update": N_("Edit contacts"),
                "delete": N_("Delete contacts"), "export": N_("Export contacts"), "import": N_("Import contacts"),
                "merge": N_("Merge contacts")},
    "interaction": {"read": N_("See interactions"), "create": N_("Create interactions"),
                    "update": N_("Edit interactions"), "delete": N_("Delete interactions"),
                    "export": N_("Export interactions"), "import": N_("Import interactions")},
    "task": {"read": N_("See tasks"), "create": N_("Create tasks"), "update": N_("Edit tasks"),
             "delete": N_("Delete tasks"), "export": N_("Export tasks"), "import": N_("Import tasks")},
}

#: The built-in roles' descriptions as ``host.security.roles`` stores them,
#: marked for translation: the roles pages translate a built-in role's
#: description while it is still this text (an admin may have changed it).
BUILTIN_ROLE_DESCRIPTIONS = {
    "admin": N_("Administrators: every permission, every record."),
    "manager": N_("Team leads: their team's records."),
    "staff": N_("Everyone else: their own records."),
}


def _crud(obj: str, extra: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> list[Permission]:
    described = _CRUD_DESCRIPTIONS[obj]
    perms = [
        Permission(f"core.{obj}.read", described["read"], ALL_ROLES),
        Permission(f"core.{obj}.create", described["create"], ALL_ROLES),
        Permission(f"core.{obj}.update", described["update"], ALL_ROLES),
        Permission(f"core.{obj}.delete", described["delete"], LEADS),
    ]
    perms += [Permission(f"core.{obj}.{action}", described[action], roles) for action, roles in extra]
    return perms


@hookimpl
def mosaic_permissions():
    return [
        *_crud("contact", (("export", LEADS), ("import", LEADS), ("merge", LEADS))),
        *_crud("interaction", (("export", LEADS), ("import", LEADS))),
        *_crud("task", (("export", LEADS), ("import", LEADS))),
        Permission("core.user.read", N_("See users"), LEADS),
        Permission("core.user.create", N_("Invite users"), ADMIN),
        Permission("core.user.update", N_("Edit and deactivate users"), ADMIN),
        Permission("core.team.read", N_("See teams"), ALL_ROLES),
        Permission("core.team.update", N_("Manage teams"), ADMIN),
        Permission("core.role.read", N_("See roles and permissions"), LEADS),
        Permission("core.role.update", N_("Manage roles, permissions and scopes"), ADMIN),
        # Entries hold old and new field values of any record: admins only by
        # default (a record's own history shows on its page to those who see it).
        Permission("core.audit.read", N_("Read the audit trail"), ADMIN),
        Permission("core.security.read", N_("Read the security log"), ADMIN),
        Permission("core.personal_data.export", N_("Export a person's data"), ADMIN),
        Permission("core.personal_data.erase", N_("Erase a person's data"), ADMIN),
        Permission("core.job.read", N_("See background jobs"), LEADS),
        Permission("core.settings.update", N_("Change company settings"), ADMIN),
        Permission("core.webhook.update", N_("Manage webhooks"), ADMIN),
        Permission("core.customfield.update", N_("Manage custom fields"), ADMIN),
    ]


@hookimpl
def mosaic_menu_items(user):
    return [
        MenuItem(label=N_("Dashboard"), endpoint="core.index", order=0),
        MenuItem(label=N_("Contacts"), endpoint="contacts.index", permission="core.contact.read", order=10),
        MenuItem(label=N_("Interactions"), endpoint="interactions.index", permission="core.interaction.read", order=20),
        MenuItem(label=N_("Tasks"), endpoint="tasks.index", permission="core.task.read", order=30),
        MenuItem(label=N_("Import"), endpoint="imports.index", permission="core.contact.import", order=40),
        MenuItem(label=N_("Users"), endpoint="admin_users.index", permission="core.user.read", order=890),
        MenuItem(label=N_("Roles"), endpoint="admin.roles", permission="core.role.read", order=900),
        MenuItem(label=N_("Audit"), endpoint="audit.audit_log", permission="core.audit.read", order=910),
        MenuItem(label=N_("Security log"), endpoint="audit.security_log", permission="core.security.read", order=920),
        MenuItem(label=N_("Custom fields"), endpoint="admin_fields.index", permission="core.customfield.update", order=930),
        MenuItem(label=N_("Webhooks"), endpoint="admin_webhooks.index", permission="core.webhook.update", order=940),
        MenuItem(label=N_("Recycle bin"), endpoint="admin_bin.index", permission="core.contact.delete", order=950),
        MenuItem(label=N_("Settings"), endpoint="admin_settings.index", permission="core.settings.update", order=960),
    ]


@hookimpl
def mosaic_dashboard_widgets(user):
    from .web.widgets import host_widgets

    return host_widgets(user)


@hookimpl
def mosaic_api_blueprints():
    from .core import (attachments_api, exports_api, imports_api, jobs_api, notifications, personal_data_api,
                       timeline_api, webhooks_api)
    from .core.api import BLUEPRINTS as core_record_api
    from .security.views_audit import api

    return [api, timeline_api.api, attachments_api.api, notifications.api, webhooks_api.api, personal_data_api.api,
            jobs_api.api, imports_api.api, exports_api.api, *core_record_api]


@hookimpl
def mosaic_jobs():
    from .core import imports, reminders, webhooks
    from .core.services import purge_recycle_bin_job
    from .jobs import housekeeping_jobs

    return [
        reminders.job_definition(),
        webhooks.job_definition(),
        imports.job_definition(),
        imports.purge_job_definition(),
        JobDefinition("core.purge_recycle_bin", purge_recycle_bin_job, every=3600,
                      description="Delete contacts, interactions and tasks 30 days in the recycle bin"),
        *housekeeping_jobs(),
    ]


@hookimpl
def mosaic_import_targets():
    from .core import imports

    return imports.host_targets()


@hookimpl
def mosaic_export_types():
    from .core import exports

    return exports.host_types()


# --- the core record's personal data, demo data and commands -----------------------------


@hookimpl
def mosaic_export_contact(session, contact):
    from .core import personal_data

    return personal_data.export_contact(session, getattr(contact, "id", contact))


@hookimpl
def mosaic_erase_contact(session, contact):
    from .core import personal_data

    personal_data.erase_contact(session, getattr(contact, "id", contact))


@hookimpl
def mosaic_demo_data(session, rng):
    from .core import demo_data

    demo_data.seed(session, rng)


@hookimpl
def mosaic_cli(cli):
    """The host's own commands that are not built into ``host.cli`` (one
    implementation per module: add further host commands here)."""
    from .core import personal_data_cli

    personal_data_cli.register(cli)
