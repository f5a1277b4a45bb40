"""The dashboard's Processes tab: formation, scale, restart and rollback forms.

Docker is not needed: ``ps.list_processes``, ``ps.scale``, ``ps.restart`` and
``ps.rollback`` are replaced by recorders (their real paths are e2e-tested
through the API); the input checks in front of them run for real.
"""

from __future__ import annotations

import pytest

from slipway.platform import apps as app_service
from slipway.platform import formation as formation_service
from slipway.platform import ps, releases
from slipway.platform.db import session_scope
from slipway.platform.models import App, Formation, ReleaseStatus, User
from slipway.web.dashboard import CSRF_MESSAGE
from tests.test_dashboard import csrf_of, signed_in

PROCESSES = {"web": "gunicorn app:app", "worker": "python w.py", "release": "migrate"}


@pytest.fixture
def shop(dash_settings, accounts):  # noqa: F811 - pytest fixtures by name
    """ada's `shop` with v1 (succeeded), v2 (failed), v3 (succeeded, live); bob's nothing."""
    with session_scope(dash_settings.database) as session:
        ada = session.query(User).filter_by(email="ada@example.com").one()
        app = app_service.create_app(session, ada, "shop")
        app_service.create_app(session, ada, "fresh")
        for status in (ReleaseStatus.SUCCEEDED, ReleaseStatus.FAILED, ReleaseStatus.SUCCEEDED):
            release = releases.create_release(
                session, dash_settings.resolved_secret_key(), app, image="sha256:none",
                config={}, processes=PROCESSES, port=5000, description="Deploy")
            release.status = status
        session.flush()
        app.current_release_id = release.id
    return "shop"


@pytest.fixture
def calls(monkeypatch):
    """Record the platform calls the forms make, instead of touching Docker."""
    made: list[tuple] = []
    monkeypatch.setattr(ps, "list_processes", lambda session, settings, app: [
        {"type": "web", "name": "shop-web-1", "state": "running", "status": "Up 2 minutes",
         "release": 3, "created_at": "2026-01-01T00:00:00+00:00"},
        {"type": "worker", "name": "shop-worker-1", "state": "exited", "status": "Exited (1)",
         "release": 3, "created_at": "2026-01-01T00:00:00+00:00"},
    ])

    def scale(session, settings, redis_client, app, body, *, actor):
        made.append(("scale", app.name, body))
        return {"web": body.get("web", 1), "worker": body.get("worker", 1)}, []

    def restart(session, settings, redis_client, app, ptype=None, *, actor):
        made.append(("restart", app.name, ptype))
        return []

    def rollback(session, settings, redis_client, app, user, version=None):
        made.append(("rollback", app.name, version))
        return type("Release", (), {"version": 4, "description": f"Rollback to v{version}"})(), []

    monkeypatch.setattr(ps, "scale", scale)
    monkeypatch.setattr(ps, "restart", restart)
    monkeypatch.setattr(ps, "rollback", rollback)
    return made


def stored_scales(settings) -> dict[str, int]:
    with session_scope(settings.database) as session:
        return {row.process_type: row.quantity for row in session.query(Formation)}


def test_owner_sees_processes_formation_and_rollback_buttons(web, shop, calls):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    response = client.get("/apps/shop/formation")
    assert response.status_code == 200
    page = response.data.decode()
    assert '<a href="/apps/shop/formation">Processes</a>' in page
    assert "<code>shop-web-1</code>" in page
    assert '<span class="ok">running</span>' in page
    assert "exited" in page
    assert 'name="scale:web" inputmode="numeric" value="1"' in page
    assert 'name="scale:worker" inputmode="numeric" value="1"' in page
    assert "scale:release" not in page  # the release phase is not a process to scale
    assert "Restart all" in page and "Restart worker" in page
    # v1 succeeded before the live v3; v2 never deployed; v3 is live.
    assert "Roll back to v1" in page
    assert "Roll back to v2" not in page and "Roll back to v3" not in page
    # Sign-out, scale, restart all/web/worker, one rollback: each form carries the token.
    assert page.count('name="csrf_token"') == 6


def test_an_app_without_releases_has_nothing_to_scale(web, shop, calls):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    page = client.get("/apps/fresh/formation").data.decode()
    assert "No processes yet: push the app first." in page
    assert "No releases yet." in page
    response = client.post("/apps/fresh/formation/scale",
                           data={"csrf_token": csrf_of(page.encode()), "scale:web": "2"})
    assert response.status_code == 422
    assert "fresh has no processes yet: push it first" in response.data.decode()
    assert calls == []


def test_docker_down_is_said_on_the_page(web, shop, monkeypatch):  # noqa: F811
    from docker.errors import DockerException

    def down(*args):
        raise DockerException("no socket")

    monkeypatch.setattr(ps, "list_processes", down)
    page = signed_in(web, "ada@example.com").get("/apps/shop/formation").data.decode()
    assert "Docker does not answer: the containers' states are unknown." in page


def test_another_users_app_is_404_on_every_form(web, shop, calls):  # noqa: F811
    client = signed_in(web, "bob@example.com")
    assert client.get("/apps/shop/formation").status_code == 404
    token = csrf_of(client.get("/apps").data)
    for path, data in (("/apps/shop/formation/scale", {"scale:web": "2"}),
                       ("/apps/shop/formation/restart", {}),
                       ("/apps/shop/rollback", {"version": "1"})):
        response = client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 404, path
    assert calls == []


def test_signed_out_visitors_go_to_the_sign_in(web, shop):  # noqa: F811
    response = web.test_client().get("/apps/shop/formation")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/apps/shop/formation"


@pytest.mark.parametrize("path", ["/apps/shop/formation/scale", "/apps/shop/formation/restart",
                                  "/apps/shop/rollback"])
def test_forms_without_the_csrf_token_are_refused(web, shop, calls, path):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    client.get("/apps/shop/formation")
    response = client.post(path, data={"scale:web": "2", "version": "1", "csrf_token": "forged"})
    assert response.status_code == 400
    assert CSRF_MESSAGE.encode() in response.data
    assert calls == []


@pytest.mark.parametrize(("form", "message"), [
    ({"scale:db": "1"}, "Unknown process type &#39;db&#39;: this app has web, worker"),
    ({"scale:web": "-1"}, "Scale of web must be a whole number from 0 to 10"),
    ({"scale:web": "two"}, "Scale of web must be a whole number from 0 to 10"),
    ({"scale:web": "11"}, "Scale of web is above the limit of 10"),
    ({"scale:release": "1"}, "release is not a scalable process type"),
    ({"scale:web": "2", "scale:<script>": "1"},
     "Unknown process type &#39;process type&#39;: this app has web, worker"),
    ({"scale:web": "", "scale:worker": " "}, "Enter a count for at least one process type"),
])
def test_bad_scales_show_the_error_and_change_nothing(web, shop, calls, dash_settings,  # noqa: F811
                                                      form, message):
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/formation/scale", data={"csrf_token": token, **form})
    assert response.status_code == 422
    page = response.data.decode()
    assert f'<p class="error" role="alert" id="formation-error">{message}</p>' in page
    assert "<script>" not in page.split("<main", 1)[-1].replace('<script src', '')
    assert calls == []
    assert stored_scales(dash_settings) == {}


def test_bad_scale_keeps_what_was_typed(web, shop, calls):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/formation/scale",
                           data={"csrf_token": token, "scale:web": "11", "scale:worker": "0"})
    page = response.data.decode()
    assert 'name="scale:web" inputmode="numeric" value="11"' in page
    assert 'name="scale:worker" inputmode="numeric" value="0"' in page


def test_the_scale_limit_is_the_setting(web, shop, calls, dash_settings,  # noqa: F811
                                       monkeypatch):
    monkeypatch.setattr(dash_settings, "max_scale", 3)
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    assert "From 0 to 3 containers per type." in client.get("/apps/shop/formation").data.decode()
    response = client.post("/apps/shop/formation/scale",
                           data={"csrf_token": token, "scale:web": "4"})
    assert response.status_code == 422
    assert "Scale of web is above the limit of 3" in response.data.decode()
    assert calls == []


def test_a_good_scale_calls_ps_scale_with_numbers(web, shop, calls):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/formation/scale",
                           data={"csrf_token": token, "scale:web": "2", "scale:worker": "0"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/apps/shop/formation"
    assert calls == [("scale", "shop", {"web": 2, "worker": 0})]
    assert "Scaled: web=2, worker=0" in client.get("/apps/shop/formation").data.decode()


def test_a_scale_that_fails_to_deploy_shows_why(web, shop, monkeypatch):  # noqa: F811
    from slipway.platform.errors import DeployFailed

    def fail(*args, **kwargs):
        raise DeployFailed("web did not become healthy in 30 s")

    monkeypatch.setattr(ps, "scale", fail)
    monkeypatch.setattr(ps, "list_processes", lambda *args: [])
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/formation/scale",
                           data={"csrf_token": token, "scale:web": "2"})
    assert response.status_code == DeployFailed.status
    assert "web did not become healthy in 30 s" in response.data.decode()


@pytest.mark.parametrize(("form", "expected"), [({}, None), ({"type": "worker"}, "worker")])
def test_restart_all_or_one_type(web, shop, calls, form, expected):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/formation/restart", data={"csrf_token": token, **form})
    assert response.status_code == 302
    assert calls == [("restart", "shop", expected)]
    flashed = "Restarted worker processes" if expected else "Restarted all processes"
    assert flashed in client.get("/apps/shop/formation").data.decode()


def test_rollback_calls_ps_rollback_and_shows_progress(web, shop, calls):  # noqa: F811
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    response = client.post("/apps/shop/rollback", data={"csrf_token": token, "version": "1"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/apps/shop/formation?release=4"
    assert calls == [("rollback", "shop", 1)]
    page = client.get(response.headers["Location"]).data.decode()
    assert "Rolled back: Rollback to v1 as v4" in page
    assert 'id="release-progress"' in page
    assert 'data-url="/apps/shop/releases/4.json"' in page


def test_bad_rollbacks_show_the_platforms_message(web, shop, dash_settings):  # noqa: F811
    # The real ps.rollback: these are refused before it needs Docker or the lock.
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps/shop/formation").data)
    for version, status, message in (
        ("x", 422, "version must be a whole number, e.g. 3"),
        ("9", 404, "No release v9"),
        ("2", 422, "v2 never deployed: roll back to a release that did"),
    ):
        response = client.post("/apps/shop/rollback",
                               data={"csrf_token": token, "version": version})
        assert response.status_code == status, version
        assert message in response.data.decode(), (version, response.data[:2000])
    with session_scope(dash_settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        assert app.current_release.version == 3
        assert formation_service.scales(session, app) == {}
