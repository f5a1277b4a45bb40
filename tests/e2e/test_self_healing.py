"""Self-healing, end to end: crash loops, killed and removed containers, a worker killed
mid-build, and concurrent pushes.

Real parts: `slipway up` (reconcile every 2 s, 4 s leases), the Docker engine, nginx,
git over smart HTTP. Only this test run's containers are touched; dockerd never is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import docker
import pytest
import requests

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

APP = "phoenix"

APP_PY = textwrap.dedent('''
    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "{text}\\n"
''')

# Exits at once, with output, when CRASH_WORKER is set: a crash loop.
WORKER_PY = textwrap.dedent('''
    import os
    import sys
    import time

    if os.environ.get("CRASH_WORKER"):
        print("boom: the worker cannot start", flush=True)
        sys.stdout.buffer.write(b"bad byte \\xff and \\x1b[31mcolour\\n")
        sys.exit(3)
    while True:
        print("worker heartbeat", flush=True)
        time.sleep(1)
''')


def write_app(repo: Path, text: str) -> None:
    (repo / "app.py").write_text(APP_PY.format(text=text))
    (repo / "worker.py").write_text(WORKER_PY)
    (repo / "requirements.txt").write_text("flask==3.1.*\ngunicorn==23.*\n")
    (repo / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT --workers 1 app:app\n"
                                   "worker: python worker.py\n")


def measured(what: str, seconds: float) -> None:
    """Print a timing (`pytest -s tests/e2e/test_self_healing.py | grep MEASURED`)."""
    print(f"MEASURED {what}: {seconds:.2f} s")


def containers(app: str, process: str | None = None, *, all: bool = False) -> list:
    labels = [f"slipway.app-name={app}", f"{TEST_LABEL}={TEST_RUN}"]
    if process:
        labels.append(f"slipway.process={process}")
    return docker.from_env().containers.list(all=all, filters={"label": labels})


@pytest.fixture(scope="module")
def stack():
    # Replaced containers wait out a few reconcile passes before they are stopped.
    with Stack.running({"SLIPWAY_RECONCILE_INTERVAL": "2", "SLIPWAY_LEASE_SECONDS": "4",
                        "SLIPWAY_DRAIN_SECONDS": "5"}) as stack:
        yield stack


@pytest.fixture(scope="module")
def token(stack):
    return stack.sign_up("phoenix@example.com")


def new_app(stack: Stack, tmp_path_factory, name: str, text: str) -> Path:
    repo = tmp_path_factory.mktemp(name)
    stack.git("init", "-q", "-b", "main", cwd=repo)
    write_app(repo, text)
    commit(stack, repo, "first")
    stack.slipway("apps:create", name, cwd=repo)
    return repo


@pytest.fixture(scope="module")
def repo(stack, token, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, APP, "Phoenix v1")
    push = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr + stack.log.read_text()[-4000:]
    assert stack.fetch(APP).text == "Phoenix v1\n"
    return repo


def serves(stack: Stack, app: str, text: str) -> bool:
    try:
        response = stack.fetch(app)
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.text == text


def test_a_killed_web_container_is_replaced_and_serves_again(stack, repo):
    [web] = containers(APP, "web")
    web.kill()  # `docker kill`: Docker's restart policy leaves it stopped
    killed = time.monotonic()
    wait_for(lambda: serves(stack, APP, "Phoenix v1\n"), timeout=60, interval=0.2,
             message="reconcile to replace the killed web container")
    measured("docker kill of the only web container to serving again", time.monotonic() - killed)
    [new] = containers(APP, "web")
    assert new.id != web.id
    assert web.id not in {c.id for c in containers(APP, all=True)}


def test_a_web_process_killed_inside_its_container_is_restarted_and_routed(stack, repo):
    [web] = containers(APP, "web")
    old_port = web.ports[f"{5000}/tcp"][0]["HostPort"] if web.ports.get("5000/tcp") else None
    os.kill(web.attrs["State"]["Pid"], signal.SIGKILL)  # what the OOM killer does
    killed = time.monotonic()
    wait_for(lambda: docker.from_env().containers.get(web.id).attrs["RestartCount"] >= 1,
             timeout=30, message="Docker to restart the container")
    # Docker publishes the restarted container on a new port: reconcile re-routes.
    wait_for(lambda: serves(stack, APP, "Phoenix v1\n"), timeout=60, interval=0.2,
             message="the restarted web container to be routed")
    measured("SIGKILL of the web process to serving again", time.monotonic() - killed)
    [same] = containers(APP, "web")
    assert same.id == web.id
    if old_port is not None:
        assert same.ports["5000/tcp"][0]["HostPort"] != old_port


def test_a_crash_looping_worker_shows_as_crashed_with_its_output(stack, repo, token):
    stack.slipway("config:set", "--app", APP, "CRASH_WORKER=1")
    headers = {"Authorization": f"Bearer {token}"}

    def crashed_worker() -> dict | None:
        procs = requests.get(f"{stack.api_url}/api/v1/apps/{APP}/ps", headers=headers,
                             timeout=10).json()
        return next((p for p in procs if p["type"] == "worker" and p["state"] == "crashed"
                     and p["last_logs"]), None)

    # Between two crashes it runs for a moment (and Docker reports no exit status).
    worker = wait_for(lambda: (p := crashed_worker()) and p["exit_code"] is not None and p,
                      timeout=60, interval=0.2, message="the worker to show as crashed")
    assert worker["exit_code"] == 3 and worker["restarts"] >= 1
    assert "boom: the worker cannot start" in worker["last_logs"]
    assert "bad byte \ufffd and \ufffd[31mcolour" in worker["last_logs"]
    assert len(worker["last_logs"]) <= 20

    def cli_shows_crash() -> str:
        out = stack.slipway("ps", "--app", APP).stdout
        return "keeps exiting (last exit status 3)" in out and out

    out = wait_for(cli_shows_crash, timeout=30, interval=0.2, message="`slipway ps` to show it")
    # (The previous release's worker may still be draining next to it.)
    assert ["worker", "crashed"] in [line.split()[:2] for line in out.splitlines()]
    assert "  | boom: the worker cannot start" in out
    # Docker restarts it with a growing delay; the web process keeps serving.
    assert serves(stack, APP, "Phoenix v1\n")

    stack.slipway("config:unset", "--app", APP, "CRASH_WORKER")
    wait_for(lambda: not crashed_worker() and any(
        b"worker heartbeat" in c.logs() for c in containers(APP, "worker")),
        timeout=60, interval=0.5, message="the worker to run again")


def test_reconcile_leaves_a_restart_alone_while_it_drains(stack, repo):
    before = {c.id for c in containers(APP, "web")}
    stack.slipway("ps:restart", "--app", APP, "web")
    new = {c.id for c in containers(APP, "web")} - before
    assert len(new) == 1
    # Reconcile passes run while the old container drains: they must not take the
    # new one for a surplus container, nor route the old one again.
    wait_for(lambda: {c.id for c in containers(APP, "web")} == new, timeout=30,
             message="the replaced container to be retired")
    assert serves(stack, APP, "Phoenix v1\n")
    assert {c.id for c in containers(APP, "web")} == new


def test_reconcile_restores_every_removed_container(stack, repo):
    for container in containers(APP, all=True):
        container.remove(force=True)
    removed = time.monotonic()
    wait_for(lambda: serves(stack, APP, "Phoenix v1\n"), timeout=90, interval=0.2,
             message="reconcile to restore the app")
    measured("all containers removed to serving again", time.monotonic() - removed)

    def restored() -> bool:
        lines = stack.slipway("ps", "--app", APP).stdout.splitlines()
        return [line.split()[:2] for line in lines[1:]] == [["web", "running"],
                                                            ["worker", "running"]]

    wait_for(restored, timeout=30, interval=0.5, message="web and worker to run again")


def worker_pid(stack: Stack) -> int | None:
    """The pid of the `slipway worker` child of this stack's `slipway up`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == stack.proc.pid and cmdline[-3:-1] == [b"slipway", b"worker"]:
            return int(entry.name)
    return None


def base_image() -> str:
    tags = [tag for image in docker.from_env().api.images() for tag in image.get("RepoTags") or []]
    return sorted(t for t in tags if t.startswith(("slipway/python:", "python:")))[-1]


SLOW_DOCKERFILE = """FROM {base}
RUN echo building slowly && sleep {sleep}
CMD ["sh", "-c", "exec python3 -m http.server $PORT"]
"""


def test_a_worker_killed_mid_build_fails_the_build_and_the_next_push_deploys(
        stack, token, tmp_path):
    repo = tmp_path / "slow"
    repo.mkdir()
    stack.git("init", "-q", "-b", "main", cwd=repo)
    (repo / "Dockerfile").write_text(SLOW_DOCKERFILE.format(base=base_image(), sleep=120))
    (repo / "index.html").write_text("slow but there\n")
    commit(stack, repo, "slow")
    stack.slipway("apps:create", "slow", cwd=repo)
    push = subprocess.Popen(["git", "push", "slipway", "main"], cwd=repo, env=stack.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        headers = {"Authorization": f"Bearer {token}"}

        def building() -> bool:
            builds = requests.get(f"{stack.api_url}/api/v1/apps/slow/builds", headers=headers,
                                  timeout=10).json()["items"]
            return bool(builds) and builds[0]["status"] == "building"

        wait_for(building, timeout=60, interval=0.2, message="the build to start")
        time.sleep(1)
        pid = worker_pid(stack)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, err = push.communicate(timeout=90)
    finally:
        if push.poll() is None:
            push.kill()
            push.communicate()
    measured("worker SIGKILL to the push being rejected", time.monotonic() - killed)
    assert push.returncode != 0
    assert "remote:  !     The worker stopped during the build; push again" in err
    assert "[remote rejected] main -> main (pre-receive hook declined)" in err
    build = requests.get(f"{stack.api_url}/api/v1/apps/slow/builds", headers=headers,
                         timeout=10).json()["items"][0]
    assert build["status"] == "failed"
    assert build["error"] == "The worker stopped during the build; push again"

    # `slipway up` started a new worker; the app's lock has expired: the next push deploys.
    wait_for(lambda: worker_pid(stack) not in (None, pid), timeout=30,
             message="a new worker")
    (repo / "Dockerfile").write_text(SLOW_DOCKERFILE.format(base=base_image(), sleep=0))
    commit(stack, repo, "fast")
    again = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert again.returncode == 0, again.stderr + stack.log.read_text()[-4000:]
    assert "Waiting for another deploy" not in again.stderr
    assert stack.fetch("slow").status_code == 200


def test_two_pushes_to_one_app_are_serialised_and_the_app_serves_its_branch(
        stack, repo, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    write_app(repo, "Phoenix from Ada")
    commit(stack, repo, "ada")
    write_app(other, "Phoenix from Bob")
    commit(stack, other, "bob")
    pushes = {
        "Ada": subprocess.Popen(["git", "push", "slipway", "main"], cwd=repo, env=stack.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "Bob": subprocess.Popen(["git", "push", "slipway", "main"], cwd=other, env=stack.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    results = {who: (p.wait(300), p.communicate()[1]) for who, p in pushes.items()}
    [winner] = [who for who, (code, _) in results.items() if code == 0]
    [loser] = [who for who in results if who != winner]
    out = results[loser][1]
    assert f"remote: -----> Waiting for another deploy of {APP} to finish" in out
    assert f"remote:  !     Another push to {APP} deployed" in out
    assert "while this one waited: pull, merge and push again" in out
    # What the app serves is what its branch points to.
    branch = stack.git("ls-remote", "slipway", "refs/heads/main", cwd=repo).stdout.split()[0]
    winner_repo = repo if winner == "Ada" else other
    assert branch == stack.git("rev-parse", "HEAD", cwd=winner_repo).stdout.strip()
    assert serves(stack, APP, f"Phoenix from {winner}\n")

    # The user does what the message says and pushes again.
    loser_repo = other if winner == "Ada" else repo
    stack.git("fetch", "-q", "slipway", cwd=loser_repo)
    stack.git("reset", "-q", "--hard", "slipway/main", cwd=loser_repo)
    write_app(loser_repo, f"Phoenix from {loser}, after {winner}")
    commit(stack, loser_repo, "after")
    again = stack.git("push", "slipway", "main", cwd=loser_repo, check=False)
    assert again.returncode == 0, again.stderr
    assert serves(stack, APP, f"Phoenix from {loser}, after {winner}\n")


def test_pushes_to_two_apps_deploy_in_parallel(stack, token, tmp_path_factory):
    repos = {name: new_app(stack, tmp_path_factory, name, f"{name} here")
             for name in ("left", "right")}
    started = time.monotonic()
    pushes = {name: subprocess.Popen(["git", "push", "slipway", "main"], cwd=path,
                                     env=stack.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
              for name, path in repos.items()}
    results = {name: (p.wait(300), p.communicate()[1]) for name, p in pushes.items()}
    measured("two apps pushed at once, both live", time.monotonic() - started)
    for name, (code, err) in results.items():
        assert code == 0, err
        assert "Waiting for another deploy" not in err
        assert serves(stack, name, f"{name} here\n")
    headers = {"Authorization": f"Bearer {token}"}
    windows = []
    for name in repos:
        [build] = requests.get(f"{stack.api_url}/api/v1/apps/{name}/builds", headers=headers,
                               timeout=10).json()["items"]
        windows.append((build["created_at"], build["finished_at"]))
    # Each build started before the other finished: they ran at the same time.
    (a_start, a_end), (b_start, b_end) = windows
    assert a_start < b_end and b_start < a_end
