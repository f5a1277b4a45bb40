"""Procfile formations, release phase, scaling, rollback and one-off runs, end to end.

Real parts: `slipway up`, the Docker engine, nginx, git over smart HTTP.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import docker
import pytest
import requests

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import TEST_LABEL, TEST_RUN, steady_requests, wait_for

pytestmark = pytest.mark.e2e

APP = "crew"

APP_PY = textwrap.dedent('''
    import socket

    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "{text}\\n"


    @app.get("/host")
    def host():
        return socket.gethostname()
''')

# The worker proves it runs: a heartbeat on its output, with a config var it was given.
WORKER_PY = textwrap.dedent('''
    import os
    import time

    while True:
        print("worker heartbeat", os.environ.get("GREETING", "-"), flush=True)
        time.sleep(0.5)
''')

RELEASE_PY = textwrap.dedent('''
    import sys

    code = int(open("release_exit").read())
    print("migrations ran, exiting with", code, flush=True)
    sys.exit(code)
''')


@pytest.fixture(scope="module")
def stack():
    # Keep one release's image beyond the current and previous: pruning shows in a few pushes.
    with Stack.running({"SLIPWAY_KEEP_RELEASES": "1"}) as stack:
        yield stack


def write_app(repo: Path, text: str, *, release_exit: int = 0, worker: bool = True) -> None:
    (repo / "app.py").write_text(APP_PY.format(text=text))
    (repo / "worker.py").write_text(WORKER_PY)
    (repo / "release.py").write_text(RELEASE_PY)
    (repo / "release_exit").write_text(f"{release_exit}\n")
    (repo / "requirements.txt").write_text("flask==3.1.*\ngunicorn==23.*\n")
    procfile = "web: gunicorn --bind 0.0.0.0:$PORT --workers 1 app:app\n"
    if worker:
        procfile += "worker: python worker.py\n"
    procfile += "release: python release.py\n"
    (repo / "Procfile").write_text(procfile)


def push(stack: Stack, repo: Path) -> tuple[int, str]:
    result = stack.git("push", "slipway", "main", cwd=repo, check=False)
    return result.returncode, result.stderr


def measured(what: str, seconds: float) -> None:
    """Print a timing (`pytest -s tests/e2e/test_formations.py | grep MEASURED`)."""
    print(f"MEASURED {what}: {seconds:.2f} s")


def timed_slipway(stack: Stack, what: str, *args: str, **kwargs):
    started = time.monotonic()
    result = stack.slipway(*args, **kwargs)
    measured(what, time.monotonic() - started)
    return result


def containers(process: str) -> list:
    client = docker.from_env()
    return client.containers.list(filters={"label": [f"slipway.app-name={APP}",
                                                     f"slipway.process={process}",
                                                     f"{TEST_LABEL}={TEST_RUN}"]})


@pytest.fixture(scope="module")
def repo(stack, tmp_path_factory):
    stack.sign_up("crew@example.com")
    repo = tmp_path_factory.mktemp(APP)
    stack.git("init", "-q", "-b", "main", cwd=repo)
    write_app(repo, "Formation v1")
    commit(stack, repo, "first")
    stack.slipway("apps:create", APP, cwd=repo)
    stack.slipway("config:set", "--app", APP, "GREETING=ahoy")
    started = time.monotonic()
    code, out = push(stack, repo)
    measured("first push, build to live (web=1 worker=1, release phase)",
             time.monotonic() - started)
    assert code == 0, out + stack.log.read_text()[-4000:]
    assert "remote:        Running release command" in out
    assert "remote:        migrations ran, exiting with 0" in out
    assert "Processes started (web=1, worker=1)" in out
    return repo


def test_web_and_worker_run_with_the_release_phase_first(stack, repo):
    assert stack.fetch(APP).text == "Formation v1\n"
    [worker] = containers("worker")
    wait_for(lambda: b"worker heartbeat ahoy" in worker.logs(), timeout=20,
             message="the worker's heartbeat")
    assert worker.attrs["HostConfig"]["PortBindings"] in ({}, None)
    ps = stack.slipway("ps", "--app", APP).stdout
    assert ps.splitlines()[0] == f"=== {APP}: web=1 worker=1"
    assert [line.split()[:3] for line in ps.splitlines()[1:]] == [
        ["web", "running", "v1"], ["worker", "running", "v1"]]
    # The release container ran once and is gone.
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": [f"slipway.app-name={APP}",
                                                               "slipway.process=release"]}) == []


def test_scaling_web_balances_over_two_containers(stack, repo):
    out = timed_slipway(stack, "ps:scale web=2 (start, health-check, route)",
                        "ps:scale", "--app", APP, "web=2").stdout
    assert out.strip() == f"Scaled {APP} to web=2 worker=1"
    assert len(containers("web")) == 2
    hosts = set()
    wait_for(lambda: hosts.add(stack.fetch(APP, "/host").text) or len(hosts) == 2,
             timeout=20, message="answers from two web containers")
    assert {c.id[:12] for c in containers("web")} == hosts


def app_status(stack: Stack) -> int:
    """The app's HTTP status through the router; 0 when nothing answered."""
    try:
        return stack.fetch(APP).status_code
    except requests.RequestException:
        return 0


def test_restart_replaces_containers_while_serving(stack, repo):
    before = {c.id for c in containers("web")}
    with steady_requests(lambda: app_status(stack)) as statuses:
        out = timed_slipway(stack, "ps:restart web (2 containers)",
                            "ps:restart", "--app", APP, "web").stdout
        assert out.strip() == f"Restarted web processes of {APP}"
        wait_for(lambda: len(containers("web")) == 2
                 and {c.id for c in containers("web")}.isdisjoint(before),
                 timeout=30, message="the old web containers to be retired")
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    print(f"MEASURED requests during ps:restart: {len(statuses)}, all 200")


def test_bad_scales_are_refused(stack, repo):
    for args, message in [
        (["wrker=1"], "Unknown process type 'wrker': this app has web, worker"),
        (["web=11"], "Scale of web is above the limit of 10"),
        (["web=-1"], "Scale of web must be a whole number from 0 to 10"),
        (["web=two"], "Scale of web must be a whole number from 0 to 10"),
    ]:
        result = stack.slipway("ps:scale", "--app", APP, *args, check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == f"Error: {message}"
    assert len(containers("web")) == 2


def test_a_failing_release_command_rejects_the_deploy(stack, repo):
    write_app(repo, "Formation v2", release_exit=3)
    commit(stack, repo, "release fails")
    code, out = push(stack, repo)
    assert code != 0
    assert "remote:        migrations ran, exiting with 3" in out
    assert "Release command failed with exit status 3" in out
    assert "Push rejected: the running release keeps serving" in out
    assert stack.fetch(APP).text == "Formation v1\n"
    assert len(containers("web")) == 2


def test_next_push_keeps_the_scale_and_rollback_brings_back_the_previous_text(stack, repo):
    write_app(repo, "Formation v3")
    commit(stack, repo, "release passes")
    started = time.monotonic()
    code, out = push(stack, repo)
    measured("code push, build to live (web=2 worker=1)", time.monotonic() - started)
    assert code == 0, out
    assert "Processes started (web=2, worker=1)" in out
    [build] = [b for b in stack.slipway("builds", "--app", APP).stdout.splitlines()
               if "succeeded" in b][:1]
    log = stack.slipway("builds", "--app", APP, build.split()[0]).stdout
    assert "Running release command" in log  # the release phase's output is in the build log
    assert stack.fetch(APP).text == "Formation v3\n"

    result = stack.slipway("rollback", "--app", APP, "v9", check=False)
    assert result.returncode == 1 and result.stderr.strip() == "Error: No release v9"
    out = timed_slipway(stack, "rollback (web=2 worker=1, no build)",
                        "rollback", "--app", APP).stdout
    assert out.strip() == f"Rollback to v1: {APP} is now v4"
    assert stack.fetch(APP).text == "Formation v1\n"
    releases = stack.slipway("releases", "--app", APP).stdout.splitlines()
    assert releases[0].startswith("* v4") and releases[0].endswith("Rollback to v1")


def test_a_process_type_removed_from_the_procfile_stops(stack, repo):
    write_app(repo, "Formation v6", worker=False)
    commit(stack, repo, "no worker")
    code, out = push(stack, repo)
    assert code == 0, out
    assert "Processes started (web=2)" in out
    assert stack.fetch(APP).text == "Formation v6\n"
    wait_for(lambda: containers("worker") == [], timeout=30, message="the worker to stop")

    # v5 is current, v4 (v1's image) previous: v3's image was pruned, v2 never deployed.
    for version, message in [("v3", "The image of v3 was pruned: it cannot be rolled back to"),
                             ("v2", "v2 never deployed: roll back to a release that did")]:
        result = stack.slipway("rollback", "--app", APP, version, check=False)
        assert result.returncode == 1 and result.stderr.strip() == f"Error: {message}"
    assert stack.fetch(APP).text == "Formation v6\n"
    assert stack.slipway("releases", "--app", APP).stdout.splitlines()[0].startswith("* v5")


def test_scaling_down_drops_no_request(stack, repo):
    with steady_requests(lambda: app_status(stack)) as statuses:
        out = timed_slipway(stack, "ps:scale web=1 (scale down)",
                            "ps:scale", "--app", APP, "web=1").stdout
        assert out.strip() == f"Scaled {APP} to web=1"
        wait_for(lambda: len(containers("web")) == 1, timeout=30,
                 message="the surplus web container to be retired")
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


def test_run_prints_output_and_returns_the_exit_code(stack, repo):
    result = timed_slipway(stack, "slipway run round trip", "run", "--app", APP, "--", "python",
                           "-c",
                           "import os, sys; print('hi', os.environ['GREETING']); sys.exit(4)",
                           check=False)
    assert result.stdout == "hi ahoy\n"
    assert result.returncode == 4
    result = stack.slipway("run", "--app", APP, "--", "sh", "-c", "echo $PORT; exit 0")
    assert result.stdout == "5000\n"
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": [f"slipway.app-name={APP}",
                                                               "slipway.process=run"]}) == []
