"""The dashboard through Flask's test client: sign-in, CSRF, escaping, isolation."""

from __future__ import annotations

import re

from click.testing import CliRunner

from slipway.cli import cli
from slipway.platform import users
from slipway.platform.db import session_scope
from slipway.platform.logstream import connect
from slipway.web.app import create_app
from slipway.web.dashboard import CSRF_MESSAGE
from tests.support import PASSWORD


def csrf_of(page: bytes) -> str:
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def sign_in(client, email: str, password: str = PASSWORD):
    token = csrf_of(client.get("/login").data)
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token})


def signed_in(web, email: str):
    client = web.test_client()
    response = sign_in(client, email)
    assert response.status_code == 302, response.data
    return client


def test_pages_need_a_sign_in(web, accounts):
    response = web.test_client().get("/apps/shop/config")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/apps/shop/config"


def test_wrong_password_and_unknown_email_get_the_same_answer(web, accounts):
    client = web.test_client()
    wrong = sign_in(client, "ada@example.com", "not the password")
    unknown = sign_in(client, "nobody@example.com", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert b"Wrong email or password" in response.data
    assert wrong.data.replace(b"ada@", b"") == unknown.data.replace(b"nobody@", b"")
    assert client.get("/apps").status_code == 302  # still signed out


def test_session_cookie_is_httponly_and_samesite(web, accounts, dash_settings):
    response = sign_in(web.test_client(), "ada@example.com")
    assert response.status_code == 302 and response.headers["Location"] == "/apps"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    secure = create_app(dash_settings.model_copy(update={"cookie_secure": True}))
    cookie = sign_in(secure.test_client(), "ada@example.com").headers["Set-Cookie"]
    assert "; Secure" in cookie


def test_sign_in_only_redirects_to_this_site(web, accounts):
    client = web.test_client()
    token = csrf_of(client.get("/login").data)
    for target, expected in [("/apps/shop", "/apps/shop"), ("//evil.example/x", "/apps"),
                             ("https://evil.example/", "/apps")]:
        response = client.post(f"/login?next={target}", data={
            "email": "ada@example.com", "password": PASSWORD, "csrf_token": token})
        assert response.headers["Location"] == expected
        token = csrf_of(client.get("/login").data)


def test_forms_without_their_csrf_token_are_refused(web, accounts):
    client = web.test_client()
    client.get("/login")
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert CSRF_MESSAGE.encode() in response.data
    client = signed_in(web, "ada@example.com")
    for path, data in [("/apps", {"name": "shop"}), ("/tokens", {"name": "x"}),
                       ("/logout", {})]:
        assert client.post(path, data=data).status_code == 400
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert b"shop" not in client.get("/apps").data  # nothing was made


def test_failed_sign_ins_are_rate_limited(web, accounts, dash_settings):
    client = web.test_client()
    for _ in range(dash_settings.login_max_failures):
        assert sign_in(client, "ada@example.com", "guess").status_code == 401
    response = sign_in(client, "ada@example.com")  # even the right password waits now
    assert response.status_code == 429
    assert (b"Too many failed sign-ins for this email from your address: try again in 5 min"
            in response.data)
    assert sign_in(web.test_client(), "bob@example.com").status_code == 302  # others unaffected


def test_create_an_app_and_see_the_name_error_in_the_form(web, accounts):
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps").data)
    bad = client.post("/apps", data={"name": "<b>Bad</b>", "csrf_token": token})
    assert bad.status_code == 422
    assert b"App name must be 2-30 characters" in bad.data
    assert b"&lt;b&gt;Bad&lt;/b&gt;" in bad.data and b"<b>Bad</b>" not in bad.data
    made = client.post("/apps", data={"name": "shop", "csrf_token": token})
    assert made.headers["Location"] == "/apps/shop"
    page = client.get("/apps/shop").data
    assert b"not deployed yet" in page and b"http://shop.localhost" in page


def test_config_values_are_shown_escaped(web, accounts):
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps").data)
    client.post("/apps", data={"name": "shop", "csrf_token": token})
    evil = "<script>alert(1)</script>"
    response = client.post("/apps/shop/config", data={
        "csrf_token": token, "key": ["GREETING", "MULTI", ""],
        "value": [evil, "line one\r\nline two", ""]})
    assert response.status_code == 302
    page = client.get("/apps/shop/config").data
    assert b"Config saved: the first push will use it" in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert b"<script>alert(1)" not in page
    api = web.test_client().get("/api/v1/apps/shop/config",
                                headers={"Authorization": f"Bearer {accounts['ada']}"})
    assert api.json == {"GREETING": evil, "MULTI": "line one\nline two"}

    # Remove one, change another, in one form.
    client.post("/apps/shop/config", data={
        "csrf_token": token, "key": ["GREETING", "MULTI"], "value": ["hi", "x"],
        "remove": ["MULTI"]})
    api = web.test_client().get("/api/v1/apps/shop/config",
                                headers={"Authorization": f"Bearer {accounts['ada']}"})
    assert api.json == {"GREETING": "hi"}

    bad = client.post("/apps/shop/config", data={
        "csrf_token": token, "key": ["1BAD"], "value": ["v"]})
    assert bad.status_code == 422
    assert b"1BAD" in bad.data


def test_another_users_app_is_404(web, accounts):
    ada = signed_in(web, "ada@example.com")
    ada.post("/apps", data={"name": "shop", "csrf_token": csrf_of(ada.get("/apps").data)})
    bob = signed_in(web, "bob@example.com")
    token = csrf_of(bob.get("/apps").data)
    assert b"shop" not in bob.get("/apps").data
    for path in ("/apps/shop", "/apps/shop/config", "/apps/shop/logs", "/apps/shop/logs/stream",
                 "/apps/shop/builds/1", "/apps/shop/releases/1.json"):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert b"No app named shop" in response.data
    assert bob.post("/apps/shop/destroy", data={"confirm": "shop",
                                                "csrf_token": token}).status_code == 404
    assert ada.get("/apps/shop").status_code == 200


def test_tokens_are_shown_once_and_revoked_tokens_are_refused(web, accounts):
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/tokens").data)
    page = client.post("/tokens", data={"name": "laptop", "csrf_token": token}).data
    new = re.search(rb'id="new-token">(slp_[^<]+)<', page).group(1).decode()
    api = web.test_client()
    assert api.get("/api/v1/apps", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert new.encode() not in client.get("/tokens").data  # only its hint from now on
    token_id = re.findall(rb'/tokens/(\d+)/revoke', page)[0].decode()
    done = client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert done.status_code == 302
    refused = api.get("/api/v1/apps", headers={"Authorization": f"Bearer {new}"})
    assert refused.status_code == 401 and refused.json["error"]["message"] == "Invalid API token"
    bob = signed_in(web, "bob@example.com")
    bob_token = csrf_of(bob.get("/tokens").data)
    assert bob.post(f"/tokens/{token_id}/revoke",
                    data={"csrf_token": bob_token}).status_code == 404


def test_sign_out_ends_the_session(web, accounts):
    client = signed_in(web, "ada@example.com")
    token = csrf_of(client.get("/apps").data)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/apps").status_code == 302


def test_password_change_ends_old_sessions(web, accounts, dash_settings):
    client = signed_in(web, "ada@example.com")
    with session_scope(dash_settings.database) as session:
        users.set_password(session, users.get_by_email(session, "ada@example.com"), "a new one!")
    assert client.get("/apps").status_code == 302


def test_passwords_are_scrypt_hashes_checked_in_constant_time():
    stored = users.hash_password("hunter22")
    assert stored.startswith("scrypt$16384$8$1$") and "hunter22" not in stored
    assert users.check_password(stored, "hunter22")
    assert not users.check_password(stored, "hunter23")
    assert not users.check_password(None, "hunter22")
    assert not users.check_password("garbage", "hunter22")
    assert users.hash_password("hunter22") != stored  # salted


def test_cli_sets_passwords(settings, monkeypatch):
    runner = CliRunner()
    short = runner.invoke(cli, ["users:create", "cy@example.com", "--password", "short"])
    assert short.exit_code == 1 and "Password must be at least 8 characters" in short.output
    made = runner.invoke(cli, ["users:create", "cy@example.com", "--password", "-"],
                         input="long enough\nlong enough\n")
    assert made.exit_code == 0, made.output
    assert made.output.strip().splitlines()[-1].startswith("slp_")
    changed = runner.invoke(cli, ["users:passwd", "cy@example.com"],
                            input="another one\nanother one\n")
    assert changed.exit_code == 0 and "Password set for cy@example.com" in changed.output
    missing = runner.invoke(cli, ["users:passwd", "no@example.com", "--password", "whatever1"])
    assert missing.exit_code == 1 and "No user with email no@example.com" in missing.output
    with session_scope(settings.database) as session:
        assert users.verify_login(session, "cy@example.com", "another one") is not None
        assert users.verify_login(session, "cy@example.com", "long enough") is None


def test_logs_api_checks_its_arguments_and_the_owner(web, accounts):
    api = web.test_client()
    ada = {"Authorization": f"Bearer {accounts['ada']}"}
    bob = {"Authorization": f"Bearer {accounts['bob']}"}
    assert api.post("/api/v1/apps", json={"name": "shop"}, headers=ada).status_code == 201
    for tail in ("x", "-1", "5001"):
        response = api.get(f"/api/v1/apps/shop/logs?tail={tail}", headers=ada)
        assert response.status_code == 400
        assert response.json["error"] == {"code": "bad_request", "field": "tail",
                                          "message": "tail must be a whole number from 0 to 5000"}
    assert api.get("/api/v1/apps/shop/logs", headers=bob).status_code == 404
    assert api.get("/api/v1/apps/shop/logs").status_code == 401


def test_build_page_shows_the_log_and_streams_a_running_build(web, accounts, dash_settings):
    from slipway.platform import apps as app_service
    from slipway.platform import builds as build_service
    from slipway.platform.logstream import LogWriter, build_log_key

    with session_scope(dash_settings.database) as session:
        ada = users.get_by_email(session, "ada@example.com")
        app = app_service.create_app(session, ada, "shop")
        build = build_service.create_build(session, app, commit="a" * 40, user_id=ada.id)
        build.log = "-----> <script>alert(1)</script>\n"
        build_id, app_uid = build.id, app.uid
    client = signed_in(web, "ada@example.com")
    page = client.get(f"/apps/shop/builds/{build_id}").data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page and b"<script>alert" not in page
    assert f'data-stream="/apps/shop/builds/{build_id}/stream"'.encode() in page  # pending: live

    log = LogWriter(connect(dash_settings.redis_url), build_log_key(app_uid, build_id))
    log.step("Building image")
    log("two\nlines")
    log.close("succeeded")
    stream = client.get(f"/apps/shop/builds/{build_id}/stream")
    assert stream.mimetype == "text/event-stream"
    assert stream.get_data(as_text=True) == (
        "event: line\ndata: -----> Building image\n\n"
        "event: line\ndata: two\ndata: lines\n\n"
        "event: end\ndata: succeeded\n\n")
