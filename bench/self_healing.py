"""Self-healing times: how long an app is down after its containers are lost.

Starts a whole Slipway (`slipway up`, reconcile every 2 s) in a temporary home on
free ports, pushes a small Flask app, then, several times each:

- `docker kill` of its web container (Docker leaves it stopped; reconcile replaces it),
- SIGKILL of the web process inside it (Docker restarts it on a new port; reconcile
  routes it),
- removal of every container of the app (reconcile starts the formation again),

and measures from the blow to the first 200 through the router. The baseline, in
the same run: `slipway ps:restart web` (start, health-check, route switch), what a
deliberate replacement costs. Also times one reconcile pass with nothing to do
(what the 10 s default timer costs), against one Docker container listing.

    .venv/bin/python bench/self_healing.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.stack import Stack  # noqa: E402
from tests.e2e.test_self_healing import write_app  # noqa: E402
from tests.support import TEST_LABEL, TEST_RUN, wait_for  # noqa: E402

APP = "lazarus"


def web_containers() -> list:
    return docker.from_env().containers.list(filters={"label": [
        f"slipway.app-name={APP}", "slipway.process=web", f"{TEST_LABEL}={TEST_RUN}"]})


def serving(stack: Stack) -> bool:
    try:
        return stack.fetch(APP).status_code == 200
    except requests.RequestException:
        return False


def downtime(stack: Stack, blow: Callable[[], None]) -> float:
    wait_for(lambda: serving(stack) and len(web_containers()) == 1, timeout=60)
    time.sleep(2.5)  # let a pass in flight finish: each blow meets a fresh interval
    started = time.monotonic()
    blow()
    wait_for(lambda: serving(stack), timeout=90, interval=0.02)
    return time.monotonic() - started


def docker_kill() -> None:
    web_containers()[0].kill()


def sigkill_process() -> None:
    os.kill(web_containers()[0].attrs["State"]["Pid"], signal.SIGKILL)


def remove_all() -> None:
    for container in docker.from_env().containers.list(all=True, filters={"label": [
            f"slipway.app-name={APP}", f"{TEST_LABEL}={TEST_RUN}"]}):
        container.remove(force=True)


def show(what: str, times: list[float], baseline: float | None = None) -> None:
    median = statistics.median(times)
    ratio = f", {median / baseline:.1f}x the baseline" if baseline else ""
    print(f"{what:<44} median {median:7.3f} s  (min {min(times):.3f}, max {max(times):.3f})"
          f"{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    stack = Stack.temporary(prefix="slipway-bench-")
    stack.env["SLIPWAY_RECONCILE_INTERVAL"] = "2"
    try:
        stack.start()
        token = stack.slipway("users:create", "bench@example.com").stdout.strip()
        stack.slipway("login", "--api-url", stack.api_url, "--token", token)
        repo = stack.root / "repo"
        repo.mkdir()
        stack.git("init", "-q", "-b", "main", cwd=repo)
        write_app(repo, "alive")
        stack.git("add", "-A", cwd=repo)
        stack.git("commit", "-qm", "app", cwd=repo)
        stack.slipway("apps:create", APP, cwd=repo)
        stack.git("push", "slipway", "main", cwd=repo)
        stack.slipway("ps:scale", "--app", APP, "worker=0")

        restarts = []
        for _ in range(args.runs):
            started = time.monotonic()
            stack.slipway("ps:restart", "--app", APP, "web")
            restarts.append(time.monotonic() - started)
        baseline = statistics.median(restarts)
        show("baseline: ps:restart web", restarts)
        for what, blow in (("docker kill web -> serving", docker_kill),
                           ("SIGKILL web process -> serving", sigkill_process),
                           ("remove all containers -> serving", remove_all)):
            show(what, [downtime(stack, blow) for _ in range(args.runs)], baseline)

        # One idle reconcile pass, in this process, against the stack's state.
        os.environ.update(stack.env)
        from slipway.config import get_settings, reset_settings
        from slipway.platform import reconcile, runtime
        from slipway.platform.logstream import connect

        reset_settings()
        settings = get_settings()
        client = runtime.docker_client()
        guard = f"slipway:{settings.instance_id}:reconcile"
        listing, passes = [], []
        for _ in range(max(10, args.runs * 4)):
            started = time.perf_counter()
            runtime.app_containers(client, settings.instance_id, all=True)
            listing.append(time.perf_counter() - started)
            # Not while beat's own pass runs (this one would return at once).
            wait_for(lambda: not connect(settings.redis_url).exists(guard), timeout=30,
                     interval=0.01)
            started = time.perf_counter()
            reconcile.reconcile(settings)
            passes.append(time.perf_counter() - started)
        show("baseline: one container listing", listing)
        show("idle reconcile pass", passes, statistics.median(listing))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
