"""The dashboard's pages: sign-in, apps, builds, config vars, logs and API tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlsplit

import redis
from docker.errors import DockerException
from flask import (
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from slipway.platform import apps as app_service
from slipway.platform import builds as build_service
from slipway.platform import config_vars, runtime, users
from slipway.platform import releases as release_service
from slipway.platform.applogs import app_log_lines
from slipway.platform.errors import InvalidInput, SlipwayError
from slipway.platform.lifecycle import destroy_app, release_config_change
from slipway.platform.logstream import END, build_log_key, connect, follow
from slipway.platform.models import App, BuildStatus, Release
from slipway.platform.ratelimit import FailureLimit
from slipway.web.app import db_session, settings
from slipway.web.dashboard import (
    SESSIONS_DOWN,
    bp,
    login_required,
    sign_in,
    sign_out,
)

WRONG_LOGIN = "Wrong email or password"
PAGE_LOG_LINES = 1000  # lines the log view keeps; older ones leave the page


# --- Sign-in --------------------------------------------------------------------


def _sign_in_limits() -> tuple[FailureLimit, FailureLimit]:
    """Failures per address and email, and per address across emails (one password
    tried against many accounts)."""
    s = settings()
    client = connect(s.redis_url)
    return (FailureLimit(client, s.instance_id, "login", limit=s.login_max_failures,
                         window=s.login_window_seconds),
            FailureLimit(client, s.instance_id, "login-address",
                         limit=s.login_max_failures_per_address,
                         window=s.login_window_seconds))


MAX_NEXT = 2048


def safe_next(target: object) -> str | None:
    r"""``target`` when it is a path on this site, else None.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    ``/\t/evil.example`` or ``/\evil.example`` would leave the site: any whitespace,
    control character or backslash is refused, as is anything with a scheme or host.
    """
    if not isinstance(target, str) or not target.startswith("/") or len(target) > MAX_NEXT:
        return None
    if target.startswith("//") or "\\" in target:
        return None
    if any(c.isspace() or not c.isprintable() for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.get("/")
def index():
    return redirect(url_for("dashboard.apps"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "")[:320]
        password = request.form.get("password", "")[: users.MAX_PASSWORD_LENGTH]
        address = request.remote_addr or ""
        per_email, per_address = _sign_in_limits()
        who = f"{address}|{email.strip().lower()}"
        try:
            error = _limited(per_email.retry_after(who), "for this email ") or \
                _limited(per_address.retry_after(address), "")
            if error is None:
                user = users.verify_login(db_session(), email, password)
                if user is not None:
                    # The per-address count stays: signing in to one's own account must not
                    # clear the way for guesses at others'.
                    per_email.reset(who)
                    sign_in(user)
                    return redirect(safe_next(request.args.get("next"))
                                    or url_for("dashboard.apps"))
                per_email.fail(who)
                per_address.fail(address)
                error = WRONG_LOGIN
        except redis.RedisError:
            abort(503, SESSIONS_DOWN)
    status = 200 if error is None else (429 if error != WRONG_LOGIN else 401)
    return render_template("dashboard/login.html", error=error, email=email), status


def _limited(wait: int, scope: str) -> str | None:
    if not wait:
        return None
    return f"Too many failed sign-ins {scope}from your address: try again in {-(-wait // 60)} min"


@bp.post("/logout")
def logout():
    try:
        sign_out()
    except redis.RedisError:
        abort(503, SESSIONS_DOWN)
    flash("Signed out")
    return redirect(url_for("dashboard.login"))


# --- Apps -----------------------------------------------------------------------


def _running_apps() -> set[str] | None:
    """Uids of apps with a running container; None when Docker does not answer."""
    try:
        containers = runtime.app_containers(runtime.docker_client(), settings().instance_id)
    except DockerException:
        return None
    return {c.get("Labels", {}).get(runtime.LABEL_APP, "") for c in containers}


@bp.route("/apps", methods=["GET", "POST"])
@login_required
def apps():
    session_ = db_session()
    errors: dict[str, str] = {}
    name = ""
    if request.method == "POST":
        name = request.form.get("name", "")[:100]
        try:
            app = app_service.create_app(session_, g.user, name)
            session_.commit()
            git_url = app_service.git_url(settings(), app)
            flash(f"Created {app.name}. Push to it: git push {git_url} main")
            return redirect(url_for("dashboard.app", name=app.name))
        except SlipwayError as exc:
            session_.rollback()
            errors[exc.field or "name"] = exc.message
    rows, _total = app_service.list_apps(session_, g.user, limit=1000, offset=0)
    page = render_template("dashboard/apps.html", apps=rows, running=_running_apps(),
                           errors=errors, name=name,
                           url=lambda a: app_service.app_url(settings(), a))
    return page, (422 if errors else 200)


def _app(name: str) -> App:
    return app_service.get_app(db_session(), g.user, name)


@bp.get("/apps/<name>")
@login_required
def app(name: str):
    app = _app(name)
    releases, _ = release_service.list_releases(db_session(), app, limit=20, offset=0)
    builds, _ = build_service.list_builds(db_session(), app, limit=20, offset=0)
    running = _running_apps()
    return render_template(
        "dashboard/app.html", app=app, releases=releases, builds=builds,
        running=None if running is None else app.uid in running,
        url=app_service.app_url(settings(), app), git_url=app_service.git_url(settings(), app),
    )


@bp.post("/apps/<name>/destroy")
@login_required
def destroy(name: str):
    app = _app(name)
    if request.form.get("confirm", "") != app.name:
        flash(f"Type the app's name ({app.name}) to destroy it; nothing was done", "error")
        return redirect(url_for("dashboard.app", name=app.name))
    destroy_app(db_session(), settings(), app, actor=g.user)
    flash(f"Destroyed {name}")
    return redirect(url_for("dashboard.apps"))


# --- Builds ---------------------------------------------------------------------


@bp.get("/apps/<name>/builds/<int:build_id>")
@login_required
def build(name: str, build_id: int):
    app = _app(name)
    row = build_service.get_build(db_session(), app, build_id)
    live = row.status in (BuildStatus.PENDING, BuildStatus.BUILDING)
    return render_template("dashboard/build.html", app=app, build=row, live=live)


def sse(event: str, data: str) -> str:
    """One server-sent event; each line of ``data`` becomes a ``data:`` field."""
    lines = data.replace("\r", "").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _sse_response(events: Iterator[str]) -> Response:
    response = Response(events, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold lines back
    return response


@bp.get("/apps/<name>/builds/<int:build_id>/stream")
@login_required
def build_stream(name: str, build_id: int):
    app = _app(name)
    build_service.get_build(db_session(), app, build_id)  # 404 for others' builds
    key = build_log_key(app.uid, build_id)
    redis_client = connect(settings().redis_url)
    db_session().close()

    def events():
        for kind, text in follow(redis_client, key, idle_timeout=15):
            if kind == END:
                yield sse("end", text)
                return
            yield ": still working\n\n" if kind == "idle" else sse("line", text)

    return _sse_response(events())


# --- Config vars ----------------------------------------------------------------


def _config_changes(current: dict[str, str]) -> tuple[dict[str, str | None], list[dict]]:
    """The changes the config form asks for, and its rows (to show again on error)."""
    keys = request.form.getlist("key")
    values = request.form.getlist("value")
    removed = set(request.form.getlist("remove"))
    rows, wanted = [], {}
    for key, value in zip(keys, values, strict=False):
        key = key.strip()
        value = value.replace("\r\n", "\n")  # browsers send a textarea's newlines as CRLF
        if not key and not value:
            continue
        rows.append({"key": key, "value": value, "remove": key in removed})
        if key in removed:
            continue
        if not key:
            raise _FormError("Each value needs a key", rows)
        if key in wanted:
            raise _FormError(f"{key} appears twice", rows)
        wanted[key] = value
    changes: dict[str, str | None] = {k: v for k, v in wanted.items() if current.get(k) != v}
    changes.update({k: None for k in current if k not in wanted})
    return changes, rows


class _FormError(Exception):
    def __init__(self, message: str, rows: list[dict]) -> None:
        super().__init__(message)
        self.message = message
        self.rows = rows


@bp.route("/apps/<name>/config", methods=["GET", "POST"])
@login_required
def config(name: str):
    session_ = db_session()
    app = _app(name)
    current = config_vars.get_config(settings().resolved_secret_key(), app)
    rows = [{"key": k, "value": v, "remove": False} for k, v in sorted(current.items())]
    error = None
    if request.method == "POST":
        try:
            changes, rows = _config_changes(current)
            changes = config_vars.validate_changes(changes)
            if not changes:
                flash("Nothing changed")
                return redirect(url_for("dashboard.config", name=app.name))
            _config, release = release_config_change(session_, settings(), app, changes, g.user)
        except _FormError as exc:
            error = exc.message
        except InvalidInput as exc:
            session_.rollback()
            error = exc.message
        else:
            if release is None:
                flash("Config saved: the first push will use it")
                return redirect(url_for("dashboard.config", name=app.name))
            flash(f"Config saved as release v{release.version}")
            return redirect(url_for("dashboard.config", name=app.name, release=release.version))
    return render_template("dashboard/config.html", app=app, rows=rows, error=error,
                           release=request.args.get("release", type=int)), \
        (422 if error else 200)


@bp.get("/apps/<name>/releases/<int:version>.json")
@login_required
def release_status(name: str, version: int):
    app = _app(name)
    row = db_session().query(Release).filter_by(app_id=app.id, version=version).one_or_none()
    if row is None:
        abort(404, f"No release v{version}")
    return jsonify(version=row.version, status=row.status.value, error=row.error,
                   live=row.id == app.current_release_id)


# --- Logs -----------------------------------------------------------------------


@bp.get("/apps/<name>/logs")
@login_required
def logs(name: str):
    return render_template("dashboard/logs.html", app=_app(name), max_lines=PAGE_LOG_LINES)


@bp.get("/apps/<name>/logs/stream")
@login_required
def logs_stream(name: str):
    s = settings()
    app = _app(name)
    app_uid, release_id = app.uid, app.current_release_id
    db_session().close()  # the stream can last hours: hold no database connection

    def events():
        try:
            for line in app_log_lines(
                runtime.docker_client(), s.instance_id, app_uid, release_id, tail=100,
                follow=True,
                max_line_bytes=s.log_max_line_bytes,
                max_lines_per_second=s.log_max_lines_per_second,
            ):
                yield sse("line", line) if line else ": idle\n\n"
        except (DockerException, redis.RedisError):
            yield sse("error", "The log stream broke off")
        yield sse("end", "no running containers")

    return _sse_response(events())


# --- API tokens -----------------------------------------------------------------


@bp.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    new_token = None
    if request.method == "POST":
        new_token = users.create_token(db_session(), g.user,
                                       name=request.form.get("name", "").strip()[:100])
        db_session().commit()
    return render_template("dashboard/tokens.html", tokens=users.list_tokens(db_session(), g.user),
                           new_token=new_token)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    row = users.revoke_token(db_session(), g.user, token_id)
    db_session().commit()
    flash(f"Revoked token {row.hint}…")
    return redirect(url_for("dashboard.tokens"))


@bp.app_template_filter("when")
def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M UTC")
