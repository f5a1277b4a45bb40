"""Changes that touch several nouns at once: config changes that release, app removal."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import audit, config_vars, releases, repos, routing, runtime
from slipway.platform.deploy import app_lock
from slipway.platform.logstream import connect
from slipway.platform.models import App, Release, User
from slipway.router.errors import RouterError

logger = logging.getLogger(__name__)


def release_config_change(
    session: Session, settings: Settings, app: App, changes: dict[str, str | None], user: User
) -> tuple[dict[str, str], Release | None]:
    """Apply validated config changes; a deployed app gets a new release and restarts.

    Returns the new config and the release made (None when the app has never been
    deployed: the next push picks the config up).
    """
    from slipway.platform import tasks  # tasks import the whole deploy path

    secret_key = settings.resolved_secret_key()
    config = config_vars.apply_changes(session, secret_key, app, changes)
    current = app.current_release
    release = None
    if current is not None:
        described = ", ".join(
            f"{'Unset' if value is None else 'Set'} {key}" for key, value in changes.items()
        )
        release = releases.create_release(
            session, secret_key, app,
            image=current.image, config=config, processes=current.processes,
            port=current.port, healthchecks=current.healthchecks, description=described[:255],
            user_id=user.id,
        )
    # Keys only: values are secrets.
    audit.record(session, user, "config.change", target_kind="app", target_name=app.name,
                 app=app, details={
                     "set": sorted(k for k, v in changes.items() if v is not None),
                     "unset": sorted(k for k, v in changes.items() if v is None),
                     "release": release.version if release is not None else None,
                 })
    session.commit()
    if release is not None:
        tasks.deploy.delay(release.id)
    return config, release


def destroy_app(session: Session, settings: Settings, app: App, *, actor: User | None) -> None:
    """Remove an app: its containers, route, network, images, repository and rows.

    Under the app's deploy lock, which deploys and reconcile converge it under:
    a reconcile pass that began before the row went would otherwise start
    containers on the network being removed. Waits for a deploy in progress.
    """
    client = runtime.docker_client()
    redis_client = connect(settings.redis_url)
    name = app.name
    with app_lock(redis_client, settings, name):
        audit.record(session, actor, "app.destroy", target_kind="app", target_name=name,
                     app=app)
        app.current_release_id = None  # the row points at a release that goes with it
        session.commit()
        session.delete(app)
        session.commit()
        for container in runtime.app_containers(client, settings.instance_id, name, all=True):
            runtime.remove(client, container["Id"], stop_timeout=settings.stop_timeout)
    try:
        routing.sync_routes(session, client, redis_client, settings)
    except RouterError as exc:
        logger.warning("route removal for %s not confirmed: %s", name, exc.message)
    for network in client.networks.list(names=[runtime.network_name(settings.instance_id, name)]):
        network.remove()
    labels = runtime.object_labels(settings.instance_id, name, {})
    for image in client.images.list(filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
        client.images.remove(image.id, force=True)
    repos.delete_repo(settings.repos_dir, name)
