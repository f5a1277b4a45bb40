"""What every API module shares: the blueprint, JSON bodies, pagination."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request

from slipway.platform.errors import BadRequest

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_JSON_BYTES = 1024 * 1024
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


def json_body() -> object:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise BadRequest(f"Request body is larger than {MAX_JSON_BYTES} bytes")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("Request body must be JSON")
    return data


def page_args() -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}", field=name)
        return int(raw)

    return number("limit", 50, 1, 100), number("offset", 0, 0, 10**9)


def page(items: list[dict], total: int, limit: int, offset: int):
    return jsonify(items=items, total=total, limit=limit, offset=offset)
