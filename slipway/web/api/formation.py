"""Processes of an app: ps, formation (scale), restart, one-off runs, rollback."""

from __future__ import annotations

from flask import Response, jsonify, request

from slipway.platform import apps as app_service
from slipway.platform import formation as formation_service
from slipway.platform import ps, tasks
from slipway.platform.errors import BadRequest
from slipway.platform.logstream import connect
from slipway.web.api.apps import release_json
from slipway.web.api.common import bp, json_body
from slipway.web.app import db_session, settings
from slipway.web.auth import current_user, require_token

# The last line of a run's output: the sentinel, then the exit status (as git pushes end).
STATUS_PREFIX = "\x1eslipway-status:"


def _app(name: str):
    return app_service.get_app(db_session(), current_user(), name)


def _redis():
    return connect(settings().redis_url)


@bp.get("/apps/<name>/ps")
@require_token
def list_processes(name: str):
    """The app's containers as Docker reports them; crash loops show as ``crashed``.
    ---
    get:
      summary: List an app's process containers
      description: >-
        A process that keeps exiting has state `crashed`, its exit status and its
        last output lines; Docker restarts it with a growing delay and it gets no
        traffic meanwhile.
      tags: [processes]
      responses:
        200:
          description: The containers, web first, crashed ones with their last log lines
          content: {application/json: {schema: {type: array, items: Process}}}
        404: NotFound
    """
    return jsonify(ps.list_processes(db_session(), settings(), _app(name)))


@bp.get("/apps/<name>/formation")
@require_token
def get_formation(name: str):
    """How many containers of each process type the app runs.
    ---
    get:
      summary: Show an app's formation
      tags: [processes]
      responses:
        200: {description: Process type to count, content: {application/json: {schema: Formation}}}
        404: NotFound
    """
    return jsonify(formation_service.app_formation(db_session(), _app(name)))


@bp.patch("/apps/<name>/formation")
@require_token
def patch_formation(name: str):
    """Scale process types; new containers must be healthy before old ones go.
    ---
    patch:
      summary: Scale process types
      tags: [processes]
      requestBody:
        required: true
        content: {application/json: {schema: FormationPatch}}
      responses:
        200: {description: The new formation, content: {application/json: {schema: Formation}}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
        500: ServerError
    """
    app = _app(name)
    body = json_body()
    result, retired = ps.scale(db_session(), settings(), _redis(), app, body)
    tasks.retire_later(retired)
    return jsonify(result)


@bp.post("/apps/<name>/ps/restart")
@require_token
def restart_processes(name: str):
    """Replace the app's containers (or one type's) with fresh ones.
    ---
    post:
      summary: Restart processes
      tags: [processes]
      requestBody:
        required: false
        content: {application/json: {schema: Restart}}
      responses:
        200: {description: The formation, content: {application/json: {schema: Formation}}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
        500: ServerError
    """
    app = _app(name)
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise BadRequest('Send a JSON object, e.g. {"type": "web"}')
    retired = ps.restart(db_session(), settings(), _redis(), app, body.get("type"))
    tasks.retire_later(retired)
    return jsonify(formation_service.app_formation(db_session(), app))


@bp.post("/apps/<name>/rollback")
@require_token
def rollback(name: str):
    """Deploy an earlier release's image and config again, as a new release.
    ---
    post:
      summary: Roll back to an earlier release
      tags: [releases]
      requestBody:
        required: false
        content: {application/json: {schema: Rollback}}
      responses:
        201: {description: The new release, content: {application/json: {schema: Release}}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
        500: ServerError
    """
    app = _app(name)
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise BadRequest('Send a JSON object, e.g. {"version": 3}')
    release, old = ps.rollback(db_session(), settings(), _redis(), app, current_user(),
                               body.get("version"))
    tasks.retire_later(old)
    response = jsonify(release_json(release, app.current_release_id))
    response.status_code = 201
    return response


@bp.post("/apps/<name>/runs")
@require_token
def run(name: str):
    """Stream a one-off command's output as text/plain, ending with the status line.
    ---
    post:
      summary: Run a one-off command in a new container of the current release
      tags: [processes]
      requestBody:
        required: true
        content: {application/json: {schema: Run}}
      responses:
        200:
          description: >-
            The command's output as it comes, then a last line of U+001E (record
            separator), "slipway-status:" and the command's exit status
          content: {text/plain: {schema: {type: string}}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
    """
    app = _app(name)
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest('Send a JSON object, e.g. {"command": ["python", "-V"]}')
    output = ps.run(settings(), app, body.get("command"))
    db_session().close()  # a run can take long; don't hold a connection

    def stream():
        for item in output:
            if isinstance(item, int):
                yield f"\n{STATUS_PREFIX}{item}\n".encode()
                return
            yield item

    return Response(stream(), mimetype="text/plain")
