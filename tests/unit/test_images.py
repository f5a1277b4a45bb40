from __future__ import annotations

from types import SimpleNamespace

import pytest
from docker.errors import APIError, ImageNotFound

from slipway.builder.images import choose_image, resolve_base_image, template_image
from slipway.builder.plan import BuildError

BOOT = ["slipway/python:3.11", "slipway/python:3.13", "slipway/python:latest",
        "slipway/python:3.12.1", "other/python:3.12", "slipway/node:3.12", "slipway/python:2.7"]


@pytest.mark.parametrize(
    ("available", "wanted", "expected"),
    [
        (BOOT, "3.11", "slipway/python:3.11"),
        (BOOT, "3.12", "slipway/python:3.13"),  # nearest higher minor of the same major
        (BOOT, "3.10", "slipway/python:3.11"),
        (BOOT, "3.14", "slipway/python:3.13"),  # none higher: the highest there is
        (BOOT, "4.0", "slipway/python:3.13"),
        (BOOT, "2.6", "slipway/python:2.7"),
        (["slipway/python:3.9", "slipway/python:3.10"], "3.12", "slipway/python:3.10"),
        (BOOT, "garbage", "slipway/python:3.13"),
    ],
)
def test_choose_image(available, wanted, expected):
    chosen = choose_image(available, wanted, repository="slipway")
    assert chosen is not None
    assert chosen[0] == expected


def test_choose_image_notes():
    assert choose_image(BOOT, "3.11", repository="slipway") == (
        "slipway/python:3.11", ["Using slipway/python:3.11 (built by `slipway images bootstrap`)"]
    )
    assert choose_image(["slipway/python:3.11"], "3.12", repository="slipway") == (
        "slipway/python:3.11",
        ["Python 3.12 requested; this host has 3.11: using slipway/python:3.11"],
    )
    assert choose_image(["slipway/python:3.11"], "3.12", repository="slipway", requested=False) == (
        "slipway/python:3.11",
        ["Python 3.12 is the default; this host has 3.11: using slipway/python:3.11"],
    )


@pytest.mark.parametrize(
    "available",
    [[], ["slipway/python:latest", "slipway/python:3"], ["other/python:3.11"],
     ["slipway/node:20.1"], ["slipway/python:3.11-slim"]],
)
def test_choose_image_without_candidates(available):
    assert choose_image(available, "3.12", repository="slipway") is None


def test_choose_image_other_language_and_repository():
    assert choose_image(["acme/node:18.2", "acme/node:20.11"], "20.11", repository="acme",
                        language="node")[0] == "acme/node:20.11"


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


def resolve(c, version):
    return resolve_base_image(c, "python:{version}-slim", version, "3.12", "slipway")


def test_template_image_first_when_present():
    c = client(["python:3.11-slim", "slipway/python:3.11"])
    assert resolve(c, "3.11") == ("python:3.11-slim", ["Using python:3.11-slim"])
    assert c.images.calls == [("get", "python:3.11-slim")]


def test_default_version_when_none_requested():
    c = client(["python:3.12-slim"])
    assert resolve(c, None) == ("python:3.12-slim", ["Using python:3.12-slim"])


def test_bootstrap_image_when_template_missing():
    c = client(["slipway/python:3.11"])
    assert resolve(c, "3.12") == (
        "slipway/python:3.11",
        ["Python 3.12 requested; this host has 3.11: using slipway/python:3.11"],
    )
    assert c.images.calls == [("get", "python:3.12-slim"), ("list", "slipway/python")]


def test_template_name_when_nothing_is_local():
    image, notes = resolve(client([]), None)
    assert image == "python:3.12-slim"
    assert notes == [
        "python:3.12-slim is not on this host: Docker will pull it (on hosts without a registry, "
        "run `slipway images bootstrap` for a local Python image)"
    ]


def test_docker_errors_become_build_errors():
    with pytest.raises(BuildError, match="Could not ask the Docker engine for images: "):
        resolve(client([], APIError("boom")), "3.12")
