"""Users and their API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.platform import validation
from slipway.platform.errors import Conflict, Unauthorized
from slipway.platform.models import ApiToken, User, utcnow
from slipway.platform.secrets import hash_token, new_token


def create_user(session: Session, email: str, *, admin: bool = False) -> tuple[User, str]:
    """Create a user with a first API token; returns (user, token). Raises Conflict."""
    email = validation.email(email)
    if session.scalar(select(User).where(User.email == email)):
        raise Conflict(f"A user with email {email} already exists", field="email")
    user = User(email=email, is_admin=admin)
    session.add(user)
    session.flush()
    return user, create_token(session, user, name="default")


def create_token(session: Session, user: User, *, name: str = "") -> str:
    """Make a token for ``user``; the returned token is the only copy of it."""
    token = new_token()
    session.add(ApiToken(user=user, name=name[:100], token_hash=hash_token(token), hint=token[:8]))
    session.flush()
    return token


def authenticate(session: Session, token: str | None) -> User:
    """The user a token belongs to. Raises Unauthorized for a missing, unknown or revoked token."""
    if not token:
        raise Unauthorized("Authentication required: send an API token")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("Invalid API token")
    row.last_used_at = utcnow()
    return row.user


def get_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))
