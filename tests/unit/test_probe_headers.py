"""The health probe asks as users ask: the app's own host and the router's proxy headers."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import pytest

from slipway.config import Settings
from slipway.platform import certificates, healthchecks, runtime
from slipway.platform.errors import DeployFailed
from slipway.platform.healthchecks import Front, HealthCheck
from slipway.router.certs import self_signed_pem

HOST = "shop.apps.example.com"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's headers; answers as a host-checking framework does:
    400 to any Host but the app's own, 500 when told the request came over plain
    HTTP (``status`` answers otherwise)."""

    seen: list[list[tuple[str, str]]] = []
    status = 200

    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.seen.append(list(self.headers.items()))
        if self.headers.get("Host", "").split(":")[0] != HOST:
            status = 400
        elif self.headers.get("X-Forwarded-Proto") != "https":
            status = 500
        else:
            status = self.status
        body = b"ok" if status == 200 else b"no"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen, Recorder.status = [], 200
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


DEFAULT = HealthCheck(path="/", timeout=2, attempts=2, wait=0, any_status=True)


def test_the_probe_sends_the_router_headers_for_the_apps_own_host(server):
    front = Front(host=HOST, port=443, https=True)
    assert runtime.probe(server, DEFAULT, front) == (True, None)
    [headers] = Recorder.seen
    request_id = dict(headers)["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    # Exactly these, each once (http.client puts them in its own order).
    assert sorted(headers) == sorted([
        ("Host", HOST),
        ("Accept-Encoding", "identity"),
        ("User-Agent", "slipway-healthcheck"),
        ("X-Real-IP", "127.0.0.1"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", HOST),
        ("X-Forwarded-Port", "443"),
        ("X-Request-Id", request_id),
    ])
    runtime.probe(server, DEFAULT, front)
    assert dict(Recorder.seen[1])["X-Request-Id"] != request_id  # one per request


def test_over_http_on_another_port_the_host_carries_the_port(server):
    front = Front(host=HOST, port=8080, https=False)
    assert runtime.probe(server, DEFAULT, front) == (True, "answered 500")
    headers = dict(Recorder.seen[0])
    assert headers["Host"] == headers["X-Forwarded-Host"] == f"{HOST}:8080"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Port"] == "8080"


def test_without_the_apps_host_a_host_checking_app_looks_healthy(server):
    # What the probe did before: the container's IP as Host, a 400 that passed.
    assert runtime.probe(server, DEFAULT) == (True, None)
    assert dict(Recorder.seen[0])["Host"] == server


def test_the_front_of_an_app_is_its_default_host_over_http_until_it_has_a_certificate(
        tmp_path):
    settings = Settings(home=tmp_path, domain="apps.example.com", http_port=8080,
                        https_port=8443, tls="internal")
    assert healthchecks.front(settings, "shop") == Front(HOST, 8080, https=False)
    key, cert = self_signed_pem(HOST)
    certificates.store(settings).save(HOST, key, cert)
    assert healthchecks.front(settings, "shop") == Front(HOST, 8443, https=True)
    off = settings.model_copy(update={"tls": "off"})
    assert healthchecks.front(off, "shop") == Front(HOST, 8080, https=False)


@pytest.mark.parametrize(("front", "host"), [
    (Front(HOST, 80, https=False), HOST),
    (Front(HOST, 443, https=True), HOST),
    (Front(HOST, 443, https=False), f"{HOST}:443"),
    (Front(HOST, 8443, https=True), f"{HOST}:8443"),
])
def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes(front, host):
    assert front.http_host == host


class FakeApi:
    def logs(self, container_id, **kwargs):
        return b"Internal Server Error: /\nTraceback: boom\n"

    def inspect_container(self, container_id):
        return {"State": {"Status": "running"}}


class FakeClient:
    api = FakeApi()


def test_a_5xx_to_the_apps_own_host_fails_the_deploy_with_the_apps_last_lines(server):
    Recorder.status = 500
    front = Front(host=HOST, port=443, https=True)
    with pytest.raises(DeployFailed) as info:
        runtime.wait_healthy(FakeClient(), "c1", server, DEFAULT, timeout=5, interval=0.01,
                             front=front)
    assert info.value.message == (
        "Health check GET / failed 2 time(s), last: answered 500 "
        f"(asked with Host {HOST}, X-Forwarded-Proto https)\n"
        "Last lines of its output:\nInternal Server Error: /\nTraceback: boom")


def test_a_4xx_to_the_apps_own_host_passes_the_default_check(server):
    Recorder.status = 404  # an app without a page at /
    front = Front(host=HOST, port=443, https=True)
    assert runtime.wait_healthy(FakeClient(), "c1", server, DEFAULT, timeout=5,
                                interval=0.01, front=front) >= 0
    # A declared (app.json) check keeps Dokku's rule: 2xx or 3xx only.
    declared = HealthCheck(path="/", timeout=2, attempts=1, wait=0)
    assert runtime.probe(server, declared, front) == (True, "answered 404")
