"""Token authentication: Bearer for the API, HTTP basic (token as password) for git."""

from __future__ import annotations

import functools

from flask import g, request

from slipway.platform import users
from slipway.platform.errors import Unauthorized
from slipway.platform.models import User
from slipway.web.app import db_session


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


def require_token(view):
    """Authenticate the request's Bearer token before the view runs (401 otherwise)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.user = users.authenticate(db_session(), bearer_token())
        db_session().commit()  # last_used_at
        return view(*args, **kwargs)

    return wrapper


def authenticate_basic() -> User:
    token = basic_password()
    if token is None:
        raise Unauthorized("Authentication required: use your API token as the password")
    user = users.authenticate(db_session(), token)
    db_session().commit()
    return user
