"""Models and services on a real database: SQLite and PostgreSQL."""

import pytest
from sqlalchemy import select

from slipway.platform import apps, config_vars, releases, users
from slipway.platform.db import session_scope
from slipway.platform.errors import Conflict, NotFound, Unauthorized
from slipway.platform.models import ApiToken, ConfigVar, utcnow


def test_users_and_tokens(database_url):
    with session_scope(database_url) as session:
        user, token = users.create_user(session, "Ada@Example.com", admin=True)
    with session_scope(database_url) as session:
        assert users.authenticate(session, token).email == "ada@example.com"
        stored = session.scalar(select(ApiToken))
        assert stored.token_hash != token and token not in stored.hint + stored.token_hash
        with pytest.raises(Conflict):
            users.create_user(session, "ada@example.com")
    with session_scope(database_url) as session:
        for bad in (None, "", "slp_wrong"):
            with pytest.raises(Unauthorized):
                users.authenticate(session, bad)
        session.scalar(select(ApiToken)).revoked_at = utcnow()
    with session_scope(database_url) as session, pytest.raises(Unauthorized):
        users.authenticate(session, token)


def test_apps_are_private_to_their_owner(database_url):
    with session_scope(database_url) as session:
        ada, _ = users.create_user(session, "ada@example.com")
        bob, _ = users.create_user(session, "bob@example.com")
        root, _ = users.create_user(session, "root@example.com", admin=True)
        apps.create_app(session, ada, "web-shop")
        with pytest.raises(Conflict):
            apps.create_app(session, bob, "web-shop")
        with pytest.raises(NotFound):
            apps.get_app(session, bob, "web-shop")
        assert apps.get_app(session, root, "web-shop").owner == ada
        assert apps.list_apps(session, bob, limit=10, offset=0) == ([], 0)
        listed, total = apps.list_apps(session, root, limit=10, offset=0)
        assert total == 1 and listed[0].name == "web-shop"


def test_config_vars_are_encrypted_and_releases_numbered(database_url):
    value = "it's \"q\"\n$HOME ✓"
    with session_scope(database_url) as session:
        ada, _ = users.create_user(session, "ada@example.com")
        app = apps.create_app(session, ada, "shop")
        changes = config_vars.validate_changes({"SECRET": value, "GONE": "x"})
        config_vars.apply_changes(session, "key", app, changes, limits=None)
        config = config_vars.apply_changes(session, "key", app, {"GONE": None}, limits=None)
        assert config == {"SECRET": value}
        raw = session.scalar(select(ConfigVar.value_encrypted))
        assert value not in raw
        first = releases.create_release(session, "key", app, image="img:1", config=config,
                                        processes={"web": "run"}, port=5000, description="d")
        second = releases.create_release(session, "key", app, image="img:2", config={},
                                         processes={}, port=5000, description="d")
        assert (first.version, second.version) == (1, 2)
        assert releases.release_config("key", first) == {"SECRET": value}
        rows, total = releases.list_releases(session, app, limit=1, offset=0)
        assert total == 2 and rows[0].version == 2
