"""What an app container can write is bounded: the pure spec (tmpfs, storage_opt), the
probe of the engine's quota support and the reconcile fallback, without Docker.

The real engine is in tests/e2e/test_app_disk.py.
"""

from __future__ import annotations

import json

import pytest
from docker.errors import APIError
from pydantic import ValidationError

from slipway.config import Settings
from slipway.platform import ps, reconcile, runtime
from slipway.platform.runtime import container_spec, describe_size, size_bytes

REFUSAL = "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"


def spec(**overrides) -> dict:
    args = dict(instance="i1", app="u1", app_name="shop", release_id=7, version=3,
                process="web", image="sha256:abc", command="python app.py", env={},
                port=5000, memory="512m", cpus=1.0, pids=256, labels={}, suffix="f00")
    args.update(overrides)
    return container_spec(**args)


@pytest.mark.parametrize("process", ["web", "worker", "release", "run"])
def test_every_process_gets_capped_tmpfs_and_a_capped_writable_layer(process):
    result = spec(process=process, tmp_size="64m", disk="2g")
    assert result["tmpfs"] == {
        "/tmp": "rw,exec,nosuid,nodev,mode=1777,size=64m",
        "/var/tmp": "rw,exec,nosuid,nodev,mode=1777,size=64m",
    }
    assert result["storage_opt"] == {"size": "2g"}
    # The root filesystem stays writable: apps write to their own directory too.
    assert "read_only" not in result


def test_defaults_are_the_settings_defaults():
    settings = Settings()
    assert settings.container_tmp_size == runtime.TMP_SIZE == "256m"
    assert settings.container_disk == runtime.DISK == "1g"
    assert spec()["tmpfs"]["/tmp"].endswith(",size=256m")
    assert spec()["storage_opt"] == {"size": "1g"}


@pytest.mark.parametrize("name", ["SLIPWAY_CONTAINER_TMP_SIZE", "SLIPWAY_CONTAINER_DISK"])
@pytest.mark.parametrize("value", ["0", "1.5g", "-1g", "1t", "1 g", "1g,uid=0", ""])
def test_sizes_must_be_docker_sizes(monkeypatch, name, value):
    # Anything else would reach the tmpfs mount options or the engine as it is.
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_size_bytes_and_describe_size():
    assert size_bytes("1g") == 1024 ** 3
    assert size_bytes("256M") == 256 * 1024 ** 2
    assert size_bytes("64k") == 64 * 1024
    assert size_bytes("1000") == 1000
    assert describe_size("1g") == "1 GiB"
    assert describe_size("1536m") == "1536 MiB"
    assert describe_size("3") == "3 bytes"
    with pytest.raises(ValueError, match="Not a size"):
        size_bytes("1.5g")


class FakeApi:
    base_url = "http+docker://fake"

    def __init__(self, listed: list[dict] | None = None, volumes: dict | None = None) -> None:
        self.listed = listed or []
        self.volumes = volumes
        self.calls: list[tuple] = []

    def inspect_image(self, image):
        return {"Config": {"Volumes": self.volumes}}

    def containers(self, **kwargs):
        self.calls.append(("containers", kwargs))
        return self.listed

    def kill(self, container_id):
        self.calls.append(("kill", container_id))

    def stop(self, container_id, timeout):
        self.calls.append(("stop", container_id, timeout))

    def remove_container(self, container_id, v, force):
        self.calls.append(("remove", container_id))


class FakeContainers:
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.runs: list[dict] = []

    def run(self, **spec):
        self.runs.append(spec)
        if self.refuse and "storage_opt" in spec:
            raise APIError("500 Server Error", explanation=REFUSAL)
        return "container"


class FakeClient:
    def __init__(self, driver: str = "overlay2", backing: str = "extfs", *,
                 refuse: bool = False, listed: list[dict] | None = None,
                 volumes: dict | None = None) -> None:
        self.api = FakeApi(listed, volumes)
        self.containers = FakeContainers(refuse)
        self.infos = 0
        self.driver, self.backing = driver, backing

    def info(self):
        self.infos += 1
        return {"Driver": self.driver, "DriverStatus": [["Backing Filesystem", self.backing]]}


@pytest.fixture(autouse=True)
def forget_probes(monkeypatch):
    monkeypatch.setattr(runtime, "_disk_quota", {})


@pytest.mark.parametrize(("driver", "backing", "supported"), [
    ("overlay2", "extfs", False), ("overlay2", "xfs", True), ("vfs", "extfs", False),
    ("fuse-overlayfs", "extfs", False), ("btrfs", "btrfs", True), ("zfs", "zfs", True),
])
def test_quota_support_is_read_once_from_docker_info(driver, backing, supported):
    client = FakeClient(driver, backing)
    assert runtime.disk_quota_supported(client) is supported
    assert runtime.disk_quota_supported(client) is supported
    assert client.infos == 1


def test_without_quotas_the_container_starts_without_storage_opt():
    client = FakeClient("overlay2", "extfs")
    runtime._run(client, spec(), networks=())
    [sent] = client.containers.runs
    assert "storage_opt" not in sent
    assert sent["tmpfs"] == spec()["tmpfs"]  # the tmpfs caps hold everywhere


def test_image_volumes_get_a_capped_tmpfs_instead_of_a_volume_on_the_host():
    client = FakeClient(volumes={"/data": {}, "/tmp": {}})
    runtime._run(client, spec(tmp_size="64m"), networks=())
    [sent] = client.containers.runs
    options = "rw,exec,nosuid,nodev,mode=1777,size=64m"
    assert sent["tmpfs"] == {"/tmp": options, "/var/tmp": options, "/data": options}


def test_with_quotas_the_writable_layer_is_capped_by_docker():
    client = FakeClient("overlay2", "xfs")
    runtime._run(client, spec(disk="2g"), networks=())
    assert [run["storage_opt"] for run in client.containers.runs] == [{"size": "2g"}]


def test_a_refusal_is_remembered_and_the_container_starts_without_it():
    # xfs without pquota: docker info cannot tell, the engine refuses at create.
    client = FakeClient("overlay2", "xfs", refuse=True)
    runtime._run(client, spec(), networks=())
    runtime._run(client, spec(), networks=())
    assert ["storage_opt" in run for run in client.containers.runs] == [True, False, False]
    assert runtime.disk_quota_supported(client) is False


def test_other_engine_errors_are_not_taken_for_a_refusal():
    class Failing(FakeContainers):
        def run(self, **spec):
            raise APIError("500 Server Error", explanation="no such image")

    client = FakeClient("overlay2", "xfs")
    client.containers = Failing(refuse=False)
    with pytest.raises(APIError):
        runtime._run(client, spec(), networks=())
    assert runtime.disk_quota_supported(client) is True


def listed(cid: str, process: str, size: int | None) -> dict:
    return {"Id": cid, "Names": [f"/slipway-shop-{process}-v3-{cid}"], "Created": 1_700_000_000,
            "Labels": {runtime.LABEL_INSTANCE: "i1", runtime.LABEL_APP: "u1",
                       runtime.LABEL_RELEASE: "7", runtime.LABEL_PROCESS: process},
            "SizeRw": size}


def test_over_disk_limit_lists_running_containers_with_their_size():
    client = FakeClient(listed=[listed("a", "web", 10), listed("b", "web", 11),
                                listed("c", "worker", None)])
    assert [c["Id"] for c in runtime.over_disk_limit(client, "i1", 10)] == ["b"]
    assert client.api.calls == [
        ("containers", {"filters": {"label": ["slipway.instance=i1"]}, "size": True})]


class FakeRedis:
    """The list commands ``record_over_disk`` and ``removed_over_disk`` use."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {}
        self.ttl: dict[str, int] = {}

    def pipeline(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def lpush(self, key, value):
        self.lists.setdefault(key, []).insert(0, value)

    def ltrim(self, key, start, end):
        self.lists[key] = self.lists[key][start:end + 1]

    def expire(self, key, seconds):
        self.ttl[key] = seconds

    def execute(self):
        return []

    def lrange(self, key, start, end):
        return self.lists.get(key, [])[start:end + 1]


def test_reconcile_removes_a_long_running_container_over_the_limit_and_kills_a_one_off():
    settings = Settings(instance="i1", container_disk="64m")
    client = FakeClient(listed=[listed("w", "web", 64 * 1024 ** 2 + 1),
                                listed("r", "run", 65 * 1024 ** 2),
                                listed("ok", "web", 64 * 1024 ** 2)])
    redis_client = FakeRedis()
    assert reconcile.remove_over_disk(client, settings, redis_client) == ["w", "r"]
    assert client.api.calls[1:] == [("stop", "w", 0), ("remove", "w"), ("kill", "r")]
    # Each stays visible in `ps` for an hour, with the reason.
    rows = ps.removed_over_disk(redis_client, settings, "u1", {"7": 3})
    assert [row["name"] for row in rows] == ["slipway-shop-run-v3-r", "slipway-shop-web-v3-w"]
    assert rows[1] == {
        "type": "web", "name": "slipway-shop-web-v3-w", "state": "exited",
        "status": rows[1]["status"], "release": 3, "created_at": "2023-11-14T22:13:20+00:00",
        "restarts": 0, "exit_code": None, "last_logs": [],
    }
    assert rows[1]["status"].startswith("Removed ")
    assert rows[1]["status"].endswith(
        " UTC: wrote more than 64 MiB to its filesystem (SLIPWAY_CONTAINER_DISK)")
    assert redis_client.ttl == {"slipway:i1:over-disk:u1": ps.OVER_DISK_TTL}


def test_ps_keeps_the_last_few_removals_per_app():
    settings = Settings(instance="i1")
    redis_client = FakeRedis()
    for n in range(ps.OVER_DISK_KEEP + 2):
        ps.record_over_disk(redis_client, settings, listed(f"c{n}", "web", 1), "why")
    stored = [json.loads(e)["name"] for e in redis_client.lists["slipway:i1:over-disk:u1"]]
    assert stored == [f"slipway-shop-web-v3-c{n}" for n in range(6, 1, -1)]
