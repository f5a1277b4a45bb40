"""The publisher's side: hand the router a new route table and wait until it serves it.

The deployer (or anything else that changes routes) calls :func:`publish_routes`
with the complete list of routes, then :func:`wait_applied` with the generation it
got back. The router (``slipway.router.daemon``) may run on another host; Redis is
the only thing the two share.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from slipway.router.errors import ApplyFailedError, ApplyTimeoutError
from slipway.router.nginx import validate_routes
from slipway.router.routes import (
    APPLIED_CHANNEL,
    APPLIED_KEY,
    ERROR_CHANNEL,
    ERROR_KEY,
    GENERATION_KEY,
    ROUTES_CHANNEL,
    ROUTES_KEY,
    Route,
    RouteTable,
)

# How often wait_applied re-reads the keys when no notification arrives (a
# notification can be missed across a reconnect; the keys cannot).
_RECHECK_INTERVAL = 0.1


def publish_routes(redis_client: redis.Redis, routes: Iterable[Route]) -> int:
    """Publish ``routes`` as the router's new, complete route table; return its generation.

    The routes are validated first (InvalidRouteError, and nothing is published,
    if any is invalid). Then, in one Redis transaction, the generation counter
    is incremented, the table is stored under ROUTES_KEY and published on
    ROUTES_CHANNEL, so concurrent publishers never leave an older table stored
    over a newer one. Raises redis.RedisError if Redis cannot be reached.
    """
    checked = validate_routes(list(routes))

    def publish(pipe: Any) -> int:
        generation = int(pipe.get(GENERATION_KEY) or 0) + 1
        payload = RouteTable(generation=generation, routes=checked).to_json()
        pipe.multi()
        # WATCH on the counter makes this INCR yield exactly `generation`, or the
        # transaction is retried with a fresh read.
        pipe.incr(GENERATION_KEY)
        pipe.set(ROUTES_KEY, payload)
        pipe.publish(ROUTES_CHANNEL, payload)
        return generation

    return redis_client.transaction(publish, GENERATION_KEY, value_from_callable=True)


def wait_applied(redis_client: redis.Redis, generation: int, timeout: float) -> None:
    """Return once the router serves ``generation`` or a newer table.

    Raises ApplyFailedError if the router reports that it could not apply
    ``generation`` or a newer one (its message says why, e.g. what ``nginx -t``
    said), or ApplyTimeoutError if neither happens within ``timeout`` seconds
    (for instance because no router is running). Raises redis.RedisError if
    Redis cannot be reached.
    """
    deadline = time.monotonic() + timeout
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    try:
        # Subscribe before the first read, so an update between the two is not lost.
        pubsub.subscribe(APPLIED_CHANNEL, ERROR_CHANNEL)
        while True:
            applied_raw, error_raw = redis_client.mget(APPLIED_KEY, ERROR_KEY)
            applied = _int_or_none(applied_raw)
            if applied is not None and applied >= generation:
                return
            error = _error_or_none(error_raw)
            if error is not None and error["generation"] >= generation:
                failed = error["generation"]
                which = "it" if failed == generation else f"the newer generation {failed}"
                raise ApplyFailedError(
                    f"The router could not apply route table generation {generation}: "
                    f"{which} failed: {error.get('message', 'no reason given')}",
                    generation=failed, field=error.get("field"), detail=error.get("detail"),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApplyTimeoutError(
                    f"The router did not apply route table generation {generation} within "
                    f"{timeout:g} s (it last applied "
                    f"{'none' if applied is None else applied}); is `slipway router` running?",
                    generation=generation,
                )
            pubsub.get_message(timeout=min(remaining, _RECHECK_INTERVAL))
    finally:
        pubsub.close()


def _int_or_none(raw: bytes | str | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _error_or_none(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("generation"), int):
        return None
    return data
