"""Users, their dashboard passwords and their API tokens."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.platform import audit, validation
from slipway.platform.errors import Conflict, InvalidInput, NotFound, Unauthorized
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
    row = ApiToken(user=user, name=name[:100], token_hash=hash_token(token), hint=token[:8])
    session.add(row)
    session.flush()
    audit.record(session, user, "token.create", target_kind="token", target_name=_token_label(row),
                 details={"id": row.id})
    return token


def _token_label(row: ApiToken) -> str:
    # The hint is the token's public prefix (shown in the dashboard too), never the secret part.
    return f"{row.name or 'token'} ({row.hint}…)"


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


# --- Passwords (dashboard sign-in) -------------------------------------------

# scrypt with n=2**14, r=8, p=1: OWASP's minimum for scrypt, ~50 ms and 16 MiB here.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# Compared against when the email is unknown, so both cases take the same time.
_DUMMY_HASH: str | None = None


def hash_password(password: str) -> str:
    """An scrypt hash of ``password`` with a fresh salt, as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time; False for no or a bad hash)."""
    try:
        kind, n, r, p, salt, digest = (stored or "").split("$")
        if kind != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                                p=int(p), maxmem=64 * 1024 * 1024, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def set_password(session: Session, user: User, password: str) -> None:
    """Set ``user``'s dashboard password. Raises InvalidInput for a too short or long one."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Password must be at least {MIN_PASSWORD_LENGTH} characters",
                           field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"Password must be at most {MAX_PASSWORD_LENGTH} characters",
                           field="password")
    user.password_hash = hash_password(password)
    session.flush()


def verify_login(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, or None; the same work whether the email exists."""
    global _DUMMY_HASH
    user = get_by_email(session, email or "")
    if user is None or not user.password_hash:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_hex(16))
        check_password(_DUMMY_HASH, password or "")
        return None
    return user if check_password(user.password_hash, password or "") else None


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked ones too, marked by ``revoked_at``)."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                .order_by(ApiToken.id.desc())))


def revoke_token(session: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens (safe to repeat). Raises NotFound for others' tokens."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"No token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, user, "token.revoke", target_kind="token",
                     target_name=_token_label(row), details={"id": row.id})
    session.flush()
    return row


# --- Dashboard sessions ------------------------------------------------------


class SessionStore:
    """Dashboard sessions kept in Redis; the browser holds only a random session id.

    A record names its user and a keyed fingerprint of the password hash it was made
    with, so a password change (from any process, even one without Redis) or a
    deleted user ends every session of that user at its next request. Records
    expire ``hours`` after sign-in; sign-out deletes its record at once. Redis keys
    are hashes of the ids, so a copy of Redis holds no usable session.
    """

    def __init__(self, client: redis.Redis, instance: str, secret_key: str, *,
                 hours: int) -> None:
        self.client = client
        self.prefix = f"slipway:{instance}:session:"
        self.secret_key = secret_key.encode()
        self.ttl = hours * 3600

    def _key(self, sid: str) -> str:
        return self.prefix + hashlib.sha256(sid.encode()).hexdigest()

    def _mark(self, user: User) -> str:
        message = f"{user.id}|{user.password_hash or ''}".encode()
        return hmac.new(self.secret_key, message, hashlib.sha256).hexdigest()

    def create(self, user: User) -> str:
        """Start a session for ``user``; returns its id, for the cookie."""
        sid = secrets.token_urlsafe(32)
        record = json.dumps({"user": user.id, "mark": self._mark(user)})
        self.client.set(self._key(sid), record, ex=self.ttl)
        return sid

    def user(self, session: Session, sid: object) -> User | None:
        """The user of session ``sid``, or None for an ended, expired or stale one."""
        if not isinstance(sid, str) or not sid:
            return None
        raw = self.client.get(self._key(sid))
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            user = session.get(User, int(record["user"]))
            mark = str(record["mark"])
        except (ValueError, KeyError, TypeError):
            user, mark = None, ""
        if user is None or not hmac.compare_digest(mark, self._mark(user)):
            self.end(sid)  # the user is gone or changed their password
            return None
        return user

    def end(self, sid: object) -> None:
        """End session ``sid`` (safe to repeat)."""
        if isinstance(sid, str) and sid:
            self.client.delete(self._key(sid))
