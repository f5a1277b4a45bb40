from __future__ import annotations

from types import SimpleNamespace

import pytest
from docker.errors import APIError, ImageNotFound

from slipway.builder import images
from slipway.builder.images import (
    OnDemand,
    choose_python_version,
    python_listing,
    resolve_base_image,
    resolve_base_images,
    template_image,
)
from slipway.builder.plan import BuildError

HOST = [(3, 11), (3, 13), (3, 14)]
LISTING = "Python 3.11, 3.13, 3.14 (3.10 and 3.12 get 3.11 and 3.13)"


@pytest.mark.parametrize(
    ("wanted", "expected", "notes"),
    [
        ("3.14", (3, 14), []),
        ("3.11", (3, 11), []),
        ("3.12", (3, 13), ["Python 3.12 requested; this host has no 3.12: using the nearest "
                           "newer, 3.13"]),
        ("3.10", (3, 11), ["Python 3.10 requested; this host has no 3.10: using the nearest "
                           "newer, 3.11"]),
    ],
)
def test_choose_python_version_exact_or_the_nearest_newer_minor(wanted, expected, notes):
    assert choose_python_version(HOST, wanted, request=f".python-version asks for {wanted}") == (
        expected, notes)


@pytest.mark.parametrize(
    ("request_", "wanted", "message"),
    [
        ("runtime.txt asks for python-3.7.3", "3.7",
         f"runtime.txt asks for python-3.7.3, which reached its end of life: this host builds "
         f"{LISTING}"),
        (".python-version asks for 3.9", "3.9",
         f".python-version asks for 3.9, which reached its end of life: this host builds "
         f"{LISTING}"),
        ("runtime.txt asks for python-2.7.18", "2.7",
         f"runtime.txt asks for python-2.7.18, which reached its end of life: this host builds "
         f"{LISTING}"),
        # Never an older one: 3.15 is not given 3.14.
        (".python-version asks for 3.15", "3.15",
         f".python-version asks for 3.15, which this host cannot build: it builds {LISTING}"),
        (".python-version asks for 4.0", "4.0",
         f".python-version asks for 4.0, which this host cannot build: it builds {LISTING}"),
        (None, "3.8",
         "SLIPWAY_PYTHON_DEFAULT_VERSION asks for Python 3.8, which reached its end of life: "
         f"this host builds {LISTING}"),
    ],
)
def test_versions_the_host_cannot_give_are_refused_naming_what_it_can(request_, wanted, message):
    with pytest.raises(BuildError) as info:
        choose_python_version(HOST, wanted, request=request_)
    assert info.value.message == message


def test_python_listing():
    assert python_listing(HOST) == LISTING
    assert python_listing([(3, 13)]) == "Python 3.13 (3.10, 3.11 and 3.12 get 3.13)"
    assert python_listing([(3, 11), (3, 12)]) == "Python 3.11, 3.12 (3.10 gets 3.11)"


def test_template_image_leaves_other_braces_alone():
    assert template_image("python:{version}-slim", "3.12") == "python:3.12-slim"
    assert template_image("registry:5000/py{x}:{version}", "3.11") == "registry:5000/py{x}:3.11"


class FakeImages:
    def __init__(self, local: list[str], error: Exception | None = None) -> None:
        self.local = local
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def get(self, name: str):
        self.calls.append(("get", name))
        if self.error:
            raise self.error
        if name not in self.local:
            raise ImageNotFound(f"No such image: {name}")
        return SimpleNamespace(tags=[name])

    def list(self, name: str):
        self.calls.append(("list", name))
        repo = name + ":"
        return [SimpleNamespace(tags=[tag]) for tag in self.local if tag.startswith(repo)]


def client(local: list[str], error: Exception | None = None) -> SimpleNamespace:
    return SimpleNamespace(images=FakeImages(local, error))


def resolve(c, version, *, on_demand=None, request=None):
    return resolve_base_images(c, "python:{version}-slim", "python:{version}", version, "3.14",
                               "slipway", request=request, on_demand=on_demand)


BOOTSTRAPPED = ["slipway/python:3.11", "slipway/python:3.11-build", "slipway/python:3.13",
                "slipway/python:3.13-build", "slipway/python:3.14", "slipway/python:3.14-build"]


def test_template_images_first_when_present():
    c = client(["python:3.11-slim", "slipway/python:3.11"])
    assert resolve(c, "3.11") == ("python:3.11-slim", "python:3.11", ["Using python:3.11-slim"])
    assert c.images.calls == [("get", "python:3.11-slim")]


def test_default_version_when_none_requested():
    assert resolve(client(BOOTSTRAPPED), None) == (
        "slipway/python:3.14", "slipway/python:3.14-build",
        ["Using slipway/python:3.14 (built by `slipway images bootstrap`)"])


def test_bootstrap_images_when_the_template_is_missing():
    c = client(BOOTSTRAPPED)
    assert resolve(c, "3.12", request=".python-version asks for 3.12") == (
        "slipway/python:3.13", "slipway/python:3.13-build",
        ["Python 3.12 requested; this host has no 3.12: using the nearest newer, 3.13",
         "Using slipway/python:3.13 (built by `slipway images bootstrap`)"],
    )
    assert c.images.calls == [("get", "python:3.12-slim"), ("list", "slipway/python")]


def test_end_of_life_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(images, "_build_on_demand", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(BuildError) as info:
        resolve(client(["slipway/python:3.14"]), "3.7",
                request="runtime.txt asks for python-3.7.3",
                on_demand=OnDemand(mirror="http://m", log=print))
    assert info.value.message == (
        f"runtime.txt asks for python-3.7.3, which reached its end of life: this host builds "
        f"{LISTING}")


def test_a_version_the_host_can_build_is_built_on_demand(monkeypatch):
    built = []
    monkeypatch.setattr(images, "_build_on_demand",
                        lambda client, kinds, repository, on_demand, what: built.append(
                            (kinds, what)))
    on_demand = OnDemand(mirror="http://m", log=print)
    run, build, _ = resolve(client(["slipway/python:3.14", "slipway/python:3.14-build"]), "3.10",
                            on_demand=on_demand)
    assert (run, build) == ("slipway/python:3.11", "slipway/python:3.11-build")
    assert built == [(["python3.11-build"], "Python 3.11")]
    built.clear()
    resolve(client(BOOTSTRAPPED), "3.13", on_demand=on_demand)
    assert built == []  # there already


def test_a_runtime_image_made_before_build_images_installs_on_itself():
    run, build, notes = resolve(client(["slipway/python:3.11"]), "3.11")
    assert (run, build) == ("slipway/python:3.11", "slipway/python:3.11")
    assert notes[0].startswith("slipway/python:3.11-build is not on this host: installing on ")


def test_template_name_when_nothing_is_local():
    run, build, notes = resolve(client([]), None)
    assert (run, build) == ("python:3.14-slim", "python:3.14")
    assert notes == [
        "python:3.14-slim is not on this host: Docker will pull it (on hosts without a "
        "registry, run `slipway images bootstrap` for a local Python image)"
    ]


def test_resolve_base_image_is_the_run_image_alone():
    assert resolve_base_image(client(BOOTSTRAPPED), "python:{version}-slim", None, "3.13",
                              "slipway") == (
        "slipway/python:3.13", ["Using slipway/python:3.13 (built by `slipway images bootstrap`)"])


def test_docker_errors_become_build_errors():
    with pytest.raises(BuildError, match="Could not ask the Docker engine for images: "):
        resolve(client([], APIError("boom")), "3.12")
