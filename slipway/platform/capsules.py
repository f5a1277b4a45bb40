"""Capsules: managed PostgreSQL and Redis, one container, volume and network each.

A capsule's container joins only its own Docker network; the app containers it
is attached to join that network too, and see it as ``capsule-<name>``. Its port
is published on 127.0.0.1 only, for the owner's tools and the worker's readiness
check. Capsule containers carry their own labels (``slipway.capsule*``, never
``slipway.instance``/``slipway.app``), so app logic such as reconcile ignores them.
The password is generated here, stored Fernet-encrypted and never logged.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import runtime, validation
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
    port: int
    data_dir: str
    default_alias: str


KINDS = {
    "postgres": Kind("postgres", 5432, "/var/lib/postgresql/data", "DATABASE"),
    "redis": Kind("redis", 6379, "/data", "REDIS"),
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


def choose_capsule_image(template: str, local_tags: list[str], repository: str,
                         kind: str) -> tuple[str, str]:
    """(image, version): the template image if this host has it, else the highest
    ``{repository}/{kind}:TAG`` image bootstrap built, else the template (Docker pulls)."""
    if template in local_tags:
        return template, template.rsplit(":", 1)[-1]
    prefix = f"{repository}/{kind}:"
    built = sorted(
        (tag for tag in local_tags if tag.startswith(prefix)),
        key=lambda tag: [int(p) if p.isdigit() else 0 for p in tag[len(prefix):].split(".")],
    )
    if built:
        return built[-1], built[-1][len(prefix):]
    return template, template.rsplit(":", 1)[-1]


# --- Services ---------------------------------------------------------------------


def create_capsule(session: Session, settings: Settings, owner: User, kind: object,
                   name: object) -> Capsule:
    """Record a new capsule (status provisioning); the caller commits, then enqueues
    ``tasks.provision_capsule``. Raises InvalidInput (kind, name) or Conflict (taken name)."""
    if kind not in KINDS:
        raise InvalidInput(f"Unknown capsule kind {str(kind)[:32]!r}: use postgres or redis",
                           field="kind")
    name = validation.capsule_name(name)
    if session.scalar(select(Capsule).where(Capsule.name == name)):
        raise Conflict(f"Capsule name {name} is already taken", field="name")
    capsule = Capsule(
        name=name, kind=kind, owner=owner, status=CapsuleStatus.PROVISIONING,
        password_encrypted=encrypt(settings.resolved_secret_key(), secrets.token_urlsafe(32)),
    )
    session.add(capsule)
    session.flush()
    return capsule


def get_capsule(session: Session, user: User, name: str) -> Capsule:
    """The capsule ``name`` if ``user`` may see it; NotFound otherwise, also for others'."""
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
                    confirm: object) -> None:
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
                template = (settings.postgres_image if capsule.kind == "postgres"
                            else settings.redis_image)
                # The raw list: images.list() inspects each image, and fails when another
                # process removes one meanwhile.
                tags = [tag for image in client.api.images() for tag in image.get("RepoTags") or []]
                capsule.image, capsule.version = choose_capsule_image(
                    template, tags, settings.bootstrap_repository, capsule.kind)
            if not client.networks.list(names=[name]):
                client.networks.create(name, driver="bridge", labels=labels)
            if not client.volumes.list(filters={"name": name}):
                client.volumes.create(name, labels=labels)
            container = _run(client, settings, capsule)
        container.reload()
    except ImageNotFound as exc:
        raise DeployFailed(f"Image {capsule.image} is not on this host: run "
                           "`slipway images bootstrap --kind postgres --kind redis`") from exc
    except (DockerException, APIError) as exc:
        raise DeployFailed(f"Could not start the capsule: {runtime.explain(exc)}") from exc
    port = KINDS[capsule.kind].port
    for binding in (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []:
        return int(binding["HostPort"])
    raise DeployFailed("The capsule's container has no published port")


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
