"""Config size limits per app (SLIPWAY_CONFIG_MAX_KEYS, SLIPWAY_CONFIG_MAX_BYTES), through
the API on SQLite and PostgreSQL, and the dashboard's config form."""

from __future__ import annotations

import pytest

from slipway.config import get_settings, reset_settings
from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.platform.logstream import connect
from slipway.web.app import create_app
from tests.test_dashboard import PASSWORD, csrf_of, signed_in

CONFIG = "/api/v1/apps/shop/config"


@pytest.fixture
def ada(settings, client):
    with session_scope(settings.database) as session:
        user, token = users.create_user(session, "ada@example.com")
        users.set_password(session, user, PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/apps", json={"name": "shop"}, headers=headers).status_code == 201
    return headers


@pytest.fixture
def small_limits(settings, monkeypatch):
    """Settings with at most 3 keys and 40 bytes (set in the environment, where every
    process reads them)."""
    monkeypatch.setenv("SLIPWAY_CONFIG_MAX_KEYS", "3")
    monkeypatch.setenv("SLIPWAY_CONFIG_MAX_BYTES", "40")
    reset_settings()
    return get_settings()


@pytest.fixture
def small_client(small_limits):
    return create_app(small_limits).test_client()


def refused(response, message: str) -> None:
    assert response.status_code == 422, response.json
    assert response.json["error"] == {"code": "invalid", "field": "config", "message": message}


def test_defaults_are_a_thousand_keys_and_32_kib(settings):
    assert (settings.config_max_keys, settings.config_max_bytes) == (1000, 32768)


def test_ten_thousand_keys_are_refused_and_nothing_changes(client, ada):
    assert client.patch(CONFIG, json={"KEEP": "me"}, headers=ada).status_code == 200
    many = {f"K{n}": "x" for n in range(10_500)}
    refused(client.patch(CONFIG, json=many, headers=ada),
            "Config is limited to 1000 keys: this change would make 10501")
    assert client.get(CONFIG, headers=ada).json == {"KEEP": "me"}


def test_more_than_32_kib_in_all_is_refused(client, ada):
    half = "v" * 16_380
    assert client.patch(CONFIG, json={"A": half, "B": half}, headers=ada).status_code == 200
    refused(client.patch(CONFIG, json={"C": "123456789"}, headers=ada),
            "Config is limited to 32768 bytes (keys and values together): this change would "
            "make 32772")
    assert client.get(CONFIG, headers=ada).json == {"A": half, "B": half}
    # Up to the limit exactly is fine; bytes are counted in UTF-8.
    assert client.patch(CONFIG, json={"C": "12345"}, headers=ada).status_code == 200
    refused(client.patch(CONFIG, json={"C": "1234é"}, headers=ada),
            "Config is limited to 32768 bytes (keys and values together): this change would "
            "make 32769")


def test_the_limits_apply_to_the_config_after_the_change(small_client, ada):
    client = small_client
    assert client.patch(CONFIG, json={"A": "1", "B": "2", "C": "3"}, headers=ada).status_code == 200
    refused(client.patch(CONFIG, json={"D": "4"}, headers=ada),
            "Config is limited to 3 keys: this change would make 4")
    # Swapping one key for another keeps the count: allowed.
    response = client.patch(CONFIG, json={"C": None, "D": "4"}, headers=ada)
    assert response.status_code == 200 and response.json == {"A": "1", "B": "2", "D": "4"}
    refused(client.patch(CONFIG, json={"A": "x" * 40}, headers=ada),
            "Config is limited to 40 bytes (keys and values together): this change would make 45")
    assert client.get(CONFIG, headers=ada).json == {"A": "1", "B": "2", "D": "4"}


def test_an_app_over_lowered_limits_can_always_unset(client, ada, settings, monkeypatch):
    six = {f"K{n}": "v" for n in range(6)}
    assert client.patch(CONFIG, json=six, headers=ada).status_code == 200
    monkeypatch.setenv("SLIPWAY_CONFIG_MAX_KEYS", "3")
    reset_settings()
    client = create_app(get_settings()).test_client()
    refused(client.patch(CONFIG, json={"NEW": "x"}, headers=ada),
            "Config is limited to 3 keys: this change would make 7")
    response = client.patch(CONFIG, json={"K0": None}, headers=ada)  # still over, but fewer
    assert response.status_code == 200 and len(response.json) == 5
    response = client.patch(CONFIG, json={"K1": "changed"}, headers=ada)  # no more keys
    assert response.status_code == 200 and response.json["K1"] == "changed"


def test_the_dashboard_form_shows_the_limit_and_changes_nothing(settings, redis_url, ada,
                                                                small_limits):
    connect(redis_url).flushdb()
    web = create_app(small_limits)
    browser = signed_in(web, "ada@example.com")
    token = csrf_of(browser.get("/apps/shop/config").data)
    response = browser.post("/apps/shop/config", data={
        "csrf_token": token, "key": ["A", "B", "C", "D"], "value": ["1", "2", "3", "4"]})
    assert response.status_code == 422
    assert b"Config is limited to 3 keys: this change would make 4" in response.data
    assert web.test_client().get(CONFIG, headers=ada).json == {}
