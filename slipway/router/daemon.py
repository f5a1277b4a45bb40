"""The router process: keep nginx in step with the route table published on Redis.

:func:`run_router` is the body of ``slipway router``. It subscribes to
ROUTES_CHANNEL, then reads ROUTES_KEY (in that order, so nothing published in
between is missed), starts or adopts nginx with that table and applies every
newer table it hears about. It reports each applied generation (APPLIED_KEY +
APPLIED_CHANNEL) and each failure (ERROR_KEY + ERROR_CHANNEL) for
:func:`slipway.router.publish.wait_applied`. Every few seconds it re-reads
ROUTES_KEY and checks that nginx is alive, so a missed message or a dead nginx is
repaired without anyone publishing. Redis going away is survived with backoff;
nginx keeps serving the last good table meanwhile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from slipway.router.controller import Nginx
from slipway.router.errors import ConfigRejectedError, InvalidRouteError, RouterError
from slipway.router.routes import (
    APPLIED_CHANNEL,
    APPLIED_KEY,
    ERROR_CHANNEL,
    ERROR_KEY,
    GENERATION_KEY,
    ROUTES_CHANNEL,
    ROUTES_KEY,
    RouteTable,
)

log = logging.getLogger("slipway.router")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
# How long one wait for a message may block, i.e. how soon a stop is noticed.
_LISTEN_SLICE = 0.25

# Raise the publishers' generation counter to at least the applied generation,
# so a Redis that lost its data does not hand out generations the router ignores.
_RAISE_COUNTER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""


def run_router(
    redis_url: str,
    nginx: Nginx,
    stop_event: threading.Event | None = None,
    *,
    resync_interval: float = 5.0,
) -> None:
    """Serve route tables from Redis through ``nginx`` until ``stop_event`` is set.

    Blocks. Stops nginx on the way out, however it leaves. Raises NginxError if
    nginx cannot be started at all (e.g. its port is taken); a table that fails
    validation or ``nginx -t`` is logged and reported, never fatal.
    """
    stop = stop_event or threading.Event()
    router = _Router(nginx)
    backoff = _Backoff()
    try:
        while not stop.is_set():
            client = redis.Redis.from_url(
                redis_url, socket_connect_timeout=2.0, socket_timeout=10.0,
                health_check_interval=30,
            )
            try:
                _serve(client, router, stop, resync_interval, backoff)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                delay = backoff.next()
                log.warning("router lost Redis at %s (%s); retrying in %.1f s",
                            _safe_url(redis_url), exc, delay)
                stop.wait(delay)
            finally:
                client.close()
    finally:
        nginx.stop()


class _Backoff:
    def __init__(self, first: float = _BACKOFF_FIRST, most: float = _BACKOFF_MAX) -> None:
        self.first, self.most, self.delay = first, most, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self.delay = self.first


def _serve(client: redis.Redis, router: _Router, stop: threading.Event,
           resync_interval: float, backoff: _Backoff) -> None:
    """Follow the table over one Redis connection until ``stop`` is set."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(ROUTES_CHANNEL)
        router.consider(client, _read_table(client), source="ROUTES_KEY")
        if router.applied is not None:
            client.eval(_RAISE_COUNTER, 1, GENERATION_KEY, router.applied)
        backoff.reset()
        next_resync = time.monotonic() + resync_interval
        while not stop.is_set():
            message = pubsub.get_message(timeout=_LISTEN_SLICE)
            newest: RouteTable | None = None
            # Drain what has queued up and apply only the newest table.
            while message is not None:
                table = _parse_message(message)
                if table is not None and (newest is None or table.generation > newest.generation):
                    newest = table
                message = pubsub.get_message(timeout=0)
            if newest is not None:
                router.consider(client, newest, source="message")
            if time.monotonic() >= next_resync:
                router.ensure_running()
                router.consider(client, _read_table(client), source="ROUTES_KEY")
                next_resync = time.monotonic() + resync_interval
    finally:
        pubsub.close()


class _Router:
    """What has been applied, and how to apply and report the next table."""

    def __init__(self, nginx: Nginx) -> None:
        self.nginx = nginx
        self.applied: int | None = None
        self.current: RouteTable | None = None
        self.failed: set[int] = set()

    def consider(self, client: redis.Redis, table: RouteTable | None, source: str) -> None:
        if self.applied is None:
            self._first(client, table)
            return
        if table is None or table.generation <= self.applied or table.generation in self.failed:
            return
        log.info("applying route table generation %d (%d routes, from %s)",
                 table.generation, len(table.routes), source)
        try:
            seconds = self.nginx.apply(table)
        except (InvalidRouteError, ConfigRejectedError) as exc:
            self._report_failure(client, table.generation, exc)
            return
        except RouterError as exc:
            # nginx misbehaved rather than the table: retry at the next resync.
            log.error("could not apply generation %d: %s", table.generation, exc.message)
            self._report_failure(client, table.generation, exc, permanent=False)
            if not self.nginx.running():
                self.ensure_running()
            return
        log.info("generation %d live in %.3f s", table.generation, seconds)
        self._report_applied(client, table)

    def _first(self, client: redis.Redis, table: RouteTable | None) -> None:
        """Start (or adopt) nginx with the first table read from Redis."""
        if table is None:
            if self.nginx.running():
                # Redis has no table (lost its data?): keep serving what nginx has
                # until someone publishes, rather than wiping every route.
                self.applied = self.nginx.served_generation() or 0
                log.warning("no route table in Redis; nginx keeps serving generation %d",
                            self.applied)
                return
            table = RouteTable(generation=0, routes=())
        try:
            self.nginx.start(table)
        except RouterError as exc:
            bad_table = isinstance(exc, InvalidRouteError | ConfigRejectedError)
            self._report_failure(client, table.generation, exc, permanent=bad_table)
            if self.nginx.running():
                # An adopted nginx keeps serving its last good config.
                self.applied = self.nginx.served_generation() or 0
                return
            if not bad_table:
                raise  # nginx itself won't start (port taken, binary missing...)
            # Nothing was serving: bring the edge up empty rather than not at all.
            empty = RouteTable(generation=0, routes=())
            self.nginx.start(empty)
            self.applied, self.current = 0, empty
            return
        self._report_applied(client, table)

    def ensure_running(self) -> None:
        """Restart nginx with the last applied table if it has died; make its runtime
        directory again if something (systemd-tmpfiles) removed it meanwhile."""
        if self.current is None:
            return
        if self.nginx.running():
            try:
                self.nginx.prepare_runtime()
            except RouterError as exc:
                log.error("nginx's runtime directory: %s", exc.message)
            return
        log.error("nginx is not running; restarting it with generation %d",
                  self.current.generation)
        try:
            self.nginx.start(self.current)
        except RouterError as exc:
            log.error("could not restart nginx: %s", exc.message)

    def _report_applied(self, client: redis.Redis, table: RouteTable) -> None:
        self.applied, self.current = table.generation, table
        client.set(APPLIED_KEY, table.generation)
        client.publish(APPLIED_CHANNEL, table.generation)

    def _report_failure(self, client: redis.Redis, generation: int, exc: RouterError,
                        permanent: bool = True) -> None:
        log.error("route table generation %d not applied: %s", generation, exc.message)
        if exc.detail:
            log.error("nginx said:\n%s", exc.detail)
        if permanent:
            self.failed.add(generation)
        report = json.dumps({**exc.to_dict(), "generation": generation})
        client.set(ERROR_KEY, report)
        client.publish(ERROR_CHANNEL, report)


def _read_table(client: redis.Redis) -> RouteTable | None:
    raw = client.get(ROUTES_KEY)
    if raw is None:
        return None
    return _parse(raw, "ROUTES_KEY")


def _parse_message(message: dict[str, Any]) -> RouteTable | None:
    if message.get("type") != "message":
        return None
    return _parse(message["data"], "a message")


def _parse(raw: bytes | str, where: str) -> RouteTable | None:
    """A RouteTable from JSON, or None (logged) if it is not shaped like one."""
    try:
        data = json.loads(raw)
        _check_shape(data)
        return RouteTable.from_json(raw)
    except (ValueError, TypeError, KeyError) as exc:
        log.error("ignoring a route table in %s that is not valid JSON of a table: %s",
                  where, exc)
        return None


def _check_shape(data: Any) -> None:
    # RouteTable.from_json would turn a string where a list belongs into a tuple
    # of characters; refuse wrong shapes before it gets the chance.
    if not isinstance(data, dict) or not isinstance(data.get("generation"), int):
        raise TypeError("expected an object with an integer generation")
    routes = data.get("routes")
    if not isinstance(routes, list):
        raise TypeError("routes is not a list")
    for route in routes:
        if not isinstance(route, dict) or not isinstance(route.get("app"), str):
            raise TypeError("a route is not an object with an app name")
        for key in ("hosts", "upstreams"):
            if not isinstance(route.get(key), list):
                raise TypeError(f"{key} of route {route['app']!r} is not a list")


def _safe_url(url: str) -> str:
    """``url`` without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
