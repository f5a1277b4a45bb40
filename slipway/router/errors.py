"""The router's errors: one hierarchy, with structured fields callers can show or map.

Every failure the router package reports is a :class:`RouterError`. ``message`` is
one line a user can read; ``code`` is stable for machines (API error bodies, CLI
exit codes); ``field`` names the offending input (``routes[2].hosts[0]``) when
there is one; ``detail`` carries what nginx said, verbatim, for logs.
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    """Base of every error raised by ``slipway.router``."""

    code = "router_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        generation: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.generation = generation
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (for JSON bodies, Redis, logs)."""
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            data["field"] = self.field
        if self.generation is not None:
            data["generation"] = self.generation
        if self.detail is not None:
            data["detail"] = self.detail
        return data


class InvalidRouteError(RouterError):
    """A value in the route table (or a render argument) failed validation.

    Raised before anything is rendered, so no unvalidated string reaches nginx.
    """

    code = "invalid_route"


class ConfigRejectedError(RouterError):
    """``nginx -t`` rejected the rendered configuration; the live one is untouched."""

    code = "config_rejected"


class NginxError(RouterError):
    """nginx could not be started, reloaded or stopped, or did not serve in time."""

    code = "nginx_failed"


class ApplyTimeoutError(RouterError):
    """The router did not report a generation as applied before the deadline."""

    code = "apply_timeout"


class ApplyFailedError(RouterError):
    """The router reported that it could not apply a generation (or a newer one)."""

    code = "apply_failed"
