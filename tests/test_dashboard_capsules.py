"""The dashboard's capsule and domain pages through Flask's test client.

No Docker: provisioning, deploys and route changes are recorded by replacing the
tasks' ``delay``; backups are files written straight into the backups directory.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from slipway.platform import capsule_backups, capsules, tasks
from slipway.platform.db import session_scope
from slipway.platform.models import Capsule, CapsuleStatus, CertificateStatus, Domain
from slipway.web.dashboard import CSRF_MESSAGE
from tests.test_dashboard import csrf_of, signed_in


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.provision_capsule, "delay", lambda *a: calls.append(("prov", *a)))
    monkeypatch.setattr(tasks.deploy, "delay", lambda *a: calls.append(("deploy", *a)))
    monkeypatch.setattr(tasks.domains_changed, "delay", lambda *a: calls.append(("routes", *a)))
    monkeypatch.setattr(capsules, "remove_docker_objects",
                        lambda c, s, name: calls.append(("removed", name)))
    return calls


@pytest.fixture
def ada(web, accounts):
    client = signed_in(web, "ada@example.com")
    client.token = csrf_of(client.get("/capsules").data)
    return client


def _available(settings, name: str, port: int = 55432) -> None:
    with session_scope(settings.database) as session:
        capsule = session.scalar(select(Capsule).where(Capsule.name == name))
        capsule.status = CapsuleStatus.AVAILABLE
        capsule.host_port = port


def create(client, kind: str, name: str, **extra: str):
    return client.post("/capsules", data={"kind": kind, "name": name, "csrf_token": client.token,
                                          **extra})


def test_create_lists_and_enqueues_provisioning(ada, enqueued, dash_settings):
    response = create(ada, "postgres", "shop-db")
    assert response.status_code == 302 and response.headers["Location"] == "/capsules/shop-db"
    with session_scope(dash_settings.database) as session:
        capsule_id = session.scalar(select(Capsule.id).where(Capsule.name == "shop-db"))
    assert enqueued == [("prov", capsule_id)]
    page = ada.get("/capsules/shop-db").data.decode()
    assert "Creating shop-db: it becomes available in a few seconds" in page
    # Provisioning: the page polls its status and shows no URL yet.
    assert 'data-url="/capsules/shop-db.json"' in page and "not published yet" in page
    assert ada.get("/capsules/shop-db.json").json == {
        "name": "shop-db", "status": "provisioning", "error": None}
    listing = ada.get("/capsules").data.decode()
    assert re.search(r'href="/capsules/shop-db">shop-db</a></td>\s*<td data-label="Kind">'
                     r'postgres 18</td>\s*<td data-label="Status">'
                     r'<span class="status-provisioning">provisioning</span>', listing), listing

    _available(dash_settings, "shop-db")
    assert ada.get("/capsules/shop-db.json").json["status"] == "available"
    page = ada.get("/capsules/shop-db").data.decode()
    assert "data-url=" not in page  # settled: no more polling
    url = re.search(r'<code id="capsule-url" class="secret" hidden>([^<]+)</code>', page)
    assert url and url.group(1).startswith("postgres://slipway:")
    assert url.group(1).endswith("@127.0.0.1:55432/slipway")


@pytest.mark.parametrize(("kind", "name", "field", "message"), [
    ("mysql", "db", "kind", "Unknown capsule kind &#39;mysql&#39;: use postgres or redis"),
    ("postgres", "<b>Bad</b>", "name",
     "Capsule name must be 2-30 characters: a lowercase letter, then lowercase letters, "
     "digits or dashes, not ending in a dash"),
    ("redis", "", "name", "Capsule name must be 2-30 characters"),
])
def test_create_form_shows_validation_errors(ada, enqueued, kind, name, field, message):
    response = create(ada, kind, name)
    assert response.status_code == 422
    page = response.data.decode()
    assert f'<p class="error" id="{field}-error">{message}' in page
    assert "<b>Bad</b>" not in page  # the typed name comes back escaped
    if name == "<b>Bad</b>":
        assert 'value="&lt;b&gt;Bad&lt;/b&gt;"' in page
    assert enqueued == [] and "No capsules yet." in page


def test_the_create_form_offers_each_kinds_versions(ada, enqueued, dash_settings):
    page = ada.get("/capsules").data.decode()
    assert '<option value="" selected>Default (PostgreSQL 18, Redis 8)</option>' in page
    options = re.findall(r'<option value="(\d+)">([^<]+)</option>', page)
    assert options == [("18", "PostgreSQL 18"), ("17", "PostgreSQL 17"), ("15", "PostgreSQL 15"),
                       ("8", "Redis 8"), ("7", "Redis 7")]
    response = create(ada, "postgres", "old-db", version="17")
    assert response.status_code == 302
    listing = ada.get("/capsules").data.decode()
    assert '<td data-label="Kind">postgres 17</td>' in listing
    with session_scope(dash_settings.database) as session:
        assert session.scalar(select(Capsule.version).where(Capsule.name == "old-db")) == "17"


@pytest.mark.parametrize(("kind", "version", "message"), [
    ("postgres", "16", "PostgreSQL 16 is not available on this host: choose 15, 17 or 18"),
    ("redis", "18", "Redis 18 is not available on this host: choose 7 or 8"),
    ("postgres", "x<b>", "PostgreSQL version must be a major version number: choose 15, 17 or 18"),
])
def test_bad_versions_are_shown_by_the_select(ada, enqueued, kind, version, message):
    response = create(ada, kind, "db", version=version)
    assert response.status_code == 422
    page = response.data.decode()
    assert f'<p class="error" id="version-error">{message}</p>' in page
    assert 'aria-describedby="version-error"' in page
    assert enqueued == [] and "No capsules yet." in page


def test_taken_name_is_shown_in_the_form(ada, enqueued):
    create(ada, "redis", "cache")
    response = create(ada, "postgres", "cache")
    assert response.status_code == 422
    assert b'id="name-error">Capsule name cache is already taken' in response.data


def test_forms_without_their_csrf_token_are_refused(ada, enqueued, dash_settings):
    create(ada, "redis", "cache")
    _available(dash_settings, "cache")
    ada.post("/apps", data={"name": "shop", "csrf_token": ada.token})
    enqueued.clear()
    for path, data in [("/capsules", {"kind": "redis", "name": "other"}),
                       ("/capsules/cache/attach", {"app": "shop"}),
                       ("/capsules/cache/detach", {"app": "shop"}),
                       ("/capsules/cache/backups", {}),
                       ("/capsules/cache/restore", {"backup": "x", "confirm": "cache"}),
                       ("/capsules/cache/destroy", {"confirm": "cache"}),
                       ("/apps/shop/domains", {"hostname": "www.example.com"}),
                       ("/apps/shop/domains/remove", {"hostname": "www.example.com"}),
                       ("/apps/shop/hsts", {"hsts": "on"})]:
        for token in (None, "forged"):
            sent = data if token is None else {**data, "csrf_token": token}
            response = ada.post(path, data=sent)
            assert response.status_code == 400, path
            assert CSRF_MESSAGE.encode() in response.data.replace(b"&#39;", b"'")
    assert enqueued == []
    assert b"other" not in ada.get("/capsules").data
    assert b"Not attached to any app." in ada.get("/capsules/cache").data


def test_another_users_capsule_is_404(web, ada, enqueued, dash_settings):
    create(ada, "postgres", "shop-db")
    _available(dash_settings, "shop-db")
    bob = signed_in(web, "bob@example.com")
    token = csrf_of(bob.get("/capsules").data)
    assert b"shop-db" not in bob.get("/capsules").data
    bob.post("/apps", data={"name": "bobs", "csrf_token": token})
    for path in ("/capsules/shop-db", "/capsules/shop-db.json"):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert b"No capsule named shop-db" in response.data
    for path, data in [("/capsules/shop-db/attach", {"app": "bobs"}),
                       ("/capsules/shop-db/detach", {"app": "bobs"}),
                       ("/capsules/shop-db/backups", {}),
                       ("/capsules/shop-db/restore", {"backup": "x", "confirm": "shop-db"}),
                       ("/capsules/shop-db/destroy", {"confirm": "shop-db"})]:
        response = bob.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 404, path
    # Ada's capsule cannot be attached to bob's app, nor bob's capsule to ada's app.
    assert ada.get("/capsules/shop-db").status_code == 200
    assert b"bobs" not in ada.get("/capsules/shop-db").data
    ada.post("/capsules/shop-db/attach", data={"app": "bobs", "csrf_token": ada.token})
    assert b"No app named bobs" in ada.get("/capsules/shop-db").data
    assert [c for c in enqueued if c[0] in ("deploy", "removed")] == []


def test_attach_and_detach_from_the_capsule_page(ada, enqueued, dash_settings):
    ada.post("/apps", data={"name": "shop", "csrf_token": ada.token})
    create(ada, "postgres", "shop-db")
    attach = {"app": "shop", "as": "DATABASE", "csrf_token": ada.token}
    ada.post("/capsules/shop-db/attach", data=attach)
    assert (b"Capsule shop-db is provisioning, not available"
            in ada.get("/capsules/shop-db").data)
    _available(dash_settings, "shop-db")
    bad = ada.post("/capsules/shop-db/attach", data={**attach, "as": "<i>x</i>"},
                   follow_redirects=True).data.decode()
    assert "as must be 1-50 characters" in bad and "<i>x</i>" not in bad
    page = ada.post("/capsules/shop-db/attach", data=attach, follow_redirects=True).data.decode()
    assert "Attached shop-db to shop: its first deploy will use it" in page
    assert re.search(r'href="/apps/shop">shop</a></td>\s*<td data-label="Variable">'
                     r"<code>DATABASE_URL</code>", page), page
    # Attached capsules are not destroyed, even with the name typed back.
    page = ada.post("/capsules/shop-db/destroy", data={"confirm": "shop-db",
                                                       "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Capsule shop-db is attached to shop: detach it first" in page
    page = ada.post("/capsules/shop-db/detach", data={"app": "shop", "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Detached shop-db from shop" in page and "Not attached to any app." in page
    page = ada.post("/capsules/shop-db/detach", data={"app": "shop", "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Capsule shop-db is not attached to shop" in page
    assert [c for c in enqueued if c[0] == "deploy"] == []  # never deployed: nothing to restart


def test_destroy_needs_the_name_typed_back(ada, enqueued):
    create(ada, "redis", "cache")
    for typed in ("", "cach", "CACHE"):
        page = ada.post("/capsules/cache/destroy", data={"confirm": typed,
                                                         "csrf_token": ada.token},
                        follow_redirects=True).data.decode()
        assert "Type the capsule&#39;s name (cache) to destroy it; nothing was done" in page
    assert ("removed", "cache") not in enqueued
    done = ada.post("/capsules/cache/destroy", data={"confirm": "cache", "csrf_token": ada.token})
    assert done.headers["Location"] == "/capsules"
    assert ("removed", "cache") in enqueued
    assert b"Destroyed cache" in ada.get("/capsules").data
    assert ada.get("/capsules/cache").status_code == 404


def test_backups_are_listed_taken_and_restored_only_when_confirmed(ada, enqueued, dash_settings,
                                                                   monkeypatch):
    create(ada, "postgres", "shop-db")
    _available(dash_settings, "shop-db")
    with session_scope(dash_settings.database) as session:
        capsule = session.scalar(select(Capsule).where(Capsule.name == "shop-db"))
        directory = capsule_backups.backups_dir(dash_settings, capsule)
    directory.mkdir(parents=True)
    (directory / "20261123T101500000000Z.pgdump").write_bytes(b"x" * 2048)
    page = ada.get("/capsules/shop-db").data.decode()
    assert re.search(r"<code>20261123T101500000000Z.pgdump</code></td>\s*"
                     r'<td data-label="Taken">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>\s*'
                     r'<td data-label="Size">2.0 kB</td>', page), page

    taken, restored = [], []
    monkeypatch.setattr(capsule_backups, "take_backup",
                        lambda s, c: taken.append(c.name) or capsule_backups.Backup(
                            "20261123T111500000000Z.pgdump", 10, None))
    monkeypatch.setattr(capsule_backups, "restore_backup",
                        lambda s, c, name: restored.append((c.name, name)))
    page = ada.post("/capsules/shop-db/backups", data={"csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert taken == ["shop-db"]
    assert "Backed up shop-db as 20261123T111500000000Z.pgdump" in page

    restore = {"backup": "20261123T101500000000Z.pgdump", "csrf_token": ada.token}
    for typed in ("", "shop", "20261123T101500000000Z.pgdump"):
        page = ada.post("/capsules/shop-db/restore", data={**restore, "confirm": typed},
                        follow_redirects=True).data.decode()
        assert ("Type the capsule&#39;s name (shop-db) to restore "
                "20261123T101500000000Z.pgdump; nothing was done") in page
    assert restored == []
    page = ada.post("/capsules/shop-db/restore", data={**restore, "confirm": "shop-db"},
                    follow_redirects=True).data.decode()
    assert restored == [("shop-db", "20261123T101500000000Z.pgdump")]
    assert "Restored shop-db from 20261123T101500000000Z.pgdump" in page


def test_restore_of_an_unknown_backup_is_refused_by_the_service(ada, enqueued, dash_settings):
    create(ada, "redis", "cache")
    _available(dash_settings, "cache")
    page = ada.post("/capsules/cache/restore", data={
        "backup": "../../etc/passwd", "confirm": "cache", "csrf_token": ada.token},
        follow_redirects=True).data.decode()
    assert "backup must be a backup name as `capsules:backups` lists it" in page


# --- Domains tab ------------------------------------------------------------------


def test_domains_tab_lists_adds_and_removes(ada, enqueued, dash_settings):
    ada.post("/apps", data={"name": "shop", "csrf_token": ada.token})
    page = ada.get("/apps/shop/domains").data.decode()
    assert 'href="/apps/shop/domains">Domains</a>' in page
    assert "<code>shop.localhost</code> <span class=\"hint\">(default)</span>" in page
    assert "HSTS is <strong id=\"hsts-state\">off</strong>" in page

    bad = ada.post("/apps/shop/domains", data={"hostname": "<b>x</b>", "csrf_token": ada.token})
    assert bad.status_code == 422
    text = bad.data.decode()
    assert 'id="hostname-error" role="alert">' in text
    assert "<b>x</b>" not in text and 'value="&lt;b&gt;x&lt;/b&gt;"' in text
    taken = ada.post("/apps/shop/domains", data={"hostname": "shop.localhost",
                                                 "csrf_token": ada.token})
    assert taken.status_code == 422
    assert b"shop.localhost is already the default domain of shop" in taken.data

    page = ada.post("/apps/shop/domains", data={"hostname": "www.example.com",
                                                "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Added www.example.com" in page
    assert re.search(r"<code>www.example.com</code></td>\s*<td data-label=\"Certificate\">"
                     r'<span class="status-none">none</span>', page), page
    with session_scope(dash_settings.database) as session:
        domain = session.scalar(select(Domain).where(Domain.hostname == "www.example.com"))
        domain.status = CertificateStatus.FAILED
        domain.last_error = "DNS problem: <NXDOMAIN>"
    page = ada.get("/apps/shop/domains").data.decode()
    assert '<span class="status-failed">failed</span>' in page
    assert '<span class="error">DNS problem: &lt;NXDOMAIN&gt;</span>' in page

    page = ada.post("/apps/shop/domains/remove", data={"hostname": "www.example.com",
                                                       "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Removed www.example.com" in page and "<code>www.example.com</code>" not in page
    page = ada.post("/apps/shop/domains/remove", data={"hostname": "www.example.com",
                                                       "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "shop has no custom domain www.example.com" in page
    assert [c for c in enqueued if c[0] == "routes"] == []  # not deployed: no route to change


def test_hsts_switch(ada, enqueued):
    ada.post("/apps", data={"name": "shop", "csrf_token": ada.token})
    page = ada.post("/apps/shop/hsts", data={"hsts": "on", "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "HSTS is on for shop" in page and '<option value="on" selected>' in page
    page = ada.post("/apps/shop/hsts", data={"hsts": "maybe", "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "Choose HSTS on, off or the global default" in page
    assert 'HSTS is <strong id="hsts-state">on</strong>' in page
    page = ada.post("/apps/shop/hsts", data={"hsts": "default", "csrf_token": ada.token},
                    follow_redirects=True).data.decode()
    assert "HSTS is off for shop" in page


def test_another_users_domains_are_404(web, ada, enqueued):
    ada.post("/apps", data={"name": "shop", "csrf_token": ada.token})
    bob = signed_in(web, "bob@example.com")
    token = csrf_of(bob.get("/apps").data)
    assert bob.get("/apps/shop/domains").status_code == 404
    for path, data in [("/apps/shop/domains", {"hostname": "www.example.com"}),
                       ("/apps/shop/domains/remove", {"hostname": "www.example.com"}),
                       ("/apps/shop/hsts", {"hsts": "on"})]:
        assert bob.post(path, data={**data, "csrf_token": token}).status_code == 404, path
    assert b"<code>www.example.com</code>" not in ada.get("/apps/shop/domains").data
