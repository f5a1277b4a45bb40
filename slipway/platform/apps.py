"""Apps: create, find (only their owner's), list, destroy."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.config import Settings
from slipway.platform import audit, validation
from slipway.platform.db import paginate
from slipway.platform.errors import Conflict, NotFound
from slipway.platform.models import App, User


def create_app(session: Session, owner: User, name: object) -> App:
    """Create an app. Raises InvalidInput for a bad name, Conflict for a taken one."""
    name = validation.app_name(name)
    if session.scalar(select(App).where(App.name == name)):
        raise Conflict(f"App name {name} is already taken", field="name")
    app = App(name=name, owner=owner)
    session.add(app)
    session.flush()
    audit.record(session, owner, "app.create", target_kind="app", target_name=name, app=app)
    return app


def get_app(session: Session, user: User, name: str) -> App:
    """The app ``name`` if ``user`` may see it; NotFound otherwise, also for others' apps
    and for what is no app name at all (never looked up: PostgreSQL refuses NUL)."""
    if not validation.is_name(name):
        raise NotFound("No app by that name: app names are 2-30 lowercase letters, digits "
                       "and dashes", field="name")
    app = session.scalar(select(App).where(App.name == name))
    if app is None or not (user.is_admin or app.owner_id == user.id):
        raise NotFound(f"No app named {name}")
    return app


def list_apps(session: Session, user: User, *, limit: int, offset: int) -> tuple[list[App], int]:
    query = select(App)
    if not user.is_admin:
        query = query.where(App.owner_id == user.id)
    return paginate(session, query, App.name, limit=limit, offset=offset)


def app_url(settings: Settings, app: App) -> str:
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{app.name}.{settings.domain}{port}/"


def git_url(settings: Settings, app: App) -> str:
    return f"{settings.api_url}/git/{app.name}.git"
