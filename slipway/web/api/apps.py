"""Apps, their config vars, releases and builds."""

from __future__ import annotations

from flask import jsonify, url_for

from slipway.platform import apps as app_service
from slipway.platform import builds as build_service
from slipway.platform import config_vars
from slipway.platform import releases as release_service
from slipway.platform.errors import BadRequest, NotFound
from slipway.platform.lifecycle import destroy_app, release_config_change
from slipway.platform.models import App, Build, Release
from slipway.web.api.common import MAX_DB_ID, bp, iso, json_body, page, page_args
from slipway.web.app import db_session, settings
from slipway.web.auth import current_user, require_token


def app_json(app: App) -> dict:
    s = settings()
    release = app.current_release
    return {
        "name": app.name,
        "owner": app.owner.email,
        "created_at": iso(app.created_at),
        "url": app_service.app_url(s, app),
        "git_url": app_service.git_url(s, app),
        "release": release.version if release else None,
    }


def release_json(release: Release, current_id: int | None) -> dict:
    return {
        "version": release.version,
        "status": release.status.value,
        "current": release.id == current_id,
        "description": release.description,
        "image": release.image,
        "processes": release.processes,
        "healthchecks": release.healthchecks,
        "build": release.build_id,
        "error": release.error,
        "created_at": iso(release.created_at),
    }


def build_json(build: Build, *, with_log: bool = False) -> dict:
    data = {
        "id": build.id,
        "status": build.status.value,
        "commit": build.commit,
        "stack": build.stack,
        "error": build.error,
        "timings": build.timings,
        "created_at": iso(build.created_at),
        "finished_at": iso(build.finished_at),
    }
    if with_log:
        data["log"] = build.log
    return data


@bp.get("/apps")
@require_token
def list_apps():
    """The user's apps (an admin's: all), one page at a time.
    ---
    get:
      summary: List apps
      tags: [apps]
      parameters: [limit, offset]
      responses:
        200: {description: A page of apps, content: {application/json: {schema: AppPage}}}
        400: BadRequest
    """
    limit, offset = page_args()
    apps, total = app_service.list_apps(db_session(), current_user(), limit=limit, offset=offset)
    return page([app_json(app) for app in apps], total, limit, offset)


@bp.post("/apps")
@require_token
def create_app():
    """Create an app owned by the user; its git remote is ready at once.
    ---
    post:
      summary: Create an app
      tags: [apps]
      requestBody:
        required: true
        content: {application/json: {schema: AppCreate}}
      responses:
        201:
          description: The new app
          headers: {Location: {description: The app's URL in this API, schema: {type: string}}}
          content: {application/json: {schema: App}}
        400: BadRequest
        409: Conflict
        422: InvalidInput
    """
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object with the app's name")
    session = db_session()
    app = app_service.create_app(session, current_user(), body.get("name"))
    session.commit()
    response = jsonify(app_json(app))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_app", name=app.name)
    return response


@bp.get("/apps/<name>")
@require_token
def get_app(name: str):
    """One app.
    ---
    get:
      summary: Show an app
      tags: [apps]
      responses:
        200: {description: The app, content: {application/json: {schema: App}}}
        404: NotFound
    """
    return jsonify(app_json(app_service.get_app(db_session(), current_user(), name)))


@bp.delete("/apps/<name>")
@require_token
def delete_app(name: str):
    """Destroy an app: containers, routes, images, repository and records.
    ---
    delete:
      summary: Destroy an app
      tags: [apps]
      responses:
        204: {description: The app is gone}
        404: NotFound
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    destroy_app(session, settings(), app)
    return "", 204


@bp.get("/apps/<name>/releases")
@require_token
def list_releases(name: str):
    """The app's releases.
    ---
    get:
      summary: List an app's releases
      tags: [releases]
      parameters: [limit, offset]
      responses:
        200: {description: A page of releases, content: {application/json: {schema: ReleasePage}}}
        400: BadRequest
        404: NotFound
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    limit, offset = page_args()
    rows, total = release_service.list_releases(session, app, limit=limit, offset=offset)
    return page([release_json(r, app.current_release_id) for r in rows], total, limit, offset)


@bp.get("/apps/<name>/config")
@require_token
def get_config(name: str):
    """The app's config vars, decrypted.
    ---
    get:
      summary: Show an app's config vars
      tags: [config]
      responses:
        200: {description: KEY to value, content: {application/json: {schema: Config}}}
        404: NotFound
    """
    app = app_service.get_app(db_session(), current_user(), name)
    return jsonify(config_vars.get_config(settings().resolved_secret_key(), app))


@bp.patch("/apps/<name>/config")
@require_token
def patch_config(name: str):
    """Set and unset config vars; a deployed app gets a new release and restarts.
    ---
    patch:
      summary: Set or unset config vars
      tags: [config]
      requestBody:
        required: true
        content: {application/json: {schema: ConfigPatch}}
      responses:
        200:
          description: The whole config after the change
          headers:
            Slipway-Release:
              description: The release made for the change (a deployed app only), e.g. v4
              schema: {type: string}
          content: {application/json: {schema: Config}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    changes = config_vars.validate_changes(json_body())
    config, release = release_config_change(session, settings(), app, changes, current_user())
    response = jsonify(config)
    if release is not None:
        response.headers["Slipway-Release"] = f"v{release.version}"
    return response


@bp.get("/apps/<name>/builds")
@require_token
def list_builds(name: str):
    """The app's builds, without their logs.
    ---
    get:
      summary: List an app's builds
      tags: [builds]
      parameters: [limit, offset]
      responses:
        200: {description: A page of builds, content: {application/json: {schema: BuildPage}}}
        400: BadRequest
        404: NotFound
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    limit, offset = page_args()
    rows, total = build_service.list_builds(session, app, limit=limit, offset=offset)
    return page([build_json(b) for b in rows], total, limit, offset)


@bp.get("/apps/<name>/builds/<int:build_id>")
@require_token
def get_build(name: str, build_id: int):
    """One build, with its log.
    ---
    get:
      summary: Show a build and its log
      tags: [builds]
      responses:
        200: {description: The build, content: {application/json: {schema: Build}}}
        404: NotFound
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    if build_id > MAX_DB_ID:
        raise NotFound(f"No build {build_id} for app {app.name}")
    return jsonify(build_json(build_service.get_build(session, app, build_id), with_log=True))
