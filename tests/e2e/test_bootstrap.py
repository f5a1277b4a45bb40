"""The base images `slipway images bootstrap` builds from Debian packages.

These run the images already on the machine (./install.sh builds the Debian
bases and both Python images where no registry answers); a missing image skips
its tests rather than spending a minute building it inside the suite.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from slipway.builder.bootstrap import (
    BOOKWORM,
    BOOTSTRAP_LABEL,
    CA_ENV_VARS,
    CA_LABEL,
    DEFAULT_KINDS,
    HOST_CA_BUNDLE,
    IMAGE_CA_BUNDLE,
    KINDS,
    NODE_18,
    NODE_20,
    POSTGRES,
    PYTHON_3_11,
    PYTHON_3_13,
    REDIS,
    TRIXIE,
    BootstrapError,
    ImageKind,
    apt_sources,
    bootstrap_images,
    debian_reference,
    import_changes,
    kind_choices,
    registry_reachable,
    resolve_kinds,
)
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

REPOSITORY = "slipway"
PYTHON_KINDS = [pytest.param(kind, id=kind.name) for kind in (PYTHON_3_11, PYTHON_3_13)]
NODE_KINDS = [pytest.param(kind, id=kind.name) for kind in (NODE_18, NODE_20)]
DEBIAN_BASES = [pytest.param(base, id=base.suite) for base in (BOOKWORM, TRIXIE)]


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
        kinds = [name for name, kind in KINDS.items() if kind.reference(REPOSITORY) == reference]
        hint = f" --kind {kinds[0]}" if kinds else ""
        pytest.skip(f"{reference} is not built (slipway images bootstrap{hint})")


def run(client: docker.DockerClient, image: str, command: list[str], *,
        timeout: float = 120, **kwargs) -> str:
    """Run a container to completion; return its output, fail on a non-zero exit."""
    container = client.containers.run(image, command, detach=True,
                                      labels={TEST_LABEL: TEST_RUN}, **kwargs)
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


def test_kind_names_pick_single_images_or_every_version_of_one() -> None:
    def names(*asked: str) -> list[str]:
        return [kind.name for kind in resolve_kinds(asked)]

    assert names("python") == ["python3.11", "python3.13", "python3.14", "python3.11-build",
                               "python3.13-build", "python3.14-build"]
    assert names("python3.13") == ["python3.13"]
    assert names("python3.13", "python", "redis") == [
        "python3.13", "python3.11", "python3.14", "python3.11-build", "python3.13-build",
        "python3.14-build", "redis7", "redis8"]
    assert names("postgres18", "redis7") == ["postgres18", "redis7"]
    # node24's binaries are fetched by the Node 20 image's npm.
    assert names(*DEFAULT_KINDS) == ["python3.11", "python3.14", "python3.14-build", "node20",
                                     "node24", "node24-build"]
    assert names("node") == ["node18", "node20", "node22", "node24", "node20-build",
                             "node22-build", "node24-build"]
    assert kind_choices() == [
        "node", "node18", "node20", "node20-build", "node22", "node22-build", "node24",
        "node24-build", "postgres", "postgres15", "postgres17", "postgres18", "python",
        "python3.11", "python3.11-build", "python3.13", "python3.13-build", "python3.14",
        "python3.14-build", "redis", "redis7", "redis8"]
    with pytest.raises(BootstrapError, match="unknown image kind python3.12"):
        resolve_kinds(["python3.12"])


def test_each_python_kind_names_its_version_and_debian_base() -> None:
    assert PYTHON_3_11.reference(REPOSITORY) == "slipway/python:3.11"
    assert PYTHON_3_11.base == BOOKWORM
    assert PYTHON_3_13.reference(REPOSITORY) == "slipway/python:3.13"
    assert PYTHON_3_13.base == TRIXIE
    assert TRIXIE.reference(REPOSITORY) == debian_reference(REPOSITORY, "trixie")
    assert debian_reference(REPOSITORY) == "slipway/debian:bookworm"


def test_apt_sources_read_the_suite_its_updates_and_security() -> None:
    sources = apt_sources("trixie", mirror="http://m/debian", security_mirror="http://m/sec")

    assert "URIs: http://m/debian\nSuites: trixie trixie-updates\n" in sources
    assert "URIs: http://m/sec\nSuites: trixie-security\n" in sources


def test_registry_probe_answers_within_its_timeout(client: docker.DockerClient) -> None:
    started = time.monotonic()
    answer = registry_reachable(client, timeout=3)
    elapsed = time.monotonic() - started

    assert isinstance(answer, bool)
    assert elapsed < 4.5


@pytest.mark.parametrize("kind", PYTHON_KINDS)
def test_python_image_has_ssl_venv_and_useradd(
    client: docker.DockerClient, kind: ImageKind,
) -> None:
    reference = kind.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c",
        "python3 -c 'import ssl'"
        " && python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
        " && python3 -m venv /tmp/venv && /tmp/venv/bin/python -m pip --version >/dev/null"
        " && command -v useradd"
        " && ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null | wc -l",
    ])

    assert output.split() == [kind.tag, "/usr/sbin/useradd", "0"]
    labels = client.images.get(reference).labels
    assert labels[BOOTSTRAP_LABEL] == "1"


@pytest.mark.parametrize("kind", PYTHON_KINDS)
def test_python_image_points_every_ca_variable_at_the_host_bundle(
    client: docker.DockerClient, kind: ImageKind,
) -> None:
    reference = kind.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c", f"test -s {IMAGE_CA_BUNDLE} && env",
    ])

    env = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert {name: env.get(name) for name in CA_ENV_VARS} == {
        name: IMAGE_CA_BUNDLE for name in CA_ENV_VARS
    }


@pytest.mark.parametrize("kind", PYTHON_KINDS)
def test_pip_reaches_the_package_index_through_the_ca_bundle(
    client: docker.DockerClient, kind: ImageKind,
) -> None:
    reference = kind.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c", "pip download --no-deps -d /tmp six && ls /tmp",
    ])

    assert "six-" in output


def test_each_node_kind_names_its_major_and_debian_base() -> None:
    assert NODE_18.reference(REPOSITORY) == "slipway/node:18"
    assert NODE_18.base == BOOKWORM
    assert NODE_20.reference(REPOSITORY) == "slipway/node:20"
    assert NODE_20.base == TRIXIE


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_node_image_has_node_npm_and_useradd(
    client: docker.DockerClient, kind: ImageKind,
) -> None:
    reference = kind.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference, [
        "sh", "-c",
        "node -p 'process.versions.node.split(\".\")[0]' && npm --version >/dev/null"
        " && command -v useradd && env",
    ])

    lines = output.splitlines()
    assert lines[:2] == [kind.tag, "/usr/sbin/useradd"]
    env = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
    assert env["NODE_EXTRA_CA_CERTS"] == env["npm_config_cafile"] == IMAGE_CA_BUNDLE
    assert client.images.get(reference).labels[BOOTSTRAP_LABEL] == "1"


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_npm_pnpm_and_yarn_reach_the_registry_through_the_ca_bundle(
    client: docker.DockerClient, kind: ImageKind,
) -> None:
    reference = kind.reference(REPOSITORY)
    require_image(client, reference)

    # npm itself (npm_config_cafile), then pnpm and Yarn Berry installed as
    # the rendered Dockerfiles do, fetching with Node's own HTTPS client
    # (NODE_EXTRA_CA_CERTS). Corepack is not used: its signature check fails.
    output = run(client, reference, [
        "sh", "-c",
        "npm view ms@2.1.3 version"
        " && npm install --global --silent pnpm@9.15.9 @yarnpkg/cli-dist@4.1.1 >/dev/null"
        " && cd /tmp"
        " && echo '{\"name\": \"x\", \"dependencies\": {\"ms\": \"2.1.3\"}}' > package.json"
        " && pnpm install --silent && ls node_modules && rm -rf node_modules pnpm-lock.yaml"
        " && touch yarn.lock && YARN_ENABLE_TELEMETRY=0 yarn install >/dev/null"
        " && YARN_ENABLE_TELEMETRY=0 yarn node -p 'require(\"ms\")(60000)'",
    ], timeout=300)

    assert output.split() == ["2.1.3", "ms", "1m"]


@pytest.mark.parametrize("base", DEBIAN_BASES)
def test_debian_base_trusts_the_host_bundle(client: docker.DockerClient, base) -> None:
    reference = base.reference(REPOSITORY)
    require_image(client, reference)

    output = run(client, reference,
                 ["sh", "-c", 'test -s "$SSL_CERT_FILE" && echo "$SSL_CERT_FILE"'])

    assert output.strip() == IMAGE_CA_BUNDLE


def test_a_repeat_run_skips_the_images_that_exist(
    client: docker.DockerClient, tmp_path: Path,
) -> None:
    wanted = resolve_kinds(DEFAULT_KINDS)
    references = [kind.base.reference(REPOSITORY) for kind in wanted]
    references += [kind.reference(REPOSITORY) for kind in wanted]
    digest = hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()
    for reference in references:
        require_image(client, reference)
        if client.images.get(reference).labels.get(CA_LABEL) != digest:
            pytest.skip(f"{reference} trusts another CA bundle: a run would rebuild it")
    lines: list[str] = []

    built = bootstrap_images(client, repository=REPOSITORY, workdir=tmp_path,
                             log=lines.append)

    assert built == []
    assert lines == [f"{reference} exists; skipping (force rebuilds it)"
                     for reference in dict.fromkeys(references)]


def test_postgres_image_initialises_and_accepts_a_password(
    client: docker.DockerClient,
) -> None:
    reference = POSTGRES.reference(REPOSITORY)
    require_image(client, reference)
    suffix = uuid.uuid4().hex[:8]
    network = client.networks.create(f"slipway-test-{suffix}", labels={TEST_LABEL: TEST_RUN})
    password = "p'a$s \"w"
    server = client.containers.run(
        reference, detach=True, name=f"slipway-test-pg-{suffix}", network=network.name,
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_USER": "app",
                     "POSTGRES_DB": "appdb"},
        labels={TEST_LABEL: TEST_RUN},
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
    network = client.networks.create(f"slipway-test-{suffix}", labels={TEST_LABEL: TEST_RUN})
    server = client.containers.run(
        reference, ["redis-server", "--save", ""], detach=True,
        name=f"slipway-test-redis-{suffix}", network=network.name, labels={TEST_LABEL: TEST_RUN},
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
