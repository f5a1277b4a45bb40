"""Token authentication: Bearer for the API, HTTP basic (token as password) for git.

Wrong tokens are counted per client address (SLIPWAY_AUTH_MAX_FAILURES per
SLIPWAY_AUTH_WINDOW_SECONDS); past the limit every token from that address gets
429 until the window ends, so a guess that succeeds cannot be told from one that
fails. A missing token is not counted: git asks without credentials first.
"""

from __future__ import annotations

import functools
import logging

import redis
from flask import g, request

from slipway.platform import users
from slipway.platform.errors import TooManyRequests, Unauthorized
from slipway.platform.logstream import connect
from slipway.platform.models import User
from slipway.platform.ratelimit import FailureLimit
from slipway.web.app import db_session, settings

logger = logging.getLogger(__name__)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def basic_password() -> str | None:
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.password or None
    return None


def current_user() -> User:
    return g.user


def _token_limit() -> FailureLimit:
    s = settings()
    return FailureLimit(connect(s.redis_url), s.instance_id, "token",
                        limit=s.auth_max_failures, window=s.auth_window_seconds)


def authenticate(token: str | None) -> User:
    """The user ``token`` belongs to, behind the per-address failure limit.

    Raises Unauthorized (missing, unknown or revoked token) or TooManyRequests. When
    Redis does not answer, tokens are checked without the limit rather than refused.
    """
    if not token:
        return users.authenticate(db_session(), token)  # raises Unauthorized, not counted
    limit, who = _token_limit(), request.remote_addr or ""
    try:
        wait = limit.retry_after(who)
    except redis.RedisError as exc:
        logger.warning("token failure limit not checked: %s", exc)
        limit, wait = None, 0
    if wait:
        raise TooManyRequests(f"Too many requests with a wrong API token from your address: "
                              f"try again in {wait} s", retry_after=wait)
    try:
        user = users.authenticate(db_session(), token)
    except Unauthorized:
        if limit is not None:
            try:
                limit.fail(who)
            except redis.RedisError as exc:
                logger.warning("token failure not counted: %s", exc)
        raise
    db_session().commit()  # last_used_at
    return user


def require_token(view):
    """Authenticate the request's Bearer token before the view runs (401 or 429 otherwise)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.user = authenticate(bearer_token())
        return view(*args, **kwargs)

    return wrapper


def authenticate_basic() -> User:
    token = basic_password()
    if token is None:
        raise Unauthorized("Authentication required: use your API token as the password")
    return authenticate(token)
