"""Wiring access control into an app: one gate every request passes.

Order for each request: find the view's declared policy (none: refused);
authenticate (API: bearer token only, cookies ignored; UI: the session);
check CSRF on state-changing UI requests; check the permission; refuse writes
made with a read-only token; refuse API bodies that are not JSON (415, or 400
for JSON that does not parse) before any view validates them. Every response
gets the security headers.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from flask import Flask, abort, current_app, g, jsonify, redirect, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from .access import (
    ACCEPTS_ATTR,
    ANONYMOUS,
    AUTHENTICATED,
    PUBLIC,
    Principal,
    policy_of,
    reset_request_principal,
    set_request_principal,
)

log = logging.getLogger("mosaic.security")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPE = "application/json"
API_PREFIX = "/api/"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ]
)


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def init_app(app: Flask, state) -> None:
    from . import sessions, views_admin, views_auth, views_profile, views_reset
    from .ratelimit import RateLimiter

    state.rate_limiter = RateLimiter(state.db, state.config.redis_url)
    https = bool(state.config.base_url and state.config.base_url.startswith("https://"))
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in the gate, for UI requests only
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_NAME="mosaic_session",
        MOSAIC_HTTPS=https,
    )
    csrf = CSRFProtect(app)
    state.csrf = csrf
    sessions.init_app(app, state)
    app.register_blueprint(views_auth.bp)
    app.register_blueprint(views_profile.bp)
    app.register_blueprint(views_reset.bp)
    app.register_blueprint(views_admin.bp)
    from . import views_audit

    app.register_blueprint(views_audit.bp)
    from host.core import attachments_api

    app.register_blueprint(attachments_api.ui)  # /attachments/<id> downloads

    app.before_request(_gate)
    app.after_request(_security_headers)
    app.teardown_request(_forget_principal)
    app.register_error_handler(CSRFError, _csrf_failed)


def _gate():
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route: the 404 handler answers
    view = current_app.view_functions.get(endpoint)
    policy = PUBLIC if _is_static(endpoint) else policy_of(view)

    principal = _authenticate()
    g.mosaic_principal = principal
    g.mosaic_principal_token = set_request_principal(principal)

    if policy is None:
        log.error("refused %s: endpoint %s declares no access policy", request.path, endpoint)
        abort(403)
    if not is_api_request() and request.method not in SAFE_METHODS:
        current_app.extensions["csrf"].protect()
    if policy == PUBLIC:
        return _check_api_body(view)
    if not principal.is_authenticated:
        return _unauthenticated()
    if principal.read_only and request.method not in SAFE_METHODS:
        abort(403, description="This API token is read-only.")
    if policy != AUTHENTICATED and not principal.can(policy):
        abort(403)
    return _check_api_body(view)


def _check_api_body(view) -> None:
    """API bodies are JSON unless the view declares others with ``@accepts``.

    Checked here, after authentication and before the view, because
    flask-smorest would read a form or text body as "no JSON" and answer 422
    with field errors that send the client hunting in the wrong place. A body
    that claims to be JSON but does not parse gets 400 saying where it broke.
    """
    if not is_api_request() or request.method not in BODY_METHODS:
        return None
    mimetype = request.mimetype
    if not mimetype and not _has_body():
        return None  # nothing sent (an action without a body)
    accepted = _declared(view, ACCEPTS_ATTR) or (JSON_TYPE,)
    if mimetype not in accepted:
        sent = mimetype or "no Content-Type"
        abort(415, description=f"Send the body as {' or '.join(accepted)} (this request sent {sent}).")
    if mimetype == JSON_TYPE:
        try:
            json.loads(request.get_data(cache=True))
        except json.JSONDecodeError as exc:
            abort(400, description=f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
        except ValueError:  # not UTF-8/16/32
            abort(400, description="The body is not valid JSON: it is not UTF-8 text.")
    return None


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _declared(view, attribute: str):
    """An attribute set by a decorator, looking through wrappers (flask-smorest's)."""
    for _ in range(20):
        if view is None:
            return None
        value = getattr(view, attribute, None)
        if value is not None:
            return value
        view = getattr(view, "__wrapped__", None)
    return None


def _is_static(endpoint: str) -> bool:
    """Flask's own static-file endpoints: the app's, and those of blueprints
    that have a static folder. Not any view that happens to be called
    ``static`` (a plugin's ``def static()`` without a policy would otherwise
    be served to anyone, past the default deny)."""
    if endpoint == "static":
        return current_app.has_static_folder
    blueprint, _, name = endpoint.rpartition(".")
    if name != "static" or not blueprint:
        return False
    owner = current_app.blueprints.get(blueprint)
    return owner is not None and owner.has_static_folder


def _authenticate() -> Principal:
    if is_api_request():
        from . import tokens

        return tokens.principal_for_request()
    from . import sessions

    return sessions.principal_for_request()


def _unauthenticated():
    if is_api_request():
        response = jsonify(
            {"code": 401, "status": "Unauthorized", "message": "Send a valid API token: Authorization: Bearer <token>."}
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="mosaic"'
        return response
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.login") + "?" + urlencode({"next": target}))


def _csrf_failed(error: CSRFError):
    from werkzeug.exceptions import BadRequest

    from host.errors_http import handle_http_exception

    return handle_http_exception(BadRequest(description="The form expired or was sent from elsewhere: reload the page and try again."))


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("MOSAIC_HTTPS") or request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if getattr(g, "mosaic_principal", ANONYMOUS).is_authenticated and not _is_static(request.endpoint or ""):
        # Pages with customer data must not linger in shared caches or the back button.
        headers.setdefault("Cache-Control", "no-store")
    return response


def _forget_principal(_exc=None):
    token = g.pop("mosaic_principal_token", None)
    if token is not None:
        reset_request_principal(token)
