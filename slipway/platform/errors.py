"""The one error hierarchy of the domain core.

Every error carries a machine-readable ``code``, a ``message`` users read as it
is, and the ``field`` it is about when there is one. The web layer maps them to
HTTP in one handler (``status``); the CLI maps them to exit codes.
"""

from __future__ import annotations


class SlipwayError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(SlipwayError):
    code = "invalid"
    status = 422


class BadRequest(SlipwayError):
    code = "bad_request"
    status = 400


class Unauthorized(SlipwayError):
    code = "unauthorized"
    status = 401


class Forbidden(SlipwayError):
    code = "forbidden"
    status = 403


class NotFound(SlipwayError):
    code = "not_found"
    status = 404


class Conflict(SlipwayError):
    code = "conflict"
    status = 409


class TooLarge(SlipwayError):
    code = "too_large"
    status = 413


class InsufficientStorage(SlipwayError):
    code = "insufficient_storage"
    status = 507


class UnsupportedMediaType(SlipwayError):
    code = "unsupported_media_type"
    status = 415


class TooManyRequests(SlipwayError):
    """Too many failures from one client; it may try again after ``retry_after`` seconds."""

    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class DeployFailed(SlipwayError):
    """A release could not be started; the running release keeps serving."""

    code = "deploy_failed"
    status = 500
