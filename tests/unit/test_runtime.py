from slipway.platform.runtime import address, container_spec, network_name


def spec(**overrides):
    args = dict(instance="i1", app="shop", release_id=7, version=3, process="web",
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
                   "slipway.release": "7", "slipway.process": "web"},
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
