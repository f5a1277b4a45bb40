"""A whole Slipway (`slipway up`) in a temporary home, on free ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from slipway.router.controller import Nginx
from tests.support import TEST_LABEL, TEST_RUN, free_port, wait_for


def base_image_available(language: str) -> bool:
    """Whether Docker has a base image for ``language`` (official or bootstrapped)."""
    # The low-level list: the high-level one inspects each image, and fails when another
    # test run on the same engine removes one meanwhile.
    images = docker.from_env().api.images()
    prefixes = (f"slipway/{language}:", f"{language}:")
    return any(tag.startswith(prefixes) for image in images for tag in image.get("RepoTags") or [])


class Stack:
    @classmethod
    def temporary(cls, prefix: str = "slipway-e2e-", language: str = "python") -> Stack:
        """A stack in a new directory that ``stop()`` removes. Fails the test when
        Docker has no base image to build with."""
        if not base_image_available(language):
            pytest.fail(f"No {language} base image: run ./install.sh (it bootstraps them)")
        root = Path(tempfile.mkdtemp(prefix=prefix))
        stack = cls(root)
        stack.owns_root = True
        return stack

    @classmethod
    @contextlib.contextmanager
    def running(cls, settings: dict[str, str] | None = None, **kwargs: str) -> Iterator[Stack]:
        """A temporary stack (``kwargs`` as for :meth:`temporary`) with ``settings``
        in its environment, started for the block and stopped after it."""
        stack = cls.temporary(**kwargs)
        stack.env.update(settings or {})
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()

    def sign_up(self, email: str) -> str:
        """Create a user and log the CLI (and git) in as them; returns their token."""
        token = self.slipway("users:create", email).stdout.strip()
        assert token.startswith("slp_")
        out = self.slipway("login", "--api-url", self.api_url, "--token", token).stdout
        assert "Logged in" in out
        return token

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.owns_root = False
        self.home = root / "home"
        self.user_home = root / "user"
        self.user_home.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.https_port = free_port()
        self.web_port = free_port()
        self.redis_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "HOME": str(self.user_home),
            "SLIPWAY_HOME": str(self.home),
            "SLIPWAY_HTTP_PORT": str(self.http_port),
            "SLIPWAY_HTTPS_PORT": str(self.https_port),
            # No ACME server is reachable from tests unless one passes its own.
            "SLIPWAY_TLS": "off",
            "SLIPWAY_WEB_PORT": str(self.web_port),
            "SLIPWAY_WEB_HOST": "127.0.0.1",
            "SLIPWAY_WEB_WORKERS": "1",
            "SLIPWAY_HEALTH_TIMEOUT": "20",
            "SLIPWAY_DRAIN_SECONDS": "0.5",
            "SLIPWAY_STOP_TIMEOUT": "2",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "SLIPWAY_LABELS": json.dumps({TEST_LABEL: TEST_RUN}),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
        }
        for key in ("DATABASE_URL", "SLIPWAY_SECRET_KEY", "SLIPWAY_DOMAIN"):
            self.env.pop(key, None)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.auth: dict[str, str] = {}
        self.log = root / "slipway-up.log"

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "slipway", "up"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(self._ready, timeout=60, interval=0.1, message=f"slipway up (see {self.log})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"slipway up exited: {self.log.read_text()[-3000:]}")
        api = requests.get(f"{self.api_url}/api/v1/apps", timeout=2)
        router = requests.get(f"http://127.0.0.1:{self.http_port}/.slipway/router/generation",
                              timeout=2)
        return api.status_code == 401 and router.status_code == 200

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # nginx daemonises out of the process group: stop it by its pid file too.
        Nginx(self.home / "router", self.http_port).stop()
        # Slipway's parts run in process groups of their own: whatever of this stack is
        # still alive (after a test killed `slipway up` itself, say) goes by its pid.
        for pid in processes_of(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cleanup_docker()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def slipway(self, *args: str, input: str | None = None, cwd: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "slipway", *args], env=self.env,
                                text=True, capture_output=True, input=input, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"slipway {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def git(self, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], env=self.env, cwd=cwd, text=True,
                                capture_output=True)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def fetch(self, app: str, path: str = "/") -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}",
                            headers={"Host": f"{app}.localhost"}, timeout=5)


def processes_of(home: Path) -> list[int]:
    """Pids of the live processes whose environment has SLIPWAY_HOME=``home``."""
    wanted = f"SLIPWAY_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def cleanup_docker() -> None:
    """Remove every container, network and image the tests labelled."""
    client = docker.from_env()
    label = {"label": f"{TEST_LABEL}={TEST_RUN}"}
    for container in client.containers.list(all=True, filters=label, sparse=True):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters=label):
        network.remove()
    # Capsules keep their data in named volumes.
    for volume in client.volumes.list(filters=label):
        try:
            volume.remove(force=True)
        except docker.errors.APIError:
            pass
    for image in client.images.list(filters=label):
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.APIError:
            pass
