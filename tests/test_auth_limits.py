"""Wrong API and git tokens are rate-limited per client address; good ones are not."""

import base64

import pytest

from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.web.app import create_app

LIMIT = 3


@pytest.fixture
def limited(settings):
    return settings.model_copy(update={"auth_max_failures": LIMIT, "auth_window_seconds": 60})


@pytest.fixture
def client(limited):
    return create_app(limited).test_client()


@pytest.fixture
def token(settings):
    with session_scope(settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()}


def test_wrong_tokens_past_the_limit_get_429_with_retry_after(client, token):
    for _ in range(LIMIT):
        response = client.get("/api/v1/apps", headers=bearer("slp_wrong"))
        assert response.status_code == 401
    response = client.get("/api/v1/apps", headers=bearer("slp_wrong"))
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.json["error"]["code"] == "too_many_requests"
    assert response.json["error"]["message"].startswith(
        "Too many requests with a wrong API token from your address: try again in ")
    # Once limited, a good token from that address waits too: otherwise a guess that
    # succeeds would stand out from the 429s.
    assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 429
    # Another address is not affected.
    other = client.get("/api/v1/apps", headers=bearer(token),
                       environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200


def test_good_tokens_and_missing_tokens_are_not_counted(client, token):
    for _ in range(LIMIT * 3):
        assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 200
        assert client.get("/api/v1/apps").status_code == 401  # no token: git's first try
    assert client.get("/api/v1/apps", headers=bearer("slp_wrong")).status_code == 401


def test_git_shares_the_limit_and_answers_in_plain_text(client, token):
    for _ in range(LIMIT):
        response = client.get("/git/shop.git/info/refs?service=git-upload-pack",
                              headers=basic("slp_wrong"))
        assert response.status_code == 401
    response = client.get("/git/shop.git/info/refs?service=git-upload-pack",
                          headers=basic("slp_wrong"))
    assert response.status_code == 429
    assert response.mimetype == "text/plain" and response.headers["Retry-After"]
    assert b"Too many requests with a wrong API token" in response.data
    assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 429


def test_without_redis_tokens_are_still_checked(settings, token):
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    client = app.test_client()
    assert client.get("/api/v1/apps", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/apps", headers=bearer("slp_wrong")).status_code == 401
