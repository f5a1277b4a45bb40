"""The audit log: who did what to which app, capsule, domain or token, and when.

Services call ``record`` in the same transaction as the change they make, so an
event is stored exactly when its change is (the API, the dashboard and git pushes
all go through those services). Details never carry secrets: a config change
records the keys it set and unset, never their values.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from slipway.platform.db import paginate
from slipway.platform.errors import BadRequest
from slipway.platform.models import App, AuditEvent, User

# Every action an event can record, as the API's action= filter accepts them.
ACTIONS = (
    "app.create", "app.destroy", "config.change", "deploy", "rollback", "scale", "restart",
    "capsule.create", "capsule.destroy", "capsule.attach", "capsule.detach",
    "domain.add", "domain.remove", "token.create", "token.revoke",
)
TARGET_KINDS = ("app", "capsule", "domain", "token")


def record(
    session: Session,
    actor: User | None,
    action: str,
    *,
    target_kind: str,
    target_name: str,
    owner_id: int | None = None,
    app: App | str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Add one event to ``session`` (committed with the caller's change).

    ``actor`` None is the host operator (the `slipway` command on the host);
    ``owner_id`` defaults to the app's owner, else the actor. Raises ValueError for
    an action or target kind not listed above: a typo must not pass silently.
    """
    if action not in ACTIONS or target_kind not in TARGET_KINDS:
        raise ValueError(f"Unknown audit action {action!r} on {target_kind!r}")
    if isinstance(app, App):
        owner_id = owner_id if owner_id is not None else app.owner_id
        app = app.name
    if owner_id is None and actor is not None:
        owner_id = actor.id
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else None,
        owner_id=owner_id,
        action=action,
        target_kind=target_kind,
        target_name=target_name[:253],
        app=app,
        details=details or {},
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, user: User, *, app: str | None = None, action: str | None = None,
    limit: int, offset: int,
) -> tuple[list[AuditEvent], int]:
    """Events newest first: all of them for an admin; for anyone else, what they did
    and what was done to what they own. Raises BadRequest for an unknown action."""
    if action is not None and action not in ACTIONS:
        raise BadRequest(f"Unknown action: use one of {', '.join(ACTIONS)}", field="action")
    query = select(AuditEvent)
    if not user.is_admin:
        query = query.where(or_(AuditEvent.actor_id == user.id, AuditEvent.owner_id == user.id))
    if app is not None:
        query = query.where(AuditEvent.app == app)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return paginate(session, query, AuditEvent.id.desc(), limit=limit, offset=offset)
