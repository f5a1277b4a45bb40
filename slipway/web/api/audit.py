"""The audit log: who did what, when."""

from __future__ import annotations

from flask import request

from slipway.platform import audit, validation
from slipway.platform.errors import BadRequest
from slipway.platform.models import AuditEvent
from slipway.web.api.common import bp, iso, page, page_args
from slipway.web.app import db_session
from slipway.web.auth import current_user, require_token


def event_json(event: AuditEvent) -> dict:
    return {
        "id": event.id,
        "time": iso(event.created_at),
        "actor": event.actor_email,
        "action": event.action,
        "target": {"kind": event.target_kind, "name": event.target_name},
        "app": event.app,
        "details": event.details,
    }


def _app_filter() -> str | None:
    # Checked before it reaches the database (PostgreSQL refuses NUL in a string).
    value = request.args.get("app")
    if value is not None and not validation.is_name(value):
        raise BadRequest("app must be an app name", field="app")
    return value


@bp.get("/audit")
@require_token
def list_audit_events():
    """Audit events, newest first: an admin's all of them, anyone else's their own
    actions and those on what they own.
    ---
    get:
      summary: List audit events
      tags: [audit]
      parameters:
        - limit
        - offset
        - {in: query, name: app, required: false, description: Only events about this app,
           schema: {type: string, pattern: "^[a-z][a-z0-9-]{0,28}[a-z0-9]$"}}
        - {in: query, name: action, required: false, description: Only this action,
           schema: {enum: [app.create, app.destroy, config.change, deploy, rollback, scale,
                           restart, capsule.create, capsule.destroy, capsule.attach,
                           capsule.detach, domain.add, domain.remove, token.create,
                           token.revoke]}}
      responses:
        200: {description: A page of events, content: {application/json: {schema: AuditEventPage}}}
        400: BadRequest
    """
    limit, offset = page_args()
    events, total = audit.list_events(db_session(), current_user(), app=_app_filter(),
                                      action=request.args.get("action"), limit=limit, offset=offset)
    return page([event_json(e) for e in events], total, limit, offset)
