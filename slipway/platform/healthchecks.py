"""Health checks: what an app declares (app.json), resolved against the settings.

A release stores its resolved checks (``Release.healthchecks``), so a restart,
a scale or a rollback checks the new containers exactly as the deploy of that
release did. Releases made before health checks were stored (NULL) get the
settings' default check. Every probe asks as users do (:class:`Front`): the app's
own host and the router's proxy headers.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from slipway.config import Settings
from slipway.platform import certificates
from slipway.platform.domains import default_host

USER_AGENT = "slipway-healthcheck"
# The client address the probe claims: the router's host, where the probe comes from.
PROBE_CLIENT = "127.0.0.1"


@dataclass(frozen=True)
class HealthCheck:
    """One startup check of a web container.

    ``path`` is requested on the container's ``PORT``; each request may take
    ``timeout`` seconds; an answer that is not a pass counts as one of
    ``attempts``, with ``wait`` seconds before the next. ``initial_delay`` is
    waited once, before the first request. A pass is a 2xx/3xx answer (with
    ``content`` in its body when given); ``any_status`` (the default check,
    which only asks that the app answers) also passes any answer below 500.
    """

    path: str
    timeout: float
    attempts: int
    wait: float
    initial_delay: float = 0.0
    content: str | None = None
    any_status: bool = False

    def describe(self) -> str:
        return f"GET {self.path}" + (f" containing {self.content!r}" if self.content else "")


def default_check(settings: Settings) -> HealthCheck:
    """The check of an app that declares none: it answers HTTP on PORT."""
    return HealthCheck(
        path=settings.health_path, timeout=settings.health_request_timeout,
        attempts=settings.health_attempts, wait=settings.health_wait, any_status=True,
    )


def resolve(settings: Settings, declared: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The checks to store on a release: each declared one with the settings' defaults
    filled in, or the default check for ``web`` when none is declared."""
    default = default_check(settings)
    web = [
        HealthCheck(
            path=check.get("path", default.path),
            timeout=check.get("timeout", default.timeout),
            attempts=check.get("attempts", default.attempts),
            wait=check.get("wait", default.wait),
            initial_delay=check.get("initial_delay", 0.0),
            content=check.get("content"),
        )
        for check in declared.get("web", [])
    ] or [default]
    return {"web": [asdict(check) for check in web]}


def web_checks(settings: Settings, stored: dict | None) -> list[HealthCheck]:
    """The checks of a release's web containers (the default for a release without any)."""
    if not stored or not stored.get("web"):
        return [default_check(settings)]
    return [HealthCheck(**check) for check in stored["web"]]


@dataclass(frozen=True)
class Front:
    """How users reach an app: through the router, at its default host.

    A probe sends what the router sends (see the ``proxy_set_header`` lines of
    ``slipway.router.nginx``), so an app that checks Host (Django's ALLOWED_HOSTS)
    or X-Forwarded-Proto (a redirect to HTTPS, a secure-cookie check) answers its
    health check as it answers users, not as it answers a stranger at its IP.
    """

    host: str
    port: int
    https: bool

    @property
    def http_host(self) -> str:
        """The Host header users send: the host, with the port when not the scheme's own."""
        return self.host if self.port == (443 if self.https else 80) else f"{self.host}:{self.port}"

    @property
    def proto(self) -> str:
        return "https" if self.https else "http"

    def headers(self) -> dict[str, str]:
        """The headers of one probe request (a new request id each call)."""
        return {
            "Host": self.http_host,
            "User-Agent": USER_AGENT,
            "X-Real-IP": PROBE_CLIENT,
            "X-Forwarded-For": PROBE_CLIENT,
            "X-Forwarded-Proto": self.proto,
            "X-Forwarded-Host": self.http_host,
            "X-Forwarded-Port": str(self.port),
            # nginx's $request_id: 32 hex digits.
            "X-Request-Id": secrets.token_hex(16),
        }

    def describe(self) -> str:
        return f"Host {self.http_host}, X-Forwarded-Proto {self.proto}"


def front(settings: Settings, app_name: str) -> Front:
    """How users reach ``app_name`` now: over HTTPS once its default host has a
    certificate (the router then redirects HTTP there), else over HTTP."""
    host = default_host(settings, app_name)
    https = settings.tls != "off" and certificates.store(settings).get(host) is not None
    return Front(host=host, port=settings.https_port if https else settings.http_port,
                 https=https)
