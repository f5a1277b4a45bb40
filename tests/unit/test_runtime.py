import pytest
from docker.errors import NotFound

from slipway.platform.runtime import (
    UNPRIVILEGED_USER,
    address,
    container_spec,
    is_root,
    network_name,
    run_as,
)


def spec(**overrides):
    args = dict(instance="i1", app="shop", app_name="shop", release_id=7, version=3, process="web",
                image="sha256:abc",
                command="gunicorn --bind 0.0.0.0:$PORT app:app", env={"A": "it's $x"},
                port=5000, memory="512m", cpus=1.0, pids=256, labels={"team": "x"}, suffix="f00")
    args.update(overrides)
    return container_spec(**args)


def test_web_container_spec():
    assert spec() == {
        "image": "sha256:abc",
        "command": ["/bin/sh", "-c", "trap : TERM INT; gunicorn --bind 0.0.0.0:$PORT app:app"],
        "name": "slipway-shop-web-v3-f00",
        "environment": {"A": "it's $x", "PORT": "5000", "TINI_KILL_PROCESS_GROUP": "1"},
        "labels": {"team": "x", "slipway.instance": "i1", "slipway.app": "shop",
                   "slipway.app-name": "shop", "slipway.release": "7", "slipway.process": "web"},
        "ports": {"5000/tcp": ("127.0.0.1", None)},
        "network": "slipway-i1-shop",
        "detach": True,
        "mem_limit": "512m",
        "nano_cpus": 1_000_000_000,
        "pids_limit": 256,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "restart_policy": {"Name": "unless-stopped"},
        "init": True,
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        "tmpfs": {"/tmp": "rw,exec,nosuid,nodev,mode=1777,size=256m",
                  "/var/tmp": "rw,exec,nosuid,nodev,mode=1777,size=256m"},
        "storage_opt": {"size": "1g"},
    }


def test_image_cmd_runs_when_there_is_no_command():
    assert spec(command=None)["command"] is None


def test_port_cannot_be_overridden_by_config():
    assert spec(env={"PORT": "1"})["environment"]["PORT"] == "5000"


def test_sigterm_reaches_the_whole_process_group_whatever_the_config():
    # Docker's init signals the group; the shell waits for the app's graceful exit.
    assert spec(env={"TINI_KILL_PROCESS_GROUP": ""})["environment"][
        "TINI_KILL_PROCESS_GROUP"] == "1"
    assert spec(process="worker", command="python w.py")["command"][2].startswith(
        "trap : TERM INT; ")


def test_only_web_processes_publish_a_port():
    assert spec(process="worker")["ports"] == {}
    assert network_name("i1", "shop") == "slipway-i1-shop"


def test_worker_spec_has_no_port_but_runs_on_the_app_network():
    worker = spec(process="worker", command="python worker.py")
    assert worker["ports"] == {}
    assert worker["network"] == "slipway-i1-shop"
    assert worker["environment"]["PORT"] == "5000"
    assert worker["labels"]["slipway.process"] == "worker"
    assert worker["restart_policy"] == {"Name": "unless-stopped"}


def test_release_container_runs_once_with_the_same_limits():
    release = spec(process="release", command="python manage.py migrate")
    web = spec()
    assert release["command"] == ["/bin/sh", "-c", "trap : TERM INT; python manage.py migrate"]
    assert release["ports"] == {}
    assert release["restart_policy"] == {"Name": "no"}
    for key in ("mem_limit", "nano_cpus", "pids_limit", "security_opt", "cap_drop", "environment"):
        assert release[key] == web[key]


def test_run_container_gets_the_argv_as_it_is():
    run = spec(process="run", command=["sh", "-c", "echo $HOME; exit 3"])
    assert run["command"] == ["sh", "-c", "echo $HOME; exit 3"]
    assert run["labels"]["slipway.process"] == "run"
    assert run["ports"] == {}
    assert run["restart_policy"] == {"Name": "no"}
    assert run["name"] == "slipway-shop-run-v3-f00"


def listed(networks, ports):
    """A container as Docker's list endpoint shows it (the fields ``address`` reads)."""
    return {"NetworkSettings": {"Networks": networks}, "Ports": ports}


def test_address_is_the_ip_on_the_app_network_and_the_published_container_port():
    container = listed(
        {"slipway-i1-shop": {"IPAddress": "172.18.0.5"},
         "slipway-i1-capsule-db": {"IPAddress": "172.19.0.3"}},
        [{"IP": "127.0.0.1", "PrivatePort": 5000, "PublicPort": 32771, "Type": "tcp"},
         {"PrivatePort": 9000, "Type": "tcp"}],  # EXPOSEd by the image, not published
    )
    assert address(container, "slipway-i1-shop") == "172.18.0.5:5000"
    assert address(container, "slipway-i1-capsule-db") == "172.19.0.3:5000"


def test_no_address_without_an_ip_on_the_network_or_a_published_port():
    published = [{"IP": "127.0.0.1", "PrivatePort": 5000, "PublicPort": 32771, "Type": "tcp"}]
    assert address(listed({"other": {"IPAddress": "172.18.0.5"}}, published),
                   "slipway-i1-shop") is None
    # A stopped container keeps its network entry with an empty address.
    assert address(listed({"slipway-i1-shop": {"IPAddress": ""}}, published),
                   "slipway-i1-shop") is None
    assert address(listed({"slipway-i1-shop": {"IPAddress": "172.18.0.5"}}, []),
                   "slipway-i1-shop") is None
    assert address({}, "slipway-i1-shop") is None


# --- What no app container may get (issue 7) -------------------------------------

FORBIDDEN_KEYS = {"privileged", "volumes", "mounts", "devices", "cap_add", "pid_mode",
                  "ipc_mode", "userns_mode", "network_mode", "volumes_from", "device_requests"}


@pytest.mark.parametrize("process", ["web", "worker", "clock", "release", "run"])
@pytest.mark.parametrize("user", [None, UNPRIVILEGED_USER])
def test_no_container_is_privileged_or_gets_the_docker_socket(process, user):
    result = spec(process=process, user=user,
                  env={"DOCKER_HOST": "unix:///var/run/docker.sock", "X": "/var/run"})
    assert FORBIDDEN_KEYS.isdisjoint(result), FORBIDDEN_KEYS & set(result)
    # No host path is mounted: the only filesystems besides the image's are the size-capped
    # tmpfs at /tmp and /var/tmp (memory of the container's own cgroup, no source on the host).
    assert set(result["tmpfs"]) == {"/tmp", "/var/tmp"}
    assert all(",size=256m" in options and "/" not in options
               for options in result["tmpfs"].values())
    assert result["cap_drop"] == ["ALL"]
    assert result["security_opt"] == ["no-new-privileges:true"]
    assert result["pids_limit"] == 256 and result["mem_limit"] == "512m"
    assert result["nano_cpus"] == 1_000_000_000
    assert result["network"] == network_name("i1", "shop")
    # The socket path can reach the container only as a string in its environment.
    without_env = {k: v for k, v in result.items() if k != "environment"}
    assert "docker.sock" not in repr(without_env)
    assert result.get("user") == user


@pytest.mark.parametrize(("user", "root"), [
    ("", True), ("root", True), ("0", True), ("0:0", True), ("root:staff", True),
    (" root ", True), ("10001", False), ("10001:10001", False), ("app", False),
    ("node:node", False), ("1000:0", False),
])
def test_is_root(user, root):
    assert is_root(user) is root


class FakeApi:
    """Docker's image inspection, answering a fixed USER (or that the image is unknown)."""

    def __init__(self, user):
        self.user = user
        self.calls = 0

    def inspect_image(self, image):
        self.calls += 1
        if self.user is None:
            raise NotFound("no such image")
        return {"Config": {"User": self.user}}


class FakeClient:
    def __init__(self, user):
        self.api = FakeApi(user)


@pytest.mark.parametrize(("image_user", "allow_root", "expected"), [
    ("", False, UNPRIVILEGED_USER), ("root", False, UNPRIVILEGED_USER),
    ("10001", False, None), ("app", False, None), (None, False, UNPRIVILEGED_USER),
    ("", True, None), ("root", True, None),
])
def test_root_images_run_unprivileged_unless_allowed(image_user, allow_root, expected):
    client = FakeClient(image_user)
    assert run_as(client, f"sha256:{image_user}-{allow_root}", allow_root) == expected
