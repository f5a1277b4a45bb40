"""The route table: the router's only input, as plain data."""

from __future__ import annotations

import json
from dataclasses import dataclass

# Redis keys and channels shared by whoever publishes routes and the router.
ROUTES_KEY = "slipway:router:routes"
ROUTES_CHANNEL = "slipway:router:routes"
APPLIED_KEY = "slipway:router:applied"
APPLIED_CHANNEL = "slipway:router:applied"
# The counter publishers take generations from.
GENERATION_KEY = "slipway:router:generation"
# The router's last failure, as JSON {"generation", "code", "message", ...}; the
# same JSON is published on ERROR_CHANNEL.
ERROR_KEY = "slipway:router:error"
ERROR_CHANNEL = "slipway:router:error"


@dataclass(frozen=True)
class Route:
    """Requests for any of ``hosts`` go to one of ``upstreams`` ("127.0.0.1:port")."""

    app: str
    hosts: tuple[str, ...]
    upstreams: tuple[str, ...]


@dataclass(frozen=True)
class RouteTable:
    generation: int
    routes: tuple[Route, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "routes": [
                    {"app": r.app, "hosts": list(r.hosts), "upstreams": list(r.upstreams)}
                    for r in self.routes
                ],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RouteTable:
        data = json.loads(text)
        return cls(
            generation=int(data["generation"]),
            routes=tuple(
                Route(app=r["app"], hosts=tuple(r["hosts"]), upstreams=tuple(r["upstreams"]))
                for r in data["routes"]
            ),
        )
