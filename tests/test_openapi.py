"""The OpenAPI document at /api/v1/openapi.json: valid, complete, and true to real responses."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint, Flask
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from slipway.platform import users, validation
from slipway.platform.db import session_scope
from slipway.platform.errors import InvalidInput
from slipway.web.api import schemas
from slipway.web.api.openapi import build_spec
from slipway.web.app import create_app

DOC_URI = "urn:slipway:openapi"
METHODS = {"get", "post", "put", "patch", "delete"}
OPENAPI_PATH = "/api/v1/openapi.json"


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def document(client):
    response = client.get(OPENAPI_PATH)  # no token: the document is public
    assert response.status_code == 200
    return response.json


@pytest.fixture
def ada(settings):
    with session_scope(settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    return {"Authorization": f"Bearer {token}"}


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def api_rules(app: Flask) -> dict[str, set[str]]:
    """Every route of the api blueprint as OpenAPI path -> lower-case methods."""
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            found.setdefault(path, set()).update(
                m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return found


def deref(document: dict, node: dict) -> dict:
    """Follow a local $ref (#/components/...) to what it names."""
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check_response(document: dict, path: str, method: str, response, body=None) -> None:
    """Validate a real response's JSON body against the schema its operation declares.

    Raises AssertionError for an undeclared status, jsonschema's ValidationError for
    a body that does not match.
    """
    declared = document["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, (path, method, response.status_code)
    media = deref(document, declared[str(response.status_code)])["content"]
    schema = media["application/json"]["schema"]
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(document))
    if "$ref" in schema:
        schema = {"$ref": DOC_URI + schema["$ref"]}
    Draft202012Validator(schema, registry=registry).validate(
        response.json if body is None else body)


def test_the_document_is_valid_openapi_3_and_needs_no_token(document):
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Slipway API"


def test_every_api_route_is_documented_with_its_methods_and_nothing_else(app, document):
    documented = {path: {m for m in item if m in METHODS}
                  for path, item in document["paths"].items()}
    assert documented == api_rules(app)
    assert "/api/v1/apps/{name}/capsules/{capsule_name}" in documented  # issue 4's routes
    assert documented["/api/v1/capsules/{name}"] == {"get", "delete"}


def test_every_operation_needs_the_bearer_token_and_declares_401(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": "An API token"}
    for path, method, operation in operations(document):
        if path == OPENAPI_PATH:
            assert operation["security"] == [] and "401" not in operation["responses"]
            continue
        assert operation["security"] == [{"bearerAuth": []}], (path, method)
        assert operation["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}


def test_path_parameters_are_declared_and_typed(document):
    for path, method, operation in operations(document):
        names = re.findall(r"{([^}]+)}", path)
        declared = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "path"}
        assert set(declared) == set(names), (path, method)
    build = document["paths"]["/api/v1/apps/{name}/builds/{build_id}"]["get"]
    assert [p["schema"] for p in build["parameters"]] == [
        schemas.NAME, {"type": "integer", "minimum": 0}]


def test_errors_and_lists_use_the_shared_shapes(document):
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message"]
    assert set(schemas["Page"]["required"]) == {"items", "total", "limit", "offset"}
    for name, response in document["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}, name
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert "$ref" in response, (path, method, status)
        if "{name}" in path:
            assert "404" in operation["responses"], (path, method)
        if "requestBody" in operation and operation["requestBody"].get("required"):
            assert "400" in operation["responses"], (path, method)
        if any(p.get("$ref", "").endswith("/limit") for p in operation.get("parameters", [])):
            assert "400" in operation["responses"], (path, method)
            schema = deref(document, operation["responses"]["200"])["content"][
                "application/json"]["schema"]
            assert deref(document, schema)["allOf"][0] == {"$ref": "#/components/schemas/Page"}


def test_real_responses_match_their_declared_schemas(client, document, ada):
    created = client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    assert created.status_code == 201
    check_response(document, "/api/v1/apps", "post", created)

    listed = client.get("/api/v1/apps", headers=ada)
    assert listed.json["total"] == 1
    check_response(document, "/api/v1/apps", "get", listed)

    invalid = client.post("/api/v1/apps", json={"name": "Bad Name"}, headers=ada)
    assert invalid.status_code == 422 and invalid.json["error"]["field"] == "name"
    check_response(document, "/api/v1/apps", "post", invalid)

    missing = client.get("/api/v1/apps/nope", headers=ada)
    assert missing.json == {"error": {"code": "not_found", "message": "No app named nope"}}
    check_response(document, "/api/v1/apps/{name}", "get", missing)

    unauthorized = client.get("/api/v1/apps/shop")
    assert unauthorized.status_code == 401
    check_response(document, "/api/v1/apps/{name}", "get", unauthorized)

    bad_page = client.get("/api/v1/apps?limit=0", headers=ada)
    assert bad_page.status_code == 400
    check_response(document, "/api/v1/apps", "get", bad_page)

    patched = client.patch("/api/v1/apps/shop/config", json={"GREETING": 'a "b" $c\n'},
                           headers=ada)
    assert patched.json == {"GREETING": 'a "b" $c\n'}
    check_response(document, "/api/v1/apps/{name}/config", "patch", patched)
    config = client.get("/api/v1/apps/shop/config", headers=ada)
    check_response(document, "/api/v1/apps/{name}/config", "get", config)

    for path in ("/apps/{name}", "/apps/{name}/releases", "/apps/{name}/builds",
                 "/apps/{name}/domains", "/capsules"):
        response = client.get("/api/v1" + path.replace("{name}", "shop"), headers=ada)
        assert response.status_code == 200, path
        check_response(document, "/api/v1" + path, "get", response)


def test_a_wrong_body_fails_its_schema(client, document, ada):
    """The check above can fail: a body missing a field is refused."""
    response = client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    body = {k: v for k, v in response.json.items() if k != "git_url"}
    with pytest.raises(ValidationError, match="'git_url' is a required property"):
        check_response(document, "/api/v1/apps", "post", response, body)
    with pytest.raises(ValidationError, match="'nope' is not of type 'integer', 'null'"):
        check_response(document, "/api/v1/apps", "post", response,
                       {**response.json, "release": "nope"})


def test_a_route_without_its_operation_cannot_be_left_out():
    app = Flask(__name__)
    bp = Blueprint("api", __name__, url_prefix="/api/v1")

    @bp.get("/things")
    def list_things():
        """No operation here."""
        return []

    app.register_blueprint(bp)
    with pytest.raises(ValueError, match=re.escape(
            "api.list_things (/api/v1/things) documents no operation for ['GET']")):
        build_spec(app)


def test_the_document_is_built_once_per_process(app, client):
    first = client.get(OPENAPI_PATH).json
    cached = app.extensions["slipway_openapi"]
    assert client.get(OPENAPI_PATH).json == first
    assert app.extensions["slipway_openapi"] is cached


# Path parameters that name what exists, so half the cases get past the 404.
EXISTING = {"name": "shop", "capsule_name": "db", "hostname": "www.shop.test"}


@pytest.mark.schemathesis
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_no_server_errors_and_only_declared_responses(settings, document,
                                                                        monkeypatch):
    """Requests generated from the whole document get declared, conforming answers, never
    a 5xx. Routes that reach Docker run against the real engine (listing, removing,
    starting nothing this run did not make); enqueuing Celery tasks is left out."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        positive_data_acceptance,
    )

    from slipway.platform import tasks

    for task in (tasks.provision_capsule, tasks.deploy, tasks.issue_certificate,
                 tasks.domains_changed, tasks.build):
        monkeypatch.setattr(task, "delay", lambda *args, **kwargs: None)
    # No router runs here: a route change is not waited for. Schemathesis also checks
    # that wrong tokens are refused, which would soon trip the failure limit.
    app = create_app(settings.model_copy(update={"route_timeout": 0.1,
                                                 "auth_max_failures": 10**6}))
    with session_scope(settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    client = app.test_client()

    def ensure_state() -> None:
        # Cases may destroy what they name (DELETE /apps/shop): bring it back each time.
        if client.get("/api/v1/apps/shop", headers=auth).status_code == 404:
            client.post("/api/v1/apps", json={"name": "shop"}, headers=auth)
            client.post("/api/v1/apps/shop/domains", json={"hostname": "www.shop.test"},
                        headers=auth)
        if client.get("/api/v1/capsules/db", headers=auth).status_code == 404:
            client.post("/api/v1/capsules", json={"kind": "redis", "name": "db"}, headers=auth)

    schema = schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        ensure_state()
        existing = {**EXISTING, "name": "db"} if operation.path.startswith(
            "/api/v1/capsules/") else EXISTING
        fixed = {p["name"]: existing[p["name"]]
                 for p in operation.definition.raw.get("parameters", [])
                 if p.get("in") == "path" and p["name"] in existing}
        # Valid requests, and invalid ones (which must get a 4xx, never a 5xx).
        strategies = [operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE)]
        if fixed:
            strategies += [operation.as_strategy(path_parameters=fixed),
                           operation.as_strategy(GenerationMode.NEGATIVE,
                                                 path_parameters=fixed)]
        for strategy in strategies:

            @given(case=strategy)
            @hypothesis_settings(max_examples=20, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck))
            def check(case):
                if case.query and case.query.get("follow") in ("1", "true"):
                    case.query["follow"] = "0"  # a followed log never ends
                # Not positive_data_acceptance: a valid request can still meet the app's
                # state ("push it first" is a 422 to scaling an app never pushed). Nor
                # negative_data_rejection: unknown query arguments are ignored, not refused.
                response = case.call_and_validate(
                    headers=auth,
                    excluded_checks=[positive_data_acceptance, negative_data_rejection])
                assert response.status_code < 500, (case.method, case.formatted_path,
                                                     response.text[:500])

            check()
        tried.append(operation.definition.raw["operationId"])
    # Schemathesis leaves out the document's own path; tests above cover it.
    documented = {op["operationId"] for _, _, op in operations(document)}
    assert set(tried) == documented - {"openapi_document"}


@pytest.mark.parametrize(("pattern", "validator", "samples"), [
    (schemas.NAME_PATTERN, validation.app_name,
     ["ab", "shop", "my-app-2", "a" * 30, "a" * 31, "a", "ab-", "-ab", "Ab", "a_b", "a b",
      "shop\n", "2ab", "x;rm"]),
    (schemas.CONFIG_KEY_PATTERN, validation.config_key,
     ["KEY", "_x", "a1", "K" * 256, "K" * 257, "1A", "A-B", "", "A B", "KEY\n"]),
    (schemas.ALIAS_PATTERN, validation.capsule_alias,
     ["DATABASE", "D", "CACHE_2", "D" * 50, "D" * 51, "database", "_D", "2D", "D\n"]),
])
def test_schema_patterns_accept_only_what_the_validators_accept(pattern, validator, samples):
    """The document's patterns are the validators' rules (as ECMA 262 regexes)."""
    for sample in samples:
        try:
            validator(sample)
            accepted = True
        except InvalidInput:
            accepted = False
        # JSON Schema's "$" matches only at the very end; Python's also before a final \n.
        matched = re.search(pattern.replace("$", r"\Z"), sample) is not None
        assert matched == accepted, (pattern, sample)


def test_the_hostname_pattern_is_stricter_than_the_domain_validator():
    pattern = schemas.HOSTNAME_PATTERN.replace("$", r"\Z")
    for host in ["www.example.com", "a.b", "x1.example", "a-b.c-d.io"]:
        assert re.search(pattern, host) and validation.domain(host) == host
    for host in ["example", "1.2.3.4", "*.example.com", "a--b.com", "-a.com", "a.com."]:
        assert not re.search(pattern, host)
