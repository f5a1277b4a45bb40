"""Converge Docker's actual state on the database's desired state.

Runs at start-up and on a timer: an app whose current release has no running
container gets its formation back (after a host or Docker restart), containers of deleted
apps go, and the router is given the route table again.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from slipway.config import Settings
from slipway.platform import formation, routing, runtime
from slipway.platform.db import session_scope
from slipway.platform.deploy import deploy_release
from slipway.platform.errors import SlipwayError
from slipway.platform.logstream import connect
from slipway.platform.models import App
from slipway.router.errors import RouterError

logger = logging.getLogger(__name__)

# A container of an old release this much older than now is left over from a
# deploy that died; younger ones may belong to a deploy in progress.
STALE_AFTER = dt.timedelta(minutes=30)


def reconcile(settings: Settings) -> None:
    client = runtime.docker_client()
    redis_client = connect(settings.redis_url)
    with session_scope(settings.database) as session:
        apps = {app.name: app for app in session.scalars(select(App))}
        containers = runtime.app_containers(client, settings.instance_id, all=True)
        now = dt.datetime.now(dt.UTC).timestamp()
        for container in containers:
            labels = container["Labels"]
            app = apps.get(labels.get(runtime.LABEL_APP, ""))
            current = app is not None and labels.get(runtime.LABEL_RELEASE) == str(
                app.current_release_id
            )
            stale = now - container["Created"] > STALE_AFTER.total_seconds()
            if app is None or (not current and stale):
                logger.info("removing orphan container %s", container["Names"])
                runtime.remove(client, container["Id"], stop_timeout=settings.stop_timeout)

        running = {
            (c["Labels"].get(runtime.LABEL_APP), c["Labels"].get(runtime.LABEL_RELEASE))
            for c in runtime.app_containers(client, settings.instance_id)
            if c["Labels"].get(runtime.LABEL_PROCESS) not in runtime.ONE_OFF_PROCESSES
        }
        for app in apps.values():
            if app.current_release is None:
                continue
            if (app.name, str(app.current_release_id)) in running:
                continue
            if not any(formation.app_formation(session, app).values()):
                continue  # scaled to zero: nothing should run
            logger.info("restoring %s v%s", app.name, app.current_release.version)
            try:
                old, _ = deploy_release(
                    session, settings, redis_client, app.current_release, logger.info,
                    release_phase=False,
                )
            except SlipwayError as exc:
                logger.warning("could not restore %s: %s", app.name, exc.message)
                continue
            for container_id in old:
                runtime.remove(client, container_id, stop_timeout=settings.stop_timeout)
        try:
            routing.sync_routes(session, client, redis_client, settings, wait=False)
        except RouterError as exc:
            logger.warning("route sync failed: %s", exc.message)
