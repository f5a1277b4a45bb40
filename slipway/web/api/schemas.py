"""JSON Schemas of the API's bodies, as components of the OpenAPI document.

Plain JSON Schema (OpenAPI 3.1 uses JSON Schema 2020-12), so ``null`` is a type
like any other. Views name these in their docstrings (``schema: App``); the
document builder in ``openapi.py`` registers them all. Keep each one in step with
the ``*_json`` function that produces the body (tests validate real responses
against them).
"""

from __future__ import annotations

REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


def _nullable(kind: str, **extra: object) -> dict:
    return {"type": [kind, "null"], **extra}


def _object(properties: dict, *, required: list[str] | None = None,
            closed: bool = True) -> dict:
    """An object with these properties; all of them required unless told otherwise."""
    schema: dict = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def page_of(name: str) -> dict:
    """The list shape of every paginated route, with items of schema ``name``."""
    return {"allOf": [_ref("Page"), {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref(name)}},
    }]}


# The rules of slipway.platform.validation, as JSON Schema patterns (ECMA 262), so
# clients and test generators know what is accepted; tests/test_openapi.py checks
# they agree with the validators.
NAME_PATTERN = "^[a-z][a-z0-9-]{0,28}[a-z0-9]$"
CONFIG_KEY_PATTERN = "^[A-Za-z_][A-Za-z0-9_]{0,255}$"
ALIAS_PATTERN = "^[A-Z][A-Z0-9_]{0,49}$"
# Stricter than the validator (which also takes IDNs and a trailing dot): ASCII
# labels without "--", at least two of them, the last starting with a letter.
HOSTNAME_PATTERN = "^([a-z0-9](-?[a-z0-9]){0,30}[.])+[a-z](-?[a-z0-9]){0,30}$"
NAME = {"type": "string", "pattern": NAME_PATTERN,
        "description": "2-30 characters: a lowercase letter, then lowercase letters, digits "
                       "or dashes, not ending in a dash"}

TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = _nullable("string", format="date-time")

SCHEMAS: dict[str, dict] = {
    # --- the shapes every route shares ------------------------------------
    "Error": _object({
        "error": _object({
            "code": {"type": "string", "description": "Machine-readable, e.g. not_found"},
            "message": {"type": "string", "description": "For people, shown as it is"},
            "field": {"type": "string", "description": "The input the error is about"},
        }, required=["code", "message"]),
    }),
    "Page": {
        "type": "object",
        "description": "One page of a list; ask for the next with offset.",
        "properties": {
            "items": {"type": "array"},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "offset": {"type": "integer", "minimum": 0},
        },
        "required": ["items", "total", "limit", "offset"],
        "additionalProperties": False,
    },
    # --- apps, config, releases, builds -----------------------------------
    "AppCreate": _object({"name": NAME}, closed=False),
    "App": _object({
        "name": {"type": "string"},
        "owner": {"type": "string", "description": "The owner's email"},
        "created_at": TIMESTAMP,
        "url": {"type": "string"},
        "git_url": {"type": "string"},
        "release": _nullable("integer", description="Current release version"),
    }),
    "Config": {
        "type": "object",
        "description": "The app's config vars, KEY: value",
        "additionalProperties": {"type": "string"},
    },
    "ConfigPatch": {
        "type": "object",
        "description": "KEY: value sets KEY, KEY: null unsets it. Values are at most "
                       "32 KiB of UTF-8; PORT is Slipway's own.",
        "minProperties": 1,
        "propertyNames": {"pattern": CONFIG_KEY_PATTERN, "not": {"const": "PORT"}},
        "additionalProperties": _nullable("string", pattern="^[^\\u0000]*$"),
    },
    "Release": _object({
        "version": {"type": "integer", "minimum": 1},
        "status": {"enum": ["pending", "deploying", "succeeded", "failed"]},
        "current": {"type": "boolean"},
        "description": {"type": "string"},
        "image": {"type": "string"},
        "processes": {"type": "object", "additionalProperties": {"type": "string"}},
        "healthchecks": _nullable(
            "object", description="The resolved startup checks of the web containers, "
            '{"web": [{"path", "timeout", "attempts", "wait", "initial_delay", "content", '
            '"any_status"}]}; null for releases older than health checks'),
        "build": _nullable("integer"),
        "error": _nullable("string"),
        "created_at": TIMESTAMP,
    }),
    "Build": _object({
        "id": {"type": "integer"},
        "status": {"enum": ["pending", "building", "succeeded", "failed"]},
        "commit": {"type": "string"},
        "stack": _nullable("string"),
        "error": _nullable("string"),
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "created_at": TIMESTAMP,
        "finished_at": NULLABLE_TIMESTAMP,
        "log": {"type": "string", "description": "Only on a single build"},
    }, required=["id", "status", "commit", "stack", "error", "timings", "created_at",
                 "finished_at"]),
    # --- processes ---------------------------------------------------------
    "Process": _object({
        "type": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string", "description":
                  "Docker's state (running, created, exited...), or crashed: a process "
                  "that keeps exiting (Docker restarts it with a growing delay)"},
        "status": {"type": "string"},
        "release": _nullable("integer"),
        "created_at": TIMESTAMP,
        "restarts": {"type": "integer", "minimum": 0,
                     "description": "How often Docker restarted it"},
        "exit_code": _nullable("integer", description="The last exit status, when crashed"),
        "last_logs": {"type": "array", "items": {"type": "string"}, "maxItems": 20,
                      "description": "Its last output lines, when crashed (else empty)"},
    }),
    "Formation": {
        "type": "object",
        "description": "Process type: number of containers",
        "additionalProperties": {"type": "integer", "minimum": 0},
    },
    "FormationPatch": {
        "type": "object",
        "description": "Process type: new number of containers (up to SLIPWAY_MAX_SCALE)",
        "minProperties": 1,
        "additionalProperties": {"type": "integer", "minimum": 0},
    },
    "Restart": _object({"type": _nullable(
        "string", description="Only this process type; all when absent")}, required=[],
        closed=False),
    "Rollback": _object({"version": _nullable(
        "integer", description="The release to go back to; the previous one when absent")},
        required=[], closed=False),
    "Run": _object({"command": {
        "type": "array", "items": {"type": "string"}, "minItems": 1,
        "description": "An argv, e.g. [\"python\", \"-V\"]: no shell",
    }}, closed=False),
    # --- domains and TLS -----------------------------------------------------
    "DomainCreate": _object({"hostname": {
        "type": "string", "pattern": HOSTNAME_PATTERN, "maxLength": 253,
        "description": "e.g. www.example.com; internationalised names are accepted too",
    }}, closed=False),
    "Domain": _object({
        "hostname": {"type": "string"},
        "custom": {"type": "boolean"},
        "status": {"enum": ["none", "pending", "issued", "failed"]},
        "last_error": _nullable("string"),
        "expires_at": NULLABLE_TIMESTAMP,
    }),
    "DomainList": _object({
        "default": {"type": "string", "description": "The app's own host name"},
        "tls": {"enum": ["auto", "acme", "internal", "off"]},
        "hsts": {"type": "boolean"},
        "items": {"type": "array", "items": _ref("Domain")},
    }),
    "TlsPatch": _object({"hsts": _nullable(
        "boolean", description="null goes back to the global default")}, required=[]),
    "Tls": _object({"hsts": {"type": "boolean"}}),
    # --- capsules ----------------------------------------------------------
    "CapsuleCreate": _object({
        "kind": {"enum": ["postgres", "redis"]},
        "name": NAME,
        "version": {"type": ["string", "integer"], "pattern": "^[0-9]{1,4}$",
                    "description": "Major version, e.g. 18 (PostgreSQL) or 8 (Redis): one "
                                   "this host can build (a 422 names them); default the "
                                   "newest"},
    }, required=["kind", "name"], closed=False),
    "CapsuleDelete": _object({"confirm": {
        "type": "string", "description": "The capsule's name, typed back"}}, closed=False),
    "CapsuleAttach": _object({
        "capsule": NAME,
        "as": {"type": "string", "pattern": ALIAS_PATTERN,
               "description": "Env prefix: AS_URL; from the kind by default"},
    }, required=["capsule"], closed=False),
    "Capsule": _object({
        "name": {"type": "string"},
        "kind": {"enum": ["postgres", "redis"]},
        "version": _nullable("string", description="Major version, e.g. 18"),
        "status": {"enum": ["provisioning", "available", "failed"]},
        "error": _nullable("string"),
        "created_at": TIMESTAMP,
        "url": _nullable("string", description="Connection URL from the host"),
        "container": {"type": "string"},
        "attachments": {"type": "array", "items": _object({
            "app": {"type": "string"}, "as": {"type": "string"}})},
    }),
    "Backup": _object({
        "name": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "created_at": TIMESTAMP,
    }),
    "BackupList": _object({
        "items": {"type": "array", "items": _ref("Backup")},
        "total": {"type": "integer", "minimum": 0},
    }),
    "Restore": _object({"backup": {"type": "string"}}, closed=False),
    "Restored": _object({"restored": {"type": "string", "description": "The backup's name"}}),
    # --- audit log -------------------------------------------------------------
    "AuditEvent": _object({
        "id": {"type": "integer"},
        "time": TIMESTAMP,
        "actor": _nullable("string", description="The actor's email; null for the host "
                                                 "operator (the slipway command on the host)"),
        "action": {"type": "string", "description": "e.g. app.create, config.change, deploy"},
        "target": _object({"kind": {"enum": ["app", "capsule", "domain", "token"]},
                           "name": {"type": "string"}}),
        "app": _nullable("string", description="The app the event is about"),
        "details": {"type": "object", "description": "What changed; never a secret (config "
                                                    "changes list keys, not values)"},
    }),
}

# Paginated lists get a schema of their own so views can name them in one word.
for _item in ("App", "Release", "Build", "Capsule", "AuditEvent"):
    SCHEMAS[f"{_item}Page"] = page_of(_item)


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("Error")}}}


# Every error status a route can answer with, each with the one error shape.
RESPONSES: dict[str, dict] = {
    "BadRequest": _error("The body is not JSON, not the expected shape, or a query "
                         "argument is out of range"),
    "Unauthorized": _error("No valid API token (send Authorization: Bearer <token>)"),
    "RequestTimeout": _error("The body stopped arriving for SLIPWAY_CLIENT_TIMEOUT seconds"),
    "TooLarge": _error("The body is larger than SLIPWAY_MAX_BODY_BYTES"),
    "UnsupportedMediaType": _error("The body was not sent as application/json"),
    "TooManyRequests": _error("Too many requests with a wrong token from this address; "
                              "Retry-After says when to try again"),
    "NotFound": _error("No such object, or it belongs to another user"),
    "Conflict": _error("The request conflicts with the current state"),
    "InvalidInput": _error("A field's value is invalid; error.field names it"),
    "ServerError": _error("The work failed (e.g. new containers did not come up); "
                          "what was running keeps running"),
}

PARAMETERS: dict[str, dict] = {
    "limit": {"in": "query", "name": "limit", "required": False,
              "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    "offset": {"in": "query", "name": "offset", "required": False,
               "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}},
}

# Path parameters by name (from the URL rules); names that break these rules name
# nothing, so a client can check them before asking.
PATH_PARAMETERS: dict[str, dict] = {
    "name": NAME,
    "capsule_name": NAME,
    "hostname": {"type": "string", "pattern": HOSTNAME_PATTERN, "maxLength": 253},
}
