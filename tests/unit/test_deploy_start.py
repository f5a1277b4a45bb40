"""start_processes: a web container that fails its health check leaves nothing behind."""

from types import SimpleNamespace

import pytest

from slipway.config import Settings
from slipway.platform import deploy, healthchecks
from slipway.platform.errors import DeployFailed


@pytest.fixture
def fake_docker(monkeypatch):
    calls = {"started": [], "removed": [], "checked": []}

    def start(client, spec, networks=()):
        container_id = f"c{len(calls['started'])}"
        calls["started"].append((container_id, spec["labels"]["slipway.process"]))
        address = f"172.18.0.{len(calls['started'])}:5000"
        return container_id, address if spec["ports"] else None

    def wait_healthy(client, container_id, address, check, *, timeout, interval, front):
        calls["checked"].append((container_id, check.path))
        calls["front"] = front
        if container_id == "c1":
            raise DeployFailed("The web process exited before answering HTTP:\nboom")
        return 0.1

    monkeypatch.setattr(deploy.runtime, "start", start)
    monkeypatch.setattr(deploy.runtime, "wait_healthy", wait_healthy)
    monkeypatch.setattr(deploy.runtime, "remove",
                        lambda client, cid, stop_timeout: calls["removed"].append(cid))
    return calls


RELEASE = SimpleNamespace(app=SimpleNamespace(name="shop", uid="shop"), id=7, version=3,
                          image="sha256:x",
                          processes={"web": "gunicorn app:app", "worker": "python w.py"},
                          port=5000, healthchecks=None)


def test_one_unhealthy_web_container_fails_and_removes_every_new_one(fake_docker, tmp_path):
    settings = Settings(home=tmp_path, instance="i1")
    with pytest.raises(DeployFailed) as info:
        deploy.start_processes(None, settings, RELEASE, {}, {"web": 2, "worker": 1})
    assert info.value.message == "The web process exited before answering HTTP:\nboom"
    assert fake_docker["started"] == [("c0", "web"), ("c1", "web"), ("c2", "worker")]
    assert fake_docker["removed"] == ["c0", "c1", "c2"]


def test_healthy_formation_returns_every_new_container(fake_docker, tmp_path):
    settings = Settings(home=tmp_path, instance="i1")
    new, timings = deploy.start_processes(None, settings, RELEASE, {}, {"web": 1, "worker": 2})
    assert new == ["c0", "c1", "c2"]
    assert fake_docker["removed"] == []
    assert set(timings) == {"start", "health"}


def test_each_web_container_passes_every_stored_check(fake_docker, tmp_path):
    settings = Settings(home=tmp_path, instance="i1")
    checks = {"web": [
        {"path": "/ready", "timeout": 2.0, "attempts": 3, "wait": 0.5, "initial_delay": 0.0,
         "content": None, "any_status": False},
        {"path": "/db", "timeout": 2.0, "attempts": 3, "wait": 0.5, "initial_delay": 0.0,
         "content": "ok", "any_status": False},
    ]}
    release = SimpleNamespace(**{**vars(RELEASE), "healthchecks": checks})
    deploy.start_processes(None, settings, release, {}, {"web": 1})
    assert fake_docker["checked"] == [("c0", "/ready"), ("c0", "/db")]


def test_a_release_without_stored_checks_gets_the_default_one(fake_docker, tmp_path):
    settings = Settings(home=tmp_path, instance="i1", health_path="/up")
    deploy.start_processes(None, settings, RELEASE, {}, {"web": 1})
    assert fake_docker["checked"] == [("c0", "/up")]


def test_web_concurrency_is_a_default_the_app_config_overrides():
    settings = Settings(web_concurrency=3)
    assert deploy.process_env(settings, {"A": "1"}) == {"WEB_CONCURRENCY": "3", "A": "1"}
    assert deploy.process_env(settings, {"WEB_CONCURRENCY": "1"}) == {"WEB_CONCURRENCY": "1"}


def test_web_containers_are_checked_as_users_reach_them(fake_docker, tmp_path):
    settings = Settings(home=tmp_path, instance="i1", domain="apps.example.com",
                        http_port=8080)
    deploy.start_processes(None, settings, RELEASE, {}, {"web": 1})
    assert fake_docker["front"] == healthchecks.Front(host="shop.apps.example.com",
                                                      port=8080, https=False)
