"""Capsules (managed PostgreSQL and Redis) and their attachments to apps."""

from __future__ import annotations

from flask import jsonify, url_for

from slipway.platform import apps as app_service
from slipway.platform import capsule_backups, tasks
from slipway.platform import capsules as capsule_service
from slipway.platform.errors import BadRequest
from slipway.platform.models import Capsule
from slipway.web.api.common import bp, iso, json_body, page, page_args
from slipway.web.app import db_session, settings
from slipway.web.auth import current_user, require_token


def capsule_json(capsule: Capsule) -> dict:
    s = settings()
    session = db_session()
    return {
        "name": capsule.name,
        "kind": capsule.kind,
        "version": capsule.version or None,
        "status": capsule.status.value,
        "error": capsule.error,
        "created_at": iso(capsule.created_at),
        # Only ever shown to its owner (or an admin): others get 404 before this.
        "url": capsule_service.owner_url(s, capsule),
        "container": capsule_service.docker_name(s.instance_id, capsule.name),
        "attachments": [
            {"app": app, "as": alias}
            for app, alias in capsule_service.attached_apps(session, capsule)
        ],
    }


def _object_body(what: str) -> dict:
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest(f"Send a JSON object with {what}")
    return body


@bp.get("/capsules")
@require_token
def list_capsules():
    limit, offset = page_args()
    rows, total = capsule_service.list_capsules(
        db_session(), current_user(), limit=limit, offset=offset
    )
    return page([capsule_json(c) for c in rows], total, limit, offset)


@bp.post("/capsules")
@require_token
def create_capsule():
    body = _object_body("the capsule's kind and name")
    session = db_session()
    capsule = capsule_service.create_capsule(
        session, settings(), current_user(), body.get("kind"), body.get("name")
    )
    session.commit()
    tasks.provision_capsule.delay(capsule.id)
    response = jsonify(capsule_json(capsule))
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_capsule", name=capsule.name)
    return response


@bp.get("/capsules/<name>")
@require_token
def get_capsule(name: str):
    return jsonify(capsule_json(capsule_service.get_capsule(db_session(), current_user(), name)))


@bp.delete("/capsules/<name>")
@require_token
def delete_capsule(name: str):
    session = db_session()
    capsule = capsule_service.get_capsule(session, current_user(), name)
    body = json_body()
    confirm = body.get("confirm") if isinstance(body, dict) else None
    capsule_service.destroy_capsule(session, settings(), capsule, confirm)
    return "", 204


@bp.post("/apps/<name>/capsules")
@require_token
def attach_capsule(name: str):
    session = db_session()
    user = current_user()
    app = app_service.get_app(session, user, name)
    body = _object_body("the capsule's name")
    capsule_name = body.get("capsule")
    if not isinstance(capsule_name, str):
        raise BadRequest("Send the capsule's name as \"capsule\"", field="capsule")
    capsule = capsule_service.get_capsule(session, user, capsule_name)
    release = capsule_service.attach(session, settings(), app, capsule, body.get("as"), user)
    response = jsonify(capsule_json(capsule))
    response.status_code = 201
    if release is not None:
        response.headers["Slipway-Release"] = f"v{release.version}"
    return response


@bp.delete("/apps/<name>/capsules/<capsule_name>")
@require_token
def detach_capsule(name: str, capsule_name: str):
    session = db_session()
    user = current_user()
    app = app_service.get_app(session, user, name)
    capsule = capsule_service.get_capsule(session, user, capsule_name)
    release = capsule_service.detach(session, settings(), app, capsule, user)
    response = jsonify(capsule_json(capsule))
    if release is not None:
        response.headers["Slipway-Release"] = f"v{release.version}"
    return response


def backup_json(backup) -> dict:
    return {"name": backup.name, "size": backup.size, "created_at": iso(backup.created_at)}


@bp.get("/capsules/<name>/backups")
@require_token
def list_backups(name: str):
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    rows = capsule_backups.list_backups(settings(), capsule)
    return jsonify(items=[backup_json(b) for b in rows], total=len(rows))


@bp.post("/capsules/<name>/backups")
@require_token
def create_backup(name: str):
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    response = jsonify(backup_json(capsule_backups.take_backup(settings(), capsule)))
    response.status_code = 201
    return response


@bp.post("/capsules/<name>/restore")
@require_token
def restore_backup(name: str):
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    body = _object_body("the backup's name")
    backup = capsule_backups.check_name(body.get("backup"))
    capsule_backups.restore_backup(settings(), capsule, backup)
    return jsonify(restored=backup)
