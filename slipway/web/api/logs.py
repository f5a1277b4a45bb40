"""Runtime logs of an app's process containers, as a text/plain stream."""

from __future__ import annotations

from flask import Response, request

from slipway.platform import apps as app_service
from slipway.platform import runtime
from slipway.platform.applogs import app_log_lines
from slipway.platform.errors import BadRequest
from slipway.web.api.common import bp
from slipway.web.app import db_session, settings
from slipway.web.auth import current_user, require_token


def tail_arg(default: int = 100) -> int:
    """The ``tail`` query argument. Raises BadRequest outside 0..log_tail_max."""
    high = settings().log_tail_max
    raw = request.args.get("tail", str(default))
    if not raw.isdigit() or int(raw) > high:
        raise BadRequest(f"tail must be a whole number from 0 to {high}", field="tail")
    return int(raw)


@bp.get("/apps/<name>/logs")
@require_token
def app_logs(name: str):
    """The app's containers' log lines, as text; with follow=1 the stream stays open.
    ---
    get:
      summary: Show (or follow) an app's logs
      tags: [processes]
      parameters:
        - in: query
          name: tail
          description: How many recent lines to start with (at most SLIPWAY_LOG_TAIL_MAX)
          schema: {type: integer, minimum: 0, default: 100}
        - in: query
          name: follow
          description: 1 or true keeps the stream open for new lines
          schema: {type: string, default: "0"}
      responses:
        200:
          description: One log line per text line
          content: {text/plain: {schema: {type: string}}}
        400: BadRequest
        404: NotFound
    """
    s = settings()
    app = app_service.get_app(db_session(), current_user(), name)
    tail = tail_arg()
    follow = request.args.get("follow", "0") in ("1", "true")
    app_uid, release_id = app.uid, app.current_release_id
    db_session().close()  # a followed stream can last hours: hold no database connection

    def stream():
        for line in app_log_lines(
            runtime.docker_client(), s.instance_id, app_uid, release_id, tail=tail, follow=follow,
            max_line_bytes=s.log_max_line_bytes, max_lines_per_second=s.log_max_lines_per_second,
        ):
            if line:  # "" only keeps a quiet connection open; text clients need nothing
                yield line + "\n"

    return Response(stream(), mimetype="text/plain")
