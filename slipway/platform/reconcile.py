"""Converge Docker's actual state on the database's desired state.

Runs at start-up and every ``reconcile_interval`` seconds (beat). Per app whose
deploy lock is free (a deploy in progress converges the app itself):

- containers of the current release that stopped (killed, or lost with the Docker
  daemon or host) are replaced, and missing ones started, per process type as the
  formation says; surplus ones are stopped. New web containers are health-checked
  before they get traffic (``deploy.apply_formation``). An app whose containers do
  not come up is tried again after a growing delay.
- containers a dead deploy left behind (of a release that never became current)
  go, and its release is marked failed;

and for the whole installation: containers that wrote more than SLIPWAY_CONTAINER_DISK
to their writable layer go first (replaced as above); containers, networks, images
and repositories of deleted apps go (what their destroy could not remove); builds
whose worker died are failed; and the route table is published again when it
differs from what Docker runs (a restarted container gets a new port), without web
containers that are being retired or are in a crash loop and do not answer HTTP.
"""

from __future__ import annotations

import logging
import time

import docker
import redis
from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import builds, formation, healthchecks, lifecycle, routing, runtime
from slipway.platform.db import session_scope
from slipway.platform.deploy import app_lock, apply_formation
from slipway.platform.errors import SlipwayError
from slipway.platform.healthchecks import HealthCheck, default_check
from slipway.platform.leases import LeasedLock
from slipway.platform.logstream import connect
from slipway.platform.models import App, Release, ReleaseStatus
from slipway.platform.ps import crashed_containers, record_over_disk, retiring
from slipway.router.errors import RouterError
from slipway.router.nginx import validate_routes
from slipway.router.routes import ROUTES_KEY, Route, RouteTable

logger = logging.getLogger(__name__)

# A container of an old release this much older than now is left over from a
# deploy that died; younger ones may belong to a deploy in progress.
STALE_AFTER = 30 * 60.0
# After a failed restore, the app waits this long before the next try, doubled
# after each further failure up to MAX_RETRY_DELAY.
MAX_RETRY_DELAY = 300.0
# Docker states of a container that nothing will start again.
STOPPED = frozenset({"created", "exited", "dead"})
DEPLOY_DIED = "The worker stopped during the deploy"


def reconcile(settings: Settings) -> None:
    """One pass; a pass already running elsewhere makes this one return at once."""
    redis_client = connect(settings.redis_url)
    guard = redis_client.lock(f"slipway:{settings.instance_id}:reconcile",
                              timeout=settings.lease_seconds, lock_class=LeasedLock,
                              thread_local=False)
    if not guard.acquire(blocking=False):
        return
    try:
        with session_scope(settings.database) as session:
            _reconcile(session, settings, redis_client)
    finally:
        if guard.owned():
            guard.release()


def _reconcile(session: Session, settings: Settings, redis_client: redis.Redis) -> None:
    client = runtime.docker_client()
    builds.fail_stale_builds(settings, session, redis_client)
    # First, so converge_app replaces them; only where Docker cannot cap layers itself.
    if not runtime.disk_quota_supported(client):
        remove_over_disk(client, settings, redis_client)
    apps = {app.uid: app for app in session.scalars(select(App))}
    now = time.time()
    for container in runtime.app_containers(client, settings.instance_id, all=True):
        labels = container["Labels"]
        app = apps.get(labels.get(runtime.LABEL_APP, ""))
        current = app is not None and labels.get(runtime.LABEL_RELEASE) == str(
            app.current_release_id)
        if app is None or (not current and now - container["Created"] > STALE_AFTER):
            logger.info("removing orphan container %s", container["Names"])
            runtime.remove(client, container["Id"], stop_timeout=settings.stop_timeout)
    lifecycle.remove_leftovers(session, settings, client)

    for app in apps.values():
        if app.current_release_id is None or _waiting(redis_client, settings, app.name):
            continue
        lock = app_lock(redis_client, settings, app.name)
        if not lock.acquire(blocking=False):
            continue
        try:
            session.commit()  # a new transaction: see what the lock's last holder recorded
            try:
                session.refresh(app)
            except InvalidRequestError:
                continue  # destroyed since this pass listed it
            converge_app(session, settings, redis_client, client, app)
        except SlipwayError as exc:
            logger.warning("could not restore %s: %s", app.name, exc.message)
            _retry_later(redis_client, settings, app.name)
        else:
            redis_client.delete(_failures_key(settings, app.name))
        finally:
            if lock.owned():
                lock.release()

    web = runtime.app_containers(client, settings.instance_id, process="web")
    unrouted = _crash_looping(client, settings, web, default_check(settings))
    unrouted |= retiring(redis_client, settings, [c["Id"] for c in web])
    try:
        routes = routing.current_routes(session, client, settings, exclude=unrouted)
        if _routes_changed(redis_client, routes):
            routing.sync_routes(session, client, redis_client, settings, wait=False,
                                exclude=unrouted)
    except RouterError as exc:
        logger.warning("route sync failed: %s", exc.message)


def remove_over_disk(
    client: docker.DockerClient, settings: Settings, redis_client: redis.Redis,
) -> list[str]:
    """Remove running containers whose writable layer holds more than
    SLIPWAY_CONTAINER_DISK; returns their ids.

    The fallback where Docker cannot cap the layer itself (overlay2 over ext4, see
    runtime.TMP_SIZE): the app alone loses that process, as with an OOM kill, and
    ``converge_app`` starts a new one with an empty layer. A one-off (release phase,
    ``slipway run``) is killed, so it ends with status 137. Bounded in time, not bytes:
    between two passes a container can write past the limit at the disk's speed.
    """
    limit = runtime.size_bytes(settings.container_disk)
    reason = f"wrote more than {runtime.describe_size(settings.container_disk)} to its " \
             f"filesystem (SLIPWAY_CONTAINER_DISK)"
    removed = []
    for c in runtime.over_disk_limit(client, settings.instance_id, limit):
        logger.warning("container %s %s (%d bytes): removing it", c["Names"], reason,
                       c.get("SizeRw", 0))
        if c["Labels"].get(runtime.LABEL_PROCESS) in runtime.ONE_OFF_PROCESSES:
            runtime.kill(client, c["Id"])  # whoever runs it removes it and reports the exit
        else:
            runtime.remove(client, c["Id"], stop_timeout=0)
        record_over_disk(redis_client, settings, c, reason)
        removed.append(c["Id"])
    return removed


def converge_app(
    session: Session, settings: Settings, redis_client: redis.Redis,
    client: docker.DockerClient, app: App,
) -> bool:
    """Bring one app's containers to its formation; the caller holds its deploy lock.

    Returns whether anything changed. Raises DeployFailed (new containers did not
    come up; the running ones are untouched) or RouterError's DeployFailed.
    """
    release = app.current_release
    if release is None:
        return False
    changed = _clear_dead_deploys(session, settings, client, app)
    listed = runtime.app_containers(client, settings.instance_id, app.uid, all=True)
    # Replaced by a restart or scale-down, out of the route: a retire task stops them.
    leaving = retiring(redis_client, settings, [c["Id"] for c in listed])
    actual: dict[str, list[str]] = {}
    for c in sorted(listed, key=lambda c: c["Created"]):
        ptype = c["Labels"].get(runtime.LABEL_PROCESS, "")
        if c["Labels"].get(runtime.LABEL_RELEASE) != str(release.id) or \
                ptype in runtime.ONE_OFF_PROCESSES or c["Id"] in leaving:
            continue
        if c["State"] in STOPPED:
            # Docker will not start it again (`docker kill`, or a stop): a new one,
            # health-checked, replaces it. A crash-looping one is Docker's to restart.
            logger.info("replacing stopped container %s of %s", c["Names"], app.name)
            runtime.remove(client, c["Id"], stop_timeout=0)
            changed = True
            continue
        actual.setdefault(ptype, []).append(c["Id"])
    plan = formation.plan_scale(
        formation.desired_scale(release.processes, formation.scales(session, app)), actual)
    if not plan.start and not plan.stop:
        if changed:
            logger.info("cleaned up %s", app.name)
        return changed
    logger.info("converging %s v%s: starting %s, stopping %d", app.name, release.version,
                plan.start or "none", len(plan.stop))
    retired = apply_formation(session, settings, redis_client, app)
    if retired:
        time.sleep(settings.drain_seconds)  # out of the route already; let requests finish
    for container_id in retired:
        runtime.remove(client, container_id, stop_timeout=settings.stop_timeout)
    return True


def _clear_dead_deploys(
    session: Session, settings: Settings, client: docker.DockerClient, app: App,
) -> bool:
    """With the app's lock held no deploy runs: a release still ``deploying`` died with
    its worker. Fail it, and remove containers of releases that never became current."""
    changed = False
    for release in session.scalars(select(Release).where(
            Release.app_id == app.id, Release.status == ReleaseStatus.DEPLOYING)):
        release.status = ReleaseStatus.FAILED
        release.error = DEPLOY_DIED
        changed = True
    session.commit()
    never_current = {str(rid) for rid in session.scalars(select(Release.id).where(
        Release.app_id == app.id, Release.status == ReleaseStatus.FAILED))}
    for c in runtime.app_containers(client, settings.instance_id, app.uid, all=True):
        if c["Labels"].get(runtime.LABEL_RELEASE) in never_current:
            logger.info("removing container %s of a failed deploy", c["Names"])
            runtime.remove(client, c["Id"], stop_timeout=0)
            changed = True
    return changed


def _crash_looping(
    client: docker.DockerClient, settings: Settings, web: list[dict], check: HealthCheck,
) -> set[str]:
    """Web containers in a crash loop that do not answer HTTP now: no traffic for them.

    (Restarting ones have no port, so no route anyway; one that restarted but
    answers again, after an OOM kill say, serves.)
    """
    looping = set()
    for c in web:
        if c["Id"] not in crashed_containers(client, [c]):
            continue
        address = runtime.address(c, runtime.network_name(
            settings.instance_id, c["Labels"].get(runtime.LABEL_APP, "")))
        # Asked as the deploy asked: with the app's host, as the router sends it.
        front = healthchecks.front(settings, c["Labels"].get(runtime.LABEL_APP_NAME, ""))
        if address is None or runtime.probe(address, check, front) != (True, None):
            looping.add(c["Id"])
    return looping


def _routes_changed(redis_client: redis.Redis, routes: list[Route]) -> bool:
    """Whether ``routes`` differ from the published table (publishing reloads nginx)."""
    stored = redis_client.get(ROUTES_KEY)
    if stored is None:
        return True
    try:
        return RouteTable.from_json(stored).routes != tuple(validate_routes(routes))
    except (ValueError, KeyError, RouterError):
        return True  # sync_routes says what is wrong


def _failures_key(settings: Settings, app: str) -> str:
    return f"slipway:{settings.instance_id}:reconcile:failures:{app}"


def _waiting(redis_client: redis.Redis, settings: Settings, app: str) -> bool:
    return bool(redis_client.exists(_failures_key(settings, app) + ":wait"))


def _retry_later(redis_client: redis.Redis, settings: Settings, app: str) -> None:
    key = _failures_key(settings, app)
    failures = int(redis_client.incr(key))
    redis_client.expire(key, int(MAX_RETRY_DELAY * 4))
    delay = min(MAX_RETRY_DELAY, settings.reconcile_interval * 2 ** failures)
    redis_client.set(key + ":wait", "1", px=int(delay * 1000))
