"""Formation, ps, rollback and run endpoints: the input checks that come before Docker."""

import pytest

from slipway.platform import apps as app_service
from slipway.platform import releases, users
from slipway.platform.db import session_scope
from slipway.platform.models import App, ReleaseStatus


@pytest.fixture
def tokens(settings):
    with session_scope(settings.database) as session:
        ada_user, ada = users.create_user(session, "ada@example.com")
        _, bob = users.create_user(session, "bob@example.com")
        app_service.create_app(session, ada_user, "shop")
        app_service.create_app(session, ada_user, "fresh")
    return {"ada": {"Authorization": f"Bearer {ada}"}, "bob": {"Authorization": f"Bearer {bob}"}}


@pytest.fixture
def deployed(settings, tokens):
    """`shop` with v1 (failed) and v2 (current), made without Docker."""
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        for status in (ReleaseStatus.FAILED, ReleaseStatus.SUCCEEDED):
            release = releases.create_release(
                session, settings.resolved_secret_key(), app, image="sha256:none", config={},
                processes={"web": "gunicorn app:app", "worker": "python w.py",
                           "release": "migrate"},
                port=5000, description="Deploy")
            release.status = status
        session.flush()
        app.current_release_id = release.id


def test_formation_of_an_undeployed_app_is_empty_and_cannot_be_scaled(client, tokens):
    assert client.get("/api/v1/apps/fresh/formation", headers=tokens["ada"]).json == {}
    response = client.patch("/api/v1/apps/fresh/formation", json={"web": 2},
                            headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"] == {"code": "invalid", "field": "formation",
                                      "message": "fresh has no processes yet: push it first"}


def test_default_formation_runs_every_type_once(client, deployed, tokens):
    response = client.get("/api/v1/apps/shop/formation", headers=tokens["ada"])
    assert response.json == {"web": 1, "worker": 1}


@pytest.mark.parametrize(("body", "status", "message", "field"), [
    ({"wrker": 1}, 422, "Unknown process type 'wrker': this app has web, worker", "wrker"),
    ({"web": 11}, 422, "Scale of web is above the limit of 10", "web"),
    ({"worker": -1}, 422, "Scale of worker must be a whole number from 0 to 10", "worker"),
    ({"web": "two"}, 422, "Scale of web must be a whole number from 0 to 10", "web"),
    ({"release": 1}, 422, "release is not a scalable process type", "release"),
    ({}, 400, 'Send a JSON object of process types and counts, e.g. {"web": 2}', None),
])
def test_bad_scales_change_nothing(client, deployed, tokens, body, status, message, field):
    response = client.patch("/api/v1/apps/shop/formation", json=body, headers=tokens["ada"])
    assert response.status_code == status
    assert response.json["error"]["message"] == message
    assert response.json["error"].get("field") == field
    assert client.get("/api/v1/apps/shop/formation", headers=tokens["ada"]).json == {
        "web": 1, "worker": 1}


def test_scale_limit_is_a_setting(client, deployed, tokens, monkeypatch, settings):
    monkeypatch.setattr(settings, "max_scale", 3)
    response = client.patch("/api/v1/apps/shop/formation", json={"web": 4},
                            headers=tokens["ada"])
    assert response.json["error"]["message"] == "Scale of web is above the limit of 3"


def test_restart_of_an_unknown_type_is_refused(client, deployed, tokens):
    response = client.post("/api/v1/apps/shop/ps/restart", json={"type": "nope"},
                           headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"] == {
        "code": "invalid", "field": "type",
        "message": "Unknown process type 'nope': this app has web, worker"}


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"version": 9}, 404, "No release v9"),
    ({"version": 2}, 422, "v2 is the current release"),
    ({"version": 1}, 422, "v1 never deployed: roll back to a release that did"),
    ({"version": "1; rm"}, 422, "version must be a whole number, e.g. 3"),
    ({}, 404, "No earlier release to roll back to"),
])
def test_bad_rollbacks_change_nothing(client, deployed, tokens, body, status, message):
    response = client.post("/api/v1/apps/shop/rollback", json=body, headers=tokens["ada"])
    assert response.status_code == status
    assert response.json["error"]["message"] == message
    listed = client.get("/api/v1/apps/shop/releases", headers=tokens["ada"]).json
    assert listed["total"] == 2
    assert client.get("/api/v1/apps/shop", headers=tokens["ada"]).json["release"] == 2


@pytest.mark.parametrize("command", [[], "ls -l", [1, 2], ["ls", "a\x00b"], [""], None])
def test_run_needs_an_argv_list(client, deployed, tokens, command):
    response = client.post("/api/v1/apps/shop/runs", json={"command": command},
                           headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"]["field"] == "command"


def test_other_users_processes_are_404(client, deployed, tokens):
    for method, path in [("get", "/ps"), ("get", "/formation"), ("patch", "/formation"),
                         ("post", "/ps/restart"), ("post", "/rollback"), ("post", "/runs")]:
        response = getattr(client, method)(f"/api/v1/apps/shop{path}", json={"web": 1},
                                           headers=tokens["bob"])
        assert response.status_code == 404, path
        assert response.json["error"]["message"] == "No app named shop"


def test_a_scale_that_does_not_come_up_is_not_stored(settings, deployed, redis_url,
                                                      monkeypatch):
    import redis

    from slipway.platform import formation, ps
    from slipway.platform.errors import DeployFailed

    def fail(*args, **kwargs):
        raise DeployFailed("The web process did not answer HTTP on $PORT within 30 s")

    monkeypatch.setattr(ps, "apply_formation", fail)
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        with pytest.raises(DeployFailed):
            ps.scale(session, settings, redis.Redis.from_url(redis_url), app, {"web": 3},
                     actor=None)
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        assert formation.app_formation(session, app) == {"web": 1, "worker": 1}
