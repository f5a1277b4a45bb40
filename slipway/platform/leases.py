"""Leases: Redis keys that live only while their holder keeps renewing them.

A process that is killed (SIGKILL, a lost host) cannot clean up after itself.
What it held must therefore expire on its own, soon: a short time to live that a
background thread renews while the holder works. ``LeasedLock`` is the app's
deploy lock built that way; ``Heartbeat`` marks a build as alive, so a build
whose worker died can be told from one that is still running on another worker.
"""

from __future__ import annotations

import logging
import threading

import redis
import redis.exceptions
import redis.lock

logger = logging.getLogger(__name__)


class _Renewer:
    """A daemon thread calling ``renew`` every ``interval`` seconds until stopped."""

    def __init__(self, renew, interval: float, what: str) -> None:
        self._renew = renew
        self._interval = interval
        self._what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"renew {what}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._renew():
                    logger.warning("lost %s: it expired before it was renewed", self._what)
                    return
            except redis.exceptions.RedisError as exc:
                # Keep trying: the lease lasts a few intervals, Redis may come back.
                logger.warning("could not renew %s: %s", self._what, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._interval + 5)


class LeasedLock(redis.lock.Lock):
    """A Redis lock with a short TTL that its holder renews every third of it.

    Use ``redis_client.lock(name, timeout=ttl, lock_class=LeasedLock,
    thread_local=False)``: the renewing thread must see the holder's token. When
    the holding process dies, the lock is free again within ``timeout`` seconds.
    """

    _renewer: _Renewer | None = None

    def acquire(self, *args, **kwargs) -> bool:
        acquired = super().acquire(*args, **kwargs)
        if acquired and self.timeout:
            self._renewer = _Renewer(self._reacquire, self.timeout / 3, f"lock {self.name}")
        return acquired

    def _reacquire(self) -> bool:
        try:
            return self.reacquire()
        except redis.exceptions.LockNotOwnedError:
            return False

    def release(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.stop()
        super().release()


def heartbeat_key(instance: str, kind: str, ident: int | str) -> str:
    return f"slipway:{instance}:alive:{kind}:{ident}"


class Heartbeat:
    """Keeps ``key`` set (with a ``ttl``-second expiry) while the block runs.

    ``alive(client, key)`` is how others ask; after the block, or when the process
    died, the key is gone (at most ``ttl`` seconds later).
    """

    def __init__(self, client: redis.Redis, key: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self._renewer: _Renewer | None = None

    def __enter__(self) -> Heartbeat:
        self.client.set(self.key, "1", px=self.ttl_ms)
        self._renewer = _Renewer(
            lambda: bool(self.client.set(self.key, "1", px=self.ttl_ms)),
            self.ttl_ms / 3000, self.key)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._renewer is not None:
            self._renewer.stop()
        try:
            self.client.delete(self.key)
        except redis.exceptions.RedisError:
            pass  # it expires on its own


def alive(client: redis.Redis, key: str) -> bool:
    return bool(client.exists(key))
