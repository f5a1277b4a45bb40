"""The audit log: what each change records, who may read it, and that it keeps no secrets."""

import json

import pytest

from slipway.platform import audit, ps, releases, users
from slipway.platform.db import session_scope
from slipway.platform.models import App, AuditEvent, ReleaseStatus, User


@pytest.fixture
def tokens(settings):
    with session_scope(settings.database) as session:
        _, ada = users.create_user(session, "ada@example.com")
        _, bob = users.create_user(session, "bob@example.com")
        _, root = users.create_user(session, "root@example.com", admin=True)
    return {name: {"Authorization": f"Bearer {token}"}
            for name, token in (("ada", ada), ("bob", bob), ("root", root))}


def events(client, headers, **params) -> list[dict]:
    response = client.get("/api/v1/audit", headers=headers, query_string=params)
    assert response.status_code == 200, response.json
    return response.json["items"]


def test_app_config_and_domain_changes_are_recorded_with_actor_and_time(client, tokens):
    ada = tokens["ada"]
    assert client.post("/api/v1/apps", json={"name": "shop"}, headers=ada).status_code == 201
    secret = "s3cret-value-$'\"\n"
    assert client.patch("/api/v1/apps/shop/config", json={"API_KEY": secret, "B": "x"},
                        headers=ada).status_code == 200
    assert client.patch("/api/v1/apps/shop/config", json={"B": None},
                        headers=ada).status_code == 200
    assert client.post("/api/v1/apps/shop/domains", json={"hostname": "www.shop.test"},
                       headers=ada).status_code == 201
    assert client.delete("/api/v1/apps/shop/domains/www.shop.test",
                         headers=ada).status_code == 204

    found = events(client, ada, app="shop")
    assert [(e["action"], e["target"], e["actor"]) for e in found] == [
        ("domain.remove", {"kind": "domain", "name": "www.shop.test"}, "ada@example.com"),
        ("domain.add", {"kind": "domain", "name": "www.shop.test"}, "ada@example.com"),
        ("config.change", {"kind": "app", "name": "shop"}, "ada@example.com"),
        ("config.change", {"kind": "app", "name": "shop"}, "ada@example.com"),
        ("app.create", {"kind": "app", "name": "shop"}, "ada@example.com"),
    ]
    assert found[2]["details"] == {"set": [], "unset": ["B"], "release": None}
    assert found[3]["details"] == {"set": ["API_KEY", "B"], "unset": [], "release": None}
    assert all(e["app"] == "shop" and e["time"].endswith("+00:00") for e in found)
    # Keys only: no value of a config var reaches the log.
    assert "s3cret" not in json.dumps(events(client, tokens["root"]))


def test_destroying_an_app_is_recorded_and_stays_readable(client, tokens):
    ada = tokens["ada"]
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    assert client.delete("/api/v1/apps/shop", headers=ada).status_code == 204
    assert [e["action"] for e in events(client, ada, app="shop")] == [
        "app.destroy", "app.create"]


def test_users_see_their_own_events_and_admins_see_all(client, tokens, settings):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    client.post("/api/v1/apps", json={"name": "blog"}, headers=tokens["bob"])
    # An admin changes ada's app: ada sees it (she owns the app), bob does not.
    client.patch("/api/v1/apps/shop/config", json={"K": "v"}, headers=tokens["root"])

    ada_events = events(client, tokens["ada"], action="config.change")
    assert [(e["actor"], e["app"]) for e in ada_events] == [("root@example.com", "shop")]
    assert events(client, tokens["bob"], action="config.change") == []
    assert events(client, tokens["bob"], app="shop") == []
    assert {e["app"] for e in events(client, tokens["bob"]) if e["app"]} == {"blog"}
    everything = events(client, tokens["root"], action="app.create")
    assert sorted(e["app"] for e in everything) == ["blog", "shop"]
    # Each user's first token, made by users:create, is recorded too.
    tokens_made = events(client, tokens["root"], action="token.create")
    assert sorted(e["actor"] for e in tokens_made) == [
        "ada@example.com", "bob@example.com", "root@example.com"]


def test_tokens_made_and_revoked_are_recorded_without_the_token(settings, client, tokens):
    with session_scope(settings.database) as session:
        ada = users.get_by_email(session, "ada@example.com")
        token = users.create_token(session, ada, name="laptop")
        row = users.list_tokens(session, ada)[0]
        users.revoke_token(session, ada, row.id)
        users.revoke_token(session, ada, row.id)  # again: nothing new happened
    found = events(client, tokens["ada"], action="token.revoke")
    assert len(found) == 1
    assert found[0]["target"] == {"kind": "token", "name": f"laptop ({token[:8]}…)"}
    assert token[8:] not in json.dumps(events(client, tokens["ada"]))


def test_scale_and_restart_are_recorded(client, tokens, settings, monkeypatch):
    # Containers and the router are the e2e tests' business: here only what is recorded.
    monkeypatch.setattr(ps, "apply_formation", lambda *args, **kwargs: [])
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        release = releases.create_release(
            session, settings.resolved_secret_key(), app, image="sha256:none", config={},
            processes={"web": "gunicorn app:app"}, port=5000, description="Deploy")
        release.status = ReleaseStatus.SUCCEEDED
        session.flush()
        app.current_release_id = release.id
    response = client.patch("/api/v1/apps/shop/formation", json={"web": 0},
                            headers=tokens["ada"])
    assert response.status_code == 200, response.json
    response = client.post("/api/v1/apps/shop/ps/restart", json={}, headers=tokens["ada"])
    assert response.status_code == 200, response.json
    found = events(client, tokens["ada"], app="shop")
    assert [(e["action"], e["details"]) for e in found[:2]] == [
        ("restart", {"type": None}), ("scale", {"formation": {"web": 0}})]


def test_a_refused_change_records_nothing(client, tokens):
    response = client.post("/api/v1/apps", json={"name": "Bad Name"}, headers=tokens["ada"])
    assert response.status_code == 422
    assert events(client, tokens["ada"], action="app.create") == []


@pytest.mark.parametrize(("query", "field"), [
    ({"action": "app.explode"}, "action"), ({"app": ""}, "app"), ({"app": "x" * 65}, "app"),
    ({"app": "sh\x00op"}, "app"), ({"app": "shöp"}, "app"),
    ({"limit": "0"}, "limit"),
])
def test_bad_filters_get_400_naming_the_field(client, tokens, query, field):
    response = client.get("/api/v1/audit", headers=tokens["ada"], query_string=query)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_audit_is_paginated_newest_first(client, tokens):
    for name in ("aa", "bb", "cc"):
        client.post("/api/v1/apps", json={"name": name}, headers=tokens["ada"])
    response = client.get("/api/v1/audit?action=app.create&limit=2&offset=1",
                          headers=tokens["ada"])
    assert response.json["total"] == 3
    assert [e["app"] for e in response.json["items"]] == ["bb", "aa"]


def test_record_refuses_unknown_actions_and_host_actions_have_no_actor(settings):
    with session_scope(settings.database) as session:
        with pytest.raises(ValueError, match="Unknown audit action"):
            audit.record(session, None, "app.explode", target_kind="app", target_name="x")
        event = audit.record(session, None, "capsule.destroy", target_kind="capsule",
                             target_name="db", owner_id=None)
        assert (event.actor_id, event.actor_email) == (None, None)
        assert session.query(AuditEvent).count() == 1
        assert session.query(User).count() == 0


def test_the_documented_action_filter_lists_every_action(client):
    document = client.get("/api/v1/openapi.json").json
    parameters = document["paths"]["/api/v1/audit"]["get"]["parameters"]
    action = next(p for p in parameters if p.get("name") == "action")
    assert tuple(action["schema"]["enum"]) == audit.ACTIONS
