"""Health checks: what an app declares (app.json), resolved against the settings.

A release stores its resolved checks (``Release.healthchecks``), so a restart,
a scale or a rollback checks the new containers exactly as the deploy of that
release did. Releases made before health checks were stored (NULL) get the
settings' default check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from slipway.config import Settings


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
