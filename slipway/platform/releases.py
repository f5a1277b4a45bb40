"""Releases: immutable image + config snapshot, numbered per app."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slipway.platform.db import paginate
from slipway.platform.models import App, Release
from slipway.platform.secrets import decrypt, encrypt


def create_release(
    session: Session,
    secret_key: str,
    app: App,
    *,
    image: str,
    config: dict[str, str],
    processes: dict[str, str],
    port: int,
    description: str,
    healthchecks: dict | None = None,
    build_id: int | None = None,
    user_id: int | None = None,
) -> Release:
    """Record the next release (v1, v2, ...) of ``app``.

    ``healthchecks`` are resolved checks (see ``healthchecks.resolve``); a release
    that reuses another's image passes that release's on.
    """
    latest = session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id))
    release = Release(
        app_id=app.id,
        version=(latest or 0) + 1,
        image=image,
        config_encrypted=encrypt(secret_key, json.dumps(config)),
        processes=processes,
        port=port,
        healthchecks=healthchecks,
        description=description,
        build_id=build_id,
        user_id=user_id,
    )
    session.add(release)
    session.flush()
    return release


def release_config(secret_key: str, release: Release) -> dict[str, str]:
    return json.loads(decrypt(secret_key, release.config_encrypted))


def list_releases(
    session: Session, app: App, *, limit: int, offset: int
) -> tuple[list[Release], int]:
    query = select(Release).where(Release.app_id == app.id)
    return paginate(session, query, Release.version.desc(), limit=limit, offset=offset)
