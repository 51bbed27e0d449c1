"""Personal API tokens: the REST API's only way in.

A token is 256 random bits shown once (``mos_<urlsafe>``); only its SHA-256 is
stored. The API never looks at session cookies, which is why it needs no CSRF
token. Each token has a request rate limit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import abort, current_app, g, jsonify, make_response, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session, lazyload

from host.db import get_db
from host.db import session as db_session
from host.db import utcnow

from . import seclog
from .access import ANONYMOUS, Principal, principal_of
from .models import ApiToken, User

TOKEN_PREFIX = "mos_"
RATE_LIMIT = 600  # requests per token per window
RATE_WINDOW_S = 60
#: last_used_at is written at most this often, so reads do not all write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, *, name: str = "", read_only: bool = False) -> tuple[ApiToken, str]:
    """A new token for ``user``; the plain token is returned once, never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name[:200], token_hash=hash_token(plain), prefix=plain[:12], read_only=read_only
    )
    session.add(token)
    session.flush()
    seclog.record(session, "token.create", subject_user_id=user.id, detail={"token_id": token.id, "read_only": read_only})
    return token, plain


def revoke_token(session: Session, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        seclog.record(session, "token.revoke", subject_user_id=token.user_id, detail={"token_id": token.id})


def find_token(session: Session, plain: str) -> ApiToken | None:
    """The token ``plain`` names if it is live (not revoked, not expired)
    and its user active, else None."""
    found = _live_token(session, plain)
    return found[0] if found else None


def _live_token(session: Session, plain: str) -> tuple[ApiToken, str] | None:
    """``find_token``'s token with its user's e-mail. One statement: the
    user's ``active`` and e-mail come with the token, without loading the
    user (its mapping would fetch the roles and teams too, two more round
    trips on every API request; the principal is read in one more)."""
    found = session.execute(
        select(ApiToken, User.active, User.email)
        .join(User, User.id == ApiToken.user_id)
        .options(lazyload(ApiToken.user))
        .where(ApiToken.token_hash == hash_token(plain))
    ).first()
    if found is None:
        return None
    token, active, email = found
    if token.revoked_at is not None or not active:
        return None
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None
    return token, email


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def principal_for_request() -> Principal:
    """Authenticate an API request by its bearer token (cookies are ignored).

    The lookup, the rate-limit count and ``last_used_at`` each use their own
    short transaction, finished before the request's session begins: on
    SQLite a writing request holds the database lock from its first
    statement, so any write on another connection after that would wait on it.
    """
    plain = _bearer()
    if plain is None:
        return ANONYMOUS
    db = get_db()
    with db.Session() as lookup:
        found = _live_token(lookup, plain)
        if found is None:
            return ANONYMOUS
        token, email = found
        token_id, user_id, read_only, last_used = token.id, token.user_id, token.read_only, token.last_used_at
    _enforce_rate_limit(token_id)
    now = utcnow()
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        with db.transaction() as write:
            write.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
    g.mosaic_api_token_id = token_id
    return principal_of(db_session(), user_id, email, read_only=read_only)


def _enforce_rate_limit(token_id: int) -> None:
    limiter = current_app.extensions["mosaic"].rate_limiter
    limit = current_app.config.get("MOSAIC_TOKEN_RATE_LIMIT", RATE_LIMIT)
    decision = limiter.hit(f"token:{token_id}", limit, RATE_WINDOW_S)
    if not decision.allowed:
        response = make_response(
            jsonify({"code": 429, "status": "Too Many Requests", "message": f"Rate limit of {limit} requests per {RATE_WINDOW_S} s exceeded."}),
            429,
        )
        response.headers["Retry-After"] = str(decision.retry_after)
        abort(response)
