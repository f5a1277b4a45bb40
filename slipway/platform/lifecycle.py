"""Changes that touch several nouns at once: config changes that release, app removal."""

from __future__ import annotations

import logging

import docker
from docker.errors import APIError, DockerException, NotFound
from sqlalchemy import select
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
    config = config_vars.apply_changes(session, secret_key, app, changes,
                                       limits=config_vars.ConfigLimits.of(settings))
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
    """Remove an app: its rows, then its containers, route, network, images and repository.

    The rows go first, under the app's deploy lock, which deploys and reconcile
    converge it under (a reconcile pass that began before the row went would
    otherwise start containers on the network being removed); waits for a deploy
    in progress. What Docker will not remove now (an image in use, a container
    another pass is removing) stays behind under the app's uid, which no other
    app ever has, and reconcile removes it later (``remove_leftovers``): so this
    never fails for Docker's races or refusals.
    """
    client = runtime.docker_client()
    redis_client = connect(settings.redis_url)
    name, uid = app.name, app.uid
    with app_lock(redis_client, settings, name):
        audit.record(session, actor, "app.destroy", target_kind="app", target_name=name,
                     app=app)
        app.current_release_id = None  # the row points at a release that goes with it
        session.commit()
        session.delete(app)
        session.commit()
        try:
            for container in runtime.app_containers(client, settings.instance_id, uid, all=True):
                runtime.remove(client, container["Id"], stop_timeout=settings.stop_timeout)
        except DockerException as exc:
            logger.warning("containers of %s left for reconcile: %s", name, runtime.explain(exc))
    try:
        routing.sync_routes(session, client, redis_client, settings)
    except RouterError as exc:
        logger.warning("route removal for %s not confirmed: %s", name, exc.message)
    repos.delete_repo(settings.repos_dir, uid)
    try:
        _remove_docker_objects(client, settings, {uid})
    except DockerException as exc:
        logger.warning("Docker objects of %s left for reconcile: %s", name, runtime.explain(exc))


def remove_leftovers(session: Session, settings: Settings, client: docker.DockerClient) -> None:
    """Remove what destroyed apps left behind: networks, images and repositories whose
    uid no app has.

    They are listed before the apps are read, so what an app made after it was created
    is never taken for a leftover. Errors are logged; the next pass tries again.
    """
    try:
        listed = _app_uids_of(client.api.networks(filters={"label": _app_filter(settings)}))
        listed |= _app_uids_of(client.api.images(filters={"label": _app_filter(settings)}))
    except DockerException as exc:
        logger.warning("could not list Docker objects: %s", runtime.explain(exc))
        return
    repositories = {path.name.removesuffix(".git") for path in settings.repos_dir.glob("*.git")}
    session.commit()  # a new transaction: every app created until now
    known = set(session.scalars(select(App.uid)))
    for uid in repositories - known:
        logger.info("removing the repository of a destroyed app (%s)", uid)
        repos.delete_repo(settings.repos_dir, uid)
    if listed - known:
        try:
            _remove_docker_objects(client, settings, listed - known)
        except DockerException as exc:
            logger.warning("leftovers stay until the next pass: %s", runtime.explain(exc))


def _app_filter(settings: Settings) -> list[str]:
    return [f"{runtime.LABEL_INSTANCE}={settings.instance_id}", runtime.LABEL_APP]


def _app_uids_of(objects: list[dict]) -> set[str]:
    return {(obj.get("Labels") or {}).get(runtime.LABEL_APP, "") for obj in objects} - {""}


def _remove_docker_objects(client: docker.DockerClient, settings: Settings, uids: set[str]) -> None:
    """Remove the networks and images of the apps ``uids``, as far as Docker lets it now."""
    for uid in sorted(uids):
        owned = runtime.object_labels(settings.instance_id, uid, {})
        labels = [f"{key}={value}" for key, value in owned.items()]
        for network in client.api.networks(filters={"label": labels}):
            try:
                client.api.remove_network(network["Id"])
            except (NotFound, APIError) as exc:  # still in use: next pass
                logger.info("network %s stays for now: %s", network["Name"],
                            runtime.explain(exc))
        for image in client.api.images(filters={"label": labels}):
            if not runtime.remove_image(client, image["Id"]):
                logger.info("image %s of a destroyed app stays for now (in use)", image["Id"])
