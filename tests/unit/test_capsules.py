"""The pure parts of capsules: container spec, URLs, image choice, validators."""

import pytest

from slipway.platform import capsules, validation
from slipway.platform.errors import InvalidInput


def test_postgres_spec_publishes_on_loopback_only_with_its_own_network_and_volume():
    spec = capsules.capsule_container_spec(
        instance="abc", capsule="db", kind="postgres", image="slipway/postgres:15",
        password="pw", memory="256m", labels={"TEST_LABEL": "TEST_RUN"}, host_port=40001,
    )
    assert spec["name"] == "slipway-abc-capsule_db"
    assert spec["ports"] == {"5432/tcp": ("127.0.0.1", 40001)}
    assert spec["network"] == "slipway-abc-capsule_db"
    assert spec["networking_config"] == {"slipway-abc-capsule_db": {"Aliases": ["capsule-db"]}}
    assert spec["volumes"] == {
        "slipway-abc-capsule_db": {"bind": "/var/lib/postgresql/data", "mode": "rw"}}
    assert spec["environment"]["POSTGRES_PASSWORD"] == "pw"
    assert spec["security_opt"] == ["no-new-privileges:true"]
    assert spec["restart_policy"] == {"Name": "unless-stopped"}
    assert spec["mem_limit"] == "256m"
    # Never the app labels: reconcile removes slipway.instance containers without an app.
    assert spec["labels"] == {"TEST_LABEL": "TEST_RUN", "slipway.capsule.instance": "abc",
                              "slipway.capsule": "db", "slipway.capsule.kind": "postgres"}


def test_redis_password_is_not_on_the_command_line():
    spec = capsules.capsule_container_spec(
        instance="abc", capsule="cache", kind="redis", image="slipway/redis:7",
        password="s3cret", memory="256m", labels={}, host_port=40002,
    )
    assert "s3cret" not in " ".join(spec["command"])
    assert spec["environment"] == {"REDIS_PASSWORD": "s3cret"}
    assert spec["ports"] == {"6379/tcp": ("127.0.0.1", 40002)}


def test_urls():
    assert capsules.connection_url("postgres", "pw", "capsule-db", 5432) == (
        "postgres://slipway:pw@capsule-db:5432/slipway")
    assert capsules.connection_url("redis", "pw", "127.0.0.1", 1234) == (
        "redis://:pw@127.0.0.1:1234/0")


@pytest.mark.parametrize(("template", "version", "tags", "expected"), [
    ("postgres:{version}", "17", ["postgres:17", "slipway/postgres:17"], "postgres:17"),
    ("postgres:{version}", "17", ["slipway/postgres:17", "slipway/postgres:18"],
     "slipway/postgres:17"),
    # Never another version than the one asked for: None means "pull or build it".
    ("postgres:{version}", "17", ["postgres:18", "slipway/postgres:15", "python:3.17"], None),
    ("redis:{version}-alpine", "8", ["redis:8-alpine", "slipway/redis:8"], "redis:8-alpine"),
    # A fixed image (an older setting) serves only its own version.
    ("slipway/postgres:15", "15", ["slipway/postgres:15"], "slipway/postgres:15"),
    ("slipway/postgres:15", "18", ["slipway/postgres:15", "slipway/postgres:18"],
     "slipway/postgres:18"),
    ("registry.local:5000/postgres:18.1", "18", ["registry.local:5000/postgres:18.1"],
     "registry.local:5000/postgres:18.1"),
])
def test_image_choice(template, version, tags, expected):
    assert capsules.choose_capsule_image(template, version, tags, "slipway",
                                         template.split("/")[-1].split(":")[0]) == expected


@pytest.mark.parametrize(("template", "version", "expected"), [
    ("postgres:{version}", "18", "postgres:18"),
    ("redis:{version}", "7", "redis:7"),
    ("slipway/redis:7", "7", "slipway/redis:7"),
    ("slipway/redis:7", "8", None),
    ("localhost:5000/redis", "8", None),
])
def test_template_for_a_version(template, version, expected):
    assert capsules.template_for(template, version) == expected


def test_offered_versions_are_what_bootstrap_builds_newest_by_default():
    from slipway.builder import bootstrap
    from slipway.config import Settings

    assert capsules.available_versions("postgres") == ["15", "17", "18"]
    assert capsules.available_versions("redis") == ["7", "8"]
    assert capsules.default_version(Settings(), "postgres") == "18"
    assert capsules.default_version(Settings(), "redis") == "8"
    assert capsules.default_version(Settings(postgres_default_version="17"), "postgres") == "17"
    # install.sh builds the default images; other versions are built on first use.
    assert bootstrap.DEFAULT_CAPSULE_KINDS == ("postgres18", "redis8")
    from pathlib import Path

    install = (Path(__file__).parents[2] / "install.sh").read_text()
    assert "images bootstrap --kind postgres18 --kind redis8\n" in install


@pytest.mark.parametrize(("kind", "version", "expected"), [
    ("postgres", "17", "17"), ("postgres", 18, "18"), ("postgres", "015", "15"),
    ("redis", "7", "7"), ("redis", 8, "8"),
])
def test_good_versions(kind, version, expected):
    assert capsules.check_version(kind, version) == expected


NOT_A_PG_VERSION = "PostgreSQL version must be a major version number: choose 15, 17 or 18"


@pytest.mark.parametrize(("kind", "version", "message"), [
    ("postgres", "16", "PostgreSQL 16 is not available on this host: choose 15, 17 or 18"),
    ("postgres", "99", "PostgreSQL 99 is not available on this host: choose 15, 17 or 18"),
    ("postgres", 0, "PostgreSQL 0 is not available on this host: choose 15, 17 or 18"),
    ("redis", "17", "Redis 17 is not available on this host: choose 7 or 8"),
    ("redis", "9", "Redis 9 is not available on this host: choose 7 or 8"),
    ("redis", "abc", "Redis version must be a major version number: choose 7 or 8"),
    ("postgres", "abc", NOT_A_PG_VERSION),
    ("postgres", "17.2", NOT_A_PG_VERSION),
    ("postgres", "17\n", NOT_A_PG_VERSION),
    ("postgres", " 17", NOT_A_PG_VERSION),
    ("postgres", "1; rm -rf /", NOT_A_PG_VERSION),
    ("postgres", "../18", NOT_A_PG_VERSION),
    ("postgres", "١٧", NOT_A_PG_VERSION),  # Arabic-Indic digits: int() would take them
    ("postgres", -17, NOT_A_PG_VERSION),
    ("postgres", 10**20, NOT_A_PG_VERSION),
    ("postgres", True, NOT_A_PG_VERSION),
    ("postgres", 17.0, NOT_A_PG_VERSION),
    ("postgres", ["17"], NOT_A_PG_VERSION),
    ("postgres", {"v": 17}, NOT_A_PG_VERSION),
])
def test_bad_versions_name_the_field_and_the_choices(kind, version, message):
    with pytest.raises(InvalidInput) as info:
        capsules.check_version(kind, version)
    assert (info.value.field, info.value.message) == ("version", message)


def test_each_capsule_image_is_named_by_its_version_and_debian_suite():
    from slipway.builder import bootstrap

    expected = {"postgres15": ("slipway/postgres:15", "bookworm"),
                "postgres17": ("slipway/postgres:17", "trixie"),
                "postgres18": ("slipway/postgres:18", "forky"),
                "redis7": ("slipway/redis:7", "bookworm"),
                "redis8": ("slipway/redis:8", "trixie")}
    for name, (reference, suite) in expected.items():
        kind = bootstrap.KINDS[name]
        assert (kind.reference("slipway"), kind.base.suite) == (reference, suite)
    assert "postgresql-18 " in bootstrap.KINDS["postgres18"].dockerfile
    assert "/usr/lib/postgresql/18/bin" in bootstrap.KINDS["postgres18"].dockerfile
    # bookworm's debootstrap has no forky script: testing is made like sid.
    assert bootstrap.KINDS["postgres18"].base.script == "sid"
    assert [k.name for k in bootstrap.resolve_kinds(["postgres"])] == [
        "postgres15", "postgres17", "postgres18"]


def test_the_migration_takes_the_major_from_the_image_tag():
    import importlib.util
    from pathlib import Path

    path = (Path(capsules.__file__).parent / "migrations" / "versions"
            / "0008_capsule_versions.py")
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [module.major_of(image) for image in (
        "slipway/postgres:15", "slipway/redis:7", "postgres:16", "redis:7.2-alpine",
        "localhost:5000/redis", "redis:latest", "")] == ["15", "7", "16", "7", "", "", ""]


@pytest.mark.parametrize("name", ["", "a", "A-b", "db-", "1db", "db_x", "db;x", "../db", "x" * 31,
                                  None, 5])
def test_capsule_names_follow_the_app_rule(name):
    with pytest.raises(InvalidInput) as info:
        validation.capsule_name(name)
    assert info.value.field == "name"


@pytest.mark.parametrize("alias", ["", "database", "1DB", "DB-X", "DB URL", "A" * 51, None])
def test_bad_aliases(alias):
    with pytest.raises(InvalidInput) as info:
        validation.capsule_alias(alias)
    assert info.value.field == "as"


def test_good_names_and_aliases():
    assert validation.capsule_name("main-db") == "main-db"
    assert validation.capsule_alias("DATABASE") == "DATABASE"
    assert validation.capsule_alias("CACHE_2") == "CACHE_2"


def _capsule(kind):
    from slipway.platform.models import Capsule, CapsuleStatus

    return Capsule(name="db", kind=kind, status=CapsuleStatus.AVAILABLE)


@pytest.mark.parametrize(("kind", "content", "message"), [
    ("postgres", b"REDIS0011xx", "Cannot restore x.pgdump into db: it is a redis backup; "
                                 "nothing was changed"),
    ("redis", b"PGDMPxx", "Cannot restore x.pgdump into db: it is a postgres backup; "
                          "nothing was changed"),
    ("redis", b"", "Cannot restore x.pgdump into db: it is not a backup (bad header); "
                   "nothing was changed"),
])
def test_foreign_and_headerless_backups_are_refused(tmp_path, kind, content, message):
    from slipway.platform import capsule_backups

    path = tmp_path / "x.pgdump"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        capsule_backups.check_backup(_capsule(kind), path)
    assert info.value.message == message


@pytest.mark.parametrize("name", ["../secret_key", "x.rdb", "20260101T000000000000Z.sql",
                                  "20260101T000000000000Z.rdb/../../x", None, 3])
def test_restore_takes_only_backup_names(tmp_path, name):
    from slipway.config import Settings
    from slipway.platform import capsule_backups

    settings = Settings(home=tmp_path)
    with pytest.raises(InvalidInput) as info:
        capsule_backups.restore_backup(settings, _capsule("redis"), name)
    assert info.value.message == "backup must be a backup name as `capsules:backups` lists it"


class FakeDocker:
    """Just what choosing a capsule's image asks of Docker: the local tags, and that the
    capsule has no container yet."""

    def __init__(self, tags: list[str]) -> None:
        from types import SimpleNamespace

        from docker.errors import NotFound

        def missing(name):
            raise NotFound(name)

        self.api = SimpleNamespace(images=lambda: [{"RepoTags": tags}])
        self.containers = SimpleNamespace(get=missing)


@pytest.fixture
def image_steps(monkeypatch):
    """Records registry probes and builds instead of making them."""
    from slipway.builder import bootstrap

    steps = {"registry": False, "calls": []}

    def reachable(client):
        steps["calls"].append("probe")
        return steps["registry"]

    def build(client, settings, kind, version):
        steps["calls"].append(f"build {kind}{version}")
        return f"{settings.bootstrap_repository}/{kind}:{version}"

    monkeypatch.setattr(bootstrap, "registry_reachable", reachable)
    monkeypatch.setattr(capsules, "build_image", build)
    return steps


@pytest.mark.parametrize(("tags", "registry", "image", "calls"), [
    (["postgres:17"], False, "postgres:17", []),
    (["slipway/postgres:17", "slipway/postgres:18"], False, "slipway/postgres:17", []),
    (["slipway/postgres:18"], True, "postgres:17", ["probe"]),  # Docker pulls it
    (["slipway/postgres:18"], False, "slipway/postgres:17", ["probe", "build postgres17"]),
])
def test_a_missing_image_is_pulled_where_a_registry_answers_else_built(
        tmp_path, image_steps, tags, registry, image, calls):
    from slipway.config import Settings

    image_steps["registry"] = registry
    chosen = capsules._image(FakeDocker(tags), Settings(home=tmp_path), "postgres", "17")
    assert (chosen, image_steps["calls"]) == (image, calls)


def test_a_failed_build_fails_the_capsule_with_the_reason(tmp_path, monkeypatch):
    from slipway.builder import bootstrap
    from slipway.config import Settings
    from slipway.platform import runtime
    from slipway.platform.models import CapsuleStatus

    def fail(client, **kwargs):
        assert kwargs["kinds"] == ["redis8"]
        raise bootstrap.BootstrapError("building the Debian base image needs root (debootstrap)")

    monkeypatch.setattr(bootstrap, "registry_reachable", lambda client: False)
    monkeypatch.setattr(bootstrap, "bootstrap_images", fail)
    monkeypatch.setattr(runtime, "docker_client", lambda: FakeDocker([]))
    capsule = _capsule("redis")
    capsule.status, capsule.version = CapsuleStatus.PROVISIONING, "8"
    commits = []
    session = type("Session", (), {"commit": lambda self: commits.append(capsule.status)})()

    capsules.provision(session, Settings(home=tmp_path), capsule)
    assert capsule.status == CapsuleStatus.FAILED
    assert capsule.error == ("Could not build slipway/redis:8: building the Debian base image "
                             "needs root (debootstrap)")
    assert commits == [CapsuleStatus.FAILED]
