"""TLS end to end: certificates from pebble over HTTP-01, served by real nginx.

Part one drives the router library alone (nginx + the ACME client, no Docker);
part two runs a whole `slipway up` configured for pebble and pushes an app.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from slipway.router import challenges
from slipway.router.acme_client import AcmeFailure, obtain
from slipway.router.certs import CertificateStore, new_key_pem
from slipway.router.controller import Nginx, lua_modules_installed
from slipway.router.routes import HostCertificate, Route, RouteTable
from tests.e2e.pebble import Pebble
from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit, write_app
from tests.e2e.test_router import Upstream
from tests.support import free_port, steady_requests, wait_for

pytestmark = pytest.mark.e2e


def https_get(host: str, port: int, ca: Path, path: str = "/") -> subprocess.CompletedProcess:
    """GET https://host:port/path, SNI ``host`` at 127.0.0.1, verified against ``ca``."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve", f"{host}:{port}:127.0.0.1",
         "--cacert", str(ca), "-w", "\n%{http_code}", f"https://{host}:{port}{path}"],
        capture_output=True, text=True, check=False)


def served_serial(host: str, port: int, ca: Path) -> int:
    """The serial of the certificate served for SNI ``host`` (verified against ``ca``)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def http_status(host: str, port: int, path: str) -> str:
    """``"<status> <Location>"`` of a plain HTTP GET through the router."""
    return subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
         "-H", f"Host: {host}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout


@pytest.fixture
def root() -> Iterator[Path]:
    # Private (0700, as mkdtemp makes it), like SLIPWAY_HOME: nginx's workers never
    # enter it; challenge responses reach them over the control socket or, with
    # static upstreams, from files in the runtime dir outside it.
    path = Path(tempfile.mkdtemp(prefix="slipway-tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=[
    pytest.param(True, id="lua", marks=pytest.mark.skipif(
        not lua_modules_installed(), reason="libnginx-mod-http-lua is not installed")),
    pytest.param(False, id="static"),
])
def edge(root, request) -> Iterator[tuple[Nginx, Pebble, Upstream]]:
    http_port, https_port = free_port(), free_port()
    nginx = Nginx(root / "router", http_port, https_port=https_port, dynamic=request.param)
    (root / "pebble").mkdir()
    pebble = Pebble(root / "pebble", http_port)
    upstream = Upstream("app")
    try:
        pebble.start()
        yield nginx, pebble, upstream
    finally:
        nginx.stop()
        pebble.stop()
        upstream.close()


def _obtain(nginx: Nginx, pebble: Pebble, store: CertificateStore, host: str) -> bytes:
    key = new_key_pem()
    chain = obtain(
        directory_url=pebble.directory, account_key_pem=store.account_key(),
        email_address="ops@example.com", host=host, key_pem=key,
        publish=lambda t, a: challenges.publish(nginx.state_dir, t, a),
        withdraw=lambda t: challenges.withdraw(nginx.state_dir, t),
        verify=pebble.ca_bundle, timeout=60)
    store.save(host, key, chain)
    return chain


def test_router_gets_a_certificate_redirects_and_renews_without_failures(edge, root):
    nginx, pebble, upstream = edge
    host = "shop.example.test"
    route = Route(app="shop", hosts=(host,), upstreams=(upstream.address,))
    nginx.start(RouteTable(1, (route,)))
    store = CertificateStore(root / "certs")
    _obtain(nginx, pebble, store, host)
    stored = store.get(host)
    cert = HostCertificate(host, str(stored.certificate), str(stored.key))
    nginx.apply(RouteTable(2, (Route("shop", (host,), (upstream.address,),
                                     certificates=(cert,)),)))
    ca = root / "pebble-root.pem"
    ca.write_bytes(pebble.root_pem())

    result = https_get(host, nginx.https_port, ca)
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200" and '"name": "app"' in body

    redirect = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
         "-H", f"Host: {host}", f"http://127.0.0.1:{nginx.http_port}/a?b=1"],
        capture_output=True, text=True, check=True).stdout
    assert redirect == f"301 https://{host}:{nginx.https_port}/a?b=1"
    # The challenge path is not redirected, so renewals keep working.
    challenges.publish(nginx.state_dir, "t" * 20, "t" * 20 + ".x")
    probe = subprocess.run(
        ["curl", "-sS", "-H", f"Host: {host}",
         f"http://127.0.0.1:{nginx.http_port}/.well-known/acme-challenge/{'t' * 20}"],
        capture_output=True, text=True, check=True).stdout
    assert probe == "t" * 20 + ".x"

    # Renewal: a new certificate replaces the old one under a steady stream of requests.
    before = served_serial(host, nginx.https_port, ca)
    with steady_requests(lambda: https_get(host, nginx.https_port, ca)) as answers:
        time.sleep(0.5)
        _obtain(nginx, pebble, store, host)
        nginx.apply(RouteTable(3, (Route("shop", (host,), (upstream.address,),
                                         certificates=(cert,)),)))
        time.sleep(0.5)
    failures = [r.stderr or r.stdout[-200:] for r in answers
                if r.returncode != 0 or not r.stdout.endswith("\n200")]
    assert failures == []
    assert len(answers) > 5
    assert served_serial(host, nginx.https_port, ca) != before


def test_unreachable_directory_and_failed_challenges_are_clear_failures(edge, root):
    nginx, pebble, upstream = edge
    store = CertificateStore(root / "certs")
    with pytest.raises(AcmeFailure) as caught:
        obtain(directory_url=f"https://localhost:{free_port()}/dir",
               account_key_pem=store.account_key(), email_address=None, host="a.example.test",
               key_pem=new_key_pem(), publish=lambda t, a: None, withdraw=lambda t: None,
               verify=pebble.ca_bundle)
    assert caught.value.kind == "unreachable"
    assert caught.value.message.startswith("the ACME server at https://localhost:")
    assert caught.value.message.endswith("/dir is unreachable: ConnectionError")

    # nginx runs, but the response is never published: the CA sees a 404.
    nginx.start(RouteTable(1, (Route("shop", ("b.example.test",), (upstream.address,)),)))
    with pytest.raises(AcmeFailure) as caught:
        obtain(directory_url=pebble.directory, account_key_pem=store.account_key(),
               email_address=None, host="b.example.test", key_pem=new_key_pem(),
               publish=lambda t, a: None, withdraw=lambda t: None, verify=pebble.ca_bundle,
               timeout=60)
    assert caught.value.kind == "challenge_failed", caught.value.message
    assert caught.value.message.startswith("the HTTP-01 challenge for b.example.test failed: ")


# --- part two: a whole `slipway up` with ACME from pebble ---------------------------

DOMAIN = "apps.example.test"


@pytest.fixture(scope="module")
def acme_stack() -> Iterator[tuple[Stack, Pebble, str]]:
    stack = Stack.temporary(prefix="slipway-e2e-tls-")
    stack.root.chmod(0o700)  # private all the way up: nginx's workers never enter it
    (stack.root / "pebble").mkdir()
    pebble = Pebble(stack.root / "pebble", stack.http_port)
    stack.env.update({
        "SLIPWAY_TLS": "acme",
        "SLIPWAY_DOMAIN": DOMAIN,
        "SLIPWAY_ACME_DIRECTORY": pebble.directory,
        "SLIPWAY_ACME_CA_BUNDLE": str(pebble.ca_bundle),
        "SLIPWAY_ACME_EMAIL": "ops@example.com",
        # Beat retries failed issuance (e.g. a refused nonce) well within the waits.
        "SLIPWAY_CERTIFICATE_CHECK_INTERVAL": "5",
        "SLIPWAY_CERTIFICATE_RETRY_SECONDS": "2",
    })
    try:
        pebble.start()
        stack.start()
        yield stack, pebble, stack.sign_up("dev@example.com")
    finally:
        # Keep the logs of the last run where a failure can be read.
        with contextlib.suppress(OSError):
            shutil.copy(stack.log, Path(tempfile.gettempdir()) / "slipway-e2e-tls-last.log")
        stack.stop()
        pebble.stop()


def domain_status(stack: Stack, token: str, app: str) -> dict[str, dict]:
    response = requests.get(f"{stack.api_url}/api/v1/apps/{app}/domains",
                            headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return {d["hostname"]: d for d in response.json()["items"]}


def test_deployed_app_gets_a_certificate_and_custom_domains_too(acme_stack, tmp_path_factory):
    stack, pebble, token = acme_stack
    repo = tmp_path_factory.mktemp("tlsapp")
    stack.git("init", "-q", "-b", "main", cwd=repo)
    write_app(repo, "Hello over TLS")
    commit(stack, repo, "first")
    stack.slipway("apps:create", "secure", cwd=repo)
    push = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr
    host = f"secure.{DOMAIN}"

    wait_for(lambda: domain_status(stack, token, "secure").get(host, {}).get("status")
             == "issued", timeout=120, message=f"a certificate for {host}")
    ca = stack.root / "pebble-root.pem"
    ca.write_bytes(pebble.root_pem())
    result = wait_for(lambda: (r := https_get(host, stack.https_port, ca)).returncode == 0 and r,
                      timeout=30, message=f"https://{host}/")
    assert result.stdout == "Hello over TLS\n\n200"
    # The status is committed before the router has reloaded: poll for the redirect.
    wait_for(lambda: http_status(host, stack.http_port, "/x")
             == f"301 https://{host}:{stack.https_port}/x", timeout=30,
             message="HTTP to redirect to HTTPS")

    # Hostile strings are refused by the API and never reach nginx's config.
    for hostile in ("evil.test;\n}", "a.test server_name *", "*.wild.test", "x.other.test/../"):
        out = stack.slipway("domains:add", "--app", "secure", hostile, check=False)
        assert out.returncode != 0
        assert "Invalid domain" in out.stdout + out.stderr
    conf = (stack.home / "router" / "nginx.conf").read_text()
    assert "evil" not in conf and "wild" not in conf and "server_name *" not in conf

    out = stack.slipway("domains:add", "--app", "secure", "WWW.Shop.Example.").stdout
    assert out == "Added www.shop.example to secure\n"
    wait_for(lambda: domain_status(stack, token, "secure").get("www.shop.example", {})
             .get("status") == "issued", timeout=120, message="a certificate for the custom domain")
    result = wait_for(lambda: (r := https_get("www.shop.example", stack.https_port, ca))
                      .returncode == 0 and r, timeout=30, message="https://www.shop.example/")
    assert result.stdout == "Hello over TLS\n\n200"
    listing = stack.slipway("domains", "--app", "secure").stdout
    assert "www.shop.example" in listing and "issued" in listing
    # Keys are private, in a private SLIPWAY_HOME.
    keys = [stack.home / "certs" / name / "privkey.pem" for name in (host, "www.shop.example")]
    keys += [stack.home / "certs" / "account.pem", stack.home / "router/tls/placeholder.key"]
    modes = {path: path.stat().st_mode & 0o777 for path in [stack.home, *keys]}
    assert modes == {stack.home: 0o700, **{key: 0o600 for key in keys}}

    # A forced renewal: a new certificate is served, and a steady stream of HTTPS
    # requests sees no failure while it happens.
    before = served_serial(host, stack.https_port, ca)
    with steady_requests(lambda: https_get(host, stack.https_port, ca)) as answers:
        out = stack.slipway("domains:renew", "--app", "secure", host).stdout
        assert out == (f"Renewing the certificate of {host}; `slipway domains` shows its "
                       "status\n")
        wait_for(lambda: served_serial(host, stack.https_port, ca) != before, timeout=120,
                 message="the renewed certificate to be served")
        time.sleep(0.5)
    failures = [r.stderr or r.stdout[-200:] for r in answers
                if r.returncode != 0 or r.stdout != "Hello over TLS\n\n200"]
    assert failures == []
    assert len(answers) > 5
    assert domain_status(stack, token, "secure")[host]["status"] == "issued"

    stack.slipway("domains:remove", "--app", "secure", "www.shop.example")
    wait_for(lambda: "www.shop.example" not in
             (stack.home / "router" / "nginx.conf").read_text(),
             timeout=30, message="the custom domain to leave nginx's config")
