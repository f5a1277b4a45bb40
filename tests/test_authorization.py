"""Who may call which route: every rule under /api/v1 and /git, for every kind of caller.

The table below must list every (endpoint, method) of the URL map: a new route
fails ``test_every_route_is_in_the_table`` until it is added with its expected
answers. Callers: no token, a malformed one, an unknown one, a revoked one,
another user's, the owner's and an admin's. Routes that go on to Docker are
checked only for what comes before it where the outcome depends on the engine
(``PASSES``: not refused by authentication or authorization).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from slipway.platform import apps as app_service
from slipway.platform import builds as build_service
from slipway.platform import capsules as capsule_service
from slipway.platform import domains as domain_service
from slipway.platform import tasks, users
from slipway.platform.db import session_scope
from slipway.platform.models import CapsuleAttachment, CapsuleStatus
from slipway.web.app import create_app

PASSES = "passes"  # authenticated and authorized; what follows depends on Docker
REFUSED = {401, 403, 404, 429}


@dataclass(frozen=True)
class Route:
    url: str
    owner: int | str  # the owner's (and an admin's) status
    body: object = None
    other: int = 404  # another user's status
    # Made per caller, for routes that create something named.
    make_body: Callable[[str], object] | None = field(default=None, compare=False)
    public: bool = False

    def body_for(self, who: str) -> object:
        return self.make_body(who) if self.make_body else self.body


TABLE: dict[tuple[str, str], Route] = {
    ("api.openapi_document", "GET"): Route("/api/v1/openapi.json", 200, other=200, public=True),
    ("api.list_apps", "GET"): Route("/api/v1/apps", 200, other=200),
    ("api.create_app", "POST"): Route("/api/v1/apps", 201, other=201,
                                      make_body=lambda who: {"name": f"new-{who}"}),
    ("api.get_app", "GET"): Route("/api/v1/apps/shop", 200),
    ("api.delete_app", "DELETE"): Route("/api/v1/apps/shop", 204),
    ("api.list_builds", "GET"): Route("/api/v1/apps/shop/builds", 200),
    ("api.get_build", "GET"): Route("/api/v1/apps/shop/builds/1", 200),
    ("api.attach_capsule", "POST"): Route("/api/v1/apps/shop/capsules", 201,
                                          {"capsule": "db"}),
    ("api.detach_capsule", "DELETE"): Route("/api/v1/apps/shop/capsules/cache", 200),
    ("api.get_config", "GET"): Route("/api/v1/apps/shop/config", 200),
    ("api.patch_config", "PATCH"): Route("/api/v1/apps/shop/config", 200, {"K": "v"}),
    ("api.list_domains", "GET"): Route("/api/v1/apps/shop/domains", 200),
    ("api.add_domain", "POST"): Route("/api/v1/apps/shop/domains", 201,
                                      {"hostname": "api.shop.test"}),
    ("api.remove_domain", "DELETE"): Route("/api/v1/apps/shop/domains/www.shop.test", 204),
    ("api.renew_domain", "POST"): Route("/api/v1/apps/shop/domains/www.shop.test/renew", 409),
    ("api.get_formation", "GET"): Route("/api/v1/apps/shop/formation", 200),
    ("api.patch_formation", "PATCH"): Route("/api/v1/apps/shop/formation", 422, {"web": 1}),
    ("api.app_logs", "GET"): Route("/api/v1/apps/shop/logs?tail=1", PASSES),
    ("api.list_processes", "GET"): Route("/api/v1/apps/shop/ps", PASSES),
    ("api.restart_processes", "POST"): Route("/api/v1/apps/shop/ps/restart", 422, {}),
    ("api.list_releases", "GET"): Route("/api/v1/apps/shop/releases", 200),
    ("api.rollback", "POST"): Route("/api/v1/apps/shop/rollback", 422, {}),
    ("api.run", "POST"): Route("/api/v1/apps/shop/runs", 422, {"command": ["true"]}),
    ("api.patch_tls", "PATCH"): Route("/api/v1/apps/shop/tls", 200, {"hsts": True}),
    ("api.list_audit_events", "GET"): Route("/api/v1/audit", 200, other=200),
    ("api.list_capsules", "GET"): Route("/api/v1/capsules", 200, other=200),
    ("api.create_capsule", "POST"): Route("/api/v1/capsules", 202, other=202,
                                          make_body=lambda who: {"kind": "redis",
                                                                 "name": f"new-{who}"}),
    ("api.get_capsule", "GET"): Route("/api/v1/capsules/db", 200),
    ("api.delete_capsule", "DELETE"): Route("/api/v1/capsules/db", PASSES, {"confirm": "db"}),
    ("api.list_backups", "GET"): Route("/api/v1/capsules/db/backups", 200),
    ("api.create_backup", "POST"): Route("/api/v1/capsules/db/backups", PASSES),
    ("api.restore_backup", "POST"): Route("/api/v1/capsules/db/restore", 422,
                                          {"backup": "../etc/passwd"}),
    ("git.smart_http", "GET"): Route("/git/shop.git/info/refs?service=git-upload-pack", 200),
    ("git.smart_http", "POST"): Route("/git/shop.git/git-upload-pack", PASSES),
    # The pre-receive hook's own route: only its signed token opens it, never an API token.
    ("git.hook_build", "POST"): Route("/git/shop.git/slipway-build?commit=" + "a" * 40, 401,
                                      other=401),
}

CALLERS_REFUSED = ("none", "malformed", "unknown", "revoked")


def routes(app) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules()
            if rule.rule.startswith(("/api/v1", "/git"))
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture
def app(settings, monkeypatch):
    # Enqueuing goes to Celery; which tasks run is other tests' business.
    for task in (tasks.provision_capsule, tasks.deploy, tasks.issue_certificate,
                 tasks.domains_changed, tasks.build):
        monkeypatch.setattr(task, "delay", lambda *args, **kwargs: None)
    return create_app(settings.model_copy(update={"route_timeout": 0.2}))


@pytest.fixture
def tokens(settings):
    """ada owns app shop (a domain, a build, capsule cache attached) and capsule db;
    bob owns app blog; root is an admin."""
    with session_scope(settings.database) as session:
        ada, ada_token = users.create_user(session, "ada@example.com")
        bob, bob_token = users.create_user(session, "bob@example.com")
        _, root_token = users.create_user(session, "root@example.com", admin=True)
        revoked = users.create_token(session, ada, name="old")
        users.revoke_token(session, ada, users.list_tokens(session, ada)[0].id)
        shop = app_service.create_app(session, ada, "shop")
        app_service.create_app(session, bob, "blog")
        domain_service.add_domain(session, settings, shop, "www.shop.test", actor=ada)
        build_service.create_build(session, shop, commit="a" * 40, user_id=ada.id)
        for kind, name in (("postgres", "db"), ("redis", "cache")):
            capsule = capsule_service.create_capsule(session, settings, ada, kind, name)
            capsule.status = CapsuleStatus.AVAILABLE
        session.flush()
        session.add(CapsuleAttachment(capsule_id=capsule.id, app_id=shop.id, alias="REDIS"))
    return {"owner": ada_token, "other": bob_token, "admin": root_token,
            "revoked": revoked, "unknown": "slp_" + "x" * 43, "malformed": "not a token\t!"}


def headers(route_url: str, who: str, tokens: dict) -> dict:
    if who == "none":
        return {}
    token = tokens[who]
    if route_url.startswith("/git/"):
        return {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()}
    return {"Authorization": f"Bearer {token}"}


def call(client, key: tuple[str, str], route: Route, who: str, tokens: dict):
    body = route.body_for(who)
    kwargs = {"headers": headers(route.url, who, tokens)}
    if body is not None:
        kwargs["json"] = body
    return client.open(route.url, method=key[1], **kwargs)


def test_every_route_is_in_the_table(app):
    assert routes(app) == set(TABLE), "add new routes to TABLE with their expected answers"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", sorted(TABLE), ids="-".join)
def test_callers_without_a_right_to_it_are_refused(app, tokens, key):
    route = TABLE[key]
    client = app.test_client()
    for who in (*CALLERS_REFUSED, "other"):
        response = call(client, key, route, who, tokens)
        if route.public:
            expected = 200
        elif who in CALLERS_REFUSED:
            expected = 401
        else:
            expected = route.other
        assert response.status_code == expected, (who, response.status_code, response.data[:300])
        if expected == 401 and key[0].startswith("api."):
            assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("who", ["owner", "admin"])
@pytest.mark.parametrize("key", sorted(TABLE), ids="-".join)
def test_the_owner_and_admins_get_through(app, tokens, key, who):
    route = TABLE[key]
    response = call(app.test_client(), key, route, who, tokens)
    if route.owner == PASSES:
        assert response.status_code not in REFUSED, (who, response.status_code, response.data)
        assert response.status_code < 500 or key == ("api.create_backup", "POST"), response.data
    else:
        assert response.status_code == route.owner, (who, response.status_code,
                                                     response.data[:300])
