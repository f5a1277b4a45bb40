"""Celery tasks. Each takes ids, reloads its rows and is safe to run twice."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from slipway.config import get_settings
from slipway.platform import builds, reconcile, runtime
from slipway.platform.celery_app import celery
from slipway.platform.db import session_scope
from slipway.platform.deploy import app_lock, deploy_release
from slipway.platform.errors import DeployFailed
from slipway.platform.logstream import connect
from slipway.platform.models import Release, ReleaseStatus

logger = logging.getLogger(__name__)


@celery.task(name="slipway.build")
def build(build_id: int, base: str | None = None) -> None:
    """Build and deploy a push; ``base`` is what its branch pointed to before it."""
    settings = get_settings()
    old = builds.run_build(settings, connect(settings.redis_url), build_id, base)
    retire_later(old)


@celery.task(name="slipway.deploy")
def deploy(release_id: int) -> None:
    """Deploy a release made without a build (a config change)."""
    settings = get_settings()
    with session_scope(settings.database) as session:
        release = session.get(Release, release_id)
        if release is None or release.status != ReleaseStatus.PENDING:
            return
        redis_client = connect(settings.redis_url)
        try:
            with app_lock(redis_client, settings, release.app.name):
                session.refresh(release)
                if release.status != ReleaseStatus.PENDING:
                    return
                old, _ = deploy_release(
                    session, settings, redis_client, release,
                    lambda line: logger.info("%s: %s", release.app.name, line),
                )
        except DeployFailed as exc:
            logger.warning("release %s failed: %s", release_id, exc.message)
            return
    retire_later(old)


@celery.task(name="slipway.retire_containers")
def retire_containers(container_ids: list[str]) -> None:
    settings = get_settings()
    client = runtime.docker_client()
    for container_id in container_ids:
        runtime.remove(client, container_id, stop_timeout=settings.stop_timeout)


@celery.task(name="slipway.reconcile")
def reconcile_all() -> None:
    reconcile.reconcile(get_settings())


@celery.task(name="slipway.fail_stale_builds")
def fail_stale_builds() -> list[int]:
    """Fail the builds whose worker died (no heartbeat); returns their ids."""
    settings = get_settings()
    with session_scope(settings.database) as session:
        return builds.fail_stale_builds(settings, session, connect(settings.redis_url))


@worker_ready.connect
def _worker_ready(sender=None, **_: object) -> None:
    """A worker that starts after a crash: its builds' heartbeats lapse within a lease,
    then they are failed (reconcile's timer does it too, later)."""
    fail_stale_builds.apply_async(countdown=get_settings().lease_seconds + 1)


def retire_later(container_ids: list[str]) -> None:
    """Stop replaced containers after the drain period, so in-flight requests finish."""
    if container_ids:
        retire_containers.apply_async(
            args=[container_ids], countdown=get_settings().drain_seconds
        )


# --- TLS certificates (issue 5) -----------------------------------------------


@celery.task(name="slipway.ensure_certificates")
def ensure_certificates() -> list[int]:
    """Queue issuance or renewal for every domain that needs it (beat runs this too)."""
    from slipway.platform import certificates

    settings = get_settings()
    if settings.tls == "off":
        return []
    with session_scope(settings.database) as session:
        certificates.ensure_default_domains(session, settings)
        session.commit()
        due = certificates.due_domains(session, settings)
    for domain_id in due:
        issue_certificate.delay(domain_id)
    return due


@celery.task(name="slipway.issue_certificate")
def issue_certificate(domain_id: int, force: bool = False) -> bool:
    """Issue or renew one domain's certificate, then publish routes so nginx serves it."""
    from slipway.platform import certificates, routing
    from slipway.router.errors import RouterError

    settings = get_settings()
    with session_scope(settings.database) as session:
        if not certificates.issue(session, settings, domain_id, force=force):
            return False
        try:
            routing.sync_routes(session, runtime.docker_client(), connect(settings.redis_url),
                                settings)
        except RouterError as exc:
            logger.warning("routes with the new certificate not confirmed: %s", exc.message)
    return True


@celery.task(name="slipway.domains_changed")
def domains_changed() -> None:
    """Republish routes after a domain was added or removed, then ask for certificates."""
    from slipway.platform import routing
    from slipway.router.errors import RouterError

    settings = get_settings()
    with session_scope(settings.database) as session:
        try:
            routing.sync_routes(session, runtime.docker_client(), connect(settings.redis_url),
                                settings)
        except RouterError as exc:
            logger.warning("routes after a domain change not confirmed: %s", exc.message)
    ensure_certificates.delay()


# --- Capsules ---------------------------------------------------------------------


@celery.task(name="slipway.provision_capsule")
def provision_capsule(capsule_id: int) -> None:
    """Start a capsule and wait until it takes connections; safe to run twice."""
    from slipway.platform import capsules
    from slipway.platform.models import Capsule, CapsuleStatus

    settings = get_settings()
    with session_scope(settings.database) as session:
        capsule = session.get(Capsule, capsule_id)
        if capsule is None or capsule.status != CapsuleStatus.PROVISIONING:
            return
        capsules.provision(session, settings, capsule)


@celery.task(name="slipway.backup_capsules")
def backup_capsules() -> None:
    """The scheduled backup of every available capsule; keeps the newest N of each."""
    from sqlalchemy import select

    from slipway.platform import capsule_backups
    from slipway.platform.errors import SlipwayError
    from slipway.platform.models import Capsule, CapsuleStatus

    settings = get_settings()
    with session_scope(settings.database) as session:
        for capsule in session.scalars(
            select(Capsule).where(Capsule.status == CapsuleStatus.AVAILABLE)
        ):
            try:
                backup = capsule_backups.take_backup(settings, capsule)
            except SlipwayError as exc:
                logger.warning("scheduled backup of %s failed: %s", capsule.name, exc.message)
                continue
            logger.info("backed up %s: %s (%d bytes)", capsule.name, backup.name, backup.size)
            capsule_backups.prune(settings, capsule, settings.capsule_backups_keep)
