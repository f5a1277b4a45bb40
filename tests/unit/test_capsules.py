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


@pytest.mark.parametrize(("tags", "expected"), [
    (["postgres:16", "slipway/postgres:15"], ("postgres:16", "16")),
    (["slipway/postgres:15", "slipway/postgres:9", "python:3.12"], ("slipway/postgres:15", "15")),
    ([], ("postgres:16", "16")),
])
def test_image_choice(tags, expected):
    assert capsules.choose_capsule_image("postgres:16", tags, "slipway", "postgres") == expected


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
