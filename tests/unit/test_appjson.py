"""app.json health checks: Dokku's shape in, plain data out, key-path errors for bad values."""

import json

import pytest

from slipway.builder.appjson import parse_healthchecks, read_healthchecks
from slipway.builder.plan import BuildError


def parse(document: object) -> tuple[dict, list[str]]:
    return parse_healthchecks(json.dumps(document))


def test_a_full_dokku_check_becomes_plain_data():
    checks, notes = parse({"name": "shop", "healthchecks": {"web": [
        {"type": "startup", "name": "ready", "path": "/health", "timeout": 5, "attempts": 5,
         "wait": 1, "initialDelay": 2, "content": "ok"}]}})
    assert checks == {"web": [{"path": "/health", "timeout": 5.0, "attempts": 5, "wait": 1.0,
                               "initial_delay": 2.0, "content": "ok"}]}
    assert notes == ["Health checks of web from app.json: /health"]


def test_only_the_keys_given_are_returned_and_type_defaults_to_startup():
    checks, _ = parse({"healthchecks": {"web": [{"path": "/up"}, {"attempts": 2}]}})
    assert checks == {"web": [{"path": "/up"}, {"attempts": 2}]}


def test_no_app_json_or_no_healthchecks_is_nothing(tmp_path):
    assert read_healthchecks(tmp_path) == ({}, [])
    (tmp_path / "app.json").write_text('{"env": {"SECRET": {"generator": "secret"}}}')
    assert read_healthchecks(tmp_path) == ({}, [])


def test_liveness_and_readiness_checks_are_skipped_with_a_note():
    checks, notes = parse({"healthchecks": {"web": [{"type": "liveness", "path": "/live"}]}})
    assert checks == {}
    assert notes == ["app.json healthchecks/web/0: only startup checks run; skipped"]


@pytest.mark.parametrize(("document", "message"), [
    ({"healthchecks": {"web": [{"path": "health"}]}},
     "app.json healthchecks/web/0/path: must start with /"),
    ({"healthchecks": {"web": [{"path": "/a b"}]}},
     "app.json healthchecks/web/0/path: must be at most 2048 printable ASCII characters "
     "without spaces"),
    ({"healthchecks": {"web": [{"path": 3}]}},
     "app.json healthchecks/web/0/path: must be a string"),
    ({"healthchecks": {"web": [{}, {"timeout": 0}]}},
     "app.json healthchecks/web/1/timeout: must be above 0 to 600 seconds"),
    ({"healthchecks": {"web": [{"timeout": "5"}]}},
     "app.json healthchecks/web/0/timeout: must be a number of seconds"),
    ({"healthchecks": {"web": [{"wait": -1}]}},
     "app.json healthchecks/web/0/wait: must be from 0 to 600 seconds"),
    ({"healthchecks": {"web": [{"initialDelay": 601}]}},
     "app.json healthchecks/web/0/initialDelay: must be from 0 to 600 seconds"),
    ({"healthchecks": {"web": [{"attempts": 0}]}},
     "app.json healthchecks/web/0/attempts: must be a whole number from 1 to 100"),
    ({"healthchecks": {"web": [{"attempts": True}]}},
     "app.json healthchecks/web/0/attempts: must be a whole number from 1 to 100"),
    ({"healthchecks": {"web": [{"attempts": 2.5}]}},
     "app.json healthchecks/web/0/attempts: must be a whole number from 1 to 100"),
    ({"healthchecks": {"web": [{"content": ""}]}},
     "app.json healthchecks/web/0/content: must be a non-empty string of at most 1024 "
     "characters"),
    ({"healthchecks": {"web": [{"type": "smoke"}]}},
     "app.json healthchecks/web/0/type: must be one of startup, liveness, readiness"),
    ({"healthchecks": {"web": [{"command": ["curl", "x"]}]}},
     "app.json healthchecks/web/0/command: is not supported (use type, name, path, timeout, "
     "attempts, wait, initialDelay, content)"),
    ({"healthchecks": {"web": ["/health"]}}, "app.json healthchecks/web/0: must be an object"),
    ({"healthchecks": {"web": {"path": "/"}}},
     "app.json healthchecks/web: must be a list of checks"),
    ({"healthchecks": {"worker": []}},
     "app.json healthchecks/worker: only the web process can be health-checked "
     "(it alone has a port)"),
    ({"healthchecks": ["web"]},
     'app.json healthchecks: must be an object of process types, e.g. {"web": [...]}'),
    (["healthchecks"], "app.json: must be a JSON object"),
])
def test_bad_values_are_refused_naming_the_key_path(document, message):
    with pytest.raises(BuildError) as info:
        parse(document)
    assert info.value.message == message


def test_invalid_json_names_the_place():
    with pytest.raises(BuildError) as info:
        parse_healthchecks('{"healthchecks": }')
    assert info.value.message == ("app.json: not valid JSON (Expecting value, line 1 "
                                  "column 18)")
