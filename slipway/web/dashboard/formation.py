"""The dashboard's Processes tab: the formation, scale, restart and rollback.

The same platform calls as the REST API (slipway/web/api/formation.py): input is
checked by ``formation.validate_scale`` before anything reaches Docker, and
errors are shown on the page with the API's status codes and messages.
"""

from __future__ import annotations

import re

from docker.errors import DockerException
from flask import flash, g, redirect, render_template, request, url_for

from slipway.platform import apps as app_service
from slipway.platform import formation as formation_service
from slipway.platform import ps, tasks
from slipway.platform import releases as release_service
from slipway.platform.errors import InvalidInput, SlipwayError
from slipway.platform.logstream import connect
from slipway.platform.models import App, ReleaseStatus
from slipway.web.app import db_session, settings
from slipway.web.dashboard import bp, login_required

SCALE_PREFIX = "scale:"  # form fields are named scale:<process type>
# A count as a form sends it; anything else goes to validate_scale as the raw
# string, so "-1" or "two" get the API's own message.
COUNT = re.compile(r"[0-9]{1,6}")
NO_COUNTS = "Enter a count for at least one process type"
RELEASES_SHOWN = 20


def _app(name: str) -> App:
    return app_service.get_app(db_session(), g.user, name)


def _redis():
    return connect(settings().redis_url)


def _processes(app: App) -> list[dict] | None:
    """The app's containers, or None when Docker does not answer."""
    try:
        return ps.list_processes(db_session(), settings(), app)
    except DockerException:
        return None


def _render(app: App, *, error: str | None = None, counts: dict[str, str] | None = None,
            status: int = 200):
    session = db_session()
    releases, _ = release_service.list_releases(session, app, limit=RELEASES_SHOWN, offset=0)
    current = app.current_release
    # Rollback targets: earlier releases that once deployed (rollback_target's own rule).
    rollbackable = {
        r.version for r in releases
        if current is not None and r.version < current.version
        and r.status == ReleaseStatus.SUCCEEDED
    }
    scales = formation_service.app_formation(session, app)
    page = render_template(
        "dashboard/formation.html", app=app, processes=_processes(app), scales=scales,
        counts=counts or {}, error=error, max_scale=settings().max_scale, releases=releases,
        rollbackable=rollbackable,
        release=request.args.get("release", type=int),
    )
    return page, status


@bp.get("/apps/<name>/formation")
@login_required
def formation(name: str):
    return _render(_app(name))


def _scale_form() -> tuple[dict[str, object], dict[str, str]]:
    """The counts the scale form asks for (blank fields left out), and the raw values."""
    raw = {key[len(SCALE_PREFIX):]: value.strip()[:20] for key, value in request.form.items()
           if key.startswith(SCALE_PREFIX)}
    body: dict[str, object] = {
        ptype: int(value) if COUNT.fullmatch(value) else value
        for ptype, value in raw.items() if value != ""
    }
    return body, raw


@bp.post("/apps/<name>/formation/scale")
@login_required
def scale(name: str):
    app = _app(name)
    body, raw = _scale_form()
    try:
        if not body:
            raise InvalidInput(NO_COUNTS, field="formation")
        if app.current_release is None:
            raise InvalidInput(f"{app.name} has no processes yet: push it first",
                               field="formation")
        # Checked here first, so a bad form never waits for the deploy lock or Docker.
        formation_service.validate_scale(
            body, formation_service.process_types(app.current_release.processes),
            settings().max_scale)
        result, retired = ps.scale(db_session(), settings(), _redis(), app, body,
                                        actor=g.user)
    except SlipwayError as exc:
        db_session().rollback()
        return _render(app, error=exc.message, counts=raw, status=exc.status)
    tasks.retire_later(retired)
    flash("Scaled: " + ", ".join(f"{ptype}={count}" for ptype, count in result.items()))
    return redirect(url_for("dashboard.formation", name=app.name))


@bp.post("/apps/<name>/formation/restart")
@login_required
def restart(name: str):
    app = _app(name)
    ptype = request.form.get("type") or None
    try:
        retired = ps.restart(db_session(), settings(), _redis(), app, ptype, actor=g.user)
    except SlipwayError as exc:
        db_session().rollback()
        return _render(app, error=exc.message, status=exc.status)
    tasks.retire_later(retired)
    flash(f"Restarted {ptype} processes" if ptype else "Restarted all processes")
    return redirect(url_for("dashboard.formation", name=app.name))


@bp.post("/apps/<name>/rollback")
@login_required
def rollback(name: str):
    app = _app(name)
    raw = request.form.get("version", "").strip()[:20]
    # A non-number goes through as text so ps.rollback refuses it with its own message.
    version: object = int(raw) if COUNT.fullmatch(raw) else (raw or None)
    try:
        release, old = ps.rollback(db_session(), settings(), _redis(), app, g.user, version)
    except SlipwayError as exc:
        db_session().rollback()
        return _render(app, error=exc.message, status=exc.status)
    tasks.retire_later(old)
    flash(f"Rolled back: {release.description} as v{release.version}")
    return redirect(url_for("dashboard.formation", name=app.name, release=release.version))
