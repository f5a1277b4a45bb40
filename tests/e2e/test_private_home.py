"""The router with a private (0700) state directory, as root and as an unprivileged user.

nginx's workers never enter SLIPWAY_HOME: challenge responses reach them over the
control socket (Lua) or from files in the runtime dir (static upstreams), and
request bodies are buffered in the runtime dir, outside SLIPWAY_HOME.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from slipway.router import challenges
from slipway.router.controller import (
    Nginx,
    default_runtime_dir,
    lua_modules_installed,
    post_control,
)
from slipway.router.errors import NginxError
from slipway.router.nginx import CHALLENGES_HEADER, CHALLENGES_PATH
from slipway.router.routes import Route, RouteTable
from tests.e2e.pebble import Pebble
from tests.e2e.test_router import Upstream
from tests.support import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
MODES = [
    pytest.param(True, id="lua", marks=pytest.mark.skipif(
        not lua_modules_installed(), reason="libnginx-mod-http-lua is not installed")),
    pytest.param(False, id="static"),
]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def home() -> Iterator[Path]:
    """A private SLIPWAY_HOME (0700) inside a private directory (0700)."""
    base = Path(tempfile.mkdtemp(prefix="slipway-private-"))
    home = base / "home"
    home.mkdir(mode=0o700)
    yield home
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("dynamic", MODES)
def test_challenges_and_large_bodies_with_a_private_state_dir(home, dynamic):
    upstream = Upstream("app")
    nginx = Nginx(home / "router", free_port(), https_port=free_port(), dynamic=dynamic)
    base = f"http://127.0.0.1:{nginx.http_port}"
    host = {"Host": "app.example.test"}
    try:
        nginx.start(RouteTable(1, (Route("app", ("app.example.test",), (upstream.address,)),)))
        token = "tok_EN-" + "x" * 36
        challenges.publish(nginx.state_dir, token, f"{token}.thumb-print_1")
        answer = requests.get(f"{base}/.well-known/acme-challenge/{token}", headers=host,
                              timeout=5)
        assert (answer.status_code, answer.text) == (200, f"{token}.thumb-print_1")
        # Unknown hosts answer challenges too (the default server).
        answer = requests.get(f"{base}/.well-known/acme-challenge/{token}",
                              headers={"Host": "other.test"}, timeout=5)
        assert answer.status_code == 200
        for bad in ("x" * 15, "a" * 20 + ".b", "a" * 300, "unknown" * 4):
            answer = requests.get(f"{base}/.well-known/acme-challenge/{bad}", headers=host,
                                  timeout=5)
            assert answer.status_code == 404, bad

        # Bodies over nginx's 16 KiB buffer go to a temp file the workers write.
        body = os.urandom(MIB)
        answer = requests.post(f"{base}/upload", data=body, headers=host, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["body_length"] == MIB

        challenges.withdraw(nginx.state_dir, token)
        answer = requests.get(f"{base}/.well-known/acme-challenge/{token}", headers=host,
                              timeout=5)
        assert answer.status_code == 404
        if dynamic:
            # The Lua side checks what it is sent too, whoever sends it.
            for line, error in ((f"set {'a' * 20}/x {'a' * 20}.y", "line 2: bad token"),
                                (f"set {'a' * 20} {'b' * 20}.y", "line 2: bad key authorization"),
                                (f"set {'a' * 20} {'a' * 20}.y;", "line 2: bad key authorization"),
                                (f"get {'a' * 20}", "line 2: unknown line")):
                with pytest.raises(NginxError) as caught:
                    post_control(nginx.paths.control_socket, CHALLENGES_PATH,
                                 f"{CHALLENGES_HEADER}\n{line}\n", "challenge response")
                assert caught.value.message == (
                    f"nginx refused the challenge response (400): {error}")

        # Nothing the workers open lives in the state dir; the runtime dir is outside.
        run = nginx.paths.runtime
        assert not run.is_relative_to(home)
        assert sorted(p.name for p in nginx.state_dir.iterdir()) == [
            "control", "logs", "nginx.conf", "nginx.pid", "tls"]
        assert mode(nginx.paths.control) == 0o700
        assert mode(nginx.paths.placeholder_key) == 0o600
        assert (nginx.paths.challenges.is_dir()) is not dynamic
        if os.geteuid() == 0:
            assert mode(run) == 0o711 and run.stat().st_uid == 0
            body_dir = run / "client_body"
            assert mode(body_dir) == 0o700
            assert pwd.getpwuid(body_dir.stat().st_uid).pw_name == "nobody"
        else:
            assert mode(run) == 0o700
    finally:
        nginx.stop()
        upstream.close()
    assert not nginx.paths.runtime.exists()


@needs_root
def test_a_runtime_dir_someone_else_made_is_refused(home):
    state = home / "router"
    run = default_runtime_dir(state)
    run.mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    nginx = Nginx(state, free_port())
    try:
        with pytest.raises(NginxError) as caught:
            nginx.start(RouteTable(1, ()))
        assert caught.value.message == (
            f"nginx's runtime directory {run} is not a directory owned by uid 0; "
            "remove it and start again")
        assert not nginx.running()
    finally:
        nginx.stop()
        shutil.rmtree(run, ignore_errors=True)


# --- the router as an unprivileged user ---------------------------------------------


@pytest.fixture(scope="module")
def tenant() -> Iterator[pwd.struct_passwd]:
    """A throwaway system user with no home of its own, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    name = f"slipway-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def run_as(user: pwd.struct_passwd, cwd: Path, command: str, args: dict) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.router_as_user", command, json.dumps(args)],
        user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd=cwd, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": str(REPO),
             "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{command} as {user.pw_name}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("dynamic", MODES)
def test_router_as_an_unprivileged_user_with_a_private_home(tenant, dynamic):
    # The user's own 0700 directory, with SLIPWAY_HOME (0700) inside it.
    base = Path(tempfile.mkdtemp(prefix="slipway-tenant-"))
    os.chown(base, tenant.pw_uid, tenant.pw_gid)
    home = base / "slipway"
    home.mkdir(mode=0o700)
    os.chown(home, tenant.pw_uid, tenant.pw_gid)
    pebble_dir = Path(tempfile.mkdtemp(prefix="slipway-tenant-pebble-"))
    http_port, https_port = free_port(), free_port()
    pebble = Pebble(pebble_dir, http_port)
    ca_bundle = base / "pebble-listener-ca.pem"
    shutil.copy(pebble.ca_bundle, ca_bundle)
    os.chown(ca_bundle, tenant.pw_uid, tenant.pw_gid)
    upstream = Upstream("app")
    host = "tenant.example.test"
    args = {"state": str(home / "router"), "certs": str(home / "certs"),
            "http_port": http_port, "https_port": https_port, "dynamic": dynamic,
            "host": host, "upstream": upstream.address, "directory": pebble.directory,
            "ca_bundle": str(ca_bundle)}
    run = default_runtime_dir(home / "router", tenant.pw_uid)
    started = False
    try:
        pebble.start()
        started = True
        out = run_as(tenant, base, "start", args)
        assert json.loads(out.splitlines()[-1]) == {"runtime": str(run)}
        root_ca = pebble_dir / "root.pem"
        root_ca.write_bytes(pebble.root_pem())

        body = pebble_dir / "body"
        body.write_bytes(os.urandom(MIB))
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--resolve", f"{host}:{https_port}:127.0.0.1",
             "--cacert", str(root_ca), "--data-binary", f"@{body}",
             f"https://{host}:{https_port}/upload"],
            capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["body_length"] == MIB

        # Everything nginx runs as, writes and reads belongs to the user.
        pid = int((home / "router" / "nginx.pid").read_text())
        assert Path(f"/proc/{pid}").stat().st_uid == tenant.pw_uid
        for path in (base, home, home / "router", run):
            assert (mode(path), path.stat().st_uid) == (0o700, tenant.pw_uid), path
        assert mode(home / "certs" / host / "privkey.pem") == 0o600
        assert mode(home / "certs" / "account.pem") == 0o600
        assert (run / "client_body").stat().st_uid == tenant.pw_uid

        started = False
        run_as(tenant, base, "stop", args)
        assert not run.exists()
    finally:
        if started:
            run_as(tenant, base, "stop", args)
        Nginx(home / "router", http_port, runtime_dir=run).stop()  # if the user's stop failed
        pebble.stop()
        upstream.close()
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(pebble_dir, ignore_errors=True)
