"""Bad input at the API: oversized and malformed bodies, wrong content types, path
tricks and unicode in names. Each gets a clear 4xx in the one error shape, names the
field where there is one, and changes nothing."""

import base64
import io

import pytest

from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.web.app import create_app


@pytest.fixture
def client(settings):
    return create_app(settings.model_copy(update={"max_body_bytes": 4096})).test_client()


@pytest.fixture
def ada(settings):
    with session_scope(settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    return {"Authorization": f"Bearer {token}"}


def nothing_created(client, ada) -> bool:
    return client.get("/api/v1/apps", headers=ada).json["total"] == 0


def test_a_body_over_the_limit_gets_413_and_changes_nothing(client, ada):
    response = client.post("/api/v1/apps", json={"name": "shop", "pad": "x" * 5000},
                           headers=ada)
    assert response.status_code == 413
    assert response.json == {"error": {"code": "too_large",
                                       "message": "Request body is larger than 4096 bytes"}}
    assert nothing_created(client, ada)


def test_a_body_without_length_is_cut_at_the_limit(client, ada):
    body = b'{"name": "shop", "pad": "' + b"x" * 5000 + b'"}'
    response = client.post("/api/v1/apps", input_stream=io.BytesIO(body),
                           headers={**ada, "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           # As gunicorn says of a chunked body it de-chunks.
                           environ_base={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert nothing_created(client, ada)


def test_the_dashboard_has_the_same_limit(client):
    response = client.post("/login", data={"email": "a@b.c", "password": "x" * 5000})
    assert response.status_code == 413
    assert b"Request body is larger than 4096 bytes" in response.data


@pytest.mark.parametrize(("data", "content_type", "status", "message"), [
    ("{nope", "application/json", 400, "Request body must be JSON"),
    ("", "application/json", 400, "Request body must be JSON"),
    ('{"name": "shop"', "application/json", 400, "Request body must be JSON"),
    (b'{"name": "\xff"}', "application/json", 400, "Request body must be JSON"),
    ('{"name": "shop"}', "text/plain", 415,
     "Send the body as JSON with Content-Type: application/json"),
    ("name=shop", "application/x-www-form-urlencoded", 415,
     "Send the body as JSON with Content-Type: application/json"),
    ('{"name": "shop"}', None, 415, "Send the body as JSON with Content-Type: application/json"),
])
def test_malformed_json_and_wrong_content_types(client, ada, data, content_type, status,
                                                message):
    headers = {**ada, **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/api/v1/apps", data=data, headers=headers)
    assert response.status_code == status, response.json
    assert response.json["error"]["message"] == message
    assert nothing_created(client, ada)


def test_optional_bodies_are_checked_when_sent(client, ada):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    response = client.post("/api/v1/apps/shop/rollback", data="version=1", headers={
        **ada, "Content-Type": "text/plain"})
    assert response.status_code == 415
    response = client.post("/api/v1/apps/shop/ps/restart", json=["web"], headers=ada)
    assert response.status_code == 400
    assert response.json["error"]["message"] == "Send a JSON object"


TRICKS = ["..", "%2e%2e", "%2E%2E%2Fetc", "a%2fb", "..%2f..%2fetc%2fpasswd", "%00",
          "sh%00op", "shop%00", "a" * 300, "sh%C3%B6p", "%E2%80%AEpohs", "%F0%9F%98%80",
          "shop%0Aevil", "%20shop"]


@pytest.mark.parametrize("trick", TRICKS)
def test_path_tricks_in_names_get_404_naming_the_field(client, ada, trick):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    for path in (f"/api/v1/apps/{trick}", f"/api/v1/apps/{trick}/config",
                 f"/api/v1/capsules/{trick}", f"/api/v1/apps/shop/domains/{trick}"):
        for method in ("get", "delete"):
            response = getattr(client, method)(path, headers=ada)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)
            assert set(response.json["error"]) <= {"code", "message", "field"}
            # Nothing the user sent is echoed back whole (a 300-character name, NUL).
            assert "a" * 100 not in response.json["error"]["message"]
            assert "\x00" not in response.json["error"]["message"]
    response = client.get(f"/api/v1/apps/{trick}", headers=ada)
    if response.status_code == 404 and "field" in response.json["error"]:
        assert response.json["error"]["field"] == "name"
    assert [a["name"] for a in client.get("/api/v1/apps", headers=ada).json["items"]] == ["shop"]


@pytest.mark.parametrize("trick", ["..", "%2e%2e", "a%2fb", "sh%00op", "a" * 300, "sh%C3%B6p"])
def test_path_tricks_in_git_urls_get_4xx(client, ada, trick):
    basic = {"Authorization": "Basic " + base64.b64encode(
        f"x:{ada['Authorization'].split()[1]}".encode()).decode()}
    response = client.get(f"/git/{trick}.git/info/refs?service=git-upload-pack", headers=basic)
    assert 400 <= response.status_code < 500


UNICODE_NAMES = ["shöp", "ｓｈｏｐ", "shop\u200b", "ѕhop", "shop\u0301", "🚀shop", "s\u202ehop"]


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_unicode_in_every_name_field_is_refused_naming_the_field(client, ada, name):
    response = client.post("/api/v1/apps", json={"name": name}, headers=ada)
    assert (response.status_code, response.json["error"]["field"]) == (422, "name")
    response = client.post("/api/v1/capsules", json={"kind": "redis", "name": name},
                           headers=ada)
    assert (response.status_code, response.json["error"]["field"]) == (422, "name")

    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    key = name.upper()
    response = client.patch("/api/v1/apps/shop/config", json={key: "v"}, headers=ada)
    assert (response.status_code, response.json["error"]["field"]) == (422, key)
    response = client.post("/api/v1/apps/shop/domains", json={"hostname": f"{name}.exa mple"},
                           headers=ada)
    assert (response.status_code, response.json["error"]["field"]) == (422, "hostname")
    response = client.post("/api/v1/apps/shop/capsules", json={"capsule": name}, headers=ada)
    assert 400 <= response.status_code < 500
    assert client.get("/api/v1/apps/shop/config", headers=ada).json == {}
    assert [a["name"] for a in client.get("/api/v1/apps", headers=ada).json["items"]] == ["shop"]


def test_unicode_config_values_are_kept_byte_for_byte(client, ada):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    value = "héllo 👋 \u202e «$HOME» \"q\" 'q'\n\t"
    response = client.patch("/api/v1/apps/shop/config", json={"GREETING": value}, headers=ada)
    assert response.status_code == 200
    assert client.get("/api/v1/apps/shop/config", headers=ada).json == {"GREETING": value}


@pytest.mark.parametrize("body", [b"000zgarbage", b"0001", b"\xff" * 5000, b""])
def test_a_push_that_is_not_git_talking_is_refused_without_a_crash(settings, ada, body):
    app = create_app(settings.model_copy(update={"max_push_bytes": 1000}))
    client = app.test_client()
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    token = ada["Authorization"].split()[1]
    basic = {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode(),
             "Content-Type": "application/x-git-receive-pack-request"}
    response = client.post("/git/shop.git/git-receive-pack", data=body, headers=basic)
    assert response.status_code < 500
