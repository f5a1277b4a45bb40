"""Counting failures in fixed windows in Redis: sign-ins, and API and git tokens.

A key counts failures for one client (hashed, so no address or email sits in
Redis in the clear); the first failure starts the window, and once ``limit``
failures are counted the client waits until the window ends.
"""

from __future__ import annotations

import hashlib

import redis


class FailureLimit:
    """``limit`` failures per ``window`` seconds for each client of one kind."""

    def __init__(self, client: redis.Redis, instance: str, kind: str, *, limit: int,
                 window: int) -> None:
        self.client = client
        # Installations sharing one Redis count apart.
        self.prefix = f"slipway:{instance}:{kind}-failures:"
        self.limit = limit
        self.window = window

    def key(self, who: str) -> str:
        digest = hashlib.sha256(who.encode()).hexdigest()[:32]
        return self.prefix + digest

    def retry_after(self, who: str) -> int:
        """Seconds ``who`` must wait before trying again; 0 when not limited."""
        key = self.key(who)
        if int(self.client.get(key) or 0) < self.limit:
            return 0
        return max(int(self.client.ttl(key)), 1)

    def fail(self, who: str) -> None:
        """Count one failure of ``who``."""
        with self.client.pipeline() as pipe:
            pipe.incr(self.key(who))
            pipe.expire(self.key(who), self.window, nx=True)
            pipe.execute()

    def reset(self, who: str) -> None:
        self.client.delete(self.key(who))
