"""The dashboard's Domains tab: an app's hosts with their certificates, custom domains, HSTS.

Calls the platform's domain services, as the REST API does.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from slipway.platform import apps as app_service
from slipway.platform import domains as domain_service
from slipway.platform.errors import SlipwayError
from slipway.platform.models import AppTls
from slipway.web.app import db_session, settings
from slipway.web.dashboard import bp, login_required

HSTS_CHOICES = {"default": None, "on": True, "off": False}


def _page(app, hostname: str = "", error: str | None = None, status: int = 200):
    session_ = db_session()
    s = settings()
    rows = [domain_service.domain_dict(d) for d in domain_service.list_domains(session_, app)]
    default = domain_service.default_host(s, app.name)
    # The default host has a row only once a certificate was asked for it.
    if not any(d["hostname"] == default for d in rows):
        rows.insert(0, {"hostname": default, "custom": False, "status": "none",
                        "last_error": None, "expires_at": None})
    row = session_.get(AppTls, app.id)
    return render_template(
        "dashboard/domains.html", app=app, domains=rows, tls=s.tls, hostname=hostname,
        error=error, hsts=domain_service.hsts_enabled(session_, s, app),
        hsts_choice="default" if row is None or row.hsts is None else
        ("on" if row.hsts else "off"),
        global_hsts=s.hsts,
    ), status


@bp.route("/apps/<name>/domains", methods=["GET", "POST"])
@login_required
def domains(name: str):
    session_ = db_session()
    app = app_service.get_app(session_, g.user, name)
    if request.method == "GET":
        return _page(app)
    hostname = request.form.get("hostname", "").strip()[:300]
    try:
        domain = domain_service.add_domain(session_, settings(), app, hostname,
                                               actor=g.user)
        session_.commit()
    except SlipwayError as exc:
        session_.rollback()
        return _page(app, hostname, exc.message, 422)
    domain_service.publish_change(app)
    flash(f"Added {domain.hostname}")
    return redirect(url_for("dashboard.domains", name=app.name))


@bp.post("/apps/<name>/domains/remove")
@login_required
def remove_domain(name: str):
    session_ = db_session()
    app = app_service.get_app(session_, g.user, name)
    try:
        host = domain_service.remove_domain(
            session_, app, request.form.get("hostname", "")[:300], actor=g.user)
        session_.commit()
    except SlipwayError as exc:
        session_.rollback()
        flash(exc.message, "error")
    else:
        domain_service.publish_change(app)
        flash(f"Removed {host}")
    return redirect(url_for("dashboard.domains", name=app.name))


@bp.post("/apps/<name>/hsts")
@login_required
def set_hsts(name: str):
    session_ = db_session()
    app = app_service.get_app(session_, g.user, name)
    choice = request.form.get("hsts", "")
    if choice not in HSTS_CHOICES:
        flash("Choose HSTS on, off or the global default", "error")
        return redirect(url_for("dashboard.domains", name=app.name))
    domain_service.set_hsts(session_, app, HSTS_CHOICES[choice])
    session_.commit()
    domain_service.publish_change(app)
    state = "on" if domain_service.hsts_enabled(session_, settings(), app) else "off"
    flash(f"HSTS is {state} for {app.name}")
    return redirect(url_for("dashboard.domains", name=app.name))
