"""Custom domains: add, remove, list. Each domain carries its certificate's status."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import audit, validation
from slipway.platform.errors import Conflict, NotFound
from slipway.platform.models import App, AppTls, Domain, User


def default_host(settings: Settings, app_name: str) -> str:
    """The host every app gets: ``<app>.<SLIPWAY_DOMAIN>``."""
    return f"{app_name}.{settings.domain}"


def list_domains(session: Session, app: App) -> list[Domain]:
    """The app's domains (its default host once it has a row, then custom ones), by name."""
    return list(session.scalars(
        select(Domain).where(Domain.app_id == app.id).order_by(Domain.custom, Domain.hostname)))


def add_domain(session: Session, settings: Settings, app: App, hostname: object, *,
               actor: User | None) -> Domain:
    """Route ``hostname`` to ``app`` (status ``none`` until a certificate is asked for).

    Raises InvalidInput for a malformed name; Conflict when the name is taken by
    any app, is the app's own default host, or lies under SLIPWAY_DOMAIN in the
    space of another app (``<other>.<domain>`` and its subdomains).
    """
    host = validation.domain(hostname)
    suffix = "." + settings.domain
    if host == settings.domain:
        raise Conflict(f"{host} is Slipway's own domain and cannot be added to an app",
                       field="hostname")
    if host.endswith(suffix):
        owner = host[: -len(suffix)].rsplit(".", 1)[-1]
        if host == default_host(settings, app.name):
            raise Conflict(f"{host} is already the default domain of {app.name}",
                           field="hostname")
        if owner != app.name:
            raise Conflict(f"{host} is under {owner}{suffix}, which belongs to the app named "
                           f"{owner}", field="hostname")
    existing = session.scalar(select(Domain).where(Domain.hostname == host))
    if existing is not None:
        if existing.app_id == app.id:
            raise Conflict(f"{host} is already a domain of {app.name}", field="hostname")
        raise Conflict(f"{host} is already in use by another app", field="hostname")
    domain = Domain(app=app, hostname=host, custom=True)
    session.add(domain)
    session.flush()
    audit.record(session, actor, "domain.add", target_kind="domain", target_name=host, app=app)
    return domain


def get_domain(session: Session, app: App, hostname: object) -> Domain:
    """The custom domain ``hostname`` of ``app``; NotFound otherwise (InvalidInput if malformed)."""
    host = validation.domain(hostname)
    domain = session.scalar(
        select(Domain).where(Domain.app_id == app.id, Domain.hostname == host, Domain.custom))
    if domain is None:
        raise NotFound(f"{app.name} has no custom domain {host}", field="hostname")
    return domain


def get_any_domain(session: Session, app: App, hostname: object) -> Domain:
    """A domain of ``app`` with a certificate row, default or custom; NotFound otherwise."""
    host = validation.domain(hostname)
    domain = session.scalar(
        select(Domain).where(Domain.app_id == app.id, Domain.hostname == host))
    if domain is None:
        raise NotFound(f"{app.name} has no domain {host} with a certificate to renew",
                       field="hostname")
    return domain


def remove_domain(session: Session, app: App, hostname: object, *, actor: User | None) -> str:
    """Stop routing a custom domain to ``app``; return its host name. Raises NotFound."""
    domain = get_domain(session, app, hostname)
    host = domain.hostname
    session.delete(domain)
    session.flush()
    audit.record(session, actor, "domain.remove", target_kind="domain", target_name=host, app=app)
    return host


def hsts_enabled(session: Session, settings: Settings, app: App) -> bool:
    """The app's HSTS setting, else the global default (SLIPWAY_HSTS)."""
    row = session.get(AppTls, app.id)
    return settings.hsts if row is None or row.hsts is None else row.hsts


def set_hsts(session: Session, app: App, enabled: bool | None) -> None:
    """Turn HSTS on or off for ``app``; None goes back to the global default."""
    row = session.get(AppTls, app.id)
    if row is None:
        row = AppTls(app_id=app.id)
        session.add(row)
    row.hsts = enabled
    session.flush()


def domain_dict(domain: Domain) -> dict:
    """The API's view of a domain."""
    return {
        "hostname": domain.hostname,
        "custom": domain.custom,
        "status": domain.status.value,
        "last_error": domain.last_error,
        "expires_at": domain.expires_at.isoformat() if domain.expires_at else None,
    }


def publish_change(app: App) -> None:
    """Queue the route update a domain or TLS change needs; call after the commit.

    Only a deployed app has a route to change; others pick their domains up at deploy.
    """
    if app.current_release_id is not None:
        from slipway.platform import tasks  # tasks import the deploy machinery

        tasks.domains_changed.delay()
