"""Health checks: resolved against the settings, and one probe against a real HTTP server."""

import http.server
import threading
from dataclasses import replace

import pytest

from slipway.config import Settings
from slipway.platform import healthchecks, runtime
from slipway.platform.healthchecks import HealthCheck
from tests.support import free_port


def test_declared_checks_get_the_settings_defaults(tmp_path):
    settings = Settings(home=tmp_path, health_request_timeout=3, health_attempts=4,
                        health_wait=0.5)
    resolved = healthchecks.resolve(settings, {"web": [{"path": "/up", "content": "ok"}]})
    assert resolved == {"web": [{"path": "/up", "timeout": 3.0, "attempts": 4, "wait": 0.5,
                                 "initial_delay": 0.0, "content": "ok", "any_status": False}]}


def test_without_declared_checks_the_default_asks_only_for_an_answer(tmp_path):
    settings = Settings(home=tmp_path)
    resolved = healthchecks.resolve(settings, {})
    assert resolved == {"web": [{"path": "/", "timeout": 5.0, "attempts": 5, "wait": 1.0,
                                 "initial_delay": 0.0, "content": None, "any_status": True}]}
    assert healthchecks.web_checks(settings, resolved) == [healthchecks.default_check(settings)]
    assert healthchecks.web_checks(settings, None) == [healthchecks.default_check(settings)]


def test_a_bad_health_path_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match="health_path"):
        Settings(home=tmp_path, health_path="health")


class Handler(http.server.BaseHTTPRequestHandler):
    answers = {"/ok": (200, b"all ok"), "/moved": (302, b""), "/missing": (404, b"no"),
               "/broken": (500, b"boom")}

    def do_GET(self):  # noqa: N802 - the name http.server calls
        status, body = self.answers.get(self.path, (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


CHECK = HealthCheck(path="/ok", timeout=2, attempts=1, wait=0)


@pytest.mark.parametrize(("check", "outcome"), [
    (CHECK, (True, None)),
    (replace(CHECK, path="/moved"), (True, None)),
    (replace(CHECK, content="all ok"), (True, None)),
    (replace(CHECK, content="ready"), (True, "answered 200 without 'ready' in its body")),
    (replace(CHECK, path="/missing"), (True, "answered 404")),
    (replace(CHECK, path="/missing", any_status=True), (True, None)),
    (replace(CHECK, path="/broken", any_status=True), (True, "answered 500")),
])
def test_a_probe_passes_on_2xx_and_3xx_with_the_content(server_port, check, outcome):
    assert runtime.probe(f"127.0.0.1:{server_port}", check) == outcome


def test_a_probe_of_a_closed_port_is_still_booting():
    assert runtime.probe(f"127.0.0.1:{free_port()}", CHECK) == (False, None)


def test_a_connection_closed_without_an_answer_is_still_booting():
    # Docker's port proxy accepts connections before the app listens, then closes them.
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def accept_and_close():
            conn, _ = listener.accept()
            conn.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        assert runtime.probe(f"127.0.0.1:{port}", CHECK) == (False, None)
        thread.join(5)
