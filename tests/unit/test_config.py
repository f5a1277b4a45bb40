import pytest

from slipway.config import Settings


@pytest.mark.parametrize(("domain", "tls", "resolved"), [
    ("localhost", "auto", "off"),
    ("apps.localhost", "auto", "off"),
    ("apps.example.com", "auto", "acme"),
    ("localhost", "internal", "internal"),
    ("apps.example.com", "off", "off"),
])
def test_tls_auto_is_off_only_for_localhost_domains(domain, tls, resolved):
    assert Settings(domain=domain, tls=tls).tls == resolved


def test_instance_id_follows_the_home(tmp_path):
    first = Settings(home=tmp_path / "a").instance_id
    assert first == Settings(home=tmp_path / "a").instance_id
    assert first != Settings(home=tmp_path / "b").instance_id
    assert Settings(home=tmp_path / "a", instance="prod").instance_id == "prod"


def test_router_upstreams_setting(monkeypatch):
    monkeypatch.delenv("SLIPWAY_ROUTER_UPSTREAMS", raising=False)
    assert Settings().router_upstreams == "auto"
    monkeypatch.setenv("SLIPWAY_ROUTER_UPSTREAMS", "static")
    assert Settings().router_upstreams == "static"
    monkeypatch.setenv("SLIPWAY_ROUTER_UPSTREAMS", "lua")
    with pytest.raises(ValueError, match="router_upstreams"):
        Settings()
