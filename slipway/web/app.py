"""The Flask application factory."""

from __future__ import annotations

import datetime as dt

from flask import Flask, g, jsonify
from werkzeug.exceptions import ClientDisconnected, HTTPException

from slipway.config import Settings, get_settings
from slipway.platform.db import sessions
from slipway.platform.errors import SlipwayError, TooLarge


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    settings.ensure_home()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.resolved_secret_key(),
        SLIPWAY=settings,
        MAX_CONTENT_LENGTH=None,  # pushes can be large; JSON bodies are capped in the API
        # The dashboard's session cookie: no script may read it, no other site may send it
        # with a form post, and only over HTTPS when the dashboard is served that way.
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
    )

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    @app.errorhandler(SlipwayError)
    def _domain_error(exc: SlipwayError):
        return jsonify(error=exc.to_dict()), exc.status, error_headers(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if isinstance(exc, ClientDisconnected):
            # The body stopped short: the client went away, or stalled past
            # SLIPWAY_CLIENT_TIMEOUT (the web process's socket timeout).
            message = "The request body did not arrive in time"
            return jsonify(error={"code": "request_timeout", "message": message}), 408
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code

    from slipway.web import api, dashboard, git

    app.register_blueprint(api.bp)
    app.register_blueprint(git.bp)
    app.register_blueprint(dashboard.bp)
    return app


def error_headers(exc: SlipwayError) -> dict[str, str]:
    """The headers an error answer carries besides its body (Retry-After for a 429)."""
    retry_after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


def limit_body() -> None:
    """Refuse a body larger than SLIPWAY_MAX_BODY_BYTES (413) before anything reads it
    (API and dashboard; git has its own limit). A body sent without Content-Length
    (chunked) is read to one byte past the limit, for ``json_body`` to refuse."""
    from flask import current_app, request

    limit = current_app.config["SLIPWAY"].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"Request body is larger than {limit} bytes")
    request.max_content_length = limit + 1


def db_session():
    """The request's database session (opened on first use, closed at teardown)."""
    from flask import current_app

    if "db" not in g:
        g.db = sessions(current_app.config["SLIPWAY"].database)()
    return g.db


def settings() -> Settings:
    from flask import current_app

    return current_app.config["SLIPWAY"]
