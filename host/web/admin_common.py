"""What the admin pages share: the admin section's own navigation (only the
pages the user may use) and small form helpers. Not a page module."""

from __future__ import annotations

from flask import request, url_for
from werkzeug.routing import BuildError

from host.i18n import N_
from host.security.access import current_principal

from .validation import translate_text

#: (endpoint, label, permission) of every admin page, in the order shown.
ADMIN_PAGES = (
    ("admin_users.index", N_("Users"), "core.user.read"),
    ("admin.teams", N_("Teams"), "core.team.read"),
    ("admin.roles", N_("Roles"), "core.role.read"),
    ("admin_fields.index", N_("Custom fields"), "core.customfield.update"),
    ("admin_webhooks.index", N_("Webhooks"), "core.webhook.update"),
    ("admin_bin.index", N_("Recycle bin"), "core.contact.delete"),
    ("admin_settings.index", N_("Company settings"), "core.settings.update"),
    ("audit.audit_log", N_("Audit"), "core.audit.read"),
    ("audit.security_log", N_("Security log"), "core.security.read"),
)


def admin_nav() -> list[dict[str, object]]:
    principal = current_principal()
    entries = []
    for endpoint, label, permission in ADMIN_PAGES:
        if not principal.can(permission):
            continue
        try:
            url = url_for(endpoint)
        except BuildError:
            continue
        entries.append({"url": url, "label": label, "current": request.path == url or request.path.startswith(url + "/")})
    return entries


def form_text(name: str, limit: int = 1000) -> str:
    return (request.form.get(name) or "").strip()[:limit]


def first_errors(messages) -> dict[str, str]:
    """marshmallow's messages by field as one line per field, for forms,
    in the user's language."""
    found: dict[str, str] = {}
    for name, value in (messages or {}).items():
        while isinstance(value, (list, tuple)) and value:
            value = value[0]
        if isinstance(value, dict):
            value = "; ".join(str(v[0] if isinstance(v, list) and v else v) for v in value.values())
        found[str(name)] = translate_text(str(value))
    return found
