"""Capsules through the REST API (Flask's test client), on SQLite and PostgreSQL.

Provisioning is the worker's job (tests/e2e/test_capsules.py runs it for real);
here the task is recorded, not run.
"""

import pytest
from sqlalchemy import select

from slipway.platform import tasks, users
from slipway.platform.db import session_scope
from slipway.platform.models import Capsule, CapsuleStatus


@pytest.fixture
def tokens(settings):
    with session_scope(settings.database) as session:
        _, ada = users.create_user(session, "ada@example.com")
        _, bob = users.create_user(session, "bob@example.com")
    return {"ada": {"Authorization": f"Bearer {ada}"}, "bob": {"Authorization": f"Bearer {bob}"}}


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.provision_capsule, "delay", lambda *a: calls.append(("prov", *a)))
    monkeypatch.setattr(tasks.deploy, "delay", lambda *a: calls.append(("deploy", *a)))
    return calls


def _available(settings, name, port=55432):
    with session_scope(settings.database) as session:
        capsule = session.scalar(select(Capsule).where(Capsule.name == name))
        capsule.status = CapsuleStatus.AVAILABLE
        capsule.host_port = port
        capsule.version = "15"


def test_create_answers_202_provisioning_and_enqueues(client, tokens, enqueued, settings):
    response = client.post("/api/v1/capsules", json={"kind": "postgres", "name": "main-db"},
                           headers=tokens["ada"])
    assert response.status_code == 202
    assert response.headers["Location"].endswith("/api/v1/capsules/main-db")
    body = response.json
    assert (body["name"], body["kind"], body["status"], body["url"]) == (
        "main-db", "postgres", "provisioning", None)
    with session_scope(settings.database) as session:
        capsule = session.scalar(select(Capsule))
        assert enqueued == [("prov", capsule.id)]
        # Encrypted at rest: the stored value is a Fernet token, not a password.
        assert capsule.password_encrypted.startswith("gAAAA")
    _available(settings, "main-db")
    shown = client.get("/api/v1/capsules/main-db", headers=tokens["ada"]).json
    assert shown["status"] == "available"
    assert shown["url"].startswith("postgres://slipway:")
    assert shown["url"].endswith("@127.0.0.1:55432/slipway")
    listed = client.get("/api/v1/capsules", headers=tokens["ada"]).json
    assert [c["name"] for c in listed["items"]] == ["main-db"]
    assert listed["total"] == 1


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"kind": "mysql", "name": "db"}, 422, "Unknown capsule kind 'mysql': use postgres or redis"),
    ({"kind": "redis", "name": "Bad_Name"}, 422,
     "Capsule name must be 2-30 characters: a lowercase letter, then lowercase letters, "
     "digits or dashes, not ending in a dash"),
    ({"kind": "redis", "name": "a; rm -rf /"}, 422,
     "Capsule name must be 2-30 characters: a lowercase letter, then lowercase letters, "
     "digits or dashes, not ending in a dash"),
    (["redis"], 400, "Send a JSON object with the capsule's kind and name"),
])
def test_bad_creates_are_refused(client, tokens, enqueued, body, status, message):
    response = client.post("/api/v1/capsules", json=body, headers=tokens["ada"])
    assert response.status_code == status
    assert response.json["error"]["message"] == message
    assert enqueued == []


def test_taken_names_conflict(client, tokens, enqueued):
    client.post("/api/v1/capsules", json={"kind": "redis", "name": "cache"}, headers=tokens["ada"])
    response = client.post("/api/v1/capsules", json={"kind": "postgres", "name": "cache"},
                           headers=tokens["bob"])
    assert response.status_code == 409
    assert response.json["error"]["message"] == "Capsule name cache is already taken"


def test_destroy_needs_the_name_typed_back(client, tokens, enqueued, monkeypatch):
    from slipway.platform import capsules

    removed = []
    monkeypatch.setattr(capsules, "remove_docker_objects", lambda c, s, name: removed.append(name))
    client.post("/api/v1/capsules", json={"kind": "redis", "name": "cache"}, headers=tokens["ada"])
    for body in (None, {}, {"confirm": "cach"}):
        response = client.delete("/api/v1/capsules/cache", json=body, headers=tokens["ada"])
        assert response.status_code == 400, body
        if body is not None:
            assert response.json["error"]["message"] == (
                'Type the capsule\'s name to confirm: send {"confirm": "cache"}')
    assert client.get("/api/v1/capsules/cache", headers=tokens["ada"]).status_code == 200
    assert removed == []
    response = client.delete("/api/v1/capsules/cache", json={"confirm": "cache"},
                             headers=tokens["ada"])
    assert response.status_code == 204
    assert removed == ["cache"]
    assert client.get("/api/v1/capsules/cache", headers=tokens["ada"]).status_code == 404


def test_attach_and_detach(client, tokens, enqueued, settings, monkeypatch):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    client.post("/api/v1/capsules", json={"kind": "postgres", "name": "shop-db"},
                headers=tokens["ada"])
    client.post("/api/v1/capsules", json={"kind": "redis", "name": "shop-cache"},
                headers=tokens["ada"])
    response = client.post("/api/v1/apps/shop/capsules", json={"capsule": "shop-db"},
                           headers=tokens["ada"])
    assert response.status_code == 409
    assert response.json["error"]["message"] == "Capsule shop-db is provisioning, not available"
    _available(settings, "shop-db")
    _available(settings, "shop-cache", 56379)
    response = client.post("/api/v1/apps/shop/capsules", json={"capsule": "shop-db"},
                           headers=tokens["ada"])
    assert response.status_code == 201
    assert response.json["attachments"] == [{"app": "shop", "as": "DATABASE"}]
    response = client.post("/api/v1/apps/shop/capsules",
                           json={"capsule": "shop-cache", "as": "DATABASE"}, headers=tokens["ada"])
    assert response.status_code == 409
    assert response.json["error"]["message"] == (
        "DATABASE_URL of shop is already set by capsule shop-db")
    response = client.post("/api/v1/apps/shop/capsules",
                           json={"capsule": "shop-cache", "as": "bad-alias"},
                           headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"]["field"] == "as"
    response = client.post("/api/v1/apps/shop/capsules", json={"capsule": "shop-cache"},
                           headers=tokens["ada"])
    assert response.json["attachments"] == [{"app": "shop", "as": "REDIS"}]

    from slipway.platform import capsules
    from slipway.platform.models import App

    with session_scope(settings.database) as session:
        app = session.scalar(select(App))
        env = capsules.capsule_env(session, settings, app)
        assert sorted(env) == ["DATABASE_URL", "REDIS_URL"]
        assert env["DATABASE_URL"].startswith("postgres://slipway:")
        assert env["DATABASE_URL"].endswith("@capsule-shop-db:5432/slipway")
        assert env["REDIS_URL"].endswith("@capsule-shop-cache:6379/0")
        assert capsules.capsule_networks(session, settings, app) == [
            f"slipway-{settings.instance_id}-capsule_shop-db",
            f"slipway-{settings.instance_id}-capsule_shop-cache",
        ]
    # Attached capsules cannot be destroyed: nothing is lost by surprise.
    response = client.delete("/api/v1/capsules/shop-db", json={"confirm": "shop-db"},
                             headers=tokens["ada"])
    assert response.status_code == 409
    assert response.json["error"]["message"] == (
        "Capsule shop-db is attached to shop: detach it first")

    response = client.delete("/api/v1/apps/shop/capsules/shop-db", headers=tokens["ada"])
    assert response.status_code == 200
    assert response.json["attachments"] == []
    response = client.delete("/api/v1/apps/shop/capsules/shop-db", headers=tokens["ada"])
    assert response.status_code == 404
    assert response.json["error"]["message"] == "Capsule shop-db is not attached to shop"
    # The app was never deployed: nothing to redeploy.
    assert [c for c in enqueued if c[0] == "deploy"] == []


def test_attach_to_missing_app_or_capsule_is_404(client, tokens, enqueued, settings):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    response = client.post("/api/v1/apps/shop/capsules", json={"capsule": "nope"},
                           headers=tokens["ada"])
    assert response.status_code == 404
    assert response.json["error"]["message"] == "No capsule named nope"
    response = client.post("/api/v1/apps/nope/capsules", json={"capsule": "nope"},
                           headers=tokens["ada"])
    assert response.json["error"]["message"] == "No app named nope"


def test_other_users_capsules_are_404_everywhere(client, tokens, enqueued, settings):
    client.post("/api/v1/capsules", json={"kind": "redis", "name": "secret"},
                headers=tokens["ada"])
    _available(settings, "secret")
    client.post("/api/v1/apps", json={"name": "bobs"}, headers=tokens["bob"])
    bob = tokens["bob"]
    for method, path, body in [
        ("get", "/api/v1/capsules/secret", None),
        ("delete", "/api/v1/capsules/secret", {"confirm": "secret"}),
        ("post", "/api/v1/apps/bobs/capsules", {"capsule": "secret"}),
        ("delete", "/api/v1/apps/bobs/capsules/secret", None),
    ]:
        response = getattr(client, method)(path, json=body, headers=bob)
        assert response.status_code == 404, path
        assert response.json["error"]["message"] == "No capsule named secret"
    assert client.get("/api/v1/capsules", headers=bob).json["items"] == []
    assert client.get("/api/v1/capsules/secret", headers=tokens["ada"]).status_code == 200


def test_destroying_an_app_detaches_its_capsules_and_keeps_them(client, tokens, enqueued,
                                                                settings):
    client.post("/api/v1/apps", json={"name": "shop"}, headers=tokens["ada"])
    client.post("/api/v1/capsules", json={"kind": "redis", "name": "kept"}, headers=tokens["ada"])
    _available(settings, "kept")
    client.post("/api/v1/apps/shop/capsules", json={"capsule": "kept"}, headers=tokens["ada"])
    from slipway.platform.models import App

    # What destroy_app does to the rows (its Docker and router steps need neither).
    with session_scope(settings.database) as session:
        session.delete(session.scalar(select(App)))
    shown = client.get("/api/v1/capsules/kept", headers=tokens["ada"]).json
    assert (shown["status"], shown["attachments"]) == ("available", [])


def test_versions_in_create_list_and_info(client, tokens, enqueued):
    for body in ({"kind": "postgres", "name": "pg17", "version": "17"},
                 {"kind": "postgres", "name": "pg18", "version": 18},
                 {"kind": "postgres", "name": "pg-newest"},
                 {"kind": "redis", "name": "cache7", "version": "7"},
                 {"kind": "redis", "name": "cache-newest", "version": ""}):
        response = client.post("/api/v1/capsules", json=body, headers=tokens["ada"])
        assert response.status_code == 202, response.json
    listed = client.get("/api/v1/capsules", headers=tokens["ada"]).json["items"]
    assert {c["name"]: (c["kind"], c["version"]) for c in listed} == {
        "pg17": ("postgres", "17"), "pg18": ("postgres", "18"), "pg-newest": ("postgres", "18"),
        "cache7": ("redis", "7"), "cache-newest": ("redis", "8")}
    shown = client.get("/api/v1/capsules/pg17", headers=tokens["ada"]).json
    assert (shown["version"], shown["status"]) == ("17", "provisioning")
    assert len(enqueued) == 5


def test_a_default_version_setting_is_used(client, tokens, enqueued, settings, monkeypatch):
    monkeypatch.setattr(settings, "postgres_default_version", "15")
    response = client.post("/api/v1/capsules", json={"kind": "postgres", "name": "old-db"},
                           headers=tokens["ada"])
    assert response.json["version"] == "15"


@pytest.mark.parametrize(("body", "message"), [
    ({"kind": "postgres", "name": "db", "version": "16"},
     "PostgreSQL 16 is not available on this host: choose 15, 17 or 18"),
    ({"kind": "postgres", "name": "db", "version": "99"},
     "PostgreSQL 99 is not available on this host: choose 15, 17 or 18"),
    ({"kind": "postgres", "name": "db", "version": "abc"},
     "PostgreSQL version must be a major version number: choose 15, 17 or 18"),
    ({"kind": "postgres", "name": "db", "version": ["17"]},
     "PostgreSQL version must be a major version number: choose 15, 17 or 18"),
    ({"kind": "postgres", "name": "db", "version": True},
     "PostgreSQL version must be a major version number: choose 15, 17 or 18"),
    # A PostgreSQL version for a Redis capsule.
    ({"kind": "redis", "name": "db", "version": "17"},
     "Redis 17 is not available on this host: choose 7 or 8"),
])
def test_bad_versions_are_422_naming_the_field_and_change_nothing(client, tokens, enqueued,
                                                                   settings, body, message):
    response = client.post("/api/v1/capsules", json=body, headers=tokens["ada"])
    assert response.status_code == 422
    assert response.json["error"]["field"] == "version"
    assert response.json["error"]["message"] == message
    assert enqueued == []
    assert client.get("/api/v1/capsules", headers=tokens["ada"]).json["total"] == 0
    with session_scope(settings.database) as session:
        assert session.scalar(select(Capsule)) is None


def test_the_migration_gives_existing_capsules_the_major_of_their_image(database_url):
    from alembic import command
    from sqlalchemy import text

    from slipway.platform import db

    with session_scope(database_url) as session:
        user, _ = users.create_user(session, "old@example.com")
        owner_id = user.id
    command.downgrade(db.alembic_config(database_url), "0007")
    rows = {"old-pg": ("slipway/postgres:15", "15"), "old-redis": ("slipway/redis:7", "7"),
            "pulled-pg": ("postgres:16", "16"), "alpine": ("redis:7.2-alpine", "7.2-alpine"),
            "never-started": ("", "")}
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        for name, (image, version) in rows.items():
            conn.execute(text(
                "INSERT INTO capsules (name, kind, version, image, owner_id, status, "
                "password_encrypted, created_at) VALUES (:name, 'redis', :version, :image, "
                ":owner, 'available', 'x', CURRENT_TIMESTAMP)"),
                {"name": name, "version": version, "image": image, "owner": owner_id})
    engine.dispose()
    db.dispose_all()
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT name, version FROM capsules")).all())
    engine.dispose()
    assert found == {"old-pg": "15", "old-redis": "7", "pulled-pg": "16", "alpine": "7",
                     "never-started": ""}
