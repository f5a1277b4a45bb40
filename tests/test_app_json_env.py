"""app.json env on a real database: set on the first deploy only, never overwritten."""

import re

import pytest

from slipway.builder.appjson import EnvVar
from slipway.platform import apps, config_vars, releases, users
from slipway.platform.db import session_scope
from slipway.platform.errors import InvalidInput

DECLARED = [
    EnvVar("SECRET_KEY", generator="secret"),
    EnvVar("LOG_LEVEL", value="info"),
    EnvVar("ALREADY", value="from app.json"),
    EnvVar("STRIPE_KEY"),
    EnvVar("OPTIONAL", required=False),
    EnvVar("DATABASE_URL", value="sqlite:///x.db"),
]


def test_the_first_deploy_sets_values_and_secrets_later_ones_never_touch_them(database_url):
    with session_scope(database_url) as session:
        ada, _ = users.create_user(session, "ada@example.com")
        app = apps.create_app(session, ada, "shop")
        config_vars.apply_changes(session, "key", app, {"ALREADY": "mine"}, limits=None)
        seeded = config_vars.seed_from_app_json(
            session, "key", app, DECLARED, provided={"DATABASE_URL": "postgres://capsule"},
            limits=config_vars.ConfigLimits(max_keys=100, max_bytes=64 * 1024))
        assert (seeded.set, seeded.generated, seeded.missing) == (
            ["LOG_LEVEL"], ["SECRET_KEY"], ["STRIPE_KEY"])
        assert seeded.notes() == [
            "Config vars set from app.json: LOG_LEVEL, SECRET_KEY (generated)",
            "app.json env/STRIPE_KEY is required and not set: slipway config:set STRIPE_KEY=...",
        ]
        config = config_vars.get_config("key", app)
        assert set(config) == {"ALREADY", "LOG_LEVEL", "SECRET_KEY"}
        assert config["ALREADY"] == "mine" and config["LOG_LEVEL"] == "info"
        secret = config["SECRET_KEY"]
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        release = releases.create_release(session, "key", app, image="img:1", config=config,
                                          processes={"web": "run"}, port=5000, description="d")
        app.current_release_id = release.id

    with session_scope(database_url) as session:
        app = apps.get_app(session, users.get_by_email(session, "ada@example.com"), "shop")
        config_vars.apply_changes(session, "key", app, {"LOG_LEVEL": None}, limits=None)
        seeded = config_vars.seed_from_app_json(session, "key", app, DECLARED, limits=None)
        assert (seeded.set, seeded.generated, seeded.missing) == ([], [], ["STRIPE_KEY"])
        config = config_vars.get_config("key", app)
        assert config == {"ALREADY": "mine", "SECRET_KEY": secret}


def test_over_the_config_limits_nothing_is_set(database_url):
    with session_scope(database_url) as session:
        ada, _ = users.create_user(session, "ada@example.com")
        app = apps.create_app(session, ada, "shop")
        with pytest.raises(InvalidInput):
            config_vars.seed_from_app_json(
                session, "key", app, DECLARED,
                limits=config_vars.ConfigLimits(max_keys=1, max_bytes=64 * 1024))
        assert config_vars.get_config("key", app) == {}


@pytest.mark.parametrize(("declared", "message"), [
    (EnvVar("my-key", value="x"), "app.json env/my-key: Invalid config key 'my-key': "
                                  "use letters, digits and underscores, not starting with a digit"),
    (EnvVar("PORT", value="80"), "app.json env/PORT: PORT is set by Slipway and cannot be changed"),
    (EnvVar("NUL", value="a\x00b"), "app.json env/NUL: Value of NUL must not contain NUL bytes"),
])
def test_declared_keys_and_values_pass_the_config_validators(declared, message):
    with pytest.raises(InvalidInput) as info:
        config_vars.check_declared([EnvVar("FINE", value="x"), declared])
    assert info.value.message == message
