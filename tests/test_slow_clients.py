"""Slow clients against the real web process (gunicorn, gthread): one that sends its
body slowly holds one thread at most, and only until SLIPWAY_CLIENT_TIMEOUT."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests

from tests.support import free_port, stop_process, wait_for


@pytest.fixture
def web(tmp_path, redis_url):
    """`slipway web` with two threads and a 2 s client timeout; yields (url, token)."""
    port = free_port()
    env = {**os.environ, "SLIPWAY_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url,
           "SLIPWAY_WEB_PORT": str(port), "SLIPWAY_WEB_HOST": "127.0.0.1",
           "SLIPWAY_WEB_WORKERS": "1", "SLIPWAY_WEB_THREADS": "2",
           "SLIPWAY_CLIENT_TIMEOUT": "2", "SLIPWAY_SECRET_KEY": "test-secret-key"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "slipway", "web"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=30, message="slipway web")
        token = subprocess.run([sys.executable, "-m", "slipway", "users:create",
                                "ada@example.com"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        yield url, token
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/openapi.json", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def slow_client(url: str, token: str) -> socket.socket:
    """A POST that promises 1000 bytes of body and sends 10, then stalls."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                  '{"name": "').encode())
    sock.settimeout(30)
    return sock


def answer_of(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
        if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
            break
    return data


def test_a_slow_client_holds_one_thread_until_the_client_timeout(web):
    url, token = web
    stalled = slow_client(url, token)
    # The other thread serves everyone else meanwhile.
    for _ in range(5):
        response = requests.get(f"{url}/api/v1/apps", timeout=5,
                                headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    answer = answer_of(stalled)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"request_timeout"' in answer
    stalled.close()
    assert requests.get(f"{url}/api/v1/apps", timeout=5,
                        headers={"Authorization": f"Bearer {token}"}).json()["total"] == 0


def test_slow_clients_on_every_thread_do_not_block_the_process_for_good(web):
    url, token = web
    stalled = [slow_client(url, token) for _ in range(3)]
    # Every thread waits on a slow body; within the client timeout they are free again.
    assert wait_for(lambda: _answers(url), timeout=30, interval=0.2,
                    message="an answer while slow clients hold every thread")
    for sock in stalled:
        assert answer_of(sock).startswith(b"HTTP/1.1 408 ")
        sock.close()
