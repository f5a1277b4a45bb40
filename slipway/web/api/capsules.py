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
        # Empty only for a capsule made before versions that was never started.
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
    """The user's capsules (an admin's: all), one page at a time.
    ---
    get:
      summary: List capsules
      tags: [capsules]
      parameters: [limit, offset]
      responses:
        200: {description: A page of capsules, content: {application/json: {schema: CapsulePage}}}
        400: BadRequest
    """
    limit, offset = page_args()
    rows, total = capsule_service.list_capsules(
        db_session(), current_user(), limit=limit, offset=offset
    )
    return page([capsule_json(c) for c in rows], total, limit, offset)


@bp.post("/capsules")
@require_token
def create_capsule():
    """Create a managed database of a major version (default: the newest offered); it is
    provisioned in the background (202), building its image first if the host lacks it.
    ---
    post:
      summary: Create a capsule
      tags: [capsules]
      requestBody:
        required: true
        content: {application/json: {schema: CapsuleCreate}}
      responses:
        202:
          description: The capsule, provisioning
          headers: {Location: {description: The capsule's URL in this API, schema: {type: string}}}
          content: {application/json: {schema: Capsule}}
        400: BadRequest
        409: Conflict
        422: InvalidInput
    """
    body = _object_body("the capsule's kind and name")
    session = db_session()
    capsule = capsule_service.create_capsule(
        session, settings(), current_user(), body.get("kind"), body.get("name"),
        body.get("version"),
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
    """One capsule, with its connection URL and attachments.
    ---
    get:
      summary: Show a capsule
      tags: [capsules]
      responses:
        200: {description: The capsule, content: {application/json: {schema: Capsule}}}
        404: NotFound
    """
    return jsonify(capsule_json(capsule_service.get_capsule(db_session(), current_user(), name)))


@bp.delete("/capsules/<name>")
@require_token
def delete_capsule(name: str):
    """Destroy a capsule and its data; its name must be typed back as "confirm".
    ---
    delete:
      summary: Destroy a capsule
      tags: [capsules]
      requestBody:
        required: true
        content: {application/json: {schema: CapsuleDelete}}
      responses:
        204: {description: The capsule and its data are gone}
        400: BadRequest
        404: NotFound
        409: Conflict
    """
    session = db_session()
    capsule = capsule_service.get_capsule(session, current_user(), name)
    body = json_body()
    confirm = body.get("confirm") if isinstance(body, dict) else None
    capsule_service.destroy_capsule(session, settings(), capsule, confirm,
                                    actor=current_user())
    return "", 204


@bp.post("/apps/<name>/capsules")
@require_token
def attach_capsule(name: str):
    """Attach a capsule to an app: its URL reaches the app as <AS>_URL.
    ---
    post:
      summary: Attach a capsule to an app
      tags: [capsules]
      requestBody:
        required: true
        content: {application/json: {schema: CapsuleAttach}}
      responses:
        201:
          description: The capsule, attached
          headers:
            Slipway-Release:
              description: The release made for the change (a deployed app only), e.g. v4
              schema: {type: string}
          content: {application/json: {schema: Capsule}}
        400: BadRequest
        404: NotFound
        409: Conflict
        422: InvalidInput
    """
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
    """Detach a capsule from an app; the data stays.
    ---
    delete:
      summary: Detach a capsule from an app
      tags: [capsules]
      responses:
        200:
          description: The capsule, detached
          headers:
            Slipway-Release:
              description: The release made for the change (a deployed app only), e.g. v4
              schema: {type: string}
          content: {application/json: {schema: Capsule}}
        404: NotFound
    """
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
    """The capsule's backups.
    ---
    get:
      summary: List a capsule's backups
      tags: [capsules]
      responses:
        200: {description: The backups, content: {application/json: {schema: BackupList}}}
        404: NotFound
    """
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    rows = capsule_backups.list_backups(settings(), capsule)
    return jsonify(items=[backup_json(b) for b in rows], total=len(rows))


@bp.post("/capsules/<name>/backups")
@require_token
def create_backup(name: str):
    """Take a backup of the capsule now.
    ---
    post:
      summary: Back a capsule up
      tags: [capsules]
      responses:
        201: {description: The new backup, content: {application/json: {schema: Backup}}}
        404: NotFound
        409: Conflict
        500: ServerError
    """
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    response = jsonify(backup_json(capsule_backups.take_backup(settings(), capsule)))
    response.status_code = 201
    return response


@bp.post("/capsules/<name>/restore")
@require_token
def restore_backup(name: str):
    """Restore one of the capsule's backups into it, replacing its data.
    ---
    post:
      summary: Restore a capsule from a backup
      tags: [capsules]
      requestBody:
        required: true
        content: {application/json: {schema: Restore}}
      responses:
        200: {description: The restored backup, content: {application/json: {schema: Restored}}}
        400: BadRequest
        404: NotFound
        409: Conflict
        422: InvalidInput
        500: ServerError
    """
    capsule = capsule_service.get_capsule(db_session(), current_user(), name)
    body = _object_body("the backup's name")
    backup = capsule_backups.check_name(body.get("backup"))
    capsule_backups.restore_backup(settings(), capsule, backup)
    return jsonify(restored=backup)
