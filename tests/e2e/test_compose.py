"""docker-compose.yml: the file parses as intended, and Slipway's image builds.

Uses the Debian `docker-compose` (1.29) that ./install.sh --dev installs. The
build test needs the base image (slipway/python:3.11 from `slipway images
bootstrap`, or SLIPWAY_BASE_IMAGE) and skips without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SLIPWAY_SERVICES = {"web", "worker", "beat", "router"}
SOCKET_MOUNT = "/var/run/docker.sock:/var/run/docker.sock"


@pytest.fixture(scope="module")
def compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./install.sh --dev installs it)")
    return binary


@pytest.fixture
def project() -> str:
    """A compose project name no other test or user shares."""
    return f"slipwaytest{uuid.uuid4().hex[:10]}"


def run_compose(compose: str, project: str, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [compose, "--file", str(COMPOSE_FILE), "--project-name", project, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, (
        f"docker-compose {' '.join(args)} exited {result.returncode}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def resolved_config(compose: str, project: str, settings: dict[str, str]) -> dict:
    """The file as docker-compose resolves it with only ``settings`` set, as plain data.

    The caller's own SLIPWAY_* and POSTGRES_PASSWORD variables are left out so
    the defaults are what is tested. docker-compose prints YAML; Debian's
    docker-compose depends on python3-yaml, so the system Python next to it can
    read it (Slipway itself does not need PyYAML).
    """
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("SLIPWAY_") and name != "POSTGRES_PASSWORD"}
    result = subprocess.run(
        [compose, "--file", str(COMPOSE_FILE), "--project-name", project, "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**environ, **settings},
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    loaded = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=result.stdout, capture_output=True, text=True, check=True, timeout=30,
    )
    return json.loads(loaded.stdout)


def test_config_has_the_services_volumes_and_socket_mount(compose: str, project: str) -> None:
    config = resolved_config(compose, project, {})
    services = config["services"]

    assert set(services) == SLIPWAY_SERVICES | {"redis", "postgres"}
    assert set(config["volumes"]) == {"slipway-home", "postgres-data"}
    for name in SLIPWAY_SERVICES:
        service = services[name]
        assert service["image"] == "slipway/slipway:local"
        assert service["build"]["args"] == {"BASE_IMAGE": "slipway/python:3.11"}
        assert service["command"] == ["slipway", name]
        assert service["network_mode"] == "host"
        assert "slipway-home:/var/lib/slipway:rw" in service["volumes"]
        environment = service["environment"]
        assert environment["SLIPWAY_HOME"] == "/var/lib/slipway"
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["DATABASE_URL"] == (
            "postgresql+psycopg://slipway:slipway@postgres:5432/slipway"
        )
    # Only the worker drives the Docker engine.
    mounts = {name: [m for m in services[name]["volumes"] if "docker.sock" in m]
              for name in SLIPWAY_SERVICES}
    assert mounts == {"web": [], "worker": [f"{SOCKET_MOUNT}:rw"], "beat": [], "router": []}
    assert services["router"]["environment"]["SLIPWAY_HTTP_PORT"] == "80"
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "slipway"


def test_config_takes_images_ports_and_password_from_the_environment(
    compose: str, project: str,
) -> None:
    env = {
        "SLIPWAY_BASE_IMAGE": "python:3.12-slim",
        "SLIPWAY_REDIS_IMAGE": "slipway/redis:7",
        "SLIPWAY_POSTGRES_IMAGE": "slipway/postgres:15",
        "SLIPWAY_HTTP_PORT": "8080",
        "POSTGRES_PASSWORD": "s3cret",
    }

    services = resolved_config(compose, project, env)["services"]

    assert services["web"]["build"]["args"] == {"BASE_IMAGE": "python:3.12-slim"}
    assert services["redis"]["image"] == "slipway/redis:7"
    assert services["postgres"]["image"] == "slipway/postgres:15"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["router"]["environment"]["SLIPWAY_HTTP_PORT"] == "8080"
    assert "slipway:s3cret@" in services["worker"]["environment"]["DATABASE_URL"]
    # The capsule image settings reach Slipway when they are set.
    assert services["worker"]["environment"]["SLIPWAY_POSTGRES_IMAGE"] == "slipway/postgres:15"


@pytest.fixture
def built_image(compose: str, project: str) -> Iterator[dict[str, str]]:
    """Build Slipway's image under a throwaway tag; remove everything afterwards."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    base = os.environ.get("SLIPWAY_BASE_IMAGE", "slipway/python:3.11")
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {base} is not here (slipway images bootstrap builds it)")
    tag = f"slipway-compose-test/{project}:latest"
    env = {"SLIPWAY_IMAGE": tag, "SLIPWAY_BASE_IMAGE": base}
    try:
        # One build serves all four services: they share the image tag.
        run_compose(compose, project, "build", "web", env=env, timeout=900)
        yield env
    finally:
        subprocess.run(
            [compose, "--file", str(COMPOSE_FILE), "--project-name", project,
             "down", "--volumes", "--rmi", "local", "--remove-orphans"],
            cwd=ROOT, capture_output=True, timeout=120, env={**os.environ, **env},
        )
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
        client.close()


def test_slipway_image_builds_and_runs_the_cli(
    compose: str, project: str, built_image: dict[str, str],
) -> None:
    result = run_compose(
        compose, project, "run", "--rm", "--no-deps", "-T", "web", "slipway", "--help",
        env=built_image,
    )
    assert "Usage: slipway" in result.stdout

    # Installed, not editable: the non-Python files the processes need at run
    # time (migrations, the git hook) must be in the package.
    probe = run_compose(
        compose, project, "run", "--rm", "--no-deps", "-T", "web", "python", "-c",
        "import pathlib, slipway.platform as p; root = pathlib.Path(p.__file__).parent; "
        "print(sorted(str(f.relative_to(root)) for f in root.rglob('*.py')"
        " if f.parent.name in ('versions', 'hooks', 'migrations')))",
        env=built_image,
    )
    packaged = probe.stdout
    assert "migrations/env.py" in packaged
    assert "hooks/pre_receive.py" in packaged
    assert "git version" in run_compose(
        compose, project, "run", "--rm", "--no-deps", "-T", "web", "git", "--version",
        env=built_image,
    ).stdout
