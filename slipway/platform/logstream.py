"""Build logs as Redis streams, so the pusher and the dashboard see lines as they happen."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import redis

STREAM_TTL = 24 * 3600
END = "end"


@functools.cache
def connect(url: str) -> redis.Redis:
    # An explicit read timeout above the longest XREAD block used here (15 s): redis-py 8
    # defaults to 5 s, which cut off every follow() that waited 5 s for a line.
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                socket_timeout=60, socket_connect_timeout=5)


def build_log_key(app_uid: str, build_id: int) -> str:
    """The stream of one build's log. Keyed by the app's uid too: a build id can come
    back (SQLite reuses the ids of deleted rows), an app's uid never does."""
    return f"slipway:log:build:{app_uid}:{build_id}"


class LogWriter:
    """Appends lines to one build's stream and keeps a copy for the database."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")
        self.lines.append(line)
        self.client.xadd(self.key, {"line": line})

    def step(self, text: str) -> None:
        self(f"-----> {text}")

    def close(self, status: str) -> None:
        self.client.xadd(self.key, {END: status})
        self.client.expire(self.key, STREAM_TTL)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def follow(client: redis.Redis, key: str, *, idle_timeout: float) -> Iterator[tuple[str, str]]:
    """Yield ("line", text) for each line and finally ("end", status).

    Yields ("idle", "") each time nothing arrived for ``idle_timeout`` seconds, so
    a caller can say it is still waiting.
    """
    last_id = "0"
    while True:
        batch = client.xread({key: last_id}, block=int(idle_timeout * 1000), count=500)
        if not batch:
            yield "idle", ""
            continue
        for entry_id, fields in batch[0][1]:
            last_id = entry_id
            if END in fields:
                yield END, fields[END]
                return
            yield "line", fields.get("line", "")
