"""The container runtime: app containers on the Docker engine.

``container_spec`` is pure (what to run); the rest are small adapters around
the Docker SDK. Containers carry ``slipway.*`` labels: they are how the actual
state is read back.
"""

from __future__ import annotations

import functools
import http.client
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

import docker
from docker.errors import APIError, DockerException, NotFound

from slipway.builder.dockerfile import APP_UID
from slipway.platform.errors import DeployFailed
from slipway.platform.healthchecks import USER_AGENT, Front, HealthCheck

logger = logging.getLogger(__name__)

LABEL_INSTANCE = "slipway.instance"
# The app's uid (App.uid), not its name: a name can be taken again after a destroy.
LABEL_APP = "slipway.app"
# The app's name, for people reading `docker ps` (and tests); nothing is looked up by it.
LABEL_APP_NAME = "slipway.app-name"
LABEL_RELEASE = "slipway.release"
LABEL_PROCESS = "slipway.process"
# Processes that run once and exit: the release phase and `slipway run`.
ONE_OFF_PROCESSES = frozenset({"release", "run"})
# What an image that would run as root runs as instead (the uid of Slipway's own images).
UNPRIVILEGED_USER = f"{APP_UID}:{APP_UID}"


# A stopping container must let the app's server finish its requests. Docker's
# init (tini, "init": True) passes SIGTERM only to its child, here /bin/sh,
# which (dash does not exec the last command) would die at once and take the
# server down with it: tini is told to signal the whole process group instead,
# and the shell traps the signal, so it waits for the server's graceful exit.
STOP_ENV = {"TINI_KILL_PROCESS_GROUP": "1"}
SHELL_PREFIX = "trap : TERM INT; "

# What an app container can write is bounded, yet its filesystem stays writable and
# ephemeral as on Heroku (apps write to /tmp, and some to their own directory: sqlite
# files, .next/cache), so no read-only root:
# - /tmp and /var/tmp are tmpfs of TMP_SIZE each. Their pages count against the
#   container's memory limit, so even a full one costs the host no disk and at most
#   the app's own memory; a full one gives the writer ENOSPC. An image's VOLUMEs get
#   the same (`_run`), or they would be anonymous volumes on the host's disk.
# - The writable layer gets `storage_opt size=DISK`, which Docker enforces (ENOSPC)
#   only where the storage driver has quotas (overlay2 over xfs mounted with pquota,
#   btrfs, zfs). Elsewhere (overlay2 over ext4) the engine refuses the option: `start`
#   leaves it out, and reconcile measures each container's writable layer instead and
#   replaces one over DISK (`over_disk_limit`), as Kubernetes' kubelet evicts pods over
#   their ephemeral-storage limit.
# Sizes are Docker's ("256m", "1g": binary units). The defaults are config.py's.
TMP_SIZE = "256m"
DISK = "1g"
TMPFS_PATHS = ("/tmp", "/var/tmp")
# exec: apps unpack and load native code there (node-gyp, JNA, pip); nosuid, nodev as
# Docker's own; mode 1777 as on any Linux, so a non-root app can write.
TMPFS_OPTIONS = "rw,exec,nosuid,nodev,mode=1777,size={size}"
_SIZE = re.compile(r"([0-9]+)([kmg]?)", re.IGNORECASE)


def size_bytes(size: str) -> int:
    """Bytes of a Docker size (``"512m"``, ``"1g"``, ``"1024"``). Raises ValueError."""
    match = _SIZE.fullmatch(size.strip())
    if match is None:
        raise ValueError(f"Not a size (a number with k, m or g, e.g. 1g): {size!r}")
    return int(match[1]) * 1024 ** " kmg".index(match[2].lower() or " ")


def describe_size(size: str) -> str:
    """A Docker size for people: ``"1g"`` is ``"1 GiB"``, ``"1536m"`` ``"1536 MiB"``."""
    n = size_bytes(size)
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


@functools.cache
def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=120)


def network_name(instance: str, app: str) -> str:
    """The app's network; ``app`` is its uid, as in every function of this module."""
    return f"slipway-{instance}-{app}"


def object_labels(instance: str, app: str, extra: dict[str, str]) -> dict[str, str]:
    """The labels of every Docker object made for the app of uid ``app`` by this
    installation."""
    return {**extra, LABEL_INSTANCE: instance, LABEL_APP: app}


def container_spec(
    *,
    instance: str,
    app: str,
    app_name: str,
    release_id: int,
    version: int,
    process: str,
    image: str,
    command: str | list[str] | None,
    env: dict[str, str],
    port: int,
    memory: str,
    cpus: float,
    pids: int,
    labels: dict[str, str],
    suffix: str,
    user: str | None = None,
    tmp_size: str = TMP_SIZE,
    disk: str = DISK,
) -> dict:
    """Keyword arguments for ``containers.run`` of one process of a release.

    ``command`` is a Procfile command (a string, run by /bin/sh; SIGTERM reaches
    the processes it starts, see STOP_ENV) or an argv list
    passed to Docker as it is (``slipway run``). ``web`` alone publishes a port on
    127.0.0.1; one-off processes (``release``, ``run``) are never restarted.
    ``user`` overrides the image's USER (see ``run_as``). ``app`` is the app's uid,
    ``app_name`` only names the container for people. Never privileged, no
    capabilities, no mounts of host paths (so never the Docker socket), one network per
    app. What it can write is bounded: a ``tmp_size`` tmpfs at each of TMPFS_PATHS and
    ``disk`` of writable layer (see TMP_SIZE).
    """
    if isinstance(command, list):
        argv = command
    else:
        # Procfile commands are shell commands (they expand $PORT), as on Heroku.
        argv = ["/bin/sh", "-c", SHELL_PREFIX + command] if command else None
    one_off = process in ONE_OFF_PROCESSES
    spec = {
        "image": image,
        "command": argv,
        "name": f"slipway-{app_name}-{process}-v{version}-{suffix}",
        "environment": {**env, "PORT": str(port), **STOP_ENV},
        "labels": {
            **object_labels(instance, app, labels),
            LABEL_APP_NAME: app_name,
            LABEL_RELEASE: str(release_id),
            LABEL_PROCESS: process,
        },
        "ports": {f"{port}/tcp": ("127.0.0.1", None)} if process == "web" else {},
        "network": network_name(instance, app),
        "detach": True,
        "mem_limit": memory,
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": pids,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "restart_policy": {"Name": "no"} if one_off else {"Name": "unless-stopped"},
        "init": True,
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        "tmpfs": {path: TMPFS_OPTIONS.format(size=tmp_size) for path in TMPFS_PATHS},
        "storage_opt": {"size": disk},
    }
    if user is not None:
        spec["user"] = user
    return spec


def is_root(user: str) -> bool:
    """Whether an image's USER (``""``, ``root``, ``0``, ``0:0``, ``root:staff``...) is root."""
    name = user.strip().split(":", 1)[0]
    return name in ("", "root", "0")


_image_users: dict[str, str] = {}


def run_as(client: docker.DockerClient, image: str, allow_root: bool) -> str | None:
    """The user to run ``image`` as: None (its own USER) unless that is root and root is
    not allowed (SLIPWAY_ALLOW_ROOT), then UNPRIVILEGED_USER. An image Docker does not
    know counts as root, so the answer errs on the safe side."""
    if allow_root:
        return None
    user = _image_users.get(image)
    if user is None:
        try:
            user = client.api.inspect_image(image)["Config"].get("User") or ""
        except DockerException:
            return UNPRIVILEGED_USER
        if image.startswith("sha256:"):  # an id names the same image forever
            _image_users[image] = user
    return UNPRIVILEGED_USER if is_root(user) else None


def ensure_network(
    client: docker.DockerClient, instance: str, app: str, labels: dict[str, str]
) -> None:
    name = network_name(instance, app)
    if not client.networks.list(names=[name]):
        try:
            client.networks.create(
                name, driver="bridge", labels=object_labels(instance, app, labels)
            )
        except APIError as exc:
            if exc.status_code != 409:  # made by a concurrent deploy
                raise


# Whether the engine enforces `storage_opt size`, per engine address, once known.
_disk_quota: dict[str, bool] = {}


def disk_quota_supported(client: docker.DockerClient) -> bool:
    """Whether the engine can cap a container's writable layer (``storage_opt size``).

    Read once from ``docker info``: overlay2 has quotas only over xfs (and then only
    when mounted with pquota: ``_run`` learns that from the engine's refusal); vfs and
    fuse-overlayfs have none; the other drivers (btrfs, zfs...) are left to try.
    """
    key = client.api.base_url
    if key not in _disk_quota:
        try:
            info = client.info()
        except DockerException:
            return False  # not cached: asked again next time
        driver = info.get("Driver", "")
        backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "")
        _disk_quota[key] = not (driver == "overlay2" and backing != "xfs"
                                or driver in ("vfs", "fuse-overlayfs"))
        if not _disk_quota[key]:
            logger.info("the %s storage driver (over %s) cannot cap a container's writable "
                        "layer: reconcile measures it instead", driver, backing or "?")
    return _disk_quota[key]


def _refuses_storage_opt(exc: APIError) -> bool:
    # e.g. "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
    return "storage-opt" in str(exc.explanation or exc).lower()


def _run(client: docker.DockerClient, spec: dict, networks: Sequence[str]):
    """``containers.run`` that also joins ``networks`` (attached capsules') first:
    joining a running container to a second network can leave its published port
    unanswered. ``storage_opt`` is left out where the engine has no quotas (see
    TMP_SIZE): reconcile measures the writable layer there instead."""
    if "storage_opt" in spec and not disk_quota_supported(client):
        spec = {k: v for k, v in spec.items() if k != "storage_opt"}
    spec = _bound_image_volumes(client, spec)
    try:
        return _create_and_start(client, spec, networks)
    except APIError as exc:
        if "storage_opt" not in spec or not _refuses_storage_opt(exc):
            raise
        # Refused at create, before anything exists: remember, and run without it.
        logger.warning("Docker refused storage_opt (%s): reconcile measures the writable "
                       "layer instead", explain(exc))
        _disk_quota[client.api.base_url] = False
        return _run(client, spec, networks)


def _bound_image_volumes(client: docker.DockerClient, spec: dict) -> dict:
    """``spec`` with a tmpfs like /tmp at each VOLUME of its image: Docker would make
    each an anonymous volume on the host's disk, outside the writable layer and its cap.
    (Both are ephemeral: an anonymous volume goes with its container.)"""
    tmpfs = spec.get("tmpfs") or {}
    try:
        volumes = client.api.inspect_image(spec["image"])["Config"].get("Volumes") or {}
    except DockerException:
        return spec  # creating the container says what is wrong with the image
    missing = [path for path in volumes if path not in tmpfs]
    if not missing or not tmpfs:
        return spec
    options = next(iter(tmpfs.values()))
    return {**spec, "tmpfs": {**tmpfs, **dict.fromkeys(missing, options)}}


def _create_and_start(client: docker.DockerClient, spec: dict, networks: Sequence[str]):
    if not networks:
        return client.containers.run(**spec)
    container = client.containers.create(**{k: v for k, v in spec.items() if k != "detach"})
    for network in networks:
        client.networks.get(network).connect(container.id)
    container.start()
    return container


def start(
    client: docker.DockerClient, spec: dict, networks: Sequence[str] = ()
) -> tuple[str, str | None]:
    """Start a container, also joined to ``networks`` (attached capsules'); returns
    (container id, its ``ip:port`` on the app's network, or None for a process
    without a port). Raises DeployFailed."""
    try:
        container = _run(client, spec, networks)
        container.reload()
    except DockerException as exc:
        raise DeployFailed(f"Could not start container: {explain(exc)}") from exc
    ip = _ip(container.attrs, spec["network"])
    ports = [int(key.split("/")[0]) for key in spec.get("ports") or {}]
    if ports and not ip:
        try:
            ip = _wait_for_ip(client, container.id, spec["network"])
        except DeployFailed:
            remove(client, container.id, stop_timeout=0)
            raise
    return container.id, (f"{ip}:{ports[0]}" if ip and ports else None)


def _ip(attrs: dict, network: str) -> str | None:
    return ((attrs.get("NetworkSettings") or {}).get("Networks") or {}) \
        .get(network, {}).get("IPAddress") or None


def _wait_for_ip(client: docker.DockerClient, container_id: str, network: str,
                 timeout: float = 5.0) -> str | None:
    """The address of a web container that had none when it started: one whose process
    exited at once (a Procfile naming a missing program) has none until Docker starts
    it again. Raises DeployFailed, saying why, when the exit shows first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = inspect(client, container_id)
        if info is None:
            return None
        if info["State"].get("Status") not in ("running", "created"):
            raise exited(client, container_id, info["State"])
        if ip := _ip(info, network):
            return ip
        time.sleep(0.05)
    return None


def address(container: dict, network: str) -> str | None:
    """``ip:port`` of a listed container (``app_containers``) on ``network``: its address
    there and the container port it publishes; None when it has either not.

    The router and the health check reach web containers here rather than through
    the published port: Linux routes the host to its bridge networks directly,
    where a published port costs a copy through docker-proxy on every request.
    Addresses change when Docker restarts, so they are read anew each time.
    """
    ip = ((container.get("NetworkSettings") or {}).get("Networks") or {}) \
        .get(network, {}).get("IPAddress")
    ports = sorted(p["PrivatePort"] for p in container.get("Ports") or []
                   if p.get("PublicPort") and p.get("Type", "tcp") == "tcp")
    return f"{ip}:{ports[0]}" if ip and ports else None


def wait_healthy(
    client: docker.DockerClient, container_id: str, address: str, check: HealthCheck, *,
    timeout: float, interval: float, front: Front | None = None,
) -> float:
    """Wait until the app passes ``check`` at ``address`` (``ip:port``); returns seconds taken.

    Each request carries ``front``'s headers (the app's host, as the router sends it).

    Until the app accepts connections it is booting: polled every ``interval``
    for up to ``timeout`` seconds. Once it answers, each answer that fails the
    check counts as one of ``check.attempts``, ``check.wait`` seconds apart.
    Raises DeployFailed, with the container's last log lines, when it exits,
    never accepts connections, or uses up its attempts.
    """
    started = time.monotonic()
    if check.initial_delay:
        time.sleep(check.initial_delay)
    deadline = time.monotonic() + timeout
    polls = failures = 0
    while True:
        listening, reason = probe(address, check, front)
        if listening and reason is None:
            return time.monotonic() - started
        if listening:
            failures += 1
            if failures >= check.attempts:
                asked = f" (asked with {front.describe()})" if front else ""
                raise DeployFailed(
                    f"Health check {check.describe()} failed {failures} time(s), last: "
                    f"{reason}{asked}\n" + _logs_note(client, container_id))
            wait = check.wait
        else:
            if time.monotonic() >= deadline:
                raise DeployFailed(
                    f"The web process did not answer HTTP on $PORT within {timeout:g} s\n"
                    + _logs_note(client, container_id))
            wait = interval
        polls += 1
        if not listening and polls % 10 == 0 or listening:
            state = (inspect(client, container_id) or {"State": {"Status": "gone"}})["State"]
            if state.get("Status") not in ("running", "created"):
                raise exited(client, container_id, state)
        time.sleep(wait)


# Enough of a body to find a check's content in; more is not read.
_MAX_CHECK_BODY = 1024 * 1024


def probe(
    address: str, check: HealthCheck, front: Front | None = None,
) -> tuple[bool, str | None]:
    """One request of ``check`` to ``address`` (``ip:port``), with ``front``'s headers
    (Host and X-Forwarded-* as the router sends them) when given.

    Returns (False, None) when nothing answers (refused or closed: still booting),
    (True, None) for a pass, and (True, reason) for an answer that fails it.
    """
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=check.timeout)
    headers = front.headers() if front else {"User-Agent": USER_AGENT}
    try:
        conn.request("GET", check.path, headers=headers)
        response = conn.getresponse()
        body = response.read(_MAX_CHECK_BODY)
    except TimeoutError:
        return True, f"no answer within {check.timeout:g} s"
    except (OSError, http.client.HTTPException):
        # Refused, or closed without an answer: the app is not listening yet.
        return False, None
    finally:
        conn.close()
    status = response.status
    if check.any_status and status < 500 or 200 <= status < 400:
        if check.content and check.content.encode() not in body:
            return True, f"answered {status} without {check.content!r} in its body"
        return True, None
    return True, f"answered {status}"


# What a shell's exit status says about the command it was given (the Procfile's).
_EXIT_HINTS = {
    126: "its command is not executable: check the Procfile's web line (a script needs "
         "its executable bit, `git update-index --chmod=+x FILE`)",
    127: "its command was not found: the Procfile's web line names a program the image "
         "does not have; fix the Procfile or add the package that provides it",
}


def exited(client: docker.DockerClient, container_id: str, state: dict) -> DeployFailed:
    """The failure of a web container that exited before passing its health check
    (``state`` as Docker saw it then: once Docker restarts it, the exit status is
    gone): what its exit status says, and its last output."""
    code = state.get("ExitCode")
    hint = _EXIT_HINTS.get(code)
    return DeployFailed("The web process exited before passing its health check"
                        + (f" (exit status {code}): {hint}" if hint else "") + "\n"
                        + _logs_note(client, container_id))


def _logs_note(client: docker.DockerClient, container_id: str) -> str:
    return "Last lines of its output:\n" + last_logs(client, container_id)





def last_logs(client: docker.DockerClient, container_id: str, lines: int = 20) -> str:
    """The last ``lines`` lines a container wrote, as text for a message."""
    out = raw_logs(client, container_id, lines)
    if out is None:
        return "(no logs)"
    return out.decode(errors="replace").rstrip() or "(no output)"


def raw_logs(client: docker.DockerClient, container_id: str, lines: int) -> bytes | None:
    """The last ``lines`` lines a container wrote (stdout and stderr), as bytes; None if
    Docker cannot tell (the container is gone)."""
    try:
        return client.api.logs(container_id, tail=lines, stdout=True, stderr=True)
    except DockerException:
        return None


def inspect(client: docker.DockerClient, container_id: str) -> dict | None:
    """Docker's full description of a container (State, RestartCount...); None if gone."""
    try:
        return client.api.inspect_container(container_id)
    except NotFound:
        return None


def app_containers(
    client: docker.DockerClient, instance: str, app: str | None = None, *,
    process: str | None = None, all: bool = False,
) -> list[dict]:
    """This installation's containers, as the Docker API lists them (labels, state, ports)."""
    filters = [f"{LABEL_INSTANCE}={instance}"]
    if app:
        filters.append(f"{LABEL_APP}={app}")
    if process:
        filters.append(f"{LABEL_PROCESS}={process}")
    return client.api.containers(all=all, filters={"label": filters})


def over_disk_limit(client: docker.DockerClient, instance: str, limit: int) -> list[dict]:
    """This installation's running containers whose writable layer holds more than
    ``limit`` bytes, as listed with their size (``SizeRw``).

    The size is Docker's walk of each container's layer (``docker ps -s``), so it costs
    time in proportion to the files a container wrote. It sums apparent sizes: a sparse
    file counts in full, and many tiny files count less than the blocks they take.
    """
    listed = client.api.containers(filters={"label": [f"{LABEL_INSTANCE}={instance}"]},
                                   size=True)
    return [c for c in listed if (c.get("SizeRw") or 0) > limit]


def remove(client: docker.DockerClient, container_id: str, *, stop_timeout: int) -> None:
    """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove a container.

    One that is gone, or that another caller is removing at this moment (Docker's 409
    "removal ... already in progress"), counts as removed.
    """
    try:
        client.api.stop(container_id, timeout=stop_timeout)
        client.api.remove_container(container_id, v=True, force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc.explanation):
            raise


def explain(exc: DockerException) -> str:
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc)


def exposed_port(client: docker.DockerClient, image: str) -> int | None:
    """The port an image EXPOSEs, when it exposes exactly one TCP port."""
    exposed = client.api.inspect_image(image)["Config"].get("ExposedPorts") or {}
    ports = [int(key.split("/")[0]) for key in exposed if key.endswith("/tcp")]
    return ports[0] if len(ports) == 1 else None


def run_one_off(
    client: docker.DockerClient, spec: dict, output: Callable[[bytes], None], *, timeout: float,
    networks: Sequence[str] = (),
) -> int:
    """Run a one-off container to its end, passing its output on as it comes.

    Returns its exit status (-1 when it was killed at ``timeout`` seconds); the
    container is removed afterwards whatever happens. Raises DeployFailed when
    it cannot start.
    """
    try:
        container = _run(client, spec, networks)
    except DockerException as exc:
        raise DeployFailed(f"Could not start container: {explain(exc)}") from exc
    deadline = time.monotonic() + timeout
    timer = threading.Timer(timeout, kill, args=(client, container.id))
    timer.daemon = True
    timer.start()
    try:
        for chunk in client.api.logs(container.id, stream=True, follow=True,
                                     stdout=True, stderr=True):
            output(chunk)
        status = client.api.wait(container.id, timeout=max(1, deadline - time.monotonic() + 5))
        if time.monotonic() >= deadline:
            return -1
        return int(status.get("StatusCode", -1))
    except DockerException as exc:
        raise DeployFailed(f"One-off container failed: {explain(exc)}") from exc
    finally:
        timer.cancel()
        remove(client, container.id, stop_timeout=0)


def kill(client: docker.DockerClient, container_id: str) -> None:
    """SIGKILL a container; nothing if it is gone or already stopped."""
    try:
        client.api.kill(container_id)
    except DockerException:
        pass


def image_exists(client: docker.DockerClient, image: str) -> bool:
    try:
        client.api.inspect_image(image)
        return True
    except NotFound:
        return False


def images_in_use(client: docker.DockerClient) -> set[str]:
    """Ids of the images any container on the engine (running or not) was made from."""
    return {c["ImageID"] for c in client.api.containers(all=True)}


def remove_image(client: docker.DockerClient, image: str) -> bool:
    """Remove an image and all its tags; False when Docker refuses (e.g. now in use)."""
    try:
        client.api.remove_image(image, force=True, noprune=False)
        return True
    except NotFound:
        return True
    except APIError:
        return False
