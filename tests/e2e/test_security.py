"""App containers are confined: a root image runs unprivileged, and apps cannot reach
each other (one Docker network per app). Oversized pushes are refused with a clear
message and the running release untouched.

Real parts: `slipway up`, the Docker engine, nginx, git over smart HTTP.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import docker
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

# A Dockerfile without USER: the image would run as root.
DOCKERFILE = textwrap.dedent("""
    FROM slipway/python:3.11
    COPY server.py /srv/server.py
    CMD ["python3", "/srv/server.py"]
""")

SERVER_PY = textwrap.dedent('''
    import http.server
    import os
    import socket
    import urllib.parse


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/probe":
                query = dict(urllib.parse.parse_qsl(url.query))
                try:
                    socket.create_connection((query["host"], int(query["port"])), timeout=2).close()
                    body = "reached"
                except OSError as exc:
                    body = f"blocked: {exc}"
            else:
                body = f"uid={os.getuid()}"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


    http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
''')


PUSH_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def stack():
    with Stack.running({"SLIPWAY_MAX_PUSH_BYTES": str(PUSH_LIMIT)}) as stack:
        stack.sign_up("dev@example.com")
        yield stack


def push_app(stack: Stack, repo: Path, name: str) -> str:
    repo.mkdir()
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "server.py").write_text(SERVER_PY)
    stack.git("init", "-q", "-b", "main", cwd=repo)
    commit(stack, repo, "probe app")
    stack.slipway("apps:create", name, cwd=repo)
    push = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr
    return push.stderr


def web_container(name: str) -> dict:
    client = docker.from_env()
    [container] = client.api.containers(filters={"label": [
        f"{TEST_LABEL}={TEST_RUN}", f"slipway.app-name={name}", "slipway.process=web"]})
    return client.api.inspect_container(container["Id"])


def test_root_images_run_unprivileged_and_apps_cannot_reach_each_other(stack, tmp_path):
    log = push_app(stack, tmp_path / "a", "iso-a")
    assert "The image runs as root: Slipway runs it as uid 10001" in log
    push_app(stack, tmp_path / "b", "iso-b")
    assert stack.fetch("iso-a").text == "uid=10001"

    a, b = web_container("iso-a"), web_container("iso-b")
    assert a["Config"]["User"] == "10001:10001"
    assert a["HostConfig"]["Privileged"] is False and a["HostConfig"]["CapDrop"] == ["ALL"]
    assert not a["Mounts"]
    port = dict(e.split("=", 1) for e in b["Config"]["Env"])["PORT"]
    [(b_network, b_settings)] = b["NetworkSettings"]["Networks"].items()
    assert b_network not in a["NetworkSettings"]["Networks"]

    # The probe itself works: a reaches its own address.
    [a_settings] = a["NetworkSettings"]["Networks"].values()
    own = stack.fetch("iso-a", f"/probe?host={a_settings['IPAddress']}&port={port}").text
    assert own == "reached"
    # b by address and by name: neither is reachable from a.
    for host in (b_settings["IPAddress"], b["Name"].lstrip("/")):
        answer = stack.fetch("iso-a", f"/probe?host={host}&port={port}").text
        assert answer.startswith("blocked"), (host, answer)


@pytest.mark.parametrize(("post_buffer", "content"), [
    ("1m", "random"),  # git sends the pack chunked, without a length
    ("64m", "random"),  # one request with Content-Length
    ("1m", "zeros"),  # a small pack of a tree larger than the limit: the hook refuses it
])
def test_an_oversized_push_is_refused_and_the_release_untouched(stack, tmp_path, post_buffer,
                                                                 content):
    repo = tmp_path / "big"
    name = f"big-{post_buffer}-{content}"
    push_app(stack, repo, name)
    before = stack.git("ls-remote", "slipway", "refs/heads/main", cwd=repo).stdout
    data = os.urandom(3 * 1024 * 1024) if content == "random" else bytes(3 * 1024 * 1024)
    (repo / "blob.bin").write_bytes(data)
    commit(stack, repo, "too big")
    push = stack.git("-c", f"http.postBuffer={post_buffer}", "push", "slipway", "main",
                     cwd=repo, check=False)
    assert push.returncode != 0
    if content == "random":
        assert "remote: Push rejected: it is larger than 2 MB (SLIPWAY_MAX_PUSH_BYTES); the " \
               "running release is untouched" in push.stderr, push.stderr
        assert "[remote rejected] main -> main (push too large)" in push.stderr
    else:
        assert "Push rejected: the pushed tree is larger than 2 MB" in push.stderr, push.stderr
    assert stack.git("ls-remote", "slipway", "refs/heads/main", cwd=repo).stdout == before
    assert stack.fetch(name).text == "uid=10001"


def test_the_audit_log_records_the_pusher_config_changes_and_rollbacks(stack, tmp_path):
    push_app(stack, tmp_path / "audited", "audited")
    stack.slipway("config:set", "--app", "audited", "SECRET_TOKEN=hunter2-value")
    releases = lambda: stack.slipway("releases", "--app", "audited").stdout  # noqa: E731
    # Newest first; "*" marks the current release.
    wait_for(lambda: releases().startswith("* v2 "), timeout=60, message="v2 deployed")
    stack.slipway("rollback", "--app", "audited", "v1")

    out = stack.slipway("audit", "--app", "audited").stdout
    lines = out.splitlines()
    actions = [line.split()[2] for line in lines]
    assert actions == ["rollback", "config.change", "deploy", "app.create"], out
    assert all(line.split()[1] == "dev@example.com" for line in lines), out
    assert '"set": ["SECRET_TOKEN"]' in out and "hunter2" not in out
    assert '"to": 1' in lines[0] and '"release": 3' in lines[0]
    assert "deploy" in stack.slipway("audit", "--action", "deploy").stdout
