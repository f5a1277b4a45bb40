"""Custom domains through the API; internal-CA certificates; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from cryptography import x509

from slipway.platform import certificates, users
from slipway.platform import domains as domain_service
from slipway.platform.db import session_scope
from slipway.platform.models import App, CertificateStatus, Domain
from slipway.router.acme_client import AcmeFailure
from slipway.router.routes import Route
from slipway.web.app import create_app


@pytest.fixture
def client(settings, monkeypatch):
    # The default domain (localhost) turns TLS off; these tests are about ACME.
    monkeypatch.setattr(settings, "tls", "acme")
    return create_app(settings).test_client()


@pytest.fixture
def tokens(settings):
    with session_scope(settings.database) as session:
        _, ada = users.create_user(session, "ada@example.com")
        _, bob = users.create_user(session, "bob@example.com")
    return {"ada": {"Authorization": f"Bearer {ada}"}, "bob": {"Authorization": f"Bearer {bob}"}}


@pytest.fixture
def apps(client, tokens):
    for user, name in (("ada", "shop"), ("bob", "blog")):
        assert client.post("/api/v1/apps", json={"name": name},
                           headers=tokens[user]).status_code == 201


def add(client, tokens, hostname, app="shop", user="ada"):
    return client.post(f"/api/v1/apps/{app}/domains", json={"hostname": hostname},
                       headers=tokens[user])


def test_add_list_and_remove_a_domain(client, tokens, apps):
    response = add(client, tokens, "Bücher.Example.")
    assert response.status_code == 201, response.json
    assert response.json == {"hostname": "xn--bcher-kva.example", "custom": True,
                             "status": "none", "last_error": None, "expires_at": None}
    listed = client.get("/api/v1/apps/shop/domains", headers=tokens["ada"]).json
    assert listed["default"] == "shop.localhost"
    assert listed["tls"] == "acme" and listed["hsts"] is False
    assert [d["hostname"] for d in listed["items"]] == ["xn--bcher-kva.example"]
    response = client.delete("/api/v1/apps/shop/domains/xn--bcher-kva.example",
                             headers=tokens["ada"])
    assert response.status_code == 204
    assert client.get("/api/v1/apps/shop/domains", headers=tokens["ada"]).json["items"] == []
    response = client.delete("/api/v1/apps/shop/domains/xn--bcher-kva.example",
                             headers=tokens["ada"])
    assert response.status_code == 404
    assert response.json["error"]["message"] == "shop has no custom domain xn--bcher-kva.example"


@pytest.mark.parametrize(("hostname", "message"), [
    ("*.example.com", "Invalid domain '*.example.com': wildcard domains are not supported "
                      "(certificates are obtained over HTTP-01, which cannot validate them)"),
    ("example.com;\n}", "Invalid domain 'example.com;\\n}': Codepoint U+003B at position 4 of "
                        "'com;\\n}' not allowed"),
    ("a.com server_name evil", "Invalid domain 'a.com server_name evil': Codepoint U+0020 at "
                               "position 4 of 'com server_name evil' not allowed"),
    ("localhost", "Invalid domain 'localhost': a domain needs at least two labels "
                  "(e.g. www.example.com)"),
    ("10.0.0.1", "Invalid domain '10.0.0.1': an IP address is not a domain"),
    ("[::1]", "Invalid domain '[::1]': an IP address is not a domain"),
    ("-bad.example.com", "Invalid domain '-bad.example.com': Label must not start or end "
                         "with a hyphen"),
    ("a_b.example.com", "Invalid domain 'a_b.example.com': Codepoint U+005F at position 2 of "
                        "'a_b' not allowed"),
    ("x" * 64 + ".com", f"Invalid domain '{'x' * 61}...': Label too long"),
    ("$host.example.com", "Invalid domain '$host.example.com': Codepoint U+0024 at position 1 "
                          "of '$host' not allowed"),
    ("", "Domain must be a non-empty string"),
    (7, "Domain must be a non-empty string"),
])
def test_hostile_and_invalid_domains_are_refused(client, tokens, apps, hostname, message):
    response = add(client, tokens, hostname)
    assert response.status_code == 422, response.json
    assert response.json["error"] == {"code": "invalid", "message": message, "field": "hostname"}
    assert client.get("/api/v1/apps/shop/domains", headers=tokens["ada"]).json["items"] == []


def test_duplicate_and_other_apps_domains_conflict(client, tokens, apps):
    assert add(client, tokens, "www.example.com").status_code == 201
    again = add(client, tokens, "WWW.example.com")
    assert again.status_code == 409
    assert again.json["error"]["message"] == "www.example.com is already a domain of shop"
    taken = add(client, tokens, "www.example.com", app="blog", user="bob")
    assert taken.status_code == 409
    assert taken.json["error"]["message"] == "www.example.com is already in use by another app"
    other = add(client, tokens, "api.blog.localhost")
    assert other.status_code == 409
    assert other.json["error"]["message"] == ("api.blog.localhost is under blog.localhost, which "
                                              "belongs to the app named blog")
    own_default = add(client, tokens, "shop.localhost")
    assert own_default.status_code == 409
    assert own_default.json["error"]["message"] == "shop.localhost is already the default " \
                                                   "domain of shop"
    assert add(client, tokens, "api.shop.localhost").status_code == 201


def test_other_users_apps_domains_are_404(client, tokens, apps):
    assert add(client, tokens, "www.example.com", app="blog").status_code == 404
    assert client.get("/api/v1/apps/blog/domains", headers=tokens["ada"]).status_code == 404


def test_hsts_is_per_app_with_a_global_default(client, tokens, apps):
    response = client.patch("/api/v1/apps/shop/tls", json={"hsts": True}, headers=tokens["ada"])
    assert response.status_code == 200 and response.json == {"hsts": True}
    bad = client.patch("/api/v1/apps/shop/tls", json={"hsts": "yes"}, headers=tokens["ada"])
    assert bad.status_code == 422
    assert bad.json["error"]["message"] == "hsts must be true, false or null (the global default)"
    assert client.get("/api/v1/apps/shop/domains", headers=tokens["ada"]).json["hsts"] is True


# --- certificates, with the internal CA -------------------------------------------


@pytest.fixture
def deployed(settings, apps):
    """shop, marked deployed (a release id is all the certificate code looks at)."""
    from slipway.platform.models import Release
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        release = Release(app=app, version=1, image="x", config_encrypted="")
        session.add(release)
        session.flush()
        app.current_release_id = release.id
    return settings


def test_internal_ca_issues_stores_and_routes_certificates(deployed, monkeypatch):
    settings = deployed
    monkeypatch.setattr(settings, "tls", "internal")
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        domain_service.add_domain(session, settings, app, "www.shop.test", actor=None)
        session.commit()
        certificates.ensure_default_domains(session, settings)
        session.commit()
        due = certificates.due_domains(session, settings)
        assert len(due) == 2
        for domain_id in due:
            assert certificates.issue(session, settings, domain_id) is True
            assert certificates.issue(session, settings, domain_id) is False  # not due now
        assert certificates.due_domains(session, settings) == []
        rows = {d.hostname: d for d in session.query(Domain)}
        assert {h: r.status for h, r in rows.items()} == {
            "shop.localhost": CertificateStatus.ISSUED, "www.shop.test": CertificateStatus.ISSUED}
        routes = certificates.with_tls(
            session, settings, [Route(app="shop", hosts=("shop.localhost",),
                                      upstreams=("127.0.0.1:9",))])
    (route,) = routes
    assert route.hosts == ("shop.localhost", "www.shop.test")
    assert [c.host for c in route.certificates] == ["shop.localhost", "www.shop.test"]
    key = settings.certs_dir / "www.shop.test" / "privkey.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    chain = x509.load_pem_x509_certificates(
        (settings.certs_dir / "www.shop.test" / "fullchain.pem").read_bytes())
    assert chain[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["www.shop.test"]
    chain[0].verify_directly_issued_by(chain[1])


def test_renewal_is_due_within_the_window(deployed):
    settings = deployed
    now = dt.datetime.now(dt.UTC)
    domain = Domain(hostname="a.example.com", status=CertificateStatus.ISSUED,
                    expires_at=now + dt.timedelta(days=31))
    assert not certificates.is_due(domain, settings, now)
    domain.expires_at = now + dt.timedelta(days=29)
    assert certificates.is_due(domain, settings, now)


def test_acme_failure_is_recorded_with_backoff_and_the_old_certificate_keeps_serving(
        deployed, monkeypatch):
    settings = deployed
    monkeypatch.setattr(settings, "tls", "internal")
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        domain = domain_service.add_domain(session, settings, app, "www.shop.test", actor=None)
        session.commit()
        assert certificates.issue(session, settings, domain.id)
        monkeypatch.setattr(settings, "tls", "acme")

        def refuse(**kwargs):
            raise AcmeFailure("rate_limited", "rate limited by the ACME server: too many "
                                              "certificates; retry after 3600 s",
                              retry_after=3600)
        monkeypatch.setattr(certificates, "obtain", refuse)
        assert certificates.issue(session, settings, domain.id, force=True) is False
        session.expire_all()
        row = session.get(Domain, domain.id)
        assert row.status == CertificateStatus.FAILED
        assert row.last_error == ("rate limited by the ACME server: too many certificates; "
                                  "retry after 3600 s")
        assert row.failures == 1
        retry_at = certificates._aware(row.retry_at)
        assert retry_at > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3500)
        assert certificates.due_domains(session, settings) == []
        (route,) = certificates.with_tls(
            session, settings, [Route(app="shop", hosts=("shop.localhost",), upstreams=())])
        assert [c.host for c in route.certificates] == ["www.shop.test"]


def test_tls_off_attaches_no_certificates(deployed, monkeypatch):
    settings = deployed
    monkeypatch.setattr(settings, "tls", "internal")
    with session_scope(settings.database) as session:
        app = session.query(App).filter_by(name="shop").one()
        domain = domain_service.add_domain(session, settings, app, "www.shop.test", actor=None)
        session.commit()
        assert certificates.issue(session, settings, domain.id)
        monkeypatch.setattr(settings, "tls", "off")
        (route,) = certificates.with_tls(
            session, settings, [Route(app="shop", hosts=("shop.localhost",), upstreams=())])
        assert route.certificates == ()
        assert route.hosts == ("shop.localhost", "www.shop.test")


def test_renew_queues_a_forced_issuance(client, tokens, apps, monkeypatch):
    from slipway.platform import tasks
    queued = []
    monkeypatch.setattr(tasks.issue_certificate, "delay", lambda *args: queued.append(args))
    missing = client.post("/api/v1/apps/shop/domains/www.example.com/renew",
                          headers=tokens["ada"])
    assert missing.status_code == 404
    assert missing.json["error"]["message"] == ("shop has no domain www.example.com with a "
                                                "certificate to renew")
    assert add(client, tokens, "www.example.com").status_code == 201
    response = client.post("/api/v1/apps/shop/domains/www.example.com/renew",
                           headers=tokens["ada"])
    assert response.status_code == 202 and response.json["hostname"] == "www.example.com"
    (domain_id, force), = queued
    assert force is True and isinstance(domain_id, int)
    other = client.post("/api/v1/apps/shop/domains/www.example.com/renew", headers=tokens["bob"])
    assert other.status_code == 404
