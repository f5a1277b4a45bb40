"""The REST API through Flask's test client, on SQLite and PostgreSQL."""

import pytest

from slipway.platform import users
from slipway.platform.db import session_scope


@pytest.fixture
def tokens(settings):
    with session_scope(settings.database) as session:
        _, ada = users.create_user(session, "ada@example.com")
        _, bob = users.create_user(session, "bob@example.com")
    return {"ada": {"Authorization": f"Bearer {ada}"}, "bob": {"Authorization": f"Bearer {bob}"}}


def test_requests_without_a_valid_token_get_401(client):
    for headers in ({}, {"Authorization": "Bearer slp_nope"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/api/v1/apps", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"


def test_create_list_show_and_delete_an_app(client, tokens, settings):
    response = client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    assert response.status_code == 201, response.json
    assert response.json["url"] == f"http://shop.localhost{'' if settings.http_port == 80 else ''}/"
    assert response.json["git_url"].endswith("/git/shop.git")
    assert response.headers["Location"].endswith("/api/v1/apps/shop")
    assert response.json["created_at"].endswith("+00:00")

    listed = client.get("/api/v1/apps", headers=tokens["ada"]).json
    assert [a["name"] for a in listed["items"]] == ["shop"] and listed["total"] == 1
    assert client.get("/api/v1/apps/shop", headers=tokens["ada"]).json["release"] is None


@pytest.mark.parametrize("body", [{"name": "Bad Name"}, {"name": "a"}, {"name": 3}, {},
                                  {"name": "x;rm"}])
def test_invalid_app_names_are_refused_naming_the_field(client, tokens, body):
    response = client.post("/api/v1/apps", json=body, headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"]["field"] == "name"
    assert client.get("/api/v1/apps", headers=tokens["ada"]).json["total"] == 0


def test_malformed_bodies_get_400(client, tokens):
    response = client.post("/api/v1/apps", data="{nope", headers={
        **tokens["ada"], "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"] == {"code": "bad_request", "message": "Request body must be JSON"}
    response = client.post("/api/v1/apps", json=["shop"], headers=tokens["ada"])
    assert response.status_code == 400


def test_taken_names_conflict(client, tokens):
    created = client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    assert created.status_code == 201
    response = client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["bob"])
    assert response.status_code == 409
    assert response.json["error"]["message"] == "App name shop is already taken"


def test_other_users_apps_are_404(client, tokens):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    for method, path in [("get", "/api/v1/apps/shop"), ("delete", "/api/v1/apps/shop"),
                         ("get", "/api/v1/apps/shop/config"), ("patch", "/api/v1/apps/shop/config"),
                         ("get", "/api/v1/apps/shop/releases"), ("get", "/api/v1/apps/shop/builds"),
                         ("get", "/api/v1/apps/shop/builds/1")]:
        response = getattr(client, method)(path, json={"A": "b"}, headers=tokens["bob"])
        assert response.status_code == 404, (method, path)
        assert response.json["error"]["message"] == "No app named shop"
    assert client.get("/api/v1/apps", headers=tokens["bob"]).json["items"] == []


def test_config_patch_sets_and_unsets(client, tokens):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    value = "it's \"quoted\"\nline two $HOME ✓"
    response = client.patch("/api/v1/apps/shop/config", json={"GREETING": value, "X": "1"},
                            headers=tokens["ada"])
    assert response.status_code == 200
    assert response.json == {"GREETING": value, "X": "1"}
    assert "Slipway-Release" not in response.headers  # nothing deployed yet
    response = client.patch("/api/v1/apps/shop/config", json={"X": None}, headers=tokens["ada"])
    assert client.get("/api/v1/apps/shop/config", headers=tokens["ada"]).json == {"GREETING": value}


@pytest.mark.parametrize("body", [{"1BAD": "x"}, {"A-B": "x"}, {"OK": 5}, {"PORT": "1"}, {}, []])
def test_bad_config_changes_change_nothing(client, tokens, body):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    client.patch("/api/v1/apps/shop/config", json={"KEEP": "me"}, headers=tokens["ada"])
    response = client.patch("/api/v1/apps/shop/config", json={"NEW": "x", **body} if isinstance(
        body, dict) and body else body, headers=tokens["ada"])
    assert response.status_code in (400, 422)
    assert "message" in response.json["error"]
    assert client.get("/api/v1/apps/shop/config", headers=tokens["ada"]).json == {"KEEP": "me"}


def test_pagination_arguments_are_checked(client, tokens):
    response = client.get("/api/v1/apps?limit=0", headers=tokens["ada"])
    assert response.status_code == 400 and response.json["error"]["field"] == "limit"
    assert client.get("/api/v1/apps?offset=-1", headers=tokens["ada"]).status_code == 400


def test_git_routes_need_a_token_and_a_real_app(client, tokens):
    response = client.get("/git/shop.git/info/refs?service=git-receive-pack")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Slipway"'
    import base64

    ada = tokens["ada"]["Authorization"].split()[1]
    basic = {"Authorization": "Basic " + base64.b64encode(f"x:{ada}".encode()).decode()}
    response = client.get("/git/nope.git/info/refs?service=git-receive-pack", headers=basic)
    assert response.status_code == 404
    response = client.post("/git/shop.git/slipway-build?commit=" + "a" * 40,
                           headers={"Authorization": "Bearer forged"})
    assert response.status_code == 401


def test_the_hook_refuses_a_bad_base_revision_and_queues_nothing(client, tokens, settings):
    from itsdangerous import URLSafeTimedSerializer

    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    token = URLSafeTimedSerializer(settings.resolved_secret_key(), salt="slipway-hook").dumps(
        {"app": "shop"})
    for base in ("", "main", "g" * 40, "a" * 39, "a" * 40 + ";rm"):
        response = client.post(f"/git/shop.git/slipway-build?commit={'a' * 40}&base={base}",
                               data=b"", headers={"Authorization": f"Bearer {token}"})
        # Plain text: the pre-receive hook prints it to the pusher.
        assert response.status_code == 400
        assert response.get_data(as_text=True) == "Invalid base commit id\n"
    builds = client.get("/api/v1/apps/shop/builds", headers=tokens["ada"]).json
    assert builds["total"] == 0


def test_a_build_id_beyond_any_row_is_404_not_a_database_overflow(client, tokens):
    """Found by schemathesis: 2**63 reached SQLite (OverflowError) and PostgreSQL as a 500."""
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    for build_id in (2**31, 2**63):
        response = client.get(f"/api/v1/apps/shop/builds/{build_id}", headers=tokens["ada"])
        assert response.status_code == 404
        assert response.json["error"]["message"] == f"No build {build_id} for app shop"
