"""Nginx.stop() stops the master whatever became of its pid file: by the pid the
controller recorded, or found in /proc by its config path."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.router.controller import Nginx, _masters_of
from slipway.router.routes import RouteTable
from tests.e2e.test_router import port_refuses
from tests.support import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slipway-nginx-stop-"))
    yield path / "router"
    Nginx(path / "router", free_port()).stop()  # whatever a failed test left
    shutil.rmtree(path, ignore_errors=True)


def test_stop_uses_the_recorded_pid_when_the_pid_file_is_gone(state_dir):
    server = Nginx(state_dir, free_port())
    server.start(RouteTable(1, ()))
    [master] = _masters_of(server.paths.conf)
    assert server.pid() == master
    server.paths.pid.unlink()
    server.stop()
    assert _masters_of(server.paths.conf) == []
    assert port_refuses(server.http_port)


@pytest.mark.parametrize("pid_file", ["missing", "empty", "another process"])
def test_a_new_controller_finds_the_master_by_its_config_path(state_dir, pid_file):
    port = free_port()
    Nginx(state_dir, port).start(RouteTable(1, ()))
    server = Nginx(state_dir, port)  # knows no pid but the file's
    if pid_file == "missing":
        server.paths.pid.unlink()
    else:
        server.paths.pid.write_text("" if pid_file == "empty" else "1\n")
    assert not server.running()
    server.stop()
    assert _masters_of(server.paths.conf) == []
    assert not server.paths.pid.exists()
    assert port_refuses(port)
