"""Certificates for every routed host: which are due, issuing one, and what routes serve.

Issuance goes: mark the domain ``pending`` and commit, get a chain (ACME over
HTTP-01, or the internal CA), store it (key 0600) under SLIPWAY_HOME/certs,
mark ``issued`` with its expiry, republish routes so nginx serves it. A
failure marks ``failed`` with the error and a retry time (exponential backoff,
or the server's Retry-After); a certificate already stored keeps serving.

HTTP-01 responses go to the router of SLIPWAY_HOME/router over its private
control socket (``router.challenges``), and nginx answers them for every host:
the worker runs on the router's host.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform.models import App, AppTls, CertificateStatus, Domain
from slipway.router import challenges
from slipway.router.acme_client import AcmeFailure, obtain
from slipway.router.certs import CertificateStore, InternalCA, new_key_pem
from slipway.router.routes import HostCertificate, Route

logger = logging.getLogger(__name__)

_BACKOFF_MAX = 6 * 3600.0
# A pending row older than this is a worker that died mid-issuance: try again.
_PENDING_STALE = dt.timedelta(minutes=10)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they are UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def store(settings: Settings) -> CertificateStore:
    return CertificateStore(settings.certs_dir)


def internal_ca(settings: Settings) -> InternalCA:
    return InternalCA(settings.certs_dir / "ca")


def ensure_default_domains(session: Session, settings: Settings) -> None:
    """Give every deployed app a row for its default host; drop rows of an old SLIPWAY_DOMAIN."""
    apps = session.scalars(select(App).where(App.current_release_id.is_not(None))).all()
    rows = {d.hostname: d for d in session.scalars(select(Domain).where(~Domain.custom))}
    wanted = {f"{app.name}.{settings.domain}": app for app in apps}
    for host, row in rows.items():
        if host not in wanted:
            session.delete(row)
    for host, app in wanted.items():
        if host not in rows and session.scalar(
                select(Domain.id).where(Domain.hostname == host)) is None:
            session.add(Domain(app=app, hostname=host, custom=False))
    session.flush()


def is_due(domain: Domain, settings: Settings, now: dt.datetime) -> bool:
    """True if ``domain`` needs a certificate now (new, retry due, renewal due, stale pending)."""
    if domain.status == CertificateStatus.NONE:
        return True
    if domain.status == CertificateStatus.PENDING:
        return _aware(domain.updated_at) < now - _PENDING_STALE
    if domain.status == CertificateStatus.FAILED:
        retry_at = _aware(domain.retry_at)
        return retry_at is None or retry_at <= now
    expires = _aware(domain.expires_at)
    return expires is None or expires <= now + dt.timedelta(days=settings.renew_before_days)


def due_domains(session: Session, settings: Settings,
                now: dt.datetime | None = None) -> list[int]:
    """Ids of the domains of deployed apps that need a certificate now."""
    now = now or dt.datetime.now(dt.UTC)
    rows = session.scalars(
        select(Domain).join(App).where(App.current_release_id.is_not(None))).all()
    return [d.id for d in rows if is_due(d, settings, now)]


def issue(session: Session, settings: Settings, domain_id: int, *, force: bool = False) -> bool:
    """Get and store a certificate for one domain if it is due (or ``force``).

    Returns True if a new certificate was stored. Never raises for ACME or CA
    failures: they are recorded on the domain (status ``failed``, ``last_error``,
    ``retry_at``). Safe to run twice: a domain that is not due is left alone.
    """
    domain = session.get(Domain, domain_id)
    now = dt.datetime.now(dt.UTC)
    if domain is None or settings.tls == "off":
        return False
    if not force and not is_due(domain, settings, now):
        return False
    host = domain.hostname
    domain.status = CertificateStatus.PENDING
    domain.updated_at = now
    session.commit()
    certs = store(settings)
    key_pem = new_key_pem()
    try:
        if settings.tls == "internal":
            chain = internal_ca(settings).issue(host, key_pem)
        else:
            chain = obtain(
                directory_url=settings.acme_directory,
                account_key_pem=certs.account_key(),
                email_address=settings.acme_email,
                host=host, key_pem=key_pem,
                publish=lambda token, auth: challenges.publish(settings.router_dir, token, auth),
                withdraw=lambda token: challenges.withdraw(settings.router_dir, token),
                verify=settings.acme_ca_bundle or True,
            )
        saved = certs.save(host, key_pem, chain)
    except AcmeFailure as exc:
        _record_failure(session, settings, domain_id, exc.message, exc.retry_after)
        logger.warning("certificate for %s failed (%s): %s", host, exc.kind, exc.message)
        return False
    except (OSError, ValueError) as exc:
        _record_failure(session, settings, domain_id,
                        f"could not store the certificate: {exc}", None)
        return False
    domain = session.get(Domain, domain_id)
    if domain is None:  # removed while we were issuing
        certs.remove(host)
        return False
    domain.status = CertificateStatus.ISSUED
    domain.expires_at = saved.not_after
    domain.last_error = None
    domain.failures = 0
    domain.retry_at = None
    session.commit()
    logger.info("certificate for %s issued, expires %s", host, saved.not_after.isoformat())
    return True


def _record_failure(session: Session, settings: Settings, domain_id: int, message: str,
                    retry_after: float | None) -> None:
    session.rollback()
    domain = session.get(Domain, domain_id)
    if domain is None:
        return
    domain.failures = (domain.failures or 0) + 1
    backoff = min(settings.certificate_retry_seconds * 2 ** (domain.failures - 1), _BACKOFF_MAX)
    wait = max(backoff, retry_after or 0.0)
    domain.status = CertificateStatus.FAILED
    domain.last_error = message[:2000]
    domain.retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait)
    session.commit()


def with_tls(session: Session, settings: Settings, routes: Iterable[Route]) -> list[Route]:
    """``routes`` with each app's custom domains added, and certificates where stored.

    A host gets a certificate when its domain row exists and a readable chain
    and key are stored, whatever the status: a failed renewal keeps serving
    the current certificate. With SLIPWAY_TLS=off no certificates are attached.
    """
    routes = list(routes)
    names = [r.app for r in routes]
    if not names:
        return routes
    rows = session.execute(
        select(App.name, Domain).join(Domain, Domain.app_id == App.id)
        .where(App.name.in_(names)).order_by(Domain.hostname)).all()
    hsts_rows = dict(session.execute(
        select(App.name, AppTls.hsts).join(AppTls, AppTls.app_id == App.id)
        .where(App.name.in_(names))).all())
    by_app: dict[str, list[Domain]] = {}
    for name, domain in rows:
        by_app.setdefault(name, []).append(domain)
    certs = store(settings)
    out = []
    for route in routes:
        domains = by_app.get(route.app, [])
        hosts = list(route.hosts) + [d.hostname for d in domains
                                     if d.custom and d.hostname not in route.hosts]
        served: list[HostCertificate] = []
        if settings.tls != "off":
            for domain in domains:
                if domain.hostname not in hosts:
                    continue
                stored = certs.get(domain.hostname)
                if stored is not None:
                    served.append(HostCertificate(domain.hostname, str(stored.certificate),
                                                  str(stored.key)))
        hsts = hsts_rows.get(route.app)
        out.append(Route(app=route.app, hosts=tuple(hosts), upstreams=route.upstreams,
                         certificates=tuple(served),
                         hsts=settings.hsts if hsts is None else bool(hsts)))
    return out


def needs_issuance(session: Session, settings: Settings, routes: Iterable[Route]) -> bool:
    """True if some routed host has no certificate row yet, or one never asked for."""
    if settings.tls == "off":
        return False
    hosts = {h for r in routes for h in r.hosts}
    if not hosts:
        return False
    known = dict(session.execute(
        select(Domain.hostname, Domain.status).where(Domain.hostname.in_(hosts))).all())
    return any(known.get(h, CertificateStatus.NONE) == CertificateStatus.NONE for h in hosts)
