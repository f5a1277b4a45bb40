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
class HostCertificate:
    """A certificate for one host: PEM files (full chain, and its key) on the router's disk."""

    host: str
    certificate: str
    key: str


@dataclass(frozen=True)
class Route:
    """Requests for any of ``hosts`` go to one of ``upstreams`` ("ip:port").

    Hosts listed in ``certificates`` are also served over HTTPS, and their plain
    HTTP requests redirect there; ``hsts`` adds a Strict-Transport-Security header
    to those HTTPS responses.
    """

    app: str
    hosts: tuple[str, ...]
    upstreams: tuple[str, ...]
    certificates: tuple[HostCertificate, ...] = ()
    hsts: bool = False

    def to_dict(self) -> dict:
        data: dict = {"app": self.app, "hosts": list(self.hosts),
                      "upstreams": list(self.upstreams)}
        # Only written when set, so tables without TLS keep their old shape.
        if self.certificates:
            data["certificates"] = [
                {"host": c.host, "certificate": c.certificate, "key": c.key}
                for c in self.certificates
            ]
        if self.hsts:
            data["hsts"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Route:
        """A Route from :meth:`to_dict`'s shape; the TLS keys are optional (older tables)."""
        return cls(
            app=data["app"], hosts=tuple(data["hosts"]), upstreams=tuple(data["upstreams"]),
            certificates=tuple(
                HostCertificate(host=c["host"], certificate=c["certificate"], key=c["key"])
                for c in data.get("certificates") or ()
            ),
            hsts=bool(data.get("hsts", False)),
        )


@dataclass(frozen=True)
class RouteTable:
    generation: int
    routes: tuple[Route, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "routes": [r.to_dict() for r in self.routes],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RouteTable:
        data = json.loads(text)
        return cls(
            generation=int(data["generation"]),
            routes=tuple(Route.from_dict(r) for r in data["routes"]),
        )
