"""`slipway up` runs every part and stops all of them on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from slipway.router.controller import Nginx
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
