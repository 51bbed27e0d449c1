"""One error handler for the whole app: JSON under ``/api/``, a page elsewhere.

API errors have one shape: ``{"code", "status", "message"}`` plus ``errors``
(by location and field) for validation failures. Production error pages carry
no traceback.
"""

from __future__ import annotations

import logging
import traceback

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

from .i18n import N_

log = logging.getLogger("mosaic.http")


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/health"


def handle_http_exception(error: HTTPException):
    if isinstance(error, SecurityError):
        # A Host outside ``trusted_hosts``: no URL can be built for this
        # request (Flask made no URL adapter), so no page that links anywhere.
        return "Bad Request: this host name is not served here.\n", 400, {"Content-Type": "text/plain; charset=utf-8"}
    if wants_json():
        payload = {"code": error.code, "status": error.name, "message": error.description}
        data = getattr(error, "data", None) or {}
        if "message" in data:
            payload["message"] = data["message"]
        if "messages" in data:
            payload["errors"] = data["messages"]
        elif "errors" in data:
            payload["errors"] = data["errors"]
        response = jsonify(payload)
        response.status_code = error.code or 500
        response.headers.extend(_own_headers(error))
        for key, value in (data.get("headers") or {}).items():
            response.headers[key] = value
        return response
    title, description = page_texts(error)
    return (render_template("core/error.html", error=error, title=title, description=description),
            error.code or 500, _own_headers(error))


#: Werkzeug's reason phrases (the msgids keep its English) and, for its
#: default descriptions, which are English only, shorter ones of our own.
PAGE_TEXTS = {
    400: (N_("Bad Request"), N_("The request could not be understood.")),
    401: (N_("Unauthorized"), N_("Sign in to see this page.")),
    403: (N_("Forbidden"), N_("You may not open this page.")),
    404: (N_("Not Found"), N_("There is nothing at this address.")),
    405: (N_("Method Not Allowed"), N_("This page cannot be used that way.")),
    409: (N_("Conflict"), N_("Someone changed this meanwhile: open it again.")),
    410: (N_("Gone"), N_("This is no longer here.")),
    413: (N_("Request Entity Too Large"), N_("What you sent is larger than allowed.")),
    422: (N_("Unprocessable Entity"), N_("What you sent could not be used.")),
    429: (N_("Too Many Requests"), N_("Too many attempts: wait a little and try again.")),
    500: (N_("Internal Server Error"), N_("Something went wrong on the server; it was logged.")),
    503: (N_("Service Unavailable"), N_("The service is busy or down for maintenance: try again soon.")),
}


def page_texts(error: HTTPException) -> tuple[str, str]:
    """The error page's title and text in the user's language; a
    description the view gave (``abort(404, description=_(...))``) is kept."""
    name, default_text = PAGE_TEXTS.get(error.code or 500, (error.name, None))
    own = error.description and error.description != type(error).description
    description = error.description if own or default_text is None else gettext(default_text)
    return gettext(name), description


def _own_headers(error: HTTPException) -> list[tuple[str, str]]:
    """The headers the error itself carries (``Allow`` on 405, ``Retry-After``
    on 429 or 503, ``WWW-Authenticate`` on 401), which the protocol requires
    and a replaced body must not drop."""
    return [(key, value) for key, value in error.get_headers() if key.lower() != "content-type"]


def handle_unexpected(error: Exception):
    if isinstance(error, DBAPIError):
        # The driver's text carries the failing row or key (PostgreSQL's
        # DETAIL: "Failing row contains (...)", "Key (email)=(...)"), personal
        # data or a password hash: log what failed and where, not the values.
        orig = error.orig
        diag = getattr(orig, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(orig).split("\n", 1)[0]
        log.error("unhandled database error on %s %s: %s (%s): %s (SQLSTATE %s)\n[SQL: %s]\n%s",
                  request.method, _loggable_path(), type(error).__name__, type(orig).__name__, primary,
                  getattr(orig, "sqlstate", None),
                  error.statement, "".join(traceback.format_tb(error.__traceback__)).rstrip())
    else:
        log.exception("unhandled error on %s %s", request.method, _loggable_path())
    return handle_http_exception(InternalServerError())


def _loggable_path() -> str:
    """The path for the log, with URL parts named like secrets masked: a
    password-reset link carries its token in the path."""
    from host.security.seclog import is_secret_name

    path = request.path
    for name, value in (request.view_args or {}).items():
        if is_secret_name(name) and str(value):
            path = path.replace(str(value), "[redacted]")
    return path


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    if not app.config.get("TESTING") and not app.config.get("DEBUG"):
        app.register_error_handler(Exception, handle_unexpected)
