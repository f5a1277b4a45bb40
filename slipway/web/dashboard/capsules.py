"""The dashboard's capsule pages: list, create, status, attach/detach, backups, destroy.

Every action calls the same platform services as the REST API
(`slipway.platform.capsules`, `capsule_backups`); this module only turns form
fields into their arguments and their errors into messages on the page.
"""

from __future__ import annotations

from flask import flash, g, jsonify, redirect, render_template, request, url_for

from slipway.platform import apps as app_service
from slipway.platform import capsule_backups, tasks
from slipway.platform import capsules as capsule_service
from slipway.platform.errors import SlipwayError
from slipway.platform.models import Capsule, CapsuleStatus
from slipway.web.app import db_session, settings
from slipway.web.dashboard import bp, login_required

KIND_CHOICES = tuple(capsule_service.KINDS)


def _capsule(name: str) -> Capsule:
    """The signed-in user's capsule ``name``; NotFound (404 page) for anyone else's."""
    return capsule_service.get_capsule(db_session(), g.user, name)


@bp.route("/capsules", methods=["GET", "POST"])
@login_required
def capsules():
    session_ = db_session()
    errors: dict[str, str] = {}
    form = {"kind": "postgres", "name": "", "version": ""}
    if request.method == "POST":
        form = {"kind": request.form.get("kind", "")[:32],
                "name": request.form.get("name", "")[:100],
                "version": request.form.get("version", "")[:8]}
        try:
            capsule = capsule_service.create_capsule(session_, settings(), g.user, form["kind"],
                                                     form["name"], form["version"])
            session_.commit()
        except SlipwayError as exc:
            session_.rollback()
            errors[exc.field or "name"] = exc.message
        else:
            # Enqueued after the commit, so the worker finds the row.
            tasks.provision_capsule.delay(capsule.id)
            flash(f"Creating {capsule.name}: it becomes available in a few seconds")
            return redirect(url_for("dashboard.capsule", name=capsule.name))
    rows, _total = capsule_service.list_capsules(session_, g.user, limit=1000, offset=0)
    # Newest first in the version select; "" (the first option) is each kind's default.
    versions = {kind: capsule_service.available_versions(kind)[::-1] for kind in KIND_CHOICES}
    defaults = {kind: capsule_service.default_version(settings(), kind) for kind in KIND_CHOICES}
    page = render_template("dashboard/capsules.html", capsules=rows, errors=errors, form=form,
                           kinds=KIND_CHOICES, versions=versions, defaults=defaults,
                           labels={k: v.label for k, v in capsule_service.KINDS.items()})
    return page, (422 if errors else 200)


def _status_json(capsule: Capsule) -> dict:
    return {"name": capsule.name, "status": capsule.status.value, "error": capsule.error}


@bp.get("/capsules/<name>")
@login_required
def capsule(name: str):
    capsule = _capsule(name)
    s = settings()
    try:
        backups = capsule_backups.list_backups(s, capsule)
    except OSError:  # an unreadable backups directory must not hide the page
        backups = None
    attached = capsule_service.attached_apps(db_session(), capsule)
    attached_names = {app_name for app_name, _ in attached}
    own_apps, _ = app_service.list_apps(db_session(), g.user, limit=1000, offset=0)
    return render_template(
        "dashboard/capsule.html", capsule=capsule, attached=attached, backups=backups,
        apps=[a.name for a in own_apps if a.name not in attached_names],
        url=capsule_service.owner_url(s, capsule),
        container=capsule_service.docker_name(s.instance_id, capsule.name),
        default_alias=capsule_service.KINDS[capsule.kind].default_alias,
        provisioning=capsule.status == CapsuleStatus.PROVISIONING,
    )


@bp.get("/capsules/<name>.json")
@login_required
def capsule_status(name: str):
    """The capsule's status for the page's poller (no URL or password in it)."""
    return jsonify(_status_json(_capsule(name)))


def _back(capsule: Capsule):
    return redirect(url_for("dashboard.capsule", name=capsule.name))


@bp.post("/capsules/<name>/attach")
@login_required
def attach_capsule(name: str):
    session_ = db_session()
    capsule = _capsule(name)
    alias = request.form.get("as", "").strip()[:64] or None
    try:
        app = app_service.get_app(session_, g.user, request.form.get("app", "")[:100])
        release = capsule_service.attach(session_, settings(), app, capsule, alias, g.user)
    except SlipwayError as exc:
        session_.rollback()
        flash(exc.message, "error")
        return _back(capsule)
    if release is None:
        flash(f"Attached {capsule.name} to {app.name}: its first deploy will use it")
    else:
        flash(f"Attached {capsule.name} to {app.name} as release v{release.version}")
    return _back(capsule)


@bp.post("/capsules/<name>/detach")
@login_required
def detach_capsule(name: str):
    session_ = db_session()
    capsule = _capsule(name)
    try:
        app = app_service.get_app(session_, g.user, request.form.get("app", "")[:100])
        release = capsule_service.detach(session_, settings(), app, capsule, g.user)
    except SlipwayError as exc:
        session_.rollback()
        flash(exc.message, "error")
        return _back(capsule)
    suffix = f" as release v{release.version}" if release is not None else ""
    flash(f"Detached {capsule.name} from {app.name}{suffix}")
    return _back(capsule)


@bp.post("/capsules/<name>/backups")
@login_required
def backup_capsule(name: str):
    capsule = _capsule(name)
    try:
        backup = capsule_backups.take_backup(settings(), capsule)
    except SlipwayError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Backed up {capsule.name} as {backup.name}")
    return _back(capsule)


@bp.post("/capsules/<name>/restore")
@login_required
def restore_capsule(name: str):
    capsule = _capsule(name)
    backup = request.form.get("backup", "")[:255]
    if request.form.get("confirm", "") != capsule.name:
        flash(f"Type the capsule's name ({capsule.name}) to restore {backup}; nothing was done",
              "error")
        return _back(capsule)
    try:
        capsule_backups.restore_backup(settings(), capsule, backup)
    except SlipwayError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Restored {capsule.name} from {backup}")
    return _back(capsule)


@bp.post("/capsules/<name>/destroy")
@login_required
def destroy_capsule(name: str):
    session_ = db_session()
    capsule = _capsule(name)
    confirm = request.form.get("confirm", "")
    if confirm != capsule.name:
        # The service refuses too; the page says it in the form's words, not the API's.
        flash(f"Type the capsule's name ({capsule.name}) to destroy it; nothing was done",
              "error")
        return _back(capsule)
    try:
        capsule_service.destroy_capsule(session_, settings(), capsule, confirm,
                                        actor=g.user)
    except SlipwayError as exc:
        session_.rollback()
        flash(exc.message, "error")
        return _back(capsule)
    flash(f"Destroyed {name}")
    return redirect(url_for("dashboard.capsules"))
