"""`slipway up`: every part of Slipway as child processes of one command."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

import redis

from slipway.config import Settings

logger = logging.getLogger(__name__)

PARTS = ("router", "worker", "beat", "web")


# A part that dies is started again after this delay, doubled after each quick death.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
# A part that ran this long before dying gets the first delay again.
STABLE_AFTER = 60.0


class Supervisor:
    """Starts redis-server (when none answers), the router, worker, beat and web; stops them all.

    A part that dies (a killed worker, say) is started again with a growing delay,
    so one failing part cannot spin; Redis, which every part needs, is not.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.delays: dict[str, float] = {}
        self.restart_at: dict[str, float] = {}

    def start(self) -> None:
        if not self._redis_answers():
            self._start_redis()
        for part in PARTS:
            self._spawn(part)
        # Converge with Docker once everything runs (containers lost in a reboot come back).
        from slipway.platform import tasks

        tasks.reconcile_all.delay()

    def _spawn(self, part: str) -> None:
        # A process group of its own: what the part forks (gunicorn's and Celery's
        # workers) is stopped with it, even when the part itself is gone first.
        self.children[part] = subprocess.Popen([sys.executable, "-m", "slipway", part],
                                               start_new_session=True)
        self.started_at[part] = time.monotonic()

    def check(self) -> None:
        """Start again the parts that died, once their delay is over.

        Raises SystemExit when Redis died: without it no part works.
        """
        now = time.monotonic()
        for name, proc in list(self.children.items()):
            if proc.poll() is None:
                continue
            if name == "redis":
                raise SystemExit(f"redis-server exited with status {proc.returncode}")
            if name not in self.restart_at:
                ran = now - self.started_at.get(name, now)
                delay = RESTART_DELAY if ran >= STABLE_AFTER else min(
                    MAX_RESTART_DELAY, self.delays.get(name, RESTART_DELAY / 2) * 2)
                self.delays[name] = delay
                self.restart_at[name] = now + delay
                logger.warning("slipway %s exited with status %s; starting it again in %.1f s",
                               name, proc.returncode, delay)
            elif now >= self.restart_at[name]:
                del self.restart_at[name]
                self._spawn(name)

    def stop(self) -> None:
        for proc in reversed(list(self.children.values())):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.settings.stop_timeout + 5
        for name, proc in self.children.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if name in PARTS:  # what it forked and left behind goes with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self.children.clear()

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.settings.redis_url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def _start_redis(self) -> None:
        url = urllib.parse.urlsplit(self.settings.redis_url)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"No Redis answers at {self.settings.redis_url}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("No Redis answers and redis-server is not installed")
        workdir = self.settings.home / "redis"
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        workdir.chmod(0o700)
        # dump.rdb holds every queued task and log line: Redis writes it with the
        # umask's mode, so give it one that makes it 0600 (and an old one too).
        with contextlib.suppress(FileNotFoundError):
            (workdir / "dump.rdb").chmod(0o600)
        logger.info("starting redis-server on port %s", url.port or 6379)
        self.children["redis"] = subprocess.Popen(
            [binary, "--port", str(url.port or 6379), "--bind", "127.0.0.1", "--dir",
             str(workdir), "--daemonize", "no", "--save", "60 1", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, umask=0o077,
        )
        deadline = time.monotonic() + 10
        while not self._redis_answers():
            if time.monotonic() > deadline or self.children["redis"].poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
