"""The route table: computed from the database and Docker, published to the router."""

from __future__ import annotations

import logging

import docker
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import certificates, runtime
from slipway.platform.celery_app import celery
from slipway.platform.models import App
from slipway.router.publish import publish_routes, wait_applied
from slipway.router.routes import Route

LOCK_KEY = "slipway:routes:lock"
logger = logging.getLogger(__name__)


def current_routes(
    session: Session, client: docker.DockerClient, settings: Settings,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> list[Route]:
    """One route per deployed app, to the running web containers of its current release,
    at their addresses on the app's network.

    Containers in ``exclude`` (about to be retired by a scale-down) get no traffic.
    """
    # Containers carry the app's uid; routes are named after the app.
    deployed = {
        uid: (name, release_id)
        for uid, name, release_id in session.execute(
            select(App.uid, App.name, App.current_release_id)
            .where(App.current_release_id.is_not(None))
        )
    }
    upstreams: dict[str, list[str]] = {name: [] for name, _ in deployed.values()}
    for container in runtime.app_containers(client, settings.instance_id, process="web"):
        if container["Id"] in exclude:
            continue
        labels = container["Labels"]
        uid = labels.get(runtime.LABEL_APP, "")
        if uid not in deployed or labels.get(runtime.LABEL_RELEASE) != str(deployed[uid][1]):
            continue
        # Read from Docker on every sync: addresses change when Docker restarts.
        address = runtime.address(container, runtime.network_name(settings.instance_id, uid))
        if address is not None:
            upstreams[deployed[uid][0]].append(address)
    routes = [
        Route(app=name, hosts=(f"{name}.{settings.domain}",), upstreams=tuple(sorted(addrs)))
        for name, addrs in sorted(upstreams.items())
        if addrs
    ]
    # Custom domains join their app's route; hosts with a stored certificate get HTTPS.
    return certificates.with_tls(session, settings, routes)


def sync_routes(
    session: Session, client: docker.DockerClient, redis_client: redis.Redis, settings: Settings,
    *, wait: bool = True, exclude: frozenset[str] | set[str] = frozenset(),
) -> int:
    """Publish the current route table and (by default) wait until the router serves it.

    Raises RouterError when the router rejects the table or does not apply it in time.
    """
    # One publisher at a time, so a table computed earlier never overwrites a newer one.
    with redis_client.lock(LOCK_KEY, timeout=30, blocking_timeout=30):
        routes = current_routes(session, client, settings, exclude)
        generation = publish_routes(redis_client, routes)
    if certificates.needs_issuance(session, settings, routes):
        # By name: tasks imports deploy, which imports this module. Beat runs the
        # same task on a timer, so a lost message only delays the certificate.
        try:
            celery.send_task("slipway.ensure_certificates", retry=False)
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds
            logger.warning("could not queue certificate issuance: %s", exc)
    if wait:
        wait_applied(redis_client, generation, timeout=settings.route_timeout)
    return generation
