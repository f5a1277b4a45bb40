"""app.json env: Heroku's shape in, plain data out, key-path errors for bad entries."""

import json

import pytest

from slipway.builder.appjson import EnvVar, parse_env, read_env
from slipway.builder.plan import BuildError


def parse(document: object) -> list[EnvVar]:
    return parse_env(json.dumps(document))


def test_herokus_entries_become_plain_data():
    assert parse({"env": {
        "SECRET_KEY": {"description": "Django's secret", "generator": "secret"},
        "WEB_CONCURRENCY": {"value": "3", "required": False, "order": 2},
        "LOG_LEVEL": "info",
        "STRIPE_KEY": {"description": "from your Stripe dashboard"},
        "EMPTY": {"value": ""},
    }}) == [
        EnvVar("SECRET_KEY", generator="secret"),
        EnvVar("WEB_CONCURRENCY", value="3", required=False),
        EnvVar("LOG_LEVEL", value="info"),
        EnvVar("STRIPE_KEY"),
        EnvVar("EMPTY", value=""),
    ]


def test_no_app_json_or_no_env_is_nothing(tmp_path):
    assert read_env(tmp_path) == []
    (tmp_path / "app.json").write_text('{"healthchecks": {}}')
    assert read_env(tmp_path) == []


@pytest.mark.parametrize(("document", "message"), [
    ({"env": []}, 'app.json env: must be an object of config vars, e.g. {"SECRET_KEY": {...}}'),
    ({"env": {"A": 3}}, "app.json env/A: must be a string (its value) or an object"),
    ({"env": {"A": {"value": 3}}}, "app.json env/A/value: must be a string"),
    ({"env": {"A": {"generator": "uuid"}}}, "app.json env/A/generator: must be one of secret"),
    ({"env": {"A": {"value": "x", "generator": "secret"}}},
     "app.json env/A: has both a value and a generator: give one"),
    ({"env": {"A": {"required": "yes"}}}, "app.json env/A/required: must be true or false"),
    ({"env": {"A": {"description": 1}}}, "app.json env/A/description: must be a string"),
    ({"env": {"A": {"default": "x"}}},
     "app.json env/A/default: is not supported "
     "(use description, value, required, generator, order)"),
    ([], "app.json: must be a JSON object"),
])
def test_bad_entries_are_refused_with_their_key_path(document, message):
    with pytest.raises(BuildError) as info:
        parse(document)
    assert info.value.message == message
