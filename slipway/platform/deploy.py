"""Deploying a release: release phase, start the formation, health-check, switch, retire.

``deploy_release`` runs the ``release:`` command, starts every process type of
the formation (web containers are health-checked), switches the route, and
returns the old containers for the caller to retire after a drain period.
``apply_formation`` converges the current release's containers on a new scale
(``ps:scale``) or replaces them (``ps:restart``) the same way.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import docker
import redis
import redis.lock
from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import capsules, formation, healthchecks, routing, runtime
from slipway.platform.errors import DeployFailed
from slipway.platform.leases import LeasedLock
from slipway.platform.models import App, Release, ReleaseStatus
from slipway.platform.releases import release_config
from slipway.router.errors import RouterError

logger = logging.getLogger(__name__)


def process_spec(
    settings: Settings, release: Release, env: dict[str, str], process: str,
    command: str | list[str] | None,
) -> dict:
    """The container spec of one process of ``release`` with this installation's limits."""
    return runtime.container_spec(
        instance=settings.instance_id,
        app=release.app.uid,
        app_name=release.app.name,
        release_id=release.id,
        version=release.version,
        process=process,
        image=release.image,
        command=command,
        env=process_env(settings, env),
        port=release.port,
        memory=settings.container_memory,
        cpus=settings.container_cpus,
        pids=settings.container_pids,
        labels=settings.labels,
        suffix=secrets.token_hex(3),
        user=runtime.run_as(runtime.docker_client(), release.image, settings.allow_root),
        tmp_size=settings.container_tmp_size,
        disk=settings.container_disk,
    )


def process_env(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """A process's environment: the release's config over the platform's defaults."""
    return {"WEB_CONCURRENCY": str(settings.web_concurrency), **env}


def start_processes(
    client: docker.DockerClient, settings: Settings, release: Release, env: dict[str, str],
    counts: Mapping[str, int], networks: Sequence[str] = (),
) -> tuple[list[str], dict[str, float]]:
    """Start ``counts`` containers per process type; wait until every new web one passes
    the release's health checks.

    Returns the new container ids and phase timings. Raises DeployFailed after
    removing every container it started, so a failure leaves nothing behind.
    """
    started_at = time.monotonic()
    timings: dict[str, float] = {}
    new: list[str] = []
    web: list[tuple[str, str | None]] = []
    try:
        for ptype, count in counts.items():
            for _ in range(count):
                spec = process_spec(settings, release, env, ptype, release.processes.get(ptype))
                container_id, address = runtime.start(client, spec, networks)
                new.append(container_id)
                if ptype == "web":
                    web.append((container_id, address))
        timings["start"] = time.monotonic() - started_at
        checks = healthchecks.web_checks(settings, release.healthchecks)
        # Asked as users ask, through the router: host-checking apps answer the same.
        front = healthchecks.front(settings, release.app.name)
        # Containers boot in parallel; checking them one after the other costs little more.
        for container_id, address in web:
            if address is None:
                raise DeployFailed("The web container has no address on the app's network")
            for check in checks:
                runtime.wait_healthy(client, container_id, address, check,
                                     timeout=settings.health_timeout,
                                     interval=settings.health_interval, front=front)
        timings["health"] = time.monotonic() - started_at - timings["start"]
    except DeployFailed:
        for container_id in new:
            runtime.remove(client, container_id, stop_timeout=0)
        raise
    return new, timings


def run_release_phase(
    client: docker.DockerClient, settings: Settings, release: Release, env: dict[str, str],
    log: Callable[[str], None], networks: Sequence[str] = (),
) -> float:
    """Run the ``release:`` command once in a one-off container; returns seconds taken.

    Its output goes to ``log`` line by line. Raises DeployFailed when it exits
    non-zero or runs longer than ``settings.release_timeout``.
    """
    command = release.processes["release"]
    started = time.monotonic()
    log("       Running release command")
    pending = b""

    def output(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            log("       " + line.decode(errors="replace").rstrip("\r"))

    spec = process_spec(settings, release, env, "release", command)
    status = runtime.run_one_off(client, spec, output, timeout=settings.release_timeout,
                                 networks=networks)
    if pending:
        log("       " + pending.decode(errors="replace"))
    if status == -1:
        raise DeployFailed(
            f"Release command did not finish within {settings.release_timeout} s")
    if status != 0:
        raise DeployFailed(f"Release command failed with exit status {status}")
    return time.monotonic() - started


def deploy_release(
    session: Session,
    settings: Settings,
    redis_client: redis.Redis,
    release: Release,
    log: Callable[[str], None],
    *, release_phase: bool = True,
) -> tuple[list[str], dict[str, float]]:
    """Make ``release`` the one serving its app, without dropping traffic.

    ``release_phase=False`` skips the ``release:`` command (restoring a release
    that already ran it).

    Runs the release phase, starts the whole formation, health-checks the web
    containers, switches the route and prunes old images. Returns the ids of
    the containers it replaced (the caller retires them after a drain period)
    and the seconds each phase took. Raises DeployFailed; the release that was
    serving before keeps serving, its containers untouched.
    """
    app: App = release.app
    client = runtime.docker_client()
    timings: dict[str, float] = {}
    release.status = ReleaseStatus.DEPLOYING
    session.commit()

    runtime.ensure_network(client, settings.instance_id, app.uid, settings.labels)
    # Attached capsules: their URLs in the environment, their networks joined.
    env = {**release_config(settings.resolved_secret_key(), release),
           **capsules.capsule_env(session, settings, app)}
    networks = capsules.capsule_networks(session, settings, app)
    counts = formation.desired_scale(release.processes, formation.scales(session, app))
    try:
        if release_phase and release.processes.get("release"):
            timings["release"] = run_release_phase(client, settings, release, env, log,
                                                   networks)
        new, start_timings = start_processes(client, settings, release, env, counts,
                                             networks)
        timings.update(start_timings)
    except DeployFailed as exc:
        _fail(session, release, exc.message)
        raise

    previous_release_id = app.current_release_id
    new_ids = set(new)
    old = [c["Id"] for c in runtime.app_containers(client, settings.instance_id, app.uid, all=True)
           if c["Id"] not in new_ids
           and c["Labels"].get(runtime.LABEL_PROCESS) not in runtime.ONE_OFF_PROCESSES]
    app.current_release_id = release.id
    release.status = ReleaseStatus.SUCCEEDED
    session.commit()

    started = time.monotonic()
    try:
        routing.sync_routes(session, client, redis_client, settings)
    except RouterError as exc:
        app.current_release_id = previous_release_id
        _fail(session, release, f"The router did not take the new route: {exc.message}")
        for container_id in new:
            runtime.remove(client, container_id, stop_timeout=0)
        routing.sync_routes(session, client, redis_client, settings, wait=False)
        raise DeployFailed(release.error or exc.message) from exc
    timings["route"] = time.monotonic() - started
    shown = ", ".join(f"{ptype}={count}" for ptype, count in counts.items())
    log(f"       Processes started ({shown}); web healthy in "
        f"{timings.get('health', 0.0):.2f} s, route switched")
    prune_images(session, settings, client, app, previous_release_id)
    return old, timings


def apply_formation(
    session: Session, settings: Settings, redis_client: redis.Redis, app: App,
    replace: Iterable[str] = (),
) -> list[str]:
    """Converge the current release's containers on the app's formation.

    New containers start (web ones health-checked) and the route moves to them
    before anything stops; types in ``replace`` get all-new containers (a
    restart). Returns the ids to retire after the drain period. Raises
    DeployFailed, leaving the running containers as they were.
    """
    release = app.current_release
    if release is None:
        return []
    client = runtime.docker_client()
    actual: dict[str, list[str]] = {}
    for c in sorted(runtime.app_containers(client, settings.instance_id, app.uid, all=True),
                    key=lambda c: c["Created"]):
        ptype = c["Labels"].get(runtime.LABEL_PROCESS, "")
        if c["Labels"].get(runtime.LABEL_RELEASE) == str(release.id) and \
                ptype not in runtime.ONE_OFF_PROCESSES:
            actual.setdefault(ptype, []).append(c["Id"])
    desired = formation.desired_scale(release.processes, formation.scales(session, app))
    plan = formation.plan_scale(desired, actual, replace)
    env = {**release_config(settings.resolved_secret_key(), release),
           **capsules.capsule_env(session, settings, app)}
    runtime.ensure_network(client, settings.instance_id, app.uid, settings.labels)
    start_processes(client, settings, release, env, plan.start,
                    capsules.capsule_networks(session, settings, app))
    try:
        routing.sync_routes(session, client, redis_client, settings, exclude=set(plan.stop))
    except RouterError as exc:
        raise DeployFailed(f"The router did not take the new route: {exc.message}") from exc
    return plan.stop


def prune_images(
    session: Session, settings: Settings, client: docker.DockerClient, app: App,
    previous_release_id: int | None,
) -> list[str]:
    """Remove images of releases beyond ``settings.keep_releases``; returns those removed.

    Never fails a deploy: an image Docker will not remove stays for next time.
    """
    rows = session.execute(
        select(Release.id, Release.version, Release.image).where(Release.app_id == app.id)
    ).all()
    versions = {row.id: row.version for row in rows}
    current = app.current_release_id
    try:
        doomed = formation.images_to_prune(
            [(row.version, row.image) for row in rows],
            current=versions[current] if current in versions else 0,
            previous=versions.get(previous_release_id) if previous_release_id else None,
            keep=settings.keep_releases,
            in_use=runtime.images_in_use(client),
        )
        removed = [image for image in sorted(doomed)
                   if runtime.image_exists(client, image) and runtime.remove_image(client, image)]
    except docker.errors.DockerException as exc:
        logger.warning("image pruning for %s failed: %s", app.name, runtime.explain(exc))
        return []
    if removed:
        logger.info("pruned %d image(s) of %s", len(removed), app.name)
    return removed


def app_lock(redis_client: redis.Redis, settings: Settings, app: str) -> redis.lock.Lock:
    """One build or deploy of an app at a time; others wait.

    Its holder renews it while it works, so it is free again within
    ``settings.lease_seconds`` when the holder dies (a killed worker).
    """
    return redis_client.lock(
        f"slipway:{settings.instance_id}:deploy:{app}", timeout=settings.lease_seconds,
        blocking_timeout=settings.build_timeout + 300, lock_class=LeasedLock,
        thread_local=False,
    )


def _fail(session: Session, release: Release, message: str) -> None:
    release.status = ReleaseStatus.FAILED
    release.error = message
    session.commit()
