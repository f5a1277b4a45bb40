"""Custom domains of an app, with their certificates' status, and the app's TLS settings."""

from __future__ import annotations

from flask import jsonify

from slipway.platform import apps as app_service
from slipway.platform import domains as domain_service
from slipway.platform.errors import BadRequest, Conflict, InvalidInput
from slipway.web.api.common import bp, json_body
from slipway.web.app import db_session, settings
from slipway.web.auth import current_user, require_token


@bp.get("/apps/<name>/domains")
@require_token
def list_domains(name: str):
    """The app's default host, custom domains and TLS settings.
    ---
    get:
      summary: List an app's domains
      tags: [domains]
      responses:
        200: {description: The domains, content: {application/json: {schema: DomainList}}}
        404: NotFound
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    rows = domain_service.list_domains(session, app)
    return jsonify(
        default=domain_service.default_host(settings(), app.name),
        tls=settings().tls,
        hsts=domain_service.hsts_enabled(session, settings(), app),
        items=[domain_service.domain_dict(d) for d in rows],
    )


@bp.post("/apps/<name>/domains")
@require_token
def add_domain(name: str):
    """Route a custom domain to the app; its certificate is asked for in the background.
    ---
    post:
      summary: Add a custom domain
      tags: [domains]
      requestBody:
        required: true
        content: {application/json: {schema: DomainCreate}}
      responses:
        201: {description: The new domain, content: {application/json: {schema: Domain}}}
        400: BadRequest
        404: NotFound
        409: Conflict
        422: InvalidInput
    """
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object with the domain's hostname")
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    domain = domain_service.add_domain(session, settings(), app, body.get("hostname"),
                                       actor=current_user())
    session.commit()
    domain_service.publish_change(app)
    response = jsonify(domain_service.domain_dict(domain))
    response.status_code = 201
    return response


@bp.delete("/apps/<name>/domains/<path:hostname>")
@require_token
def remove_domain(name: str, hostname: str):
    """Stop routing a custom domain to the app.
    ---
    delete:
      summary: Remove a custom domain
      tags: [domains]
      responses:
        204: {description: The domain is removed}
        404: NotFound
        422: InvalidInput
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    domain_service.remove_domain(session, app, hostname, actor=current_user())
    session.commit()
    domain_service.publish_change(app)
    return "", 204


@bp.post("/apps/<name>/domains/<path:hostname>/renew")
@require_token
def renew_domain(name: str, hostname: str):
    """Get a new certificate now, whatever the current one's expiry (queued; 202).
    ---
    post:
      summary: Renew a domain's certificate now
      tags: [domains]
      responses:
        202: {description: Renewal is queued, content: {application/json: {schema: Domain}}}
        404: NotFound
        409: Conflict
        422: InvalidInput
    """
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    domain = domain_service.get_any_domain(session, app, hostname)
    if settings().tls == "off":
        raise Conflict("TLS is off (SLIPWAY_TLS=off): there is no certificate to renew",
                       field="hostname")
    from slipway.platform import tasks

    tasks.issue_certificate.delay(domain.id, True)
    response = jsonify(domain_service.domain_dict(domain))
    response.status_code = 202
    return response


@bp.patch("/apps/<name>/tls")
@require_token
def patch_tls(name: str):
    """Turn HSTS on or off for the app, or back to the global default (null).
    ---
    patch:
      summary: Change an app's TLS settings
      tags: [domains]
      requestBody:
        required: true
        content: {application/json: {schema: TlsPatch}}
      responses:
        200: {description: The resolved setting, content: {application/json: {schema: Tls}}}
        400: BadRequest
        404: NotFound
        422: InvalidInput
    """
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"hsts"}:
        raise BadRequest('Send a JSON object like {"hsts": true}')
    hsts = body.get("hsts")
    if hsts is not None and not isinstance(hsts, bool):
        raise InvalidInput("hsts must be true, false or null (the global default)",
                           field="hsts")
    session = db_session()
    app = app_service.get_app(session, current_user(), name)
    domain_service.set_hsts(session, app, hsts)
    session.commit()
    domain_service.publish_change(app)
    return jsonify(hsts=domain_service.hsts_enabled(session, settings(), app))
