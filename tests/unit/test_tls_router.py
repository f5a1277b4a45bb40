"""Route TLS fields in the table JSON, challenge responses, the certificate store and
nginx -t."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from slipway.router import challenges
from slipway.router.acme_client import _parse_retry_after
from slipway.router.certs import CertificateStore, InternalCA, new_key_pem
from slipway.router.controller import default_runtime_dir
from slipway.router.errors import InvalidRouteError, NginxError
from slipway.router.nginx import render_nginx
from slipway.router.routes import HostCertificate, Route, RouteTable


def test_old_tables_without_tls_fields_still_read():
    old = json.dumps({"generation": 3, "routes": [
        {"app": "web", "hosts": ["web.localhost"], "upstreams": ["127.0.0.1:1"]}]})
    table = RouteTable.from_json(old)
    assert table.routes[0].certificates == () and table.routes[0].hsts is False
    # And a table without TLS writes the old shape, byte for byte.
    assert table.to_json() == old


def test_tls_fields_round_trip():
    route = Route(app="web", hosts=("a.test",), upstreams=(),
                  certificates=(HostCertificate("a.test", "/c/a.pem", "/c/a.key"),), hsts=True)
    table = RouteTable(generation=1, routes=(route,))
    assert RouteTable.from_json(table.to_json()) == table


@pytest.mark.parametrize(("cert", "message"), [
    (HostCertificate("b.test", "/c/b.pem", "/c/b.key"),
     "routes[0].certificates[0].host: 'b.test' is not one of the route's hosts"),
    (HostCertificate("a.test", "/c/a.pem;\nevil", "/c/a.key"),
     "routes[0].certificates[0].certificate: '/c/a.pem;\\nevil' must be an absolute path of "
     "letters, digits and ._/@+- (no spaces or quotes)"),
    (HostCertificate("a.test", "/c/a.pem", "relative.key"),
     "routes[0].certificates[0].key: 'relative.key' must be an absolute path of letters, "
     "digits and ._/@+- (no spaces or quotes)"),
])
def test_bad_certificates_never_reach_the_config(cert, message):
    table = RouteTable(1, (Route("web", ("a.test",), (), certificates=(cert,)),))
    with pytest.raises(InvalidRouteError) as caught:
        render_nginx(table, http_port=80, https_port=443, state_dir=Path("/s"),
                     runtime_dir=Path("/r"))
    assert caught.value.message == message


@pytest.fixture
def challenge_dir(tmp_path):
    """The challenge file directory of router state dir ``tmp_path`` (static upstreams)."""
    run = default_runtime_dir(tmp_path)
    (run / "acme-challenge").mkdir(parents=True)
    yield run / "acme-challenge"
    shutil.rmtree(run)


def test_challenge_files_are_world_readable_outside_the_state_dir(tmp_path, challenge_dir):
    token = "tok_EN-123456789012"
    challenges.publish(tmp_path, token, f"{token}.thumb")
    path = challenge_dir / token
    assert path.read_text() == f"{token}.thumb"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not path.is_relative_to(tmp_path)
    challenges.withdraw(tmp_path, token)
    challenges.withdraw(tmp_path, token)
    assert not path.exists()


@pytest.mark.parametrize(("token", "answer"), [
    ("../../etc/passwd-xxxxxxxx", "../../etc/passwd-xxxxxxxx.x"), ("short", "short.x"),
    ("a" * 20 + "/b", "a" * 20 + "/b.x"), ("a" * 20, "b" * 20 + ".x"), ("a" * 20, "a" * 20),
    ("a" * 20, "a" * 20 + ".x y"), ("a" * 20, "a" * 20 + ".x\nset " + "b" * 20 + " c"),
])
def test_bad_tokens_and_key_authorizations_are_refused(tmp_path, challenge_dir, token, answer):
    with pytest.raises(InvalidRouteError):
        challenges.publish(tmp_path, token, answer)
    assert list(challenge_dir.iterdir()) == []


def test_publishing_without_a_router_is_a_clear_error(tmp_path):
    token = "t" * 20
    with pytest.raises(NginxError) as caught:
        challenges.publish(tmp_path, token, f"{token}.x")
    assert caught.value.message.startswith("could not post the challenge response to ")
    challenges.withdraw(tmp_path, token)  # only logged


def test_store_keeps_keys_private_and_the_account_key(tmp_path):
    store = CertificateStore(tmp_path / "certs")
    account = store.account_key()
    assert store.account_key() == account
    assert stat.S_IMODE((tmp_path / "certs" / "account.pem").stat().st_mode) == 0o600
    key = new_key_pem()
    chain = InternalCA(tmp_path / "certs" / "ca").issue("a.test", key)
    saved = store.save("a.test", key, chain)
    assert stat.S_IMODE(saved.key.stat().st_mode) == 0o600
    assert store.get("a.test") == saved
    assert store.get("b.test") is None
    with pytest.raises(InvalidRouteError):
        store.paths("../etc")
    store.remove("a.test")
    assert store.get("a.test") is None


def test_retry_after_is_read_as_seconds_or_a_date():
    assert _parse_retry_after("120") == 120.0
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _parse_retry_after("soon") is None


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx")
def test_rendered_tls_config_passes_nginx_t():
    root = Path(tempfile.mkdtemp(prefix="slipway-tls-"))
    try:
        key = new_key_pem()
        store = CertificateStore(root / "certs")
        saved = store.save("a.test", key, InternalCA(root / "ca").issue("a.test", key))
        route = Route("web", ("a.test", "b.test"), ("127.0.0.1:9",),
                      certificates=(HostCertificate("a.test", str(saved.certificate),
                                                    str(saved.key)),), hsts=True)
        state = root / "router"
        (state / "logs").mkdir(parents=True)
        (root / "run").mkdir()
        conf = state / "nginx.conf"
        conf.write_text(render_nginx(RouteTable(1, (route,)), http_port=18080,
                                     https_port=18443, state_dir=state,
                                     runtime_dir=root / "run"))
        result = subprocess.run(
            ["nginx", "-t", "-p", f"{state}/", "-c", str(conf), "-e", str(state / "logs/e.log")],
            capture_output=True, text=True, env={**os.environ}, check=False)
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
