"""The web dashboard: server-rendered pages behind a password sign-in.

The blueprint, its session and CSRF handling live here; `views` registers the
pages. Later features (formations, capsules, domains) add their own view
modules and link them from `templates/dashboard/app.html`'s tab list.
"""

from __future__ import annotations

import functools
import hmac
import secrets

import redis
from flask import (
    Blueprint,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from slipway.platform.errors import SlipwayError
from slipway.platform.logstream import connect
from slipway.platform.models import User
from slipway.platform.users import SessionStore
from slipway.web.app import db_session, limit_body, settings

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/dashboard")

SESSIONS_DOWN = "Sign-in is unavailable: Slipway cannot reach Redis, where sessions are kept."
CSRF_MESSAGE = "This form has expired or lacks its security token: reload the page and try again."


def csrf_token() -> str:
    """The session's CSRF token (made on first use); every form posts it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.app_context_processor
def _template_globals() -> dict:
    return {"csrf_token": csrf_token}


bp.before_request(limit_body)


@bp.before_request
def _check_csrf() -> None:
    # Only this blueprint's forms: the API and git authenticate with tokens, not cookies.
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            abort(400, CSRF_MESSAGE)


def session_store() -> SessionStore:
    s = settings()
    return SessionStore(connect(s.redis_url), s.instance_id, s.resolved_secret_key(),
                        hours=s.session_hours)


def signed_in_user() -> User | None:
    """The user of the request's session; the cookie holds only the session's random id."""
    sid = session.get("sid")
    if sid is None:
        return None
    try:
        user = session_store().user(db_session(), sid)
    except redis.RedisError:
        # Sessions live in Redis: without it nobody can be told apart, so nobody gets in.
        abort(503, SESSIONS_DOWN)
    if user is None:
        session.clear()
    return user


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (a new one, so a planted cookie is worthless)."""
    store = session_store()
    store.end(session.get("sid"))
    session.clear()
    session.permanent = True
    session["sid"] = store.create(user)
    csrf_token()


def sign_out() -> None:
    """End the request's session on the server, so a copy of its cookie is worthless too."""
    session_store().end(session.get("sid"))
    session.clear()


def login_required(view):
    """Run the view with ``g.user`` set; send anyone signed out to the sign-in page."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user = signed_in_user()
        if user is None:
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        g.user = user
        return view(*args, **kwargs)

    return wrapper


@bp.errorhandler(SlipwayError)
def _domain_error(exc: SlipwayError):
    return render_template("dashboard/error.html", status=exc.status, message=exc.message), \
        exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return render_template("dashboard/error.html", status=exc.code, message=exc.description), \
        exc.code


@bp.after_request
def _headers(response):
    # The pages use only their own script and style; nothing may frame them.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


from slipway.web.dashboard import (  # noqa: E402,F401 - register the pages
    capsules,
    domains,
    formation,
    views,
)
