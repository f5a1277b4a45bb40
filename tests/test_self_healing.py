"""Leases, interrupted builds, concurrent pushes and the supervisor: real Redis, real
databases (SQLite and PostgreSQL), real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from slipway.platform import apps as app_service
from slipway.platform import builds, leases, supervisor, users
from slipway.platform.db import session_scope
from slipway.platform.deploy import app_lock
from slipway.platform.logstream import build_log_key, connect
from slipway.platform.models import Build, BuildStatus, utcnow
from tests.support import wait_for


@pytest.fixture
def lease_settings(settings, monkeypatch, redis_url):
    monkeypatch.setattr(settings, "redis_url", redis_url)
    monkeypatch.setattr(settings, "lease_seconds", 3.0)
    return settings


def _app_with_build(settings, status: BuildStatus, commit: str = "a" * 40) -> int:
    with session_scope(settings.database) as session:
        user, _ = users.create_user(session, "ada@example.com")
        app = app_service.create_app(session, user, "shop")
        build = builds.create_build(session, app, commit=commit, user_id=user.id)
        build.status = status
        session.flush()
        return build.id


def _log_key(settings, build_id: int) -> str:
    with session_scope(settings.database) as session:
        return build_log_key(session.get(Build, build_id).app.uid, build_id)


def test_a_held_lock_outlives_its_ttl_and_frees_soon_after_its_holder_is_killed(
        lease_settings, redis_url):
    client = connect(redis_url)
    lock = app_lock(client, lease_settings, "shop")
    assert lock.acquire(blocking=False)
    time.sleep(4.5)  # beyond the 3 s TTL: the holder's thread renewed it
    assert not app_lock(client, lease_settings, "shop").acquire(blocking=False)
    lock.release()

    # Another process takes it, then is SIGKILLed: no release, only the TTL frees it.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from slipway.platform.deploy import app_lock
        from slipway.platform.logstream import connect
        from slipway.config import get_settings
        settings = get_settings().model_copy(update={{"lease_seconds": 3.0}})
        lock = app_lock(connect({redis_url!r}), settings, "shop")
        assert lock.acquire(blocking=False)
        print("held", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(4)
        assert not app_lock(client, lease_settings, "shop").acquire(blocking=False)
        holder.kill()
        holder.wait()
        killed_at = time.monotonic()
        free = app_lock(client, lease_settings, "shop")
        wait_for(lambda: free.acquire(blocking=False), timeout=10, message="the lock to expire")
        assert time.monotonic() - killed_at <= 3.5
        free.release()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_build_whose_worker_died_is_failed_and_its_log_ended(lease_settings, redis_url):
    client = connect(redis_url)
    build_id = _app_with_build(lease_settings, BuildStatus.BUILDING)
    key = _log_key(lease_settings, build_id)
    client.delete(key)
    client.xadd(key, {"line": "-----> Building image"})
    with session_scope(lease_settings.database) as session:
        assert builds.fail_stale_builds(lease_settings, session, client) == [build_id]
    with session_scope(lease_settings.database) as session:
        build = session.get(Build, build_id)
        assert build.status == BuildStatus.FAILED
        assert build.error == "The worker stopped during the build; push again"
        assert build.finished_at is not None
        assert build.log.startswith("-----> Building image\n !     The worker stopped")
    entries = [fields for _, fields in client.xrange(key)]
    assert entries[-1] == {"end": "failed"}
    # The app never deployed: nothing serves it.
    assert entries[-2] == {"line": " !     Push rejected: nothing was deployed"}
    with session_scope(lease_settings.database) as session:  # safe to run twice
        assert builds.fail_stale_builds(lease_settings, session, client) == []


def test_a_build_running_on_a_live_worker_is_left_alone(lease_settings, redis_url):
    client = connect(redis_url)
    build_id = _app_with_build(lease_settings, BuildStatus.BUILDING)
    key = builds.build_heartbeat_key(lease_settings, build_id)
    with leases.Heartbeat(client, key, lease_settings.lease_seconds):
        time.sleep(4)  # past the TTL: renewed
        with session_scope(lease_settings.database) as session:
            assert builds.fail_stale_builds(lease_settings, session, client) == []
            assert session.get(Build, build_id).status == BuildStatus.BUILDING
        # The same build's task delivered again (acks_late) leaves it alone too.
        assert builds.run_build(lease_settings, client, build_id) == []
    assert not leases.alive(client, key)
    with session_scope(lease_settings.database) as session:
        assert session.get(Build, build_id).status == BuildStatus.BUILDING
    assert builds.run_build(lease_settings, client, build_id) == []
    with session_scope(lease_settings.database) as session:
        assert session.get(Build, build_id).status == BuildStatus.FAILED


def test_a_push_that_waited_while_another_deployed_is_rejected(lease_settings, redis_url):
    client = connect(redis_url)
    base, first, second = "0" * 40, "1" * 40, "2" * 40
    waiting_id = _app_with_build(lease_settings, BuildStatus.PENDING, commit=second)
    with session_scope(lease_settings.database) as session:
        waiting = session.get(Build, waiting_id)
        other = builds.create_build(session, waiting.app, commit=first, user_id=None)
        other.status, other.finished_at = BuildStatus.SUCCEEDED, utcnow()
    client.delete(_log_key(lease_settings, waiting_id))
    assert builds.run_build(lease_settings, client, waiting_id, base) == []
    with session_scope(lease_settings.database) as session:
        build = session.get(Build, waiting_id)
        assert build.status == BuildStatus.FAILED
        assert build.error == ("Another push to shop deployed 11111111 while this one "
                               "waited: pull, merge and push again")
    assert not leases.alive(client, builds.build_heartbeat_key(lease_settings, waiting_id))
    lock = app_lock(client, lease_settings, "shop")
    assert lock.acquire(blocking=False)
    lock.release()


class _Recorder(supervisor.Supervisor):
    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.spawned: list[str] = []

    def _spawn(self, part: str) -> None:
        self.spawned.append(part)
        self.children[part] = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        self.started_at[part] = time.monotonic()


def test_the_supervisor_starts_a_dead_part_again_with_a_growing_delay(settings, monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_DELAY", 0.2)
    sup = _Recorder(settings)
    sup._spawn("worker")
    delays = []
    for _ in range(3):
        sup.children["worker"].wait()
        before = len(sup.spawned)
        died = time.monotonic()
        wait_for(lambda n=before: sup.check() or len(sup.spawned) > n, timeout=10, interval=0.01,
                 message="the worker to be started again")
        delays.append(time.monotonic() - died)
    assert delays[0] >= 0.2 and delays[1] >= 0.4 and delays[2] >= 0.8
    sup.children["redis"] = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    sup.children["redis"].wait()
    with pytest.raises(SystemExit, match="redis-server exited with status 1"):
        sup.check()
    sup.stop()


def test_destroy_waits_for_a_deploy_or_reconcile_holding_the_app(lease_settings, client,
                                                                 redis_url):
    """Destroy takes the app's lock: a reconcile pass converging the app cannot
    start containers on the network destroy is removing."""
    with session_scope(lease_settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/apps", json={"name": "shop"}, headers=headers).status_code == 201
    lock = app_lock(connect(redis_url), lease_settings, "shop")
    assert lock.acquire(blocking=False)
    answers: list[int] = []
    destroying = threading.Thread(
        target=lambda: answers.append(client.delete("/api/v1/apps/shop", headers=headers)
                                      .status_code))
    destroying.start()
    try:
        time.sleep(0.5)  # long enough for an unguarded destroy to finish
        assert answers == []
        assert client.get("/api/v1/apps/shop", headers=headers).status_code == 200
    finally:
        lock.release()
    destroying.join(30)
    assert answers == [204]
    assert client.get("/api/v1/apps/shop", headers=headers).status_code == 404
