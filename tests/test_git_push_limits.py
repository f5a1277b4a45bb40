"""What the git routes refuse before a build is taken: a push while the disk is nearly
full, a tree that streams past the size limit, and a hook token of an app that is
gone (its name may belong to another app now)."""

from __future__ import annotations

import base64
import io

import pytest
from itsdangerous import URLSafeTimedSerializer

from slipway.config import reset_settings
from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.platform.models import App


@pytest.fixture
def ada(settings):
    with session_scope(settings.database) as session:
        _, token = users.create_user(session, "ada@example.com")
    return {"Authorization": f"Bearer {token}"}


def client_with(monkeypatch, **env: str):
    """A client of the web app made after ``env`` is set: settings are read at creation."""
    from slipway.config import get_settings
    from slipway.web.app import create_app

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return create_app(get_settings()).test_client()


def hook_token(settings, app_uid: str) -> dict[str, str]:
    signer = URLSafeTimedSerializer(settings.resolved_secret_key(), salt="slipway-hook")
    return {"Authorization": f"Bearer {signer.dumps({'app': app_uid})}"}


def uid_of(settings, name: str) -> str:
    with session_scope(settings.database) as session:
        return session.query(App).filter_by(name=name).one().uid


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def test_a_push_is_refused_while_the_disk_is_nearly_full(client, ada, settings, monkeypatch):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    # More than any disk has.
    client = client_with(monkeypatch, SLIPWAY_MIN_FREE_DISK_MB=str(10**9))
    basic = {"Authorization": "Basic " + base64.b64encode(
        f"x:{ada['Authorization'].split()[1]}".encode()).decode()}
    commands = pkt(b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/main\0report-status side-band-64k")
    response = client.post("/git/shop.git/git-receive-pack", data=commands + b"0000PACK",
                           headers={**basic,
                                    "Content-Type": "application/x-git-receive-pack-request"})
    body = response.get_data()
    assert b"Push rejected: The Slipway host has " in body
    assert b"less than the 1000000000 MB a build needs (SLIPWAY_MIN_FREE_DISK_MB)" in body
    assert b"ng refs/heads/main disk full" in body

    response = client.post(f"/git/shop.git/slipway-build?commit={'a' * 40}", data=b"tar",
                           headers=hook_token(settings, uid_of(settings, "shop")))
    assert response.status_code == 507
    assert response.get_data(as_text=True).startswith("Push rejected: The Slipway host has ")
    assert client.get("/api/v1/apps/shop/builds", headers=ada).json["total"] == 0


def test_the_hook_counts_what_it_receives_whatever_the_request_declares(client, ada, settings,
                                                                         monkeypatch):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    client = client_with(monkeypatch, SLIPWAY_MAX_PUSH_BYTES="1000")

    # No Content-Length: a body as a chunked request sends it.
    response = client.post(f"/git/shop.git/slipway-build?commit={'a' * 40}",
                           input_stream=io.BytesIO(b"0" * 5000),
                           environ_base={"wsgi.input_terminated": True},
                           headers=hook_token(settings, uid_of(settings, "shop")))
    assert response.status_code == 413
    assert response.get_data(as_text=True) == (
        "Push rejected: the pushed tree is larger than 0.000953674 MB "
        "(SLIPWAY_MAX_PUSH_BYTES); the running release is untouched\n")
    assert client.get("/api/v1/apps/shop/builds", headers=ada).json["total"] == 0
    assert list(settings.builds_dir.iterdir()) == []


def test_a_hook_token_of_a_destroyed_app_does_not_reach_the_next_app_of_its_name(
        client, ada, settings):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    old = hook_token(settings, uid_of(settings, "shop"))
    with session_scope(settings.database) as session:  # as destroy leaves it, without Docker
        session.delete(session.query(App).filter_by(name="shop").one())
    client.post("/api/v1/apps", json={"name": "shop"}, headers=ada)
    response = client.post(f"/git/shop.git/slipway-build?commit={'a' * 40}", data=b"", headers=old)
    assert response.status_code == 401
    assert response.get_data(as_text=True) == "Invalid hook token\n"
