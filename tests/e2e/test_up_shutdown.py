"""`slipway up` stopped by SIGTERM or Ctrl-C (SIGINT) leaves no nginx behind, even when
the signal lands while the router is reloading nginx.

Real parts: `slipway up` (its router and nginx, its own redis-server).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from slipway.router.publish import publish_routes
from slipway.router.routes import APPLIED_KEY, Route
from tests.e2e.stack import Stack
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# (signal, what else happened): the router killed mid-reload (as a deadline would kill
# it) or its nginx's pid file gone (as once seen) must leave nothing running either.
ROUNDS = [
    (signal.SIGTERM, None), (signal.SIGINT, None), (signal.SIGTERM, None),
    (signal.SIGINT, None), (signal.SIGTERM, "router killed"), (signal.SIGINT, "pid file gone"),
]


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.parent.name))
    return found


def reload_forever(port: int, stop: threading.Event) -> None:
    """Publish a table with one more host every few ms: each one is an nginx reload."""
    client = redis.Redis(port=port, socket_timeout=2)
    n = 0
    while not stop.is_set():
        n += 1
        routes = [Route(app=f"r{i}", hosts=(f"r{i}.localhost",), upstreams=("127.0.0.1:9",))
                  for i in range(n % 20 + 1)]
        try:
            publish_routes(client, routes)
        except redis.RedisError:
            return  # its redis-server stopped with it
        time.sleep(0.02)


def router_of(stack: Stack) -> int:
    """The pid of the stack's `slipway router` process."""
    [pid] = [pid for pid in processes_with("-m slipway router")
             if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
             == stack.proc.pid]
    return pid


@pytest.mark.parametrize(("round_", "sig", "mishap"),
                         [(n, sig, mishap) for n, (sig, mishap) in enumerate(ROUNDS)])
def test_a_stopped_slipway_up_leaves_no_nginx_even_mid_reload(round_, sig, mishap):
    stack = Stack.temporary(prefix="slipway-up-stop-")
    conf = str(stack.home / "router" / "nginx.conf")
    stop = threading.Event()
    publisher = threading.Thread(target=reload_forever, args=(stack.redis_port, stop))
    try:
        stack.start()
        assert processes_with(conf), "nginx is not running from the stack's config"
        client = redis.Redis(port=stack.redis_port)
        before = int(client.get(APPLIED_KEY) or 0)
        publisher.start()
        # Signalled after some reloads went through, at a moment within one.
        wait_for(lambda: int(client.get(APPLIED_KEY) or 0) > before + 2, timeout=20,
                 message="reloads to go through")
        time.sleep(round_ * 0.13)
        if mishap == "router killed":
            os.kill(router_of(stack), signal.SIGKILL)
        elif mishap == "pid file gone":
            (stack.home / "router" / "nginx.pid").unlink()
        os.killpg(stack.proc.pid, sig)  # as Ctrl-C signals the whole foreground group
        assert stack.proc.wait(60) == 0
        assert processes_with(conf) == [], f"nginx left running (see {stack.log})"
    finally:
        stop.set()
        if publisher.ident is not None:
            publisher.join(10)
        for pid in processes_with(conf):  # only this stack's, by its config path
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.stop()
