"""Push a Flask app with the real git client and fetch it through the router.

Real parts: `slipway up` (gunicorn, Celery worker and beat, nginx router,
redis-server), the Docker engine, git over smart HTTP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import pytest
import redis
import requests

from slipway.router.routes import ROUTES_KEY
from tests.e2e.stack import Stack
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

APP_PY = textwrap.dedent('''
    import os

    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "{text}\\n"


    @app.get("/env/<key>")
    def env(key):
        return os.environ.get(key, "<unset>")
''')


@pytest.fixture(scope="module")
def stack():
    with Stack.running() as stack:
        yield stack


@pytest.fixture(scope="module")
def token(stack):
    return stack.sign_up("dev@example.com")


def write_app(repo: Path, text: str) -> None:
    (repo / "app.py").write_text(APP_PY.format(text=text))
    (repo / "requirements.txt").write_text("flask==3.1.*\ngunicorn==23.*\n")
    (repo / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT --workers 2 app:app\n")


def commit(stack: Stack, repo: Path, message: str) -> str:
    stack.git("add", "-A", cwd=repo)
    stack.git("commit", "-qm", message, cwd=repo)
    return stack.git("rev-parse", "HEAD", cwd=repo).stdout.strip()


@pytest.fixture(scope="module")
def deployed(stack, token, tmp_path_factory):
    """An app `hello` created with the CLI and pushed once."""
    repo = tmp_path_factory.mktemp("hello")
    stack.git("init", "-q", "-b", "main", cwd=repo)
    write_app(repo, "Hello from v1")
    commit(stack, repo, "first")
    out = stack.slipway("apps:create", "hello", cwd=repo).stdout
    assert "Added git remote slipway" in out
    push = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr
    assert "remote: -----> Python app detected" in push.stderr
    assert "remote: -----> Deployed v1" in push.stderr
    return repo


def test_pushed_app_answers_through_the_router(stack, deployed):
    response = stack.fetch("hello")
    assert response.status_code == 200
    assert response.text == "Hello from v1\n"
    assert stack.fetch("nobody").status_code == 404


def test_the_router_reaches_the_web_container_at_its_address_on_the_app_network(stack, deployed):
    client = docker.from_env()
    [web] = client.containers.list(filters={"label": [
        "slipway.app-name=hello", "slipway.process=web", f"{TEST_LABEL}={TEST_RUN}"]})
    # The app's own network is the only one it is on.
    [ip] = [net["IPAddress"] for net in web.attrs["NetworkSettings"]["Networks"].values()]
    port = dict(e.split("=", 1) for e in web.attrs["Config"]["Env"])["PORT"]
    table = json.loads(redis.Redis(port=stack.redis_port).get(ROUTES_KEY))
    [route] = [r for r in table["routes"] if r["app"] == "hello"]
    # Not 127.0.0.1:<published port>: that path copies every byte through docker-proxy.
    assert route["upstreams"] == [f"{ip}:{port}"]


def test_a_changed_container_address_is_routed_again_by_reconcile(stack, deployed):
    """As after a Docker restart, the web container comes back at another address."""
    client = docker.from_env()
    [web] = client.containers.list(filters={"label": [
        "slipway.app-name=hello", "slipway.process=web", f"{TEST_LABEL}={TEST_RUN}"]})
    [(name, before)] = [(name, net["IPAddress"])
                        for name, net in web.attrs["NetworkSettings"]["Networks"].items()]
    network = client.networks.get(name)
    network.disconnect(web)
    # Another container takes the freed address, so the web one gets a new one.
    squatter = client.containers.run(
        web.attrs["Config"]["Image"], ["sleep", "300"], detach=True, network=name,
        labels={TEST_LABEL: TEST_RUN})
    try:
        squatter.reload()
        assert squatter.attrs["NetworkSettings"]["Networks"][name]["IPAddress"] == before, \
            "Docker did not hand the freed address out again; the test cannot move the app"
        network.connect(web)
        web.reload()
        after = web.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
        assert after != before
        # What beat runs every minute (and `slipway up` at start): routes read from Docker.
        subprocess.run(
            [sys.executable, "-c", "from slipway.config import get_settings; "
             "from slipway.platform.reconcile import reconcile; reconcile(get_settings())"],
            env=stack.env, check=True, capture_output=True, timeout=60)
        wait_for(lambda: stack.fetch("hello").status_code == 200, timeout=15,
                 message="the app to answer at its new address")
        table = json.loads(redis.Redis(port=stack.redis_port).get(ROUTES_KEY))
        [route] = [r for r in table["routes"] if r["app"] == "hello"]
        assert [u.rpartition(":")[0] for u in route["upstreams"]] == [after]
    finally:
        squatter.remove(force=True)


def test_code_change_is_served_after_the_push(stack, deployed):
    write_app(deployed, "Hello from v2")
    commit(stack, deployed, "second")
    push = stack.git("push", "slipway", "main", cwd=deployed, check=False)
    assert push.returncode == 0, push.stderr
    assert "Using cache" in push.stderr  # the dependency layer was reused
    assert stack.fetch("hello").text == "Hello from v2\n"
    builds = stack.slipway("builds", "--app", "hello").stdout.splitlines()
    assert len(builds) == 2 and all("succeeded" in line for line in builds)


def test_config_values_reach_the_app_byte_for_byte(stack, deployed, token):
    value = "it's \"quoted\"\nsecond line $HOME ${PATH} `id` ünïcødé ✓"
    response = requests.patch(f"{stack.api_url}/api/v1/apps/hello/config", json={"GREETING": value},
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    release = response.headers["Slipway-Release"]
    wait_for(lambda: stack.fetch("hello", "/env/GREETING").content == value.encode(),
             timeout=60, message="the app to read the new config var")
    releases = stack.slipway("releases", "--app", "hello").stdout
    assert f"* {release}" in releases
    assert stack.fetch("hello").text.startswith("Hello from")


def test_broken_push_is_rejected_and_the_old_release_keeps_serving(stack, deployed):
    before = stack.fetch("hello").text
    remote_before = stack.git("ls-remote", "slipway", "refs/heads/main", cwd=deployed).stdout
    (deployed / "requirements.txt").write_text("this-package-does-not-exist-slipway==0.0.1\n")
    commit(stack, deployed, "broken dependencies")
    push = stack.git("push", "slipway", "main", cwd=deployed, check=False)
    assert push.returncode != 0
    assert "pre-receive hook declined" in push.stderr
    assert "Push rejected: the running release keeps serving" in push.stderr
    assert stack.fetch("hello").text == before
    remote_after = stack.git("ls-remote", "slipway", "refs/heads/main", cwd=deployed).stdout
    assert remote_after == remote_before

    # Nothing Slipway can build: rejected the same way, with what it looked for.
    for path in deployed.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (deployed / "README").write_text("nothing to build here\n")
    commit(stack, deployed, "nothing to build")
    push = stack.git("push", "slipway", "main", cwd=deployed, check=False)
    assert push.returncode != 0
    assert "requirements.txt" in push.stderr
    assert stack.fetch("hello").text == before


def test_pushes_need_a_valid_token_and_an_existing_app(stack, deployed, token):
    base = stack.api_url.replace("http://", "")
    for url, expected in [
        (f"http://x:slp_wrong@{base}/git/hello.git", "Authentication failed"),
        (f"http://x:{token}@{base}/git/nothere.git", "not found"),
    ]:
        push = stack.git("push", url, "HEAD:main", cwd=deployed, check=False)
        assert push.returncode != 0
        assert expected in push.stderr


def test_destroying_an_app_removes_it(stack, deployed):
    out = stack.slipway("apps:destroy", "--app", "hello", input="wrong\n", check=False)
    assert out.returncode != 0 and "nothing done" in out.stderr
    assert stack.fetch("hello").status_code == 200
    stack.slipway("apps:destroy", "--app", "hello", "--confirm", "hello")
    wait_for(lambda: stack.fetch("hello").status_code == 404, timeout=10,
             message="the route to go")
    client = docker.from_env()
    mine = {"label": ["slipway.app-name=hello", f"{TEST_LABEL}={TEST_RUN}"]}
    assert client.containers.list(all=True, filters=mine) == []
