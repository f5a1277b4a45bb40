"""Zero downtime and health checks, end to end.

A steady stream of requests through the router (keep-alive sessions, several
threads, some requests taking 2.5 s: longer than the drain period, so they are
still in flight when their container gets SIGTERM) sees no failure across
redeploys, a config change, a scale up and down and a rollback; like a browser,
it resends a GET whose keep-alive connection an nginx reload closed unanswered
(see SteadyLoad). An app that never passes its
app.json health check fails the push with its last output, and the old release
keeps serving.

Real parts: `slipway up`, the Docker engine, nginx, git over smart HTTP.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import SteadyLoad, wait_for

pytestmark = pytest.mark.e2e

APP = "steady"

APP_PY = textwrap.dedent('''
    import os
    import sys
    import time

    from flask import Flask

    app = Flask(__name__)
    HEALTHY = {healthy}
    print("booting {text}, healthy:", HEALTHY, file=sys.stderr, flush=True)


    @app.get("/")
    def index():
        return "{text} " + os.environ.get("GREETING", "-") + "\\n"


    @app.get("/slow")
    def slow():
        time.sleep(2.5)
        return "{text} slow\\n"


    @app.get("/health")
    def health():
        return ("ok", 200) if HEALTHY else ("starting", 503)
''')

CHECKS = {"healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok",
                                    "timeout": 5, "attempts": 3, "wait": 0.2}]}}


@pytest.fixture(scope="module")
def stack():
    with Stack.running({"SLIPWAY_DRAIN_SECONDS": "1", "SLIPWAY_STOP_TIMEOUT": "10"}) as stack:
        yield stack


def write_app(repo: Path, text: str, *, healthy: bool = True, checks: object = CHECKS) -> None:
    (repo / "app.py").write_text(APP_PY.format(text=text, healthy=healthy))
    (repo / "requirements.txt").write_text("flask==3.1.*\ngunicorn==23.*\n")
    (repo / "app.json").write_text(json.dumps(checks))
    # Threaded workers keep connections from nginx alive; on SIGTERM gunicorn
    # finishes the requests in flight (within its graceful timeout).
    (repo / "Procfile").write_text(
        "web: gunicorn --bind 0.0.0.0:$PORT --workers 2 --threads 8 --graceful-timeout 8 "
        "app:app\n")


def push(stack: Stack, repo: Path, text: str, **kwargs) -> tuple[int, str]:
    write_app(repo, text, **kwargs)
    commit(stack, repo, text)
    result = stack.git("push", "slipway", "main", cwd=repo, check=False)
    return result.returncode, result.stderr


def body(stack: Stack, path: str = "/") -> str:
    return stack.fetch(APP, path).text


@pytest.fixture(scope="module")
def repo(stack, tmp_path_factory):
    token = stack.sign_up("steady@example.com")
    stack.auth = {"Authorization": f"Bearer {token}"}
    repo = tmp_path_factory.mktemp(APP)
    stack.git("init", "-q", "-b", "main", cwd=repo)
    stack.slipway("apps:create", APP, cwd=repo)
    code, out = push(stack, repo, "v1")
    assert code == 0, out + stack.log.read_text()[-4000:]
    assert "remote:        Health checks of web from app.json: /health" in out
    return repo


def test_the_release_stores_its_resolved_health_check(stack, repo):
    import requests

    releases = requests.get(f"{stack.api_url}/api/v1/apps/{APP}/releases", headers=stack.auth,
                            timeout=10).json()["items"]
    assert releases[0]["healthchecks"] == {"web": [
        {"path": "/health", "timeout": 5.0, "attempts": 3, "wait": 0.2, "initial_delay": 0.0,
         "content": "ok", "any_status": False}]}


def test_a_bad_health_check_rejects_the_push(stack, repo):
    code, out = push(stack, repo, "v-bad-json",
                     checks={"healthchecks": {"web": [{"path": "health"}]}})
    assert code != 0
    assert "remote:  !     app.json healthchecks/web/0/path: must start with /" in out
    assert body(stack) == "v1 -\n"


def test_an_app_that_never_becomes_healthy_fails_and_the_old_release_serves(stack, repo):
    code, out = push(stack, repo, "v-unhealthy", healthy=False)
    assert code != 0
    assert ("remote:  !     Health check GET /health containing 'ok' failed 3 time(s), "
            "last: answered 503") in out
    # The container's own last lines reach the pusher.
    assert "remote:  !     Last lines of its output:" in out
    assert "booting v-unhealthy, healthy: False" in out
    assert "Push rejected: the running release keeps serving" in out
    assert body(stack) == "v1 -\n"


def test_no_request_fails_across_deploys_config_scale_and_rollback(stack, repo):
    url = f"http://127.0.0.1:{stack.http_port}"
    headers = {"Host": f"{APP}.localhost"}
    # Keep-alive clients that, like browsers, resend a GET whose connection nginx
    # closed unanswered while reloading (counted, and no more than one per client
    # per switch); anything else is a failure.
    with SteadyLoad(url + "/", headers, rate=60, clients=4, retry_aborted=True) as load, \
            SteadyLoad(url + "/slow", headers, rate=2, clients=6, retry_aborted=True) as slow:
        time.sleep(1)
        for i in range(2, 5):
            code, out = push(stack, repo, f"v{i}")
            assert code == 0, out
            assert body(stack).startswith(f"v{i} ")
        stack.slipway("config:set", "--app", APP, "GREETING=ahoy")
        wait_for(lambda: body(stack) == "v4 ahoy\n", timeout=60, message="the config change")
        stack.slipway("ps:scale", "--app", APP, "web=2")
        stack.slipway("ps:scale", "--app", APP, "web=1")
        stack.slipway("rollback", "--app", APP)
        assert body(stack) == "v4 -\n"
        time.sleep(1)
    samples = load.samples + slow.samples
    failures = load.failures() + slow.failures()
    held = max(s.seconds for s in load.samples)
    retried = sum(s.retried for s in samples)
    print(f"MEASURED zero downtime: {len(samples)} requests, {len(failures)} failed, "
          f"{retried} resent after a reload closed their connection, slowest / {held:.3f} s")
    assert len(load.samples) > 200 and len(slow.samples) > 10
    assert failures == [], failures[:5]
    # Seven switches (three pushes, config, two scales, rollback), ten clients.
    assert retried <= 7 * 10
