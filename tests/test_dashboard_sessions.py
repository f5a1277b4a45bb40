"""Dashboard sessions and sign-in: server-side sessions that sign-out and a password
change end, the cookie's contents, where sign-in may send the browser, and the
per-address sign-in limit."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from slipway.cli import cli
from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.platform.logstream import connect
from slipway.platform.models import User
from slipway.web.app import create_app
from slipway.web.dashboard import SESSIONS_DOWN
from tests.test_dashboard import PASSWORD, csrf_of, sign_in, signed_in


def cookie_of(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(web, cookie: str):
    """A request from another browser that copied ``cookie``."""
    thief = web.test_client()
    thief.set_cookie("session", cookie)
    return thief.get("/apps")


def sign_out(client):
    token = csrf_of(client.get("/apps").data)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def assert_signed_out(response) -> None:
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/apps"


# --- Sessions end on the server (finding 8) -------------------------------------------


def test_a_copied_cookie_stops_working_at_sign_out(web, accounts):
    client = signed_in(web, "ada@example.com")
    copied = cookie_of(client)
    assert replay(web, copied).status_code == 200  # a copy works while the session lives
    sign_out(client)
    assert_signed_out(replay(web, copied))
    assert_signed_out(client.get("/apps"))


def test_a_password_change_ends_every_session_of_that_user(web, accounts, dash_settings):
    first, second = signed_in(web, "ada@example.com"), signed_in(web, "ada@example.com")
    copied = cookie_of(first)
    bob = signed_in(web, "bob@example.com")
    changed = CliRunner().invoke(cli, ["users:passwd", "ada@example.com"],
                                 input="a new password\na new password\n")
    assert changed.exit_code == 0, changed.output
    for response in (first.get("/apps"), second.get("/apps"), replay(web, copied)):
        assert_signed_out(response)
    assert bob.get("/apps").status_code == 200  # other users keep theirs
    assert sign_in(web.test_client(), "ada@example.com", "a new password").status_code == 302


def test_a_deleted_user_is_signed_out(web, accounts, dash_settings):
    client = signed_in(web, "ada@example.com")
    with session_scope(dash_settings.database) as session:
        session.delete(users.get_by_email(session, "ada@example.com"))
    assert_signed_out(client.get("/apps"))


def test_the_cookie_holds_only_a_random_session_id(web, accounts, dash_settings):
    client = signed_in(web, "ada@example.com")
    raw = cookie_of(client)
    data = web.session_interface.get_signing_serializer(web).loads(raw)
    assert set(data) == {"_permanent", "sid", "csrf"}
    with session_scope(dash_settings.database) as session:
        stored = session.query(User).filter_by(email="ada@example.com").one().password_hash
    _scrypt, _n, _r, _p, salt, digest = stored.split("$")
    text = raw + json.dumps(data)
    for part in (salt, digest):
        for start in range(0, len(part) - 8 + 1):  # not even 8 characters of either
            assert part[start:start + 8] not in text
    # The record is found by a hash of the id and expires SLIPWAY_SESSION_HOURS after sign-in.
    key = (f"slipway:{dash_settings.instance_id}:session:"
           + hashlib.sha256(data["sid"].encode()).hexdigest())
    ttl = connect(dash_settings.redis_url).ttl(key)
    assert dash_settings.session_hours * 3600 - 60 < ttl <= dash_settings.session_hours * 3600


def test_signing_in_again_replaces_the_session(web, accounts):
    client = signed_in(web, "ada@example.com")
    before = cookie_of(client)
    token = csrf_of(client.get("/login").data)
    client.post("/login", data={"email": "ada@example.com", "password": PASSWORD,
                                "csrf_token": token})
    assert cookie_of(client) != before
    assert_signed_out(replay(web, before))


def test_a_forged_session_id_is_refused(web, accounts):
    forger = web.test_client()
    with forger.session_transaction() as session:
        session["sid"] = "made-up"
        session["user_id"] = 1
    assert_signed_out(forger.get("/apps"))


# --- Sign-in sends the browser only to this site (finding 7) ---------------------------


@pytest.mark.parametrize("target", [
    "/%09/evil.example", "/%0a/x", "/%0d%0a/x", "/%0D/evil.example", "%09//evil.example",
    "/%5C/evil.example", "/%5Cevil.example", "%5C%5Cevil.example", "//evil.example/x",
    "///evil.example", "https://evil.example/", "https:/evil.example", "javascript:alert(1)",
    "/%20/evil.example", "/x%00y", "/%E3%80%80/evil.example", "evil.example", "",
])
def test_sign_in_never_leaves_the_site(web, accounts, target):
    client = web.test_client()
    token = csrf_of(client.get(f"/login?next={target}").data)
    response = client.post(f"/login?next={target}", data={
        "email": "ada@example.com", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/apps"
    assert client.get("/apps").status_code == 200  # signed in all the same


@pytest.mark.parametrize("target, expected", [
    ("/apps/shop/config", "/apps/shop/config"),
    ("/apps/shop%3Frelease%3D3", "/apps/shop?release=3"),
    ("/tokens", "/tokens"),
])
def test_sign_in_returns_to_paths_on_this_site(web, accounts, target, expected):
    client = web.test_client()
    token = csrf_of(client.get("/login").data)
    response = client.post(f"/login?next={target}", data={
        "email": "ada@example.com", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == expected


# --- Sign-in failures per address across emails (finding 11) -----------------------------


def test_settings_default_to_twenty_failures_per_address(dash_settings):
    assert dash_settings.login_max_failures_per_address == 20


def test_one_password_across_many_emails_is_limited_per_address(accounts, dash_settings):
    limited = dash_settings.model_copy(update={"login_max_failures_per_address": 3})
    web = create_app(limited)
    client = web.test_client()
    for n in range(3):  # each email fails once only: the per-email limit never trips
        assert sign_in(client, f"user{n}@example.com", "Summer2024!").status_code == 401
    for email in ("user9@example.com", "bob@example.com"):
        response = sign_in(client, email, "Summer2024!" if email != "bob@example.com"
                           else PASSWORD)  # even the right password waits now
        assert response.status_code == 429
        assert (b"Too many failed sign-ins from your address: try again in 5 min"
                in response.data)
    other = web.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert sign_in(other, "bob@example.com").status_code == 302  # other addresses unaffected


def test_a_good_sign_in_does_not_clear_the_per_address_count(accounts, dash_settings):
    web = create_app(dash_settings.model_copy(update={"login_max_failures_per_address": 3}))
    client = web.test_client()
    for n in range(2):
        assert sign_in(client, f"user{n}@example.com", "guess-guess").status_code == 401
    assert sign_in(web.test_client(), "ada@example.com").status_code == 302
    assert sign_in(client, "user2@example.com", "guess-guess").status_code == 401
    assert sign_in(client, "user3@example.com", "guess-guess").status_code == 429


def test_without_redis_sign_in_is_refused_with_503_not_500(accounts, dash_settings):
    web = create_app(dash_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    response = sign_in(web.test_client(), "ada@example.com")
    assert response.status_code == 503
    assert SESSIONS_DOWN.encode() in response.data
