"""Platform state: SQLAlchemy models. Changes go through Alembic migrations."""

from __future__ import annotations

import datetime as dt
import enum
import secrets

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _status_enum(enum_type: type[enum.StrEnum]) -> Enum:
    # Stored as the plain values ("pending"), checked by the database as well.
    return Enum(enum_type, native_enum=False, length=16,
                values_callable=lambda members: [m.value for m in members])


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all")


class ApiToken(Base):
    """An API token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    # Keys the app's repository, build logs and Docker objects (labels, network, image
    # tags). Random and never reused: an app made again under a destroyed app's name
    # never sees what the old one left behind. Apps older than it have their name.
    uid: Mapped[str] = mapped_column(String(32), unique=True,
                                     default=lambda: secrets.token_hex(16))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The release that serves traffic; None until the first deploy succeeds.
    current_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", use_alter=True, name="fk_apps_current_release")
    )

    owner: Mapped[User] = relationship()
    config_vars: Mapped[list[ConfigVar]] = relationship(
        back_populates="app", cascade="all, delete-orphan"
    )
    current_release: Mapped[Release | None] = relationship(
        foreign_keys=[current_release_id], post_update=True
    )


class ConfigVar(Base):
    """One config var; the value is Fernet-encrypted."""

    __tablename__ = "config_vars"
    __table_args__ = (UniqueConstraint("app_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(256))
    value_encrypted: Mapped[str] = mapped_column(Text)

    app: Mapped[App] = relationship(back_populates="config_vars")


class BuildStatus(enum.StrEnum):
    PENDING = "pending"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Build(Base):
    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    commit: Mapped[str] = mapped_column(String(64))
    status: Mapped[BuildStatus] = mapped_column(
        _status_enum(BuildStatus),
        default=BuildStatus.PENDING,
    )
    stack: Mapped[str | None] = mapped_column(String(32))
    image: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text, default="")
    # Seconds each phase took, e.g. {"build": 1.2, "start": 0.4}.
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    app: Mapped[App] = relationship()


class ReleaseStatus(enum.StrEnum):
    PENDING = "pending"
    DEPLOYING = "deploying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Release(Base):
    """An immutable release: an image and a snapshot of the config, numbered v1, v2, ..."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    image: Mapped[str] = mapped_column(String(255))
    # Encrypted JSON object of the config vars this release runs with.
    config_encrypted: Mapped[str] = mapped_column(Text)
    processes: Mapped[dict] = mapped_column(JSON, default=dict)
    port: Mapped[int] = mapped_column(Integer, default=5000)
    # The resolved startup checks of its web containers ({"web": [{path, timeout, ...}]});
    # NULL for releases made before checks were stored: they get the settings' default.
    healthchecks: Mapped[dict | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(255), default="")
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[ReleaseStatus] = mapped_column(
        _status_enum(ReleaseStatus),
        default=ReleaseStatus.PENDING,
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    app: Mapped[App] = relationship(foreign_keys=[app_id])


# --- Formations: the scale of each process type (ps:scale) ---------------------------------


class Formation(Base):
    """How many containers of one process type an app runs; absent types run one."""

    __tablename__ = "formations"
    __table_args__ = (UniqueConstraint("app_id", "process_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    process_type: Mapped[str] = mapped_column(String(30))
    quantity: Mapped[int] = mapped_column(Integer)


# --- Domains and TLS certificates (issue 5) -----------------------------------


class CertificateStatus(enum.StrEnum):
    NONE = "none"  # not asked for yet (or TLS is off)
    PENDING = "pending"  # issuance under way or queued
    ISSUED = "issued"  # a certificate is stored and served
    FAILED = "failed"  # the last attempt failed; see last_error (a current cert may still serve)


class Domain(Base):
    """A host name routed to an app, with the state of its certificate.

    Custom domains are added by users; each app's default host
    (``<app>.<SLIPWAY_DOMAIN>``) gets a row with ``custom=False`` when its first
    certificate is requested, so both kinds share one status and renewal path.
    """

    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    custom: Mapped[bool] = mapped_column(default=True)
    status: Mapped[CertificateStatus] = mapped_column(
        _status_enum(CertificateStatus), default=CertificateStatus.NONE
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    # Failed attempts in a row, and when the next one is due (exponential backoff).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    app: Mapped[App] = relationship()


class AppTls(Base):
    """Per-app TLS settings; no row means the global defaults (SLIPWAY_HSTS)."""

    __tablename__ = "app_tls"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"),
                                        primary_key=True)
    hsts: Mapped[bool | None]


# --- Capsules: managed PostgreSQL and Redis (issue 4) ---------------------------


class CapsuleStatus(enum.StrEnum):
    PROVISIONING = "provisioning"
    AVAILABLE = "available"
    FAILED = "failed"


class Capsule(Base):
    """A managed database: one container, one volume, one network; password encrypted."""

    __tablename__ = "capsules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32), default="")
    image: Mapped[str] = mapped_column(String(255), default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[CapsuleStatus] = mapped_column(
        _status_enum(CapsuleStatus), default=CapsuleStatus.PROVISIONING
    )
    error: Mapped[str | None] = mapped_column(Text)
    password_encrypted: Mapped[str] = mapped_column(Text)
    # The port published on 127.0.0.1 for the owner's tools and the worker's checks.
    host_port: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship()
    attachments: Mapped[list[CapsuleAttachment]] = relationship(
        back_populates="capsule", cascade="all, delete-orphan"
    )


class CapsuleAttachment(Base):
    """A capsule attached to an app: the app gets ``<alias>_URL``."""

    __tablename__ = "capsule_attachments"
    __table_args__ = (UniqueConstraint("app_id", "alias"), UniqueConstraint("app_id", "capsule_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    capsule_id: Mapped[int] = mapped_column(
        ForeignKey("capsules.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    capsule: Mapped[Capsule] = relationship(back_populates="attachments")
    app: Mapped[App] = relationship()


# --- Audit log (issue 7) -------------------------------------------------------


class AuditEvent(Base):
    """Who did what, when: one row per change a user made. Never holds a secret.

    The actor's email and the target's name are snapshots, so an event still reads
    right after the user, app or capsule is gone. ``owner_id`` is the owner of what
    was changed, so owners see what an admin did to their things.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    actor_email: Mapped[str | None] = mapped_column(String(320))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target_kind: Mapped[str] = mapped_column(String(16))
    target_name: Mapped[str] = mapped_column(String(253))
    # The app the event is about (also for capsule attachments and domains), for app=.
    app: Mapped[str | None] = mapped_column(String(30), index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
