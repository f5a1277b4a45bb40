"""The OpenAPI 3.1 document of the API, served at GET /api/v1/openapi.json.

apispec collects it from the views themselves: each view's docstring carries its
operation (YAML after ``---``), and the Flask plugin turns the view's URL rule into
the path. What every authenticated operation has in common is added here once, by
``SlipwayPlugin``: the path parameters (typed from the rule's converters), the
bearer security, the 401 and 429 answers, and 408, 413 and 415 where a body is taken.
Component schemas live in ``schemas.py``.
"""

from __future__ import annotations

import re

from apispec import APISpec, BasePlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask, current_app, jsonify
from werkzeug.routing import Rule

from slipway import __version__
from slipway.web.api import schemas
from slipway.web.api.common import bp

SECURITY_SCHEME = "bearerAuth"
# Views reachable without a token: they get neither the security nor the 401.
PUBLIC_ENDPOINTS = {"api.openapi_document"}
# A URL rule's arguments: <name>, <int:build_id>, <path:hostname> -> (converter, name).
RULE_ARGUMENT = re.compile(r"<(?:([a-z]+)(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _rule(app: Flask, view) -> Rule:
    endpoint = next(name for name, func in app.view_functions.items() if func is view)
    return next(app.url_map.iter_rules(endpoint))


class SlipwayPlugin(BasePlugin):
    """Adds to each operation what all of them share, so views only state their own."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        app: Flask = kwargs["app"]
        rule = _rule(app, kwargs["view"])
        public = rule.endpoint in PUBLIC_ENDPOINTS
        parameters = [
            {
                "in": "path",
                "name": name,
                "required": True,
                # Werkzeug's int converter matches no sign: negative ids never route.
                "schema": {"type": "integer", "minimum": 0} if converter == "int"
                else schemas.PATH_PARAMETERS.get(name, {"type": "string"}),
            }
            for converter, name in RULE_ARGUMENT.findall(rule.rule)
        ]
        for operation in (operations or {}).values():
            operation.setdefault("operationId", rule.endpoint.removeprefix("api."))
            if parameters:
                operation["parameters"] = parameters + operation.get("parameters", [])
            if public:
                operation["security"] = []
            else:
                operation["security"] = [{SECURITY_SCHEME: []}]
                operation.setdefault("responses", {})["401"] = "Unauthorized"
                operation["responses"]["429"] = "TooManyRequests"
            if "requestBody" in operation:
                operation["responses"]["408"] = "RequestTimeout"
                operation["responses"]["413"] = "TooLarge"
                operation["responses"]["415"] = "UnsupportedMediaType"


def build_spec(app: Flask) -> APISpec:
    """The document for every route of the ``api`` blueprint registered on ``app``.

    Raises ValueError when a view's documented methods differ from its rule's, so a
    new route without its operation cannot go unnoticed (the tests build it).
    """
    spec = APISpec(
        title="Slipway API",
        version=__version__,
        openapi_version="3.1.0",
        info={"description": "Apps, releases, config, processes, domains and capsules "
                             "of a Slipway installation. Every error answers "
                             '{"error": {"code", "message", "field"?}}.'},
        servers=[{"url": "/"}],
        plugins=[FlaskPlugin(), SlipwayPlugin()],
    )
    spec.components.security_scheme(
        SECURITY_SCHEME, {"type": "http", "scheme": "bearer", "description": "An API token"})
    for name, schema in schemas.SCHEMAS.items():
        spec.components.schema(name, schema)
    for name, response in schemas.RESPONSES.items():
        spec.components.response(name, response)
    for name, parameter in schemas.PARAMETERS.items():
        spec.components.parameter(name, parameter["in"],
                                  {k: v for k, v in parameter.items() if k != "in"})
    prefix = f"{bp.name}."
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not rule.endpoint.startswith(prefix):
            continue
        view = app.view_functions[rule.endpoint]
        spec.path(view=view, app=app)
        path = FlaskPlugin.flaskpath2openapi(rule.rule)
        documented = {m.upper() for m in spec.to_dict()["paths"].get(path, {})
                      if m != "parameters"}
        wanted = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        if not wanted <= documented:
            raise ValueError(f"{rule.endpoint} ({rule.rule}) documents no operation for "
                             f"{sorted(wanted - documented)}")
    return spec


@bp.get("/openapi.json")
def openapi_document():
    """This document.
    ---
    get:
      summary: The OpenAPI document of this API
      tags: [meta]
      responses:
        200:
          description: An OpenAPI 3.1 document
          content: {application/json: {schema: {type: object}}}
    """
    # Built once per process: the routes cannot change after the app is made.
    document = current_app.extensions.get("slipway_openapi")
    if document is None:
        document = build_spec(current_app).to_dict()
        current_app.extensions["slipway_openapi"] = document
    return jsonify(document)
