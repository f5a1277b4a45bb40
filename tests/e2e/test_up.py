"""`slipway up` runs every part and stops all of them on SIGTERM."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from slipway.router.controller import Nginx, default_runtime_dir
from tests.e2e.stack import Stack
from tests.support import wait_for

pytestmark = pytest.mark.e2e


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_starts_every_part_and_sigterm_stops_them():
    root = Path(tempfile.mkdtemp(prefix="slipway-up-"))
    root.chmod(0o755)
    stack = Stack(root)
    try:
        stack.start()
        # Its own redis-server (none answered at REDIS_URL), the API and the router.
        ports = (stack.redis_port, stack.web_port, stack.http_port)
        assert all(listening(port) for port in ports)
        secret = stack.home / "secret_key"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert (stack.home / "slipway.db").exists()
        nginx_pid = Nginx(stack.home / "router", stack.http_port).pid()
        assert nginx_pid is not None

        os.killpg(stack.proc.pid, signal.SIGTERM)
        assert stack.proc.wait(30) == 0
        wait_for(lambda: not any(listening(port) for port in ports), timeout=15,
                 message="every port to close")
        wait_for(lambda: not alive(nginx_pid), timeout=10, message="nginx to exit")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_state_files_are_private_after_a_stack_ran():
    # The stack's own directory private too: nothing nginx's workers need is in it.
    root = Path(tempfile.mkdtemp(prefix="slipway-up-private-"))
    stack = Stack(root)
    try:
        stack.start()
        stack.sign_up("dev@example.com")  # the database holds a token hash now
        os.killpg(stack.proc.pid, signal.SIGTERM)
        assert stack.proc.wait(30) == 0  # redis-server saves dump.rdb as it exits
        home = stack.home
        private = {home: 0o700, home / "slipway.db": 0o600, home / "secret_key": 0o600,
                   home / "redis": 0o700, home / "repos": 0o700, home / "builds": 0o700,
                   home / "router": 0o700, home / "router" / "control": 0o700,
                   home / "redis" / "dump.rdb": 0o600}
        assert {path: mode(path) for path in private} == private
        # SQLite's journal files take the database's mode.
        for journal in home.glob("slipway.db-*"):
            assert mode(journal) == 0o600, journal
        # nginx's temp files were never under SLIPWAY_HOME.
        assert not (home / "router" / "temp").exists()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def up_refused(stack: Stack, **env: str) -> subprocess.CompletedProcess:
    """Run `slipway up`, which must exit 1 (within a deadline, not serve forever)."""
    result = subprocess.run([sys.executable, "-m", "slipway", "up"], env={**stack.env, **env},
                            text=True, capture_output=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_up_stops_with_a_clear_message_when_the_router_cannot_serve():
    root = Path(tempfile.mkdtemp(prefix="slipway-up-refused-"))
    stack = Stack(root)
    run = default_runtime_dir(stack.home / "router")
    try:
        missing = up_refused(stack, SLIPWAY_NGINX_BINARY=str(root / "no-nginx"))
        assert missing.stderr.strip().splitlines()[-1] == (
            f"Error: the router cannot start: nginx binary not found: '{root / 'no-nginx'}'")

        # Someone else's directory where nginx's runtime dir belongs.
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(run, nobody.pw_uid, nobody.pw_gid)
        squatted = up_refused(stack)
        assert squatted.stderr.strip().splitlines()[-1] == (
            f"Error: the router cannot start: nginx's runtime directory {run} is not a "
            "directory owned by uid 0; remove it and start again")
        # Stopped before anything started.
        assert not listening(stack.redis_port) and not listening(stack.web_port)
    finally:
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
