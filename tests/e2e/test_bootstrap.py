"""The base images `slipway images bootstrap` builds from Debian packages.

These run the images already on the machine (./install.sh builds debian and
python where no registry answers); a missing image skips its tests rather
than spending a minute building it inside the suite.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from slipway.builder.bootstrap import (
    BOOTSTRAP_LABEL,
    CA_ENV_VARS,
    IMAGE_CA_BUNDLE,
    POSTGRES,
    PYTHON,
    REDIS,
    debian_reference,
    import_changes,
    registry_reachable,
)
from tests.support import TEST_LABEL, wait_for

pytestmark = pytest.mark.e2e

REPOSITORY = "slipway"


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


def require_image(client: docker.DockerClient, reference: str) -> None:
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        kind = reference.split("/")[-1].split(":")[0]
        pytest.skip(f"{reference} is not built (slipway images bootstrap --kind {kind})")


def run(client: docker.DockerClient, image: str, command: list[str], *,
        timeout: float = 120, **kwargs) -> str:
    """Run a container to completion; return its output, fail on a non-zero exit."""
    container = client.containers.run(image, command, detach=True,
                                      labels={TEST_LABEL: "1"}, **kwargs)
    try:
        status = container.wait(timeout=timeout)
        output = container.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, f"{command} exited {status['StatusCode']}:\n{output}"
        return output
    finally:
        container.remove(v=True, force=True)


def test_import_changes_bake_the_ca_bundle_into_the_environment() -> None:
    changes = import_changes({BOOTSTRAP_LABEL: "1"})

    assert "ENV LANG=C.UTF-8" in changes
    for name in CA_ENV_VARS:
        assert f"ENV {name}={IMAGE_CA_BUNDLE}" in changes
    assert 'LABEL "slipway.bootstrap"="1"' in changes


def test_registry_probe_answers_within_its_timeout(client: docker.DockerClient) -> None:
    started = time.monotonic()
    answer = registry_reachable(client, timeout=3)
    elapsed = time.monotonic() - started

    assert isinstance(answer, bool)
    assert elapsed < 4.5


def test_python_image_has_ssl_venv_and_useradd(client: docker.DockerClient) -> None:
    reference = PYTHON.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c",
        "python3 -c 'import ssl, venv' && python -c 'import sys; print(sys.version_info[0])'"
        " && command -v useradd",
    ])

    assert output.split() == ["3", "/usr/sbin/useradd"]
    labels = client.images.get(reference).labels
    assert labels[BOOTSTRAP_LABEL] == "1"


def test_pip_reaches_the_package_index_through_the_ca_bundle(
    client: docker.DockerClient,
) -> None:
    reference = PYTHON.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c", "pip download --no-deps -d /tmp six && ls /tmp",
    ])

    assert "six-" in output


def test_debian_base_trusts_the_host_bundle(client: docker.DockerClient) -> None:
    reference = debian_reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference,
                 ["sh", "-c", 'test -s "$SSL_CERT_FILE" && echo "$SSL_CERT_FILE"'])

    assert output.strip() == IMAGE_CA_BUNDLE


def test_postgres_image_initialises_and_accepts_a_password(
    client: docker.DockerClient,
) -> None:
    reference = POSTGRES.reference(REPOSITORY)
    require_image(client, reference)
    suffix = uuid.uuid4().hex[:8]
    network = client.networks.create(f"slipway-test-{suffix}", labels={TEST_LABEL: "1"})
    password = "p'a$s \"w"
    server = client.containers.run(
        reference, detach=True, name=f"slipway-test-pg-{suffix}", network=network.name,
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_USER": "app",
                     "POSTGRES_DB": "appdb"},
        labels={TEST_LABEL: "1"},
    )
    try:
        wait_for(lambda: server.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "app"])
                 .exit_code == 0, timeout=60, interval=0.2, message="postgres")
        output = run(client, reference,
                     ["psql", "-h", server.name, "-U", "app", "-d", "appdb", "-tAc", "select 1"],
                     environment={"PGPASSWORD": password}, network=network.name)
        assert output.strip() == "1"
    finally:
        server.remove(v=True, force=True)
        network.remove()


def test_redis_image_answers_other_containers(client: docker.DockerClient) -> None:
    reference = REDIS.reference(REPOSITORY)
    require_image(client, reference)
    suffix = uuid.uuid4().hex[:8]
    network = client.networks.create(f"slipway-test-{suffix}", labels={TEST_LABEL: "1"})
    server = client.containers.run(
        reference, ["redis-server", "--save", ""], detach=True,
        name=f"slipway-test-redis-{suffix}", network=network.name, labels={TEST_LABEL: "1"},
    )
    try:
        def pong() -> bool:
            probe = server.exec_run(["redis-cli", "ping"])
            return probe.exit_code == 0 and b"PONG" in probe.output

        wait_for(pong, timeout=30, interval=0.1, message="redis")
        # Protected mode would refuse this: the official image has it off too.
        output = run(client, reference, ["redis-cli", "-h", server.name, "ping"],
                     network=network.name)
        assert output.strip() == "PONG"
    finally:
        server.remove(v=True, force=True)
        network.remove()
