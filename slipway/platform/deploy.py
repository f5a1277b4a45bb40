"""Deploying a release: start, health-check, switch the route, then retire the old containers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis
import redis.lock
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import capsules, routing, runtime
from slipway.platform.errors import DeployFailed
from slipway.platform.models import App, Release, ReleaseStatus
from slipway.platform.releases import release_config
from slipway.router.errors import RouterError


def deploy_release(
    session: Session,
    settings: Settings,
    redis_client: redis.Redis,
    release: Release,
    log: Callable[[str], None],
) -> tuple[list[str], dict[str, float]]:
    """Make ``release`` the one serving its app, without dropping traffic.

    Returns the ids of the containers it replaced (the caller retires them after
    a drain period) and the seconds each phase took. Raises DeployFailed; the
    release that was serving before keeps serving.
    """
    app: App = release.app
    client = runtime.docker_client()
    timings: dict[str, float] = {}
    release.status = ReleaseStatus.DEPLOYING
    session.commit()

    started = time.monotonic()
    runtime.ensure_network(client, settings.instance_id, app.name, settings.labels)
    spec = runtime.container_spec(
        instance=settings.instance_id,
        app=app.name,
        release_id=release.id,
        version=release.version,
        process="web",
        image=release.image,
        command=release.processes.get("web"),
        env={**release_config(settings.resolved_secret_key(), release),
             **capsules.capsule_env(session, settings, app)},
        port=release.port,
        memory=settings.container_memory,
        cpus=settings.container_cpus,
        pids=settings.container_pids,
        labels=settings.labels,
        suffix=secrets.token_hex(3),
    )
    try:
        container_id, host_port = runtime.start(
            client, spec, capsules.capsule_networks(session, settings, app)
        )
        timings["start"] = time.monotonic() - started
        if host_port is None:
            raise DeployFailed("The web container has no published port")
        timings["health"] = runtime.wait_healthy(
            client, container_id, host_port,
            timeout=settings.health_timeout, interval=settings.health_interval,
        )
    except DeployFailed as exc:
        _fail(session, release, exc.message)
        if "container_id" in locals():
            runtime.remove(client, container_id, stop_timeout=0)
        raise

    previous_release_id = app.current_release_id
    old = [c["Id"] for c in runtime.app_containers(client, settings.instance_id, app.name, all=True)
           if c["Id"] != container_id]
    app.current_release_id = release.id
    release.status = ReleaseStatus.SUCCEEDED
    session.commit()

    started = time.monotonic()
    try:
        routing.sync_routes(session, client, redis_client, settings)
    except RouterError as exc:
        app.current_release_id = previous_release_id
        _fail(session, release, f"The router did not take the new route: {exc.message}")
        runtime.remove(client, container_id, stop_timeout=0)
        routing.sync_routes(session, client, redis_client, settings, wait=False)
        raise DeployFailed(release.error or exc.message) from exc
    timings["route"] = time.monotonic() - started
    log(f"       Web process healthy in {timings['health']:.2f} s, route switched")
    return old, timings


def app_lock(redis_client: redis.Redis, settings: Settings, app: str) -> redis.lock.Lock:
    """One build or deploy of an app at a time; others wait. Expires if its holder dies."""
    return redis_client.lock(
        f"slipway:{settings.instance_id}:deploy:{app}", timeout=settings.build_timeout + 300,
        blocking_timeout=settings.build_timeout + 300,
    )


def _fail(session: Session, release: Release, message: str) -> None:
    release.status = ReleaseStatus.FAILED
    release.error = message
    session.commit()
