"""`slipway up`: every part of Slipway as child processes of one command."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import urllib.parse

import redis

from slipway.config import Settings

logger = logging.getLogger(__name__)

PARTS = ("router", "worker", "beat", "web")


class Supervisor:
    """Starts redis-server (when none answers), the router, worker, beat and web; stops them all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        if not self._redis_answers():
            self._start_redis()
        for part in PARTS:
            self.children[part] = subprocess.Popen([sys.executable, "-m", "slipway", part])
        # Converge with Docker once everything runs (containers lost in a reboot come back).
        from slipway.platform import tasks

        tasks.reconcile_all.delay()

    def check(self) -> None:
        """Raise SystemExit when a part died: a half-running Slipway is worse than none."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise SystemExit(f"slipway {name} exited with status {proc.returncode}")

    def stop(self) -> None:
        for proc in reversed(list(self.children.values())):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.settings.stop_timeout + 5
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
        workdir.mkdir(parents=True, exist_ok=True)
        logger.info("starting redis-server on port %s", url.port or 6379)
        self.children["redis"] = subprocess.Popen(
            [binary, "--port", str(url.port or 6379), "--bind", "127.0.0.1", "--dir",
             str(workdir), "--daemonize", "no", "--save", "60 1", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._redis_answers():
            if time.monotonic() > deadline or self.children["redis"].poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
