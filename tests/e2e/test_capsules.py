"""Managed PostgreSQL and Redis capsules on a real `slipway up` and Docker engine.

Create through the API, wait for `available`, use the URL, restart the capsule's
container and find the data again, attach to a pushed app and see it in the
app's environment, and check that another user sees none of it.
"""

from __future__ import annotations

import hashlib
import textwrap
import uuid

import docker
import psycopg
import pytest
import redis
import requests

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

APP_PY = textwrap.dedent('''
    import os

    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "shop\\n"


    @app.get("/db")
    def db():
        if "DATABASE_URL" not in os.environ:
            return "<unset>"
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            return ",".join(row[0] for row in conn.execute("SELECT name FROM items ORDER BY name"))


    @app.get("/cache")
    def cache():
        if "CACHE_URL" not in os.environ:
            return "<unset>"
        import redis

        return redis.Redis.from_url(os.environ["CACHE_URL"]).get("greeting") or b"<none>"
''')


@pytest.fixture(scope="module")
def stack():
    with Stack.running() as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack):
    """Authorization headers of two users, ada (logged in for the CLI) and bob."""
    ada = stack.sign_up("ada@example.com")
    bob = stack.slipway("users:create", "bob@example.com").stdout.strip()
    return {"ada": {"Authorization": f"Bearer {ada}"}, "bob": {"Authorization": f"Bearer {bob}"}}


def call(stack: Stack, headers: dict, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{stack.api_url}/api/v1{path}", json=body, headers=headers,
                            timeout=30)


def create_available(stack: Stack, headers: dict, kind: str, name: str,
                     version: str | None = None) -> dict:
    body = {"kind": kind, "name": name}
    if version is not None:
        body["version"] = version
    response = call(stack, headers, "POST", "/capsules", body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "provisioning"
    return wait_available(stack, headers, name)


def wait_available(stack: Stack, headers: dict, name: str) -> dict:

    def available():
        data = call(stack, headers, "GET", f"/capsules/{name}").json()
        assert data["status"] != "failed", data["error"]
        return data if data["status"] == "available" else None

    # A version whose image this host lacks is built first (PostgreSQL 18 with its forky
    # base took 85 s here); once built, images are reused and this takes seconds.
    return wait_for(available, timeout=300, interval=0.1, message=f"{name} available")


def restart_capsule(data: dict) -> None:
    docker.from_env().containers.get(data["container"]).restart(timeout=10)


def pg_rows(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM items ORDER BY name")]


@pytest.fixture(scope="module")
def pg(stack, api):
    data = create_available(stack, api["ada"], "postgres", "shop-db")
    with psycopg.connect(data["url"]) as conn:
        conn.execute("CREATE TABLE items (name text)")
        conn.execute("INSERT INTO items VALUES ('anchor'), ('rope')")
    return data


def test_postgres_data_survives_a_container_restart(stack, api, pg):
    assert (pg["kind"], pg["version"]) == ("postgres", "18")  # the newest is the default
    assert pg["url"].startswith("postgres://slipway:") and "@127.0.0.1:" in pg["url"]
    restart_capsule(pg)
    assert wait_for(lambda: pg_rows(pg["url"]), timeout=30, message="rows after restart") == [
        "anchor", "rope"]
    out = stack.slipway("capsules").stdout
    assert "shop-db" in out and "available" in out


def test_redis_data_survives_a_container_restart(stack, api):
    data = create_available(stack, api["ada"], "redis", "shop-cache")
    client = redis.Redis.from_url(data["url"])
    client.set("greeting", "ahoy")
    restart_capsule(data)
    assert wait_for(lambda: redis.Redis.from_url(data["url"]).get("greeting"), timeout=30,
                    message="key after restart") == b"ahoy"
    unauthenticated = redis.Redis(host="127.0.0.1", port=client.connection_pool
                                  .connection_kwargs["port"])
    with pytest.raises(redis.exceptions.AuthenticationError):
        unauthenticated.get("greeting")


def test_attached_capsules_reach_the_app(stack, api, pg, tmp_path_factory):
    repo = tmp_path_factory.mktemp("shop")
    stack.git("init", "-q", "-b", "main", cwd=repo)
    (repo / "app.py").write_text(APP_PY)
    (repo / "requirements.txt").write_text(
        "flask==3.1.*\ngunicorn==23.*\npsycopg[binary]==3.*\nredis==5.*\n")
    (repo / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT app:app\n")
    commit(stack, repo, "shop")
    stack.slipway("apps:create", "shop", cwd=repo)
    push = stack.git("push", "slipway", "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr
    assert stack.fetch("shop", "/db").text == "<unset>"

    out = stack.slipway("capsules:attach", "shop-db", "--app", "shop").stdout
    assert out == "Attached shop-db to shop: deploying v2\n"
    assert wait_for(lambda: stack.fetch("shop", "/db").text == "anchor,rope", timeout=60,
                    message="DATABASE_URL in the app")

    response = call(stack, api["ada"], "POST", "/apps/shop/capsules",
                    {"capsule": "shop-cache", "as": "CACHE"})
    assert response.status_code == 201, response.text
    assert wait_for(lambda: stack.fetch("shop", "/cache").text == "ahoy", timeout=60,
                    message="CACHE_URL in the app")
    # Still attached to the database after the second redeploy.
    assert stack.fetch("shop", "/db").text == "anchor,rope"

    out = stack.slipway("capsules:detach", "shop-cache", "--app", "shop").stdout
    assert out == "Detached shop-cache from shop\n"
    assert wait_for(lambda: stack.fetch("shop", "/cache").text == "<unset>", timeout=60,
                    message="CACHE_URL gone")
    # Detaching keeps the data.
    data = call(stack, api["ada"], "GET", "/capsules/shop-cache").json()
    assert redis.Redis.from_url(data["url"]).get("greeting") == b"ahoy"


def test_another_user_gets_404_on_every_capsule_route(stack, api, pg):
    assert call(stack, api["bob"], "POST", "/apps", {"name": "bobs"}).status_code == 201
    for method, path, body in [
        ("GET", "/capsules/shop-db", None),
        ("DELETE", "/capsules/shop-db", {"confirm": "shop-db"}),
        ("POST", "/apps/bobs/capsules", {"capsule": "shop-db"}),
        ("DELETE", "/apps/bobs/capsules/shop-db", None),
    ]:
        response = call(stack, api["bob"], method, path, body)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["message"] == "No capsule named shop-db"
    assert call(stack, api["bob"], "GET", "/capsules").json()["items"] == []


def test_destroy_needs_the_name_and_removes_everything(stack, api):
    data = create_available(stack, api["ada"], "redis", "scratch")
    result = stack.slipway("capsules:destroy", "scratch", input="scratc\n", check=False)
    assert result.returncode == 1
    assert 'Type the capsule\'s name to confirm: send {"confirm": "scratch"}' in result.stderr
    assert call(stack, api["ada"], "GET", "/capsules/scratch").status_code == 200
    out = stack.slipway("capsules:destroy", "scratch", input="scratch\n").stdout
    assert out.endswith("Destroyed scratch\n")
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"name": data["container"]}) == []
    assert client.volumes.list(filters={"name": data["container"]}) == []
    assert client.networks.list(names=[data["container"]]) == []


def test_backup_drop_restore_and_bad_files_are_refused(stack, api, pg):
    out = stack.slipway("capsules:backup", "shop-db").stdout
    assert out.startswith("Backed up shop-db: ") and out.endswith(" bytes)\n")
    name = out.split(": ", 1)[1].split(" ", 1)[0]
    listing = stack.slipway("capsules:backups", "shop-db").stdout
    assert listing.startswith(name)
    with psycopg.connect(pg["url"]) as conn:
        conn.execute("DROP TABLE items")

    backups = stack.home / "backups" / "shop-db"
    corrupt = backups / "20260101T000000000000Z.pgdump"
    corrupt.write_bytes(b"PGDMP" + b"\x00garbage" * 10)
    foreign = backups / "20260101T000000000001Z.pgdump"
    foreign.write_bytes(b"REDIS0011" + b"\x00" * 20)
    for bad, why in [(corrupt, "the file is corrupt"), (foreign, "it is a redis backup")]:
        result = stack.slipway("capsules:restore", "shop-db", bad.name, "--confirm", "shop-db",
                               check=False)
        assert result.returncode == 1
        assert f"Cannot restore {bad.name} into shop-db: {why}; nothing was changed" in (
            result.stderr)
    result = stack.slipway("capsules:restore", "shop-db", "../../secret_key", "--confirm",
                           "shop-db", check=False)
    assert "backup must be a backup name as `capsules:backups` lists it" in result.stderr
    with psycopg.connect(pg["url"]) as conn:
        conn.execute("CREATE TABLE items (name text)")
        conn.execute("INSERT INTO items VALUES ('after the backup')")
    assert pg_rows(pg["url"]) == ["after the backup"]  # the refusals changed nothing

    out = stack.slipway("capsules:restore", "shop-db", name, "--confirm", "shop-db").stdout
    assert out == f"Restored {name} into shop-db\n"
    assert pg_rows(pg["url"]) == ["anchor", "rope"]
    # Another user cannot list, take or restore backups.
    for method, path, body in [("GET", "/capsules/shop-db/backups", None),
                               ("POST", "/capsules/shop-db/backups", None),
                               ("POST", "/capsules/shop-db/restore", {"backup": name})]:
        assert call(stack, api["bob"], method, path, body).status_code == 404


def test_redis_backup_and_restore(stack, api):
    data = create_available(stack, api["ada"], "redis", "bk-cache")
    redis.Redis.from_url(data["url"]).set("greeting", "before")
    out = stack.slipway("capsules:backup", "bk-cache").stdout
    name = out.split(": ", 1)[1].split(" ", 1)[0]
    assert name.endswith(".rdb")
    redis.Redis.from_url(data["url"]).set("greeting", "after")
    stack.slipway("capsules:restore", "bk-cache", name, "--confirm", "bk-cache")
    assert wait_for(lambda: redis.Redis.from_url(data["url"]).get("greeting"), timeout=30,
                    message="restored key") == b"before"


def test_chosen_versions_run_those_majors(stack, api):
    """--version picks the major: PostgreSQL 17 and Redis 8 report it themselves; bad
    versions are refused naming the choices, and nothing is made."""
    for args, message in [
        (("postgres", "pg16", "--version", "16"),
         "PostgreSQL 16 is not available on this host: choose 15, 17 or 18"),
        (("postgres", "pg99", "--version", "abc"),
         "PostgreSQL version must be a major version number: choose 15, 17 or 18"),
        (("redis", "cache17", "--version", "17"),
         "Redis 17 is not available on this host: choose 7 or 8"),
    ]:
        result = stack.slipway("capsules:create", *args, check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert call(stack, api["ada"], "GET", "/capsules/pg16").status_code == 404

    out = stack.slipway("capsules:create", "postgres", "pg17", "--version", "17").stdout
    assert out.startswith("Creating pg17 (postgres 17): status provisioning")
    out = stack.slipway("capsules:create", "redis", "cache8", "--version", "8").stdout
    assert out.startswith("Creating cache8 (redis 8): status provisioning")
    pg17 = wait_available(stack, api["ada"], "pg17")
    cache8 = wait_available(stack, api["ada"], "cache8")
    with psycopg.connect(pg17["url"], connect_timeout=5) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].split(".")[0] == "17"
        conn.execute("CREATE TABLE t (x int)")
    client = redis.Redis.from_url(cache8["url"])
    assert client.info("server")["redis_version"].split(".")[0] == "8"
    client.close()
    listing = stack.slipway("capsules").stdout.splitlines()
    assert any(line.split()[:3] == ["pg17", "postgres", "17"] for line in listing), listing
    assert any(line.split()[:3] == ["cache8", "redis", "8"] for line in listing), listing
    assert "version:     17\n" in stack.slipway("capsules:info", "pg17").stdout
    # pg_dump of the capsule's own major, inside its container.
    out = stack.slipway("capsules:backup", "pg17").stdout
    assert out.startswith("Backed up pg17: ") and ".pgdump" in out

    for name in ("pg17", "cache8"):
        stack.slipway("capsules:destroy", name, "--confirm", name)
    names = [c["name"] for c in call(stack, api["ada"], "GET", "/capsules").json()["items"]]
    assert "pg17" not in names and "cache8" not in names


def test_a_missing_capsule_image_is_built_on_first_use(tmp_path):
    """What the worker does for a version this host lacks, for real: Redis 8 under a
    repository of its own whose trixie base is the host's, so only the image build runs."""
    from slipway.builder.bootstrap import CA_LABEL, HOST_CA_BUNDLE
    from slipway.config import Settings
    from slipway.platform import capsules

    client = docker.from_env()
    base = client.images.get("slipway/debian:trixie")
    if base.labels.get(CA_LABEL) != hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest():
        pytest.skip("slipway/debian:trixie trusts another CA bundle: a run would rebuild it")
    repository = f"slipway-test-{uuid.uuid4().hex[:8]}"
    base.tag(f"{repository}/debian", "trixie")
    settings = Settings(home=tmp_path, bootstrap_repository=repository)
    try:
        reference = capsules.build_image(client, settings, "redis", "8")
        assert reference == f"{repository}/redis:8"
        output = client.containers.run(reference, entrypoint=["redis-server", "--version"],
                                       remove=True, labels={TEST_LABEL: TEST_RUN})
        assert b" v=8." in output
        # Built once: a second capsule of that version finds it.
        assert capsules._image(client, settings, "redis", "8") == reference
    finally:
        for tag in (f"{repository}/redis:8", f"{repository}/debian:trixie"):
            try:
                client.images.remove(tag)
            except docker.errors.ImageNotFound:
                pass
