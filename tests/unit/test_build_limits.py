import pytest
from docker.errors import APIError

from slipway.builder.limits import BuildLimits, Limits, _Cgroup, parse_size
from slipway.platform import runtime

LIMITS = Limits(memory=64 * 2**20, cpus=1.5, pids=32)


@pytest.mark.parametrize(("text", "size"), [("512", 512), ("2k", 2048), ("64m", 64 * 2**20),
                                            ("2G", 2 * 2**30)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5g", "-1m", "1t", "g"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def cgroup_v1(tmp_path, *, memory_peak: int, pids_peak: int) -> _Cgroup:
    dirs = {c: tmp_path / c for c in ("memory", "pids", "cpu")}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    (dirs["memory"] / "memory.max_usage_in_bytes").write_text(f"{memory_peak}\n")
    (dirs["pids"] / "pids.peak").write_text(f"{pids_peak}\n")
    return _Cgroup(dirs, "/slipway-builds-x/y", unified=False)


def test_the_limits_a_build_reached_are_named_with_their_settings(tmp_path):
    confined = BuildLimits({}, None, cgroup_v1(tmp_path, memory_peak=64 * 2**20, pids_peak=32))
    assert confined.reached(LIMITS) == {
        "memory": "its memory limit (64 MB, SLIPWAY_BUILD_MEMORY)",
        "pids": "its process limit (32 processes, SLIPWAY_BUILD_PIDS)",
    }
    below = BuildLimits({}, None, cgroup_v1(tmp_path / "b", memory_peak=1, pids_peak=31))
    assert below.reached(LIMITS) == {}
    assert BuildLimits({}, "note", None).reached(LIMITS) == {}


class RacingClient:
    """Docker answering as when another caller removes the same container."""

    class api:  # noqa: N801 - the shape of DockerClient.api
        @staticmethod
        def stop(container_id, timeout):
            pass

        @staticmethod
        def remove_container(container_id, v, force):
            raise APIError("409 Client Error", response=type("R", (), {"status_code": 409})(),
                           explanation=f"removal of container {container_id} is already in "
                                       "progress")


def test_removing_a_container_someone_else_is_removing_counts_as_removed():
    runtime.remove(RacingClient(), "abc", stop_timeout=0)
