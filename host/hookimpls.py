"""The host's own hook implementations, registered as the plugin "host" so
its contributions travel the same path as every plugin's."""

from __future__ import annotations

from hooks import JobDefinition, MenuItem, Permission, hookimpl

from .i18n import N_

ALL_ROLES = ("admin", "manager", "staff")
LEADS = ("admin", "manager")
ADMIN = ("admin",)


def _crud(obj: str, label: str, extra: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> list[Permission]:
    perms = [
        Permission(f"core.{obj}.read", f"See {label}", ALL_ROLES),
        Permission(f"core.{obj}.create", f"Create {label}", ALL_ROLES),
        Permission(f"core.{obj}.update", f"Edit {label}", ALL_ROLES),
        Permission(f"core.{obj}.delete", f"Delete {label}", LEADS),
    ]
    perms += [Permission(f"core.{obj}.{action}", f"{action.title()} {label}", roles) for action, roles in extra]
    return perms


@hookimpl
def mosaic_permissions():
    return [
        *_crud("contact", "contacts", (("export", LEADS), ("import", LEADS), ("merge", LEADS))),
        *_crud("interaction", "interactions", (("export", LEADS), ("import", LEADS))),
        *_crud("task", "tasks", (("export", LEADS), ("import", LEADS))),
        Permission("core.user.read", "See users", LEADS),
        Permission("core.user.create", "Invite users", ADMIN),
        Permission("core.user.update", "Edit and deactivate users", ADMIN),
        Permission("core.team.read", "See teams", ALL_ROLES),
        Permission("core.team.update", "Manage teams", ADMIN),
        Permission("core.role.read", "See roles and permissions", LEADS),
        Permission("core.role.update", "Manage roles, permissions and scopes", ADMIN),
        # Entries hold old and new field values of any record: admins only by
        # default (a record's own history shows on its page to those who see it).
        Permission("core.audit.read", "Read the audit trail", ADMIN),
        Permission("core.security.read", "Read the security log", ADMIN),
        Permission("core.personal_data.export", "Export a person's data", ADMIN),
        Permission("core.personal_data.erase", "Erase a person's data", ADMIN),
        Permission("core.job.read", "See background jobs", LEADS),
        Permission("core.settings.update", "Change company settings", ADMIN),
        Permission("core.webhook.update", "Manage webhooks", ADMIN),
        Permission("core.customfield.update", "Manage custom fields", ADMIN),
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
