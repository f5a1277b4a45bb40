"""The router against a real nginx (and a real Redis): routes answer, switches are
clean, bad tables never replace good ones, nginx always stops."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from cryptography import x509

from slipway.router.certs import CertificateStore, InternalCA, new_key_pem
from slipway.router.controller import Nginx, _children, _shutting_down, lua_modules_installed
from slipway.router.daemon import run_router
from slipway.router.errors import (
    ApplyFailedError,
    ApplyTimeoutError,
    ConfigRejectedError,
    InvalidRouteError,
    NginxError,
)
from slipway.router.nginx import CERTIFICATES_PATH
from slipway.router.publish import publish_routes, wait_applied
from slipway.router.routes import (
    APPLIED_KEY,
    ERROR_KEY,
    GENERATION_KEY,
    ROUTES_CHANNEL,
    ROUTES_KEY,
    HostCertificate,
    Route,
    RouteTable,
)
from tests.support import free_port, start_redis, stop_process, wait_for

needs_lua = pytest.mark.skipif(not lua_modules_installed(),
                               reason="libnginx-mod-http-lua is not installed")

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ROUTER_KEYS = (ROUTES_KEY, APPLIED_KEY, GENERATION_KEY, ERROR_KEY)

if shutil.which("nginx") is None:  # pragma: no cover - the install script provides it
    pytest.skip("nginx is not installed", allow_module_level=True)


# --- a tiny upstream app ----------------------------------------------------------


class Upstream:
    """An HTTP server on a free loopback port that says who it is and what it got."""

    def __init__(self, name: str) -> None:
        self.name = name
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's
            # algorithm and delayed ACKs add 40 ms to every kept-alive request.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self._websocket()
                else:
                    self._answer(b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer(body)

            def _answer(self, body: bytes) -> None:
                payload = json.dumps({
                    "name": upstream.name, "method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body_length": len(body),
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _websocket(self) -> None:
                # Not real websocket framing: enough to prove the upgrade is tunnelled.
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.end_headers()
                self.wfile.flush()
                while chunk := self.connection.recv(1024):
                    self.connection.sendall(upstream.name.encode() + b":" + chunk)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def upstreams() -> Iterator:
    made: list[Upstream] = []

    def make(name: str) -> Upstream:
        made.append(Upstream(name))
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Private (0700, as mkdtemp makes it), like SLIPWAY_HOME: nginx's workers
    # (nobody, when the tests run as root) never need to enter it.
    path = Path(tempfile.mkdtemp(prefix="slipway-router-test-"))
    yield path / "router"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx(state_dir) -> Iterator[Nginx]:
    server = Nginx(state_dir, free_port(), reload_timeout=10.0)
    yield server
    server.stop()
    assert not server.running()


def get(server: Nginx, host: str, path: str = "/", **kwargs) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{server.http_port}{path}",
                        headers={"Host": host}, timeout=5, **kwargs)


def route(app: str, hosts: tuple[str, ...], *ups: Upstream | str) -> Route:
    return Route(app=app, hosts=hosts,
                 upstreams=tuple(u if isinstance(u, str) else u.address for u in ups))


def port_refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


# --- the controller -------------------------------------------------------------------


def test_route_answers_with_proxy_headers_and_unknown_hosts_get_404(nginx, upstreams):
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("web.localhost", "www.example.com"), web),)))

    answer = get(nginx, "web.localhost", "/some/path?q=1")
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["name"] == "web"
    assert seen["path"] == "/some/path?q=1"
    headers = seen["headers"]
    assert headers["host"] == "web.localhost"
    assert headers["x-forwarded-host"] == "web.localhost"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(nginx.http_port)
    assert len(headers["x-request-id"]) == 32
    assert get(nginx, "www.example.com").json()["name"] == "web"

    unknown = get(nginx, "nope.localhost")
    assert unknown.status_code == 404
    assert unknown.text == "No app is configured for this host.\n"
    assert unknown.headers["Content-Type"] == "text/plain"

    probe = get(nginx, "_", "/.slipway/router/generation")
    assert (probe.status_code, probe.text) == (200, "1\n")
    assert nginx.served_generation() == 1
    # On a route's host the path belongs to the app, not to the router.
    assert get(nginx, "web.localhost", "/.slipway/router/generation").json()["name"] == "web"


def test_apply_switches_to_the_new_upstream_and_old_workers_stop_answering(nginx, upstreams):
    blue, green = upstreams("blue"), upstreams("green")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), blue),)))
    assert get(nginx, "web.localhost").json()["name"] == "blue"

    seconds = nginx.apply(RouteTable(2, (route("web", ("web.localhost",), green),)))

    assert 0 < seconds < 2
    assert set(nginx.last_timings) == {"render", "check", "reload", "total"}
    # Once apply() returns, no fresh connection may reach the old config.
    names = {get(nginx, "web.localhost").json()["name"] for _ in range(20)}
    assert names == {"green"}
    assert get(nginx, "_", "/.slipway/router/generation").text == "2\n"
    # nginx lets old workers accept for ~100 ms after a reload; probe hard in that window.
    for generation in range(3, 6):
        nginx.apply(RouteTable(generation, (route("web", ("web.localhost",), green),)))
        until = time.monotonic() + 0.15
        answers = set()
        while time.monotonic() < until:
            answers.add(nginx.served_generation())
        assert answers == {generation}


def test_apply_adds_and_removes_routes(nginx, upstreams):
    web, api = upstreams("web"), upstreams("api")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    nginx.apply(RouteTable(2, (route("api", ("api.localhost",), api),)))
    assert get(nginx, "api.localhost").json()["name"] == "api"
    assert get(nginx, "web.localhost").status_code == 404


def test_dead_upstream_in_a_group_is_skipped(nginx, upstreams):
    alive = upstreams("alive")
    dead = f"127.0.0.1:{free_port()}"
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), dead, alive),)))
    for _ in range(10):
        answer = get(nginx, "web.localhost")
        assert answer.status_code == 200
        assert answer.json()["name"] == "alive"


def test_app_without_upstreams_answers_503(nginx):
    nginx.start(RouteTable(1, (Route("idle", ("idle.localhost",), ()),)))
    answer = get(nginx, "idle.localhost")
    assert (answer.status_code, answer.text) == (503, "The app idle has no running web process.\n")


def test_large_request_body_reaches_the_app(nginx, upstreams):
    # Bodies over 16 KiB are buffered by the workers in the runtime dir: this fails
    # if they cannot reach it (the state dir is 0700 and not theirs).
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    body = os.urandom(3 * 1024 * 1024)
    answer = requests.post(f"http://127.0.0.1:{nginx.http_port}/upload", data=body,
                           headers={"Host": "web.localhost"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["body_length"] == len(body)


def test_websocket_upgrade_is_tunnelled(nginx, upstreams):
    web = upstreams("ws")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    with socket.create_connection(("127.0.0.1", nginx.http_port), timeout=5) as sock:
        sock.sendall(b"GET /socket HTTP/1.1\r\nHost: web.localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1024)
            assert chunk, f"connection closed after {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: websocket" in head.lower()
        sock.sendall(b"hello")
        echoed = head.split(b"\r\n\r\n", 1)[1]
        while len(echoed) < len(b"ws:hello"):
            echoed += sock.recv(1024)
        assert echoed == b"ws:hello"


def test_table_that_fails_nginx_check_keeps_the_old_config_serving(nginx, upstreams):
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    live = nginx.paths.conf.read_bytes()

    # Valid by our rules, but nginx can't resolve the upstream: `nginx -t` fails.
    bad = RouteTable(2, (route("web", ("web.localhost",), "nonexistent.invalid:8000"),))
    with pytest.raises(ConfigRejectedError) as caught:
        nginx.apply(bad)

    assert caught.value.message.startswith(
        'nginx rejected the configuration: [emerg] host not found in upstream '
        '"nonexistent.invalid:8000" in '
    )
    assert "test failed" in caught.value.detail
    assert nginx.paths.conf.read_bytes() == live
    assert not list(nginx.state_dir.glob("*.tmp"))
    assert get(nginx, "web.localhost").json()["name"] == "web"
    assert nginx.served_generation() == 1


def test_broken_render_is_rejected_and_the_old_config_kept(state_dir, upstreams):
    class Broken(Nginx):
        broken = False

        def render(self, table: RouteTable) -> str:
            text = super().render(table)
            return text.replace("worker_processes auto;", "worker_processes auto") \
                if self.broken else text

    web = upstreams("web")
    server = Broken(state_dir, free_port())
    try:
        server.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
        server.broken = True
        with pytest.raises(ConfigRejectedError, match=r"\[emerg\] .*worker_processes"):
            server.apply(RouteTable(2, ()))
        assert get(server, "web.localhost").json()["name"] == "web"
        assert server.served_generation() == 1
        assert not list(server.state_dir.glob("*.tmp"))
    finally:
        server.stop()


def test_invalid_route_raises_before_anything_is_written(nginx, upstreams):
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    live = nginx.paths.conf.read_bytes()
    with pytest.raises(InvalidRouteError) as caught:
        nginx.apply(RouteTable(2, (route("web", ("web.localhost;\n}",), web),)))
    assert caught.value.field == "routes[0].hosts[0]"
    assert nginx.paths.conf.read_bytes() == live
    assert get(nginx, "web.localhost").status_code == 200


def test_start_with_a_taken_port_fails_cleanly(state_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = Nginx(state_dir, holder.getsockname()[1], listen_address="127.0.0.1")
        with pytest.raises(NginxError) as caught:
            server.start(RouteTable(0, ()))
        assert "Address already in use" in caught.value.message
        assert not server.running()


def test_missing_binary_is_a_clear_error(state_dir):
    server = Nginx(state_dir, free_port(), binary="/nonexistent/nginx")
    with pytest.raises(NginxError, match="nginx binary not found: '/nonexistent/nginx'"):
        server.start(RouteTable(0, ()))


def test_a_killed_controller_leaves_nginx_adoptable_and_stoppable(state_dir, upstreams):
    port = free_port()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from slipway.router.controller import Nginx\n"
        "from slipway.router.routes import RouteTable\n"
        "Nginx(Path(sys.argv[1]), int(sys.argv[2])).start(RouteTable(5, ()))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    controller = subprocess.Popen(
        [sys.executable, "-c", script, str(state_dir), str(port)], cwd=REPO,
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    server = Nginx(state_dir, port)
    try:
        assert controller.stdout.readline().strip() == "started"
        controller.send_signal(signal.SIGKILL)
        controller.wait(10)

        assert server.running()
        assert server.served_generation() == 5
        master = server.pid()
        web = upstreams("web")
        server.start(RouteTable(6, (route("web", ("web.localhost",), web),)))  # adopts
        assert server.pid() == master
        assert get(server, "web.localhost").json()["name"] == "web"

        server.stop()
        assert not server.running()
        assert not server.paths.pid.exists()
        assert port_refuses(port)
    finally:
        stop_process(controller)
        controller.stdout.close()
        server.stop()



# --- dynamic upstreams (Lua balancer) and the static fallback --------------------------


def workers(server: Nginx) -> set[int]:
    """The workers that accept connections (an old one may linger, shutting down)."""
    pid = server.pid()
    assert pid is not None
    return {worker for worker in _children(pid) if not _shutting_down(worker)}


@needs_lua
def test_upstream_only_change_switches_without_a_reload(nginx, upstreams):
    blue, green, spare = upstreams("blue"), upstreams("green"), upstreams("spare")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), blue),)))
    assert nginx.dynamic
    before = workers(nginx)
    conf = nginx.paths.conf.read_bytes()

    nginx.apply(RouteTable(2, (route("web", ("web.localhost",), green),)))

    assert nginx.last_switch == "post"
    assert workers(nginx) == before
    assert nginx.paths.conf.read_bytes() == conf
    assert {get(nginx, "web.localhost").json()["name"] for _ in range(10)} == {"green"}
    assert nginx.served_generation() == 2
    # Scaling is an address change too: both are served, round robin.
    nginx.apply(RouteTable(3, (route("web", ("web.localhost",), green, spare),)))
    assert nginx.last_switch == "post"
    assert {get(nginx, "web.localhost").json()["name"] for _ in range(10)} == {"green", "spare"}
    assert workers(nginx) == before


@needs_lua
def test_keep_alive_connection_survives_upstream_switches(nginx, upstreams):
    blue, green = upstreams("blue"), upstreams("green")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), blue),)))
    conn = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
    try:
        conn.connect()
        sock = conn.sock
        expected = "blue"
        for generation in range(2, 7):
            for _ in range(3):
                conn.request("GET", "/", headers={"Host": "web.localhost"})
                answer = conn.getresponse()
                assert answer.status == 200
                assert json.loads(answer.read())["name"] == expected
                assert conn.sock is sock, "nginx closed the kept-alive connection"
            expected = "green" if expected == "blue" else "blue"
            target = green if expected == "green" else blue
            nginx.apply(RouteTable(generation, (route("web", ("web.localhost",), target),)))
            assert nginx.last_switch == "post"
    finally:
        conn.close()


@needs_lua
def test_adding_an_app_reloads_with_its_addresses_in_place(nginx, upstreams):
    web, api = upstreams("web"), upstreams("api")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    before = workers(nginx)

    nginx.apply(RouteTable(2, (route("web", ("web.localhost",), web),
                               route("api", ("api.localhost",), api))))

    assert nginx.last_switch == "reload"
    assert workers(nginx).isdisjoint(before)
    assert get(nginx, "api.localhost").json()["name"] == "api"
    assert get(nginx, "web.localhost").json()["name"] == "web"
    assert nginx.served_generation() == 2
    # Scaling to zero changes the config (a 503 page); back up again too.
    nginx.apply(RouteTable(3, (Route("web", ("web.localhost",), ()),
                               route("api", ("api.localhost",), api))))
    assert nginx.last_switch == "reload"
    assert get(nginx, "web.localhost").status_code == 503


@needs_lua
def test_hosts_spelled_like_map_parameters_are_routed(nginx, upstreams):
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("include", "default", "volatile"), web),)))
    assert {get(nginx, host).json()["name"] for host in ("include", "default", "volatile")} \
        == {"web"}
    assert get(nginx, "other.localhost").status_code == 404


@needs_lua
def test_control_socket_is_private_and_refuses_a_bad_table(nginx, upstreams):
    web = upstreams("web")
    nginx.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    assert nginx.paths.control.stat().st_mode & 0o777 == 0o700

    for body in ("slipway-upstreams 1\ngeneration 9\nconfig 1\napp web 127.0.0.1:99999\n",
                 "slipway-upstreams 1\ngeneration 9\nconfig 1\napp Web 127.0.0.1:80\n",
                 "slipway-upstreams 1\ngeneration 9\napp web 127.0.0.1:80\n",
                 "generation 9\nconfig 1\n"):
        with pytest.raises(NginxError, match=r"refused the upstream table \(400\)"):
            nginx._post_text(body)
    assert get(nginx, "web.localhost").json()["name"] == "web"
    assert nginx.served_generation() == 1
    # A table that leaves a routed app without addresses: its requests get a 502.
    nginx._post_text("slipway-upstreams 1\ngeneration 2\nconfig 1\napp web\n")
    assert get(nginx, "web.localhost").status_code == 502
    assert nginx.served_generation() == 2


def test_static_mode_reloads_for_an_address_change(state_dir, upstreams):
    blue, green = upstreams("blue"), upstreams("green")
    server = Nginx(state_dir, free_port(), dynamic=False)
    try:
        server.start(RouteTable(1, (route("web", ("web.localhost",), blue),)))
        assert "lua" not in server.paths.conf.read_text()
        before = workers(server)
        server.apply(RouteTable(2, (route("web", ("web.localhost",), green),)))
        assert server.last_switch == "reload"
        assert workers(server).isdisjoint(before)
        assert get(server, "web.localhost").json()["name"] == "green"
        assert server.served_generation() == 2
    finally:
        server.stop()


@needs_lua
def test_auto_mode_falls_back_to_static_when_nginx_refuses_the_module(state_dir, upstreams):
    class NoLua(Nginx):
        def render(self, table: RouteTable) -> str:
            # As if the module file were there but unusable (e.g. built for another nginx).
            return super().render(table).replace("ngx_http_lua_module.so", "missing.so")

    web = upstreams("web")
    server = NoLua(state_dir, free_port())
    try:
        server.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
        assert not server.dynamic
        assert get(server, "web.localhost").json()["name"] == "web"
        server.apply(RouteTable(2, (route("web", ("web.localhost",), upstreams("new")),)))
        assert server.last_switch == "reload"
        assert get(server, "web.localhost").json()["name"] == "new"
    finally:
        server.stop()


@needs_lua
def test_dynamic_controller_adopts_a_static_nginx(state_dir, upstreams):
    web = upstreams("web")
    port = free_port()
    static = Nginx(state_dir, port, dynamic=False)
    static.start(RouteTable(1, (route("web", ("web.localhost",), web),)))
    server = Nginx(state_dir, port, dynamic=True)
    try:
        server.start(RouteTable(2, (route("web", ("web.localhost",), web),)))
        assert server.last_switch == "reload"
        assert get(server, "web.localhost").json()["name"] == "web"
        assert server.served_generation() == 2
        server.apply(RouteTable(3, (route("web", ("web.localhost",), upstreams("new")),)))
        assert server.last_switch == "post"
        assert get(server, "web.localhost").json()["name"] == "new"
    finally:
        server.stop()

# --- TLS with dynamic upstreams: certificates posted, picked by SNI -----------------


class Certificates:
    """An internal CA and a store under ``root``: issue() (re)writes a host's files."""

    def __init__(self, root: Path) -> None:
        self.ca = InternalCA(root / "ca")
        self.store = CertificateStore(root / "certs")

    def issue(self, host: str) -> HostCertificate:
        key = new_key_pem()
        saved = self.store.save(host, key, self.ca.issue(host, key))
        return HostCertificate(host, str(saved.certificate), str(saved.key))


@pytest.fixture
def certificates(state_dir) -> Certificates:
    return Certificates(state_dir.parent / "tls")


@pytest.fixture
def tls_nginx(state_dir) -> Iterator[Nginx]:
    server = Nginx(state_dir, free_port(), https_port=free_port(), dynamic=True)
    yield server
    server.stop()


def tls_get(server: Nginx, certificates: Certificates, host: str,
            header_host: str | None = None) -> tuple[dict, int, str]:
    """GET / over verified HTTPS with SNI ``host`` (and Host ``header_host``, by default
    the same): (JSON body, certificate serial, HSTS); a body that is not JSON is
    returned as {"status": ..., "text": ...}."""
    context = ssl.create_default_context(cafile=str(certificates.ca.certificate_path))
    with socket.create_connection(("127.0.0.1", server.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as sock:
        serial = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {header_host or host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        text = response.read().decode()
        body = json.loads(text) if response.status == 200 else {
            "status": response.status, "text": text}
        return body, serial, response.getheader("Strict-Transport-Security", "")


def handshake_fails(server: Nginx, host: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.https_port), timeout=5) as raw:
        try:
            context.wrap_socket(raw, server_hostname=host).close()
        except (ssl.SSLError, ConnectionResetError):
            return True
    return False


@needs_lua
def test_certificates_are_posted_and_a_renewal_needs_no_reload(tls_nginx, certificates,
                                                               upstreams):
    web, api = upstreams("web"), upstreams("api")
    first = certificates.issue("web.test")
    hosts = ("web.test", "plain.test")
    tls_nginx.start(RouteTable(1, (Route("web", hosts, (web.address,), (first,), hsts=True),)))
    conf = tls_nginx.paths.conf.read_text()
    assert first.certificate not in conf and "ssl_certificate_by_lua_block" in conf
    body, serial, hsts = tls_get(tls_nginx, certificates, "web.test")
    assert body["name"] == "web" and hsts == "max-age=31536000"
    assert get(tls_nginx, "web.test", allow_redirects=False).status_code == 301
    assert get(tls_nginx, "plain.test").json()["name"] == "web"

    before = workers(tls_nginx)
    renewed = certificates.issue("web.test")  # same paths, new files
    assert renewed == first
    tls_nginx.apply(RouteTable(2, (Route("web", hosts, (web.address,), (renewed,), hsts=True),)))
    assert tls_nginx.last_switch == "post"
    assert workers(tls_nginx) == before
    body, new_serial, _ = tls_get(tls_nginx, certificates, "web.test")
    assert new_serial != serial

    # A second app: its own certificate, no HSTS; the first keeps its own.
    table = (Route("web", hosts, (web.address,), (renewed,), hsts=True),
             Route("api", ("api.test",), (api.address,), (certificates.issue("api.test"),)))
    tls_nginx.apply(RouteTable(3, table))
    assert tls_nginx.last_switch == "reload"
    body, _, hsts = tls_get(tls_nginx, certificates, "api.test")
    assert body["name"] == "api" and hsts == ""
    assert tls_get(tls_nginx, certificates, "web.test")[1] == new_serial

    # A Host no app has, over a good handshake, gets the unknown-host page.
    assert tls_get(tls_nginx, certificates, "api.test", "other.test")[0] == {
        "status": 404, "text": "No app is configured for this host.\n"}
    # A name without a certificate ends the handshake: the placeholder is never served.
    assert handshake_fails(tls_nginx, "unknown.test")
    assert handshake_fails(tls_nginx, "plain.test")
    # A host that loses its certificate is plain HTTP again, and its certificate is dropped.
    tls_nginx.apply(RouteTable(4, (Route("web", hosts, (web.address,)), table[1])))
    assert handshake_fails(tls_nginx, "web.test")
    assert get(tls_nginx, "web.test").json()["name"] == "web"


@needs_lua
def test_control_socket_refuses_a_bad_certificate_set(tls_nginx, certificates, upstreams):
    web = upstreams("web")
    cert = certificates.issue("web.test")
    tls_nginx.start(RouteTable(1, (Route("web", ("web.test",), (web.address,), (cert,)),)))
    good = base64.b64encode(Path(cert.certificate).read_bytes()).decode()
    key = base64.b64encode(Path(cert.key).read_bytes()).decode()
    junk = base64.b64encode(b"not a certificate\n").decode()
    for body in (f"slipway-certificates 1\nset web.test {junk} {key}\n",
                 f"slipway-certificates 1\nset web.test {good} {good}\n",
                 f"slipway-certificates 1\nset Web.test {good} {key}\n",
                 f"slipway-certificates 1\nset web.test {good} !!!\n",
                 f"slipway-certificates 1\nset ../../etc {good} {key}\n",
                 "slipway-certificates 1\nremove web.test\n",
                 f"set web.test {good} {key}\n"):
        with pytest.raises(NginxError, match=r"refused the certificates \(400\)"):
            tls_nginx._post_text(body, CERTIFICATES_PATH)
    assert tls_get(tls_nginx, certificates, "web.test")[0]["name"] == "web"
    # Armour around junk passes the post (parsing is left to the handshake), and
    # fails that host's handshakes only, until a good pair replaces it.
    armoured = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnope\n").decode()
    tls_nginx._post_text(f"slipway-certificates 1\nset web.test {armoured} {key}\n",
                         CERTIFICATES_PATH)
    assert handshake_fails(tls_nginx, "web.test")
    tls_nginx._post_text(f"slipway-certificates 1\nset web.test {good} {key}\n",
                         CERTIFICATES_PATH)
    assert tls_get(tls_nginx, certificates, "web.test")[0]["name"] == "web"


@needs_lua
def test_an_adopting_controller_drops_certificates_of_hosts_gone(state_dir, certificates,
                                                                 upstreams):
    web = upstreams("web")
    ports = free_port(), free_port()
    both = Route("web", ("a.test", "b.test"), (web.address,),
                 (certificates.issue("a.test"), certificates.issue("b.test")))
    first = Nginx(state_dir, ports[0], https_port=ports[1], dynamic=True)
    first.start(RouteTable(1, (both,)))
    assert not handshake_fails(first, "b.test")
    # A new controller (the router restarted) adopts nginx with a table without b.test.
    second = Nginx(state_dir, ports[0], https_port=ports[1], dynamic=True)
    try:
        second.start(RouteTable(2, (Route("web", ("a.test",), (web.address,),
                                          both.certificates[:1]),)))
        assert tls_get(second, certificates, "a.test")[0]["name"] == "web"
        assert handshake_fails(second, "b.test")
    finally:
        second.stop()


def test_stop_is_safe_when_nothing_runs_and_with_a_stale_pid_file(state_dir):
    server = Nginx(state_dir, free_port())
    server.stop()
    state_dir.mkdir(parents=True, exist_ok=True)
    server.paths.pid.write_text(f"{os.getpid()}\n")  # alive, but not an nginx master
    assert not server.running()
    server.stop()
    assert not server.paths.pid.exists()


def test_a_thousand_routes_with_long_names_pass_the_check(nginx):
    def host(i: int) -> str:
        return ".".join([f"{i:04d}" + "a" * 59] * 3 + ["b" * 61])  # 253 characters

    routes = tuple(
        Route(f"app{i}", (host(i), f"app{i}.localhost", f"www.app{i}.localhost"),
              (f"127.0.0.1:{20000 + i}",))
        for i in range(1000)
    )
    nginx.start(RouteTable(1, ()))
    seconds = nginx.apply(RouteTable(2, routes))
    assert seconds < 5
    assert get(nginx, "nope.localhost").status_code == 404
    assert nginx.served_generation() == 2


# --- publisher and daemon over Redis ------------------------------------------------------


@pytest.fixture
def client(redis_url) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    conn.delete(*ROUTER_KEYS)
    yield conn
    conn.delete(*ROUTER_KEYS)
    conn.close()


class RouterThread:
    def __init__(self, redis_url: str, server: Nginx, **kwargs) -> None:
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(redis_url, server), kwargs=kwargs,
                                       daemon=True)
        self.thread.start()

    def _run(self, redis_url: str, server: Nginx, **kwargs) -> None:
        try:
            run_router(redis_url, server, self.stop_event, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def router(redis_url, nginx, client) -> Iterator[RouterThread]:
    running = RouterThread(redis_url, nginx)
    yield running
    running.stop()
    assert not nginx.running()


def test_publish_then_wait_applied_then_served(router, nginx, client, upstreams):
    web = upstreams("web")
    generation = publish_routes(client, [route("web", ("web.localhost",), web)])
    assert generation == 1
    wait_applied(client, generation, timeout=10)
    assert get(nginx, "web.localhost").json()["name"] == "web"
    assert int(client.get(APPLIED_KEY)) == 1

    other = upstreams("other")
    generation = publish_routes(client, [route("web", ("web.localhost",), other)])
    wait_applied(client, generation, timeout=10)
    assert {get(nginx, "web.localhost").json()["name"] for _ in range(20)} == {"other"}


def test_daemon_reports_a_table_nginx_rejects_and_keeps_serving(router, nginx, client, upstreams):
    web = upstreams("web")
    good = publish_routes(client, [route("web", ("web.localhost",), web)])
    wait_applied(client, good, timeout=10)

    # publish_routes would pass this too (it is valid by our rules); nginx -t fails.
    generation = client.incr(GENERATION_KEY)
    bad = RouteTable(generation, (route("web", ("web.localhost",), "nonexistent.invalid:80"),))
    client.set(ROUTES_KEY, bad.to_json())
    client.publish(ROUTES_CHANNEL, bad.to_json())

    with pytest.raises(ApplyFailedError) as caught:
        wait_applied(client, generation, timeout=10)
    assert caught.value.message.startswith(
        f"The router could not apply route table generation {generation}: it failed: "
        "nginx rejected the configuration: [emerg] host not found in upstream "
        '"nonexistent.invalid:80"'
    )
    assert json.loads(client.get(ERROR_KEY))["generation"] == generation
    assert int(client.get(APPLIED_KEY)) == good
    assert get(nginx, "web.localhost").json()["name"] == "web"

    # The next good table goes through.
    fixed = publish_routes(client, [route("web", ("web.localhost", "new.localhost"), web)])
    wait_applied(client, fixed, timeout=10)
    assert get(nginx, "new.localhost").json()["name"] == "web"


def test_daemon_starts_with_the_stored_table(redis_url, nginx, client, upstreams):
    web = upstreams("web")
    generation = publish_routes(client, [route("web", ("web.localhost",), web)])
    running = RouterThread(redis_url, nginx)
    try:
        wait_applied(client, generation, timeout=10)
        assert get(nginx, "web.localhost").json()["name"] == "web"
    finally:
        running.stop()
    assert not nginx.running()


def test_daemon_with_a_bad_stored_table_comes_up_empty_and_recovers(
        redis_url, nginx, client, upstreams):
    bad = RouteTable(1, (route("web", ("web.localhost",), "nonexistent.invalid:80"),))
    client.set(GENERATION_KEY, 1)
    client.set(ROUTES_KEY, bad.to_json())
    running = RouterThread(redis_url, nginx)
    try:
        with pytest.raises(ApplyFailedError, match="host not found in upstream"):
            wait_applied(client, 1, timeout=10)
        wait_for(lambda: nginx.served_generation() == 0, timeout=10, message="empty edge")
        assert get(nginx, "web.localhost").status_code == 404

        # Junk on the channel is logged and ignored; the next good table applies.
        client.publish(ROUTES_CHANNEL, "not json")
        client.publish(ROUTES_CHANNEL, json.dumps({"generation": 99, "routes": "web"}))
        web = upstreams("web")
        generation = publish_routes(client, [route("web", ("web.localhost",), web)])
        wait_applied(client, generation, timeout=10)
        assert get(nginx, "web.localhost").json()["name"] == "web"
        assert nginx.served_generation() == generation == 2
    finally:
        running.stop()


def test_publish_routes_refuses_invalid_routes_and_publishes_nothing(client):
    with pytest.raises(InvalidRouteError) as caught:
        publish_routes(client, [Route("web", ("bad host",), ("127.0.0.1:8000",))])
    assert caught.value.field == "routes[0].hosts[0]"
    assert client.get(GENERATION_KEY) is None
    assert client.get(ROUTES_KEY) is None


def test_wait_applied_times_out_without_a_router(client):
    generation = publish_routes(client, [])
    started = time.monotonic()
    with pytest.raises(ApplyTimeoutError) as caught:
        wait_applied(client, generation, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert caught.value.message == (
        f"The router did not apply route table generation {generation} within 0.3 s "
        "(it last applied none); is `slipway router` running?"
    )


def test_daemon_survives_redis_going_away(tmp_path, nginx, upstreams):
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    running = RouterThread(url, nginx, resync_interval=0.5)
    conn = redis.Redis.from_url(url)
    try:
        web = upstreams("web")
        first = publish_routes(conn, [route("web", ("web.localhost",), web)])
        wait_applied(conn, first, timeout=10)

        stop_process(proc)
        assert get(nginx, "web.localhost").json()["name"] == "web"  # the edge keeps serving

        # A new, empty Redis on the same port (its data is gone, as after a crash).
        proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: conn.ping(), timeout=10, message="restarted redis-server")
        # The router raises the counter to what it serves, so new generations are newer.
        wait_for(lambda: int(conn.get(GENERATION_KEY) or 0) >= first, timeout=20,
                 message="router reconnected")
        other = upstreams("other")
        generation = publish_routes(conn, [route("web", ("web.localhost",), other)])
        assert generation > first
        wait_applied(conn, generation, timeout=10)
        assert get(nginx, "web.localhost").json()["name"] == "other"
    finally:
        running.stop()
        conn.close()
        stop_process(proc)
