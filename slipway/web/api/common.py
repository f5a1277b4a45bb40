"""What every API module shares: the blueprint, JSON bodies, pagination."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from slipway.platform.errors import BadRequest, TooLarge, UnsupportedMediaType
from slipway.web.app import limit_body, settings

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# The largest id a row can have (PostgreSQL's INTEGER); a larger one in a URL names
# nothing, and handing it to the database would overflow into a 500.
MAX_DB_ID = 2**31 - 1


def iso(moment: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands datetimes back without their zone."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat()


bp.before_request(limit_body)


def json_body() -> object:
    """The request's JSON body. Raises UnsupportedMediaType (not sent as JSON),
    BadRequest (not JSON) or TooLarge."""
    if not request.is_json and (request.content_length or request.mimetype):
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json")
    limit = settings().max_body_bytes
    try:
        data = request.get_data(cache=True)  # at most one byte past the limit
    except RequestEntityTooLarge as exc:
        raise TooLarge(f"Request body is larger than {limit} bytes") from exc
    if len(data) > limit:
        raise TooLarge(f"Request body is larger than {limit} bytes")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("Request body must be JSON")
    return data


def optional_json_body() -> dict:
    """A JSON object body that may be left out (an empty body is ``{}``). Raises as
    ``json_body`` does, and BadRequest for JSON that is not an object."""
    if not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object")
    return body


def page_args() -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}", field=name)
        return int(raw)

    return number("limit", 50, 1, 100), number("offset", 0, 0, 10**9)


def page(items: list[dict], total: int, limit: int, offset: int):
    return jsonify(items=items, total=total, limit=limit, offset=offset)
