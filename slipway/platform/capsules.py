"""Capsules: managed PostgreSQL and Redis, one container, volume and network each.

A capsule's container joins only its own Docker network; the app containers it
is attached to join that network too, and see it as ``capsule-<name>``. Its port
is published on 127.0.0.1 only, for the owner's tools and the worker's readiness
check. Capsule containers carry their own labels (``slipway.capsule*``, never
``slipway.instance``/``slipway.app``), so app logic such as reconcile ignores them.
The password is generated here, stored Fernet-encrypted and never logged.

Each capsule has a major version, chosen at creation out of those `slipway images
bootstrap` can build from Debian packages (so every one offered can run here, with
or without a registry); its image is picked, pulled or built when it is provisioned.
"""

from __future__ import annotations

import fcntl
import logging
import re
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.builder import bootstrap
from slipway.builder.images import template_image
from slipway.config import Settings
from slipway.platform import audit, runtime, validation
from slipway.platform.db import paginate
from slipway.platform.errors import BadRequest, Conflict, DeployFailed, InvalidInput
from slipway.platform.errors import NotFound as Missing
from slipway.platform.models import App, Capsule, CapsuleAttachment, CapsuleStatus, Release, User
from slipway.platform.secrets import decrypt, encrypt

logger = logging.getLogger(__name__)

LABEL_CAPSULE_INSTANCE = "slipway.capsule.instance"
LABEL_CAPSULE = "slipway.capsule"
LABEL_CAPSULE_KIND = "slipway.capsule.kind"

# The user and database inside every PostgreSQL capsule.
PG_USER = "slipway"
PG_DB = "slipway"


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    port: int
    data_dir: str
    default_alias: str


KINDS = {
    "postgres": Kind("postgres", "PostgreSQL", 5432, "/var/lib/postgresql/data", "DATABASE"),
    "redis": Kind("redis", "Redis", 6379, "/data", "REDIS"),
}


# --- Pure parts -------------------------------------------------------------------


def docker_name(instance: str, capsule: str) -> str:
    """The name of the capsule's container, volume and network.

    The underscore keeps it apart from app networks (``slipway-<instance>-<app>``):
    app names cannot hold one.
    """
    return f"slipway-{instance}-capsule_{capsule}"


def hostname(capsule: str) -> str:
    """The name app containers reach the capsule by, on the capsule's network."""
    return f"capsule-{capsule}"


def capsule_labels(instance: str, capsule: str, kind: str, extra: dict[str, str]) -> dict[str, str]:
    return {**extra, LABEL_CAPSULE_INSTANCE: instance, LABEL_CAPSULE: capsule,
            LABEL_CAPSULE_KIND: kind}


def connection_url(kind: str, password: str, host: str, port: int) -> str:
    """The URL clients connect with (postgres://... or redis://...)."""
    if kind == "postgres":
        return f"postgres://{PG_USER}:{password}@{host}:{port}/{PG_DB}"
    return f"redis://:{password}@{host}:{port}/0"


def capsule_container_spec(
    *, instance: str, capsule: str, kind: str, image: str, password: str, memory: str,
    labels: dict[str, str], host_port: int,
) -> dict:
    """Keyword arguments for ``containers.run`` of a capsule's container."""
    spec = KINDS[kind]
    name = docker_name(instance, capsule)
    if kind == "postgres":
        environment = {"POSTGRES_PASSWORD": password, "POSTGRES_USER": PG_USER,
                       "POSTGRES_DB": PG_DB, "PGDATA": spec.data_dir}
        command = None
    else:
        environment = {"REDIS_PASSWORD": password}
        # A constant script: the password comes from the environment, not the command
        # line of `docker inspect`. RDB snapshots every second after a write (and at
        # shutdown): backups and restores are that same file, which AOF would shadow.
        command = ["/bin/sh", "-c",
                   'exec /usr/local/bin/docker-entrypoint.sh redis-server '
                   '--requirepass "$REDIS_PASSWORD" --appendonly no --save "1 1" --dir /data']
    return {
        "image": image,
        "command": command,
        "name": name,
        "hostname": hostname(capsule),
        "environment": environment,
        "labels": capsule_labels(instance, capsule, kind, labels),
        # A fixed port: Docker gives a random one a new number at every restart.
        "ports": {f"{spec.port}/tcp": ("127.0.0.1", host_port)},
        "network": name,
        # The app-facing name, on the capsule's own network only.
        "networking_config": {name: {"Aliases": [hostname(capsule)]}},
        "volumes": {name: {"bind": spec.data_dir, "mode": "rw"}},
        "detach": True,
        "mem_limit": memory,
        "security_opt": ["no-new-privileges:true"],
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
    }


def available_versions(kind: str) -> list[str]:
    """The major versions of ``kind`` offered here, oldest first: those `slipway images
    bootstrap` can build from Debian packages, so any of them can run on this host."""
    return bootstrap.versions_of(kind)


def image_template(settings: Settings, kind: str) -> str:
    return settings.postgres_image if kind == "postgres" else settings.redis_image


def default_version(settings: Settings, kind: str) -> str:
    """The version of a capsule created without one: the setting, else the newest offered."""
    configured = (settings.postgres_default_version if kind == "postgres"
                  else settings.redis_default_version)
    return configured or available_versions(kind)[-1]


def _choices(versions: list[str]) -> str:
    return ", ".join(versions[:-1]) + f" or {versions[-1]}" if len(versions) > 1 else versions[0]


def check_version(kind: str, version: object) -> str:
    """``version`` as the major version string of ``kind`` it names ("17", or 17 in JSON).

    Raises InvalidInput (field ``version``) for anything else, naming what exists.
    """
    versions = available_versions(kind)
    label = KINDS[kind].label
    if isinstance(version, bool) or not isinstance(version, str | int) or not re.fullmatch(
            r"[0-9]{1,4}", str(version)):
        raise InvalidInput(f"{label} version must be a major version number: choose "
                           f"{_choices(versions)}", field="version")
    version = str(int(version))
    if version not in versions:
        raise InvalidInput(f"{label} {version} is not available on this host: choose "
                           f"{_choices(versions)}", field="version")
    return version


def template_for(template: str, version: str) -> str | None:
    """The template's image for ``version``; None when the template is one fixed image
    (no ``{version}``, as older settings had) of another version."""
    if "{version}" in template:
        return template_image(template, version)
    tag = template.rsplit("/", 1)[-1].rpartition(":")[2]
    return template if tag.split(".")[0] == version else None


def choose_capsule_image(template: str, version: str, local_tags: list[str], repository: str,
                         kind: str) -> str | None:
    """The image of a ``kind`` ``version`` capsule this host has: the template's image,
    else the one bootstrap builds (``{repository}/{kind}:{version}``); None if neither."""
    candidate = template_for(template, version)
    if candidate is not None and candidate in local_tags:
        return candidate
    built = f"{repository}/{kind}:{version}"
    return built if built in local_tags else None


# --- Services ---------------------------------------------------------------------


def create_capsule(session: Session, settings: Settings, owner: User, kind: object,
                   name: object, version: object = None) -> Capsule:
    """Record a new capsule (status provisioning) of ``version`` (None or "": the default);
    the caller commits, then enqueues ``tasks.provision_capsule``. Raises InvalidInput
    (kind, name, version) or Conflict (taken name)."""
    if not isinstance(kind, str) or kind not in KINDS:  # a list is no dict key
        raise InvalidInput(f"Unknown capsule kind {str(kind)[:32]!r}: use postgres or redis",
                           field="kind")
    name = validation.capsule_name(name)
    version = check_version(kind, default_version(settings, kind) if version in (None, "")
                            else version)
    if session.scalar(select(Capsule).where(Capsule.name == name)):
        raise Conflict(f"Capsule name {name} is already taken", field="name")
    capsule = Capsule(
        name=name, kind=kind, version=version, owner=owner, status=CapsuleStatus.PROVISIONING,
        password_encrypted=encrypt(settings.resolved_secret_key(), secrets.token_urlsafe(32)),
    )
    session.add(capsule)
    session.flush()
    audit.record(session, owner, "capsule.create", target_kind="capsule", target_name=name,
                 details={"kind": kind, "version": version})
    return capsule


def get_capsule(session: Session, user: User, name: str) -> Capsule:
    """The capsule ``name`` if ``user`` may see it; NotFound otherwise, also for others'
    and for what is no capsule name at all."""
    if not validation.is_name(name):
        raise Missing("No capsule by that name: capsule names are 2-30 lowercase letters, "
                      "digits and dashes", field="name")
    capsule = session.scalar(select(Capsule).where(Capsule.name == name))
    if capsule is None or not (user.is_admin or capsule.owner_id == user.id):
        raise Missing(f"No capsule named {name}")
    return capsule


def list_capsules(session: Session, user: User, *, limit: int,
                  offset: int) -> tuple[list[Capsule], int]:
    query = select(Capsule)
    if not user.is_admin:
        query = query.where(Capsule.owner_id == user.id)
    return paginate(session, query, Capsule.name, limit=limit, offset=offset)


def password(settings: Settings, capsule: Capsule) -> str:
    return decrypt(settings.resolved_secret_key(), capsule.password_encrypted)


def owner_url(settings: Settings, capsule: Capsule) -> str | None:
    """The URL the owner's tools use on the Slipway host (127.0.0.1), once published."""
    if capsule.host_port is None:
        return None
    return connection_url(capsule.kind, password(settings, capsule), "127.0.0.1",
                          capsule.host_port)


def app_url(settings: Settings, capsule: Capsule) -> str:
    """The URL an attached app's containers use, over the capsule's network."""
    return connection_url(capsule.kind, password(settings, capsule), hostname(capsule.name),
                          KINDS[capsule.kind].port)


def attach(session: Session, settings: Settings, app: App, capsule: Capsule, alias: object,
           user: User) -> Release | None:
    """Attach ``capsule`` to ``app`` as ``<alias>_URL`` and redeploy the app with it.

    Returns the new release (None if the app was never deployed). Raises InvalidInput
    (alias), Conflict (not available yet, already attached, alias in use).
    """
    alias = (KINDS[capsule.kind].default_alias if alias is None
             else validation.capsule_alias(alias))
    if capsule.status != CapsuleStatus.AVAILABLE:
        raise Conflict(f"Capsule {capsule.name} is {capsule.status.value}, not available",
                       field="capsule")
    for existing in _attachments(session, app):
        if existing.capsule_id == capsule.id:
            raise Conflict(f"Capsule {capsule.name} is already attached to {app.name}",
                           field="capsule")
        if existing.alias == alias:
            raise Conflict(f"{alias}_URL of {app.name} is already set by capsule "
                           f"{existing.capsule.name}", field="as")
    session.add(CapsuleAttachment(capsule_id=capsule.id, app_id=app.id, alias=alias))
    session.flush()
    audit.record(session, user, "capsule.attach", target_kind="capsule", target_name=capsule.name,
                 app=app, details={"as": alias})
    return _redeploy(session, settings, app, user, f"Attach {capsule.name} as {alias}_URL")


def detach(session: Session, settings: Settings, app: App, capsule: Capsule,
           user: User) -> Release | None:
    """Detach ``capsule`` from ``app`` and redeploy without it; the data stays.

    Raises NotFound when it is not attached.
    """
    for existing in _attachments(session, app):
        if existing.capsule_id == capsule.id:
            session.delete(existing)
            session.flush()
            audit.record(session, user, "capsule.detach", target_kind="capsule",
                         target_name=capsule.name, app=app, details={"as": existing.alias})
            return _redeploy(session, settings, app, user,
                             f"Detach {capsule.name} ({existing.alias}_URL)")
    raise Missing(f"Capsule {capsule.name} is not attached to {app.name}")


def _attachments(session: Session, app: App) -> list[CapsuleAttachment]:
    return list(session.scalars(
        select(CapsuleAttachment).where(CapsuleAttachment.app_id == app.id)
        .order_by(CapsuleAttachment.alias)
    ))


def attached_apps(session: Session, capsule: Capsule) -> list[tuple[str, str]]:
    """(app name, alias) of every app ``capsule`` is attached to."""
    return [(a.app.name, a.alias) for a in capsule.attachments]


def _redeploy(session: Session, settings: Settings, app: App, user: User,
              description: str) -> Release | None:
    # Like a config change: same image and config, new release, deployed by the worker.
    from slipway.platform import config_vars, releases, tasks  # tasks import deploy

    current = app.current_release
    release = None
    if current is not None:
        secret_key = settings.resolved_secret_key()
        release = releases.create_release(
            session, secret_key, app, image=current.image,
            config=config_vars.get_config(secret_key, app), processes=current.processes,
            port=current.port, healthchecks=current.healthchecks, description=description[:255],
            user_id=user.id,
        )
    session.commit()
    if release is not None:
        tasks.deploy.delay(release.id)
    return release


def capsule_env(session: Session, settings: Settings, app: App) -> dict[str, str]:
    """``<ALIAS>_URL`` of every capsule attached to ``app``, for its containers."""
    return {f"{a.alias}_URL": app_url(settings, a.capsule) for a in _attachments(session, app)}


def capsule_networks(session: Session, settings: Settings, app: App) -> list[str]:
    """The Docker networks of the capsules attached to ``app``."""
    return [docker_name(settings.instance_id, a.capsule.name) for a in _attachments(session, app)]


def destroy_capsule(session: Session, settings: Settings, capsule: Capsule,
                    confirm: object, *, actor: User | None) -> None:
    """Remove a capsule: container, network, volume and row. Its data is gone.

    Raises BadRequest unless ``confirm`` is the capsule's name, Conflict while apps
    are attached (detach first, so no app loses its database by surprise).
    """
    if confirm != capsule.name:
        raise BadRequest(f"Type the capsule's name to confirm: send {{\"confirm\": "
                         f"\"{capsule.name}\"}}", field="confirm")
    apps = attached_apps(session, capsule)
    if apps:
        names = ", ".join(name for name, _ in apps)
        raise Conflict(f"Capsule {capsule.name} is attached to {names}: detach it first")
    name = capsule.name
    audit.record(session, actor, "capsule.destroy", target_kind="capsule", target_name=name,
                 owner_id=capsule.owner_id, details={"kind": capsule.kind})
    session.delete(capsule)
    session.commit()
    remove_docker_objects(runtime.docker_client(), settings, name)


def remove_docker_objects(client: docker.DockerClient, settings: Settings, name: str) -> None:
    """Remove a capsule's container, network and volume (whichever exist)."""
    object_name = docker_name(settings.instance_id, name)
    try:
        runtime.remove(client, client.containers.get(object_name).id,
                       stop_timeout=settings.stop_timeout)
    except NotFound:
        pass
    for network in client.networks.list(names=[object_name]):
        network.reload()
        for container_id in network.attrs.get("Containers") or {}:
            network.disconnect(container_id, force=True)
        network.remove()
    try:
        client.volumes.get(object_name).remove(force=True)
    except NotFound:
        pass


# --- Provisioning (runs in the worker) ---------------------------------------------


def provision(session: Session, settings: Settings, capsule: Capsule) -> None:
    """Start the capsule's container and wait for an authenticated connection.

    Safe to run twice: existing Docker objects are reused. Ends with the status
    ``available``, or ``failed`` with the reason in ``error``.
    """
    started = time.monotonic()
    client = runtime.docker_client()
    try:
        host_port = _start_container(client, settings, capsule)
        capsule.host_port = host_port
        session.commit()
        _wait_ready(client, settings, capsule, host_port)
    except DeployFailed as exc:
        capsule.status = CapsuleStatus.FAILED
        capsule.error = exc.message
        session.commit()
        logger.warning("capsule %s failed: %s", capsule.name, exc.message)
        return
    capsule.status = CapsuleStatus.AVAILABLE
    capsule.error = None
    session.commit()
    logger.info("capsule %s available in %.2f s", capsule.name, time.monotonic() - started)


def _start_container(client: docker.DockerClient, settings: Settings, capsule: Capsule) -> int:
    instance = settings.instance_id
    name = docker_name(instance, capsule.name)
    labels = capsule_labels(instance, capsule.name, capsule.kind, settings.labels)
    try:
        try:
            container = client.containers.get(name)
            if container.status != "running":
                container.start()
        except NotFound:
            if not capsule.image:
                capsule.version = capsule.version or default_version(settings, capsule.kind)
                capsule.image = _image(client, settings, capsule.kind, capsule.version)
            if not client.networks.list(names=[name]):
                client.networks.create(name, driver="bridge", labels=labels)
            if not client.volumes.list(filters={"name": name}):
                client.volumes.create(name, labels=labels)
            container = _run(client, settings, capsule)
        container.reload()
    except ImageNotFound as exc:
        raise DeployFailed(f"Image {capsule.image} is not on this host: run `slipway images "
                           f"bootstrap --kind {capsule.kind}{capsule.version}`") from exc
    except (DockerException, APIError) as exc:
        raise DeployFailed(f"Could not start the capsule: {runtime.explain(exc)}") from exc
    port = KINDS[capsule.kind].port
    for binding in (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []:
        return int(binding["HostPort"])
    raise DeployFailed("The capsule's container has no published port")


def _image(client: docker.DockerClient, settings: Settings, kind: str, version: str) -> str:
    """The image for a new ``kind`` ``version`` capsule: one this host has, else the
    template's (Docker pulls it) where a registry answers, else one built now from
    Debian packages. Raises DeployFailed when that build fails."""
    template = image_template(settings, kind)
    # The raw list: images.list() inspects each image, and fails when another
    # process removes one meanwhile.
    tags = [tag for image in client.api.images() for tag in image.get("RepoTags") or []]
    image = choose_capsule_image(template, version, tags, settings.bootstrap_repository, kind)
    if image is not None:
        return image
    candidate = template_for(template, version)
    if candidate is not None and bootstrap.registry_reachable(client):
        return candidate
    return build_image(client, settings, kind, version)


def build_image(client: docker.DockerClient, settings: Settings, kind: str,
                version: str) -> str:
    """Build ``{bootstrap_repository}/{kind}:{version}`` (and its Debian base) unless it
    exists; one build at a time on this host. Raises DeployFailed with the reason."""
    name = f"{kind}{version}"
    if name not in bootstrap.KINDS:
        raise DeployFailed(f"{KINDS[kind].label} {version} cannot be built on this host: "
                           f"choose {_choices(available_versions(kind))}")
    reference = bootstrap.KINDS[name].reference(settings.bootstrap_repository)
    started = time.monotonic()
    logger.info("building %s for a capsule", reference)
    try:
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Capsules of one version provisioned together wait for one build (the lock goes
        # with the file); bootstrap_images skips what exists, so the second finds it done.
        with open(settings.home / "capsule-images.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with tempfile.TemporaryDirectory(prefix="slipway-bootstrap-", dir="/var/tmp") as work:
                bootstrap.bootstrap_images(
                    client, repository=settings.bootstrap_repository,
                    mirror=settings.debian_mirror, workdir=Path(work), kinds=[name],
                    log=lambda line: logger.debug("bootstrap: %s", line),
                )
    except bootstrap.BootstrapError as exc:
        raise DeployFailed(f"Could not build {reference}: {exc.message}") from exc
    except (OSError, DockerException) as exc:  # a full disk, Docker gone mid-build
        raise DeployFailed(f"Could not build {reference}: {exc}") from exc
    logger.info("built %s in %.1f s", reference, time.monotonic() - started)
    return reference


def _run(client: docker.DockerClient, settings: Settings, capsule: Capsule):
    """Run the capsule's container on a free loopback port (retrying a port taken meanwhile)."""
    for attempt in range(5):
        port = free_loopback_port()
        try:
            return client.containers.run(**capsule_container_spec(
                instance=settings.instance_id, capsule=capsule.name, kind=capsule.kind,
                image=capsule.image, password=password(settings, capsule),
                memory=settings.capsule_memory, labels=settings.labels, host_port=port,
            ))
        except APIError as exc:
            if "allocated" not in str(exc.explanation) or attempt == 4:
                raise
            # The container was created but could not start: make room for the retry.
            try:
                client.containers.get(docker_name(settings.instance_id, capsule.name)).remove(
                    force=True)
            except NotFound:
                pass
    raise AssertionError("unreachable")


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(client: docker.DockerClient, settings: Settings, capsule: Capsule,
                host_port: int) -> None:
    """Poll an authenticated connection until it works; raises DeployFailed at the deadline
    or when the container exits."""
    secret = password(settings, capsule)
    deadline = time.monotonic() + settings.capsule_ready_timeout
    name = docker_name(settings.instance_id, capsule.name)
    checks = 0
    last_error = ""
    while time.monotonic() < deadline:
        try:
            check_connection(capsule.kind, secret, host_port)
            return
        except Exception as exc:  # noqa: BLE001 - any driver error means "not yet"
            # Only the type: driver messages may quote the connection string.
            last_error = type(exc).__name__
        checks += 1
        if checks % 20 == 0:
            status = client.api.inspect_container(name)["State"]["Status"]
            if status not in ("running", "created", "restarting"):
                raise DeployFailed("The capsule's container exited:\n"
                                   + runtime.last_logs(client, name))
        time.sleep(settings.capsule_ready_interval)
    raise DeployFailed(
        f"The capsule did not accept a connection within {settings.capsule_ready_timeout:g} s "
        f"({last_error}):\n" + runtime.last_logs(client, name)
    )


def check_connection(kind: str, secret: str, host_port: int) -> None:
    """One authenticated round trip to a capsule on 127.0.0.1; raises on failure."""
    if kind == "postgres":
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=host_port, user=PG_USER, password=secret,
                             dbname=PG_DB, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    else:
        import redis

        client = redis.Redis(host="127.0.0.1", port=host_port, password=secret,
                             socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
