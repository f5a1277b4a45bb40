"""An app that fills its space gets the errors alone; the host disk is not filled.

Real parts: the Docker engine (overlay2 over ext4 here: no quotas), Redis. The
containers are started with the spec and the adapter Slipway deploys with
(``runtime.container_spec``, ``runtime.start``) and the reconcile step that enforces
the writable-layer limit (``reconcile.remove_over_disk``).
"""

from __future__ import annotations

import io
import secrets
import textwrap
import urllib.request
from collections.abc import Iterator

import docker
import pytest
import redis

from slipway.config import Settings
from slipway.platform import ps, reconcile, runtime
from tests.e2e.stack import base_image_available
from tests.support import TEST_LABEL, TEST_RUN, steady_requests, wait_for

pytestmark = pytest.mark.e2e

MIB = 1024 ** 2
TMP_SIZE = "16m"
DISK = "32m"
# An app directory owned by the app's user, as in the images Slipway renders, and a
# VOLUME, as an app's own Dockerfile may declare.
DOCKERFILE = textwrap.dedent("""
    FROM slipway/python:3.11
    RUN mkdir /app /data && chown 10001:10001 /app /data
    VOLUME /data
    WORKDIR /app
    USER 10001:10001
""")
SERVER = "python3 -m http.server $PORT"
# Writes 1 MiB at a time to PATH, at most LIMIT MiB (so a failed cap cannot fill the
# host), prints how far it got and why it stopped, then keeps running.
WRITER = textwrap.dedent("""
    import errno, sys, time
    path, limit = sys.argv[1], int(sys.argv[2])
    written = 0
    try:
        with open(path, "wb") as f:
            while written < limit:
                f.write(b"x" * (1024 * 1024))
                f.flush()
                written += 1
                time.sleep(float(sys.argv[3]))
        print(f"wrote {written} MiB", flush=True)
    except OSError as exc:
        print(f"stopped after {written} MiB: {errno.errorcode[exc.errno]}", flush=True)
    time.sleep(3600)
""")


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    if not base_image_available("python"):
        pytest.fail("No python base image: run ./install.sh (it bootstraps them)")
    return docker.from_env()


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(instance=f"d{TEST_RUN}", container_tmp_size=TMP_SIZE, container_disk=DISK,
                    labels={TEST_LABEL: TEST_RUN})


@pytest.fixture(scope="module")
def image(client: docker.DockerClient, settings: Settings) -> Iterator[str]:
    built, _ = client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), rm=True,
                                   forcerm=True, labels=settings.labels)
    try:
        yield built.id
    finally:
        cleanup(client, settings)
        client.api.remove_image(built.id, force=True)


def cleanup(client: docker.DockerClient, settings: Settings) -> None:
    for c in client.api.containers(all=True, filters={"label": f"{TEST_LABEL}={TEST_RUN}"}):
        client.api.remove_container(c["Id"], v=True, force=True)
    for network in client.networks.list(filters={"label": f"{TEST_LABEL}={TEST_RUN}"}):
        network.remove()


def start(client: docker.DockerClient, settings: Settings, image: str, app: str,
          command: str) -> tuple[str, str | None]:
    """Start one web process of ``app`` as a deploy does; returns (id, ip:port)."""
    runtime.ensure_network(client, settings.instance_id, app, settings.labels)
    spec = runtime.container_spec(
        instance=settings.instance_id, app=app, app_name=app, release_id=1, version=1,
        process="web", image=image, command=command, env={}, port=8000,
        memory=settings.container_memory, cpus=settings.container_cpus,
        pids=settings.container_pids, labels=settings.labels, suffix=secrets.token_hex(3),
        tmp_size=settings.container_tmp_size, disk=settings.container_disk)
    return runtime.start(client, spec)


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def neighbour(client, settings, image) -> Iterator[str]:
    """Another app, serving HTTP all along."""
    container_id, address = start(client, settings, image, "steady", SERVER)
    assert address is not None
    wait_for(lambda: answers(address), message="the neighbour app to answer")
    yield address
    runtime.remove(client, container_id, stop_timeout=0)


def logs(client: docker.DockerClient, container_id: str) -> str:
    return client.api.logs(container_id).decode()


def test_an_app_filling_tmp_gets_enospc_and_the_host_disk_nothing(
        client, settings, image, neighbour):
    with steady_requests(lambda: answers(neighbour)) as served:
        writer, _ = start(client, settings, image, "writer",
                          f"python3 -c '{WRITER}' /tmp/fill 64 0")
        output = wait_for(lambda: "stopped" in logs(client, writer) and logs(client, writer),
                          message="the writer to stop")
    assert "stopped after 16 MiB: ENOSPC" in output or "stopped after 15 MiB: ENOSPC" in output
    assert served and all(served), f"{served.count(False)} of {len(served)} requests failed"
    # /tmp is memory of the writer's own cgroup: nothing of it reached the disk.
    [listed] = client.api.containers(filters={"id": writer}, size=True)
    assert listed.get("SizeRw", 0) < MIB  # Docker leaves out a size of 0
    info = client.api.inspect_container(writer)
    # No host path and no volume (the image's VOLUME is a tmpfs too): tmpfs alone.
    assert info["HostConfig"]["Tmpfs"] == {
        path: f"rw,exec,nosuid,nodev,mode=1777,size={TMP_SIZE}"
        for path in ("/tmp", "/var/tmp", "/data")}
    assert info["HostConfig"]["Binds"] is None and not info["HostConfig"].get("Mounts")
    assert info["Mounts"] == []
    runtime.remove(client, writer, stop_timeout=0)


def test_an_app_filling_its_directory_is_replaced_and_the_neighbour_keeps_serving(
        client, settings, image, neighbour, redis_url):
    if runtime.disk_quota_supported(client):
        pytest.skip("this engine caps the writable layer itself (ENOSPC, as for /tmp)")
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    # 48 MiB at most (over the 32 MiB cap), slowly enough for reconcile to catch it midway.
    writer, _ = start(client, settings, image, "writer",
                      f"python3 -c '{WRITER}' /app/fill 48 0.05")
    # overlay2 over ext4: Docker refused nothing, the adapter left storage_opt out.
    assert not client.api.inspect_container(writer)["HostConfig"].get("StorageOpt")
    with steady_requests(lambda: answers(neighbour)) as served:
        removed = wait_for(lambda: reconcile.remove_over_disk(client, settings, redis_client),
                           interval=0.2, message="reconcile to find the writer over its cap")
    assert removed == [writer]
    assert runtime.inspect(client, writer) is None  # its layer is gone with it
    assert served and all(served), f"{served.count(False)} of {len(served)} requests failed"
    assert answers(neighbour)
    [row] = ps.removed_over_disk(redis_client, settings, "writer", {"1": 1})
    assert row["state"] == "exited" and row["release"] == 1
    assert row["status"].endswith(
        "wrote more than 32 MiB to its filesystem (SLIPWAY_CONTAINER_DISK)")
    redis_client.delete(f"slipway:{settings.instance_id}:over-disk:writer")


def test_an_engine_that_refuses_storage_opt_is_remembered(client, settings, image, monkeypatch):
    if runtime.disk_quota_supported(client):
        pytest.skip("this engine has quotas")
    # As if `docker info` had promised quotas (xfs without pquota): the engine refuses
    # at create, the adapter starts the container without the option and remembers.
    monkeypatch.setitem(runtime._disk_quota, client.api.base_url, True)
    container_id, _ = start(client, settings, image, "refused", "sleep 60")
    assert runtime._disk_quota[client.api.base_url] is False
    assert client.api.inspect_container(container_id)["State"]["Running"]
    runtime.remove(client, container_id, stop_timeout=0)
