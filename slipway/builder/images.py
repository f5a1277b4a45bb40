"""Which images a build starts FROM, given what this Docker host has or can build.

A build has two: the run image (the app's final stage) and the build image
(its install stage, with compilers and headers). ``choose_python_version``
and ``choose_node_major`` are pure; ``resolve_base_images`` asks Docker a few
cheap questions on every push and, when the runtime an app asks for is one
``slipway images bootstrap`` can make but has not made yet, builds it while
the push waits (``OnDemand``), its progress in the build log.
"""

from __future__ import annotations

import fcntl
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from slipway.builder import bootstrap
from slipway.builder.plan import BuildError
from slipway.builder.semver import RangeError, admits_major

_MINOR_TAG_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\Z")
_LANGUAGE_NAMES = {"python": "Python", "node": "Node.js"}
# The newest release past its end of life: older or equal is refused, not built.
PYTHON_END_OF_LIFE = (3, 9)
NODE_END_OF_LIFE = 18
# Where concurrent pushes wait for one on-demand image build.
LOCK_FILE = Path(tempfile.gettempdir()) / "slipway-bootstrap.lock"


class BaseImages(NamedTuple):
    """The images of one build and notes for the build log."""

    run: str
    build: str
    notes: list[str]


@dataclass(frozen=True)
class OnDemand:
    """How to build a missing bootstrap image while a push waits (see bootstrap.py)."""

    mirror: str
    log: Callable[[str], None]
    security_mirror: str = bootstrap.DEFAULT_SECURITY_MIRROR


def template_image(template: str, version: str) -> str:
    """The template with ``{version}`` replaced ("python:{version}-slim" -> "python:3.12-slim")."""
    # Not str.format: an operator's template may hold other braces.
    return template.replace("{version}", version)


def bootstrap_python_versions() -> list[tuple[int, int]]:
    """The Python versions ``slipway images bootstrap`` builds, oldest first."""
    return sorted(v for v in map(_parse, bootstrap.PYTHON_BUILDS) if v is not None)


def bootstrap_node_majors() -> list[int]:
    """The Node majors ``slipway images bootstrap`` builds, oldest first."""
    return sorted(int(tag) for tag in bootstrap.NODE_BUILDS)


def python_listing(versions: Iterable[tuple[int, int]]) -> str:
    """What a host offers, in words: "Python 3.11, 3.13, 3.14 (3.10 and 3.12 get 3.11
    and 3.13)"; the minors in brackets are those past end of life or missing that a
    request still gets a newer one of."""
    have = sorted(set(versions))
    text = "Python " + ", ".join(f"{a}.{b}" for a, b in have)
    gaps = []
    for major in sorted({a for a, _ in have}):
        first = PYTHON_END_OF_LIFE[1] + 1 if major == PYTHON_END_OF_LIFE[0] else 0
        for minor in range(first, max(b for a, b in have if a == major)):
            if (major, minor) not in have:
                gaps.append(((major, minor), min(h for h in have if h > (major, minor))))
    if gaps:
        asked = _and([f"{a}.{b}" for (a, b), _ in gaps])
        targets = [f"{a}.{b}" for _, (a, b) in gaps]
        given = targets[0] if len(set(targets)) == 1 else _and(targets)
        text += f" ({asked} {'get' if len(gaps) > 1 else 'gets'} {given})"
    return text


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def choose_python_version(
    offered: Iterable[tuple[int, int]], wanted: str, *, request: str | None,
) -> tuple[tuple[int, int], list[str]]:
    """The Python version to build with, out of ``offered``, for ``wanted`` ("3.12").

    ``wanted`` exactly, else the nearest newer minor of the same major, with a
    note; never an older one. ``request`` says where ``wanted`` came from
    ("runtime.txt asks for python-3.7.3"), None for the default. Raises
    BuildError naming what the app can have for a version past its end of
    life, older than any offered, newer than any offered, or unreadable.
    """
    have = sorted(set(offered))
    if not have:
        raise BuildError("This host builds no Python: run `slipway images bootstrap`")
    wanted_version = _parse(wanted)
    asked = request or f"SLIPWAY_PYTHON_DEFAULT_VERSION asks for Python {wanted}"
    listing = python_listing(have)
    if wanted_version is None:
        raise BuildError(f"{asked}, which is not a Python version: this host builds {listing}")
    if wanted_version <= PYTHON_END_OF_LIFE:
        raise BuildError(f"{asked}, which reached its end of life: this host builds {listing}")
    if wanted_version in have:
        return wanted_version, []
    newer = [v for v in have if v[0] == wanted_version[0] and v > wanted_version]
    if not newer:
        raise BuildError(f"{asked}, which this host cannot build: it builds {listing}")
    chosen = newer[0]
    what = f"Python {wanted} requested" if request else f"Python {wanted} is the default"
    return chosen, [f"{what}; this host has no {wanted}: using the nearest newer, "
                    f"{chosen[0]}.{chosen[1]}"]


def resolve_base_images(
    client: docker.DockerClient,
    template: str,
    build_template: str,
    version: str | None,
    default_version: str,
    bootstrap_repository: str,
    language: str = "python",
    *,
    request: str | None = None,
    on_demand: OnDemand | None = None,
) -> BaseImages:
    """The run and build images for a build, and notes for the build log.

    In order: the ``template`` image (run) and ``build_template`` image
    (build) for the version if this host has the run one; else the
    ``{bootstrap_repository}/{language}:V`` and ``:V-build`` images for the
    version chosen (see ``choose_python_version``, ``choose_node_major``),
    built now with ``on_demand`` when they are missing; else, without
    ``on_demand``, the template images (Docker pulls them where a registry
    answers). ``version`` is the app's request (a Python "3.12", an npm range
    for Node), ``request`` says where it came from, for messages. Raises
    BuildError for a version this host cannot give, a failed on-demand build,
    or a Docker engine that cannot be asked.
    """
    if language == "node":
        return _resolve_node(client, template, build_template, version, default_version,
                             bootstrap_repository, on_demand)
    wanted = version or default_version
    name = _LANGUAGE_NAMES.get(language, language)
    candidate = template_image(template, wanted)
    build_candidate = template_image(build_template, wanted)
    try:
        if _exists(client, candidate):
            return BaseImages(candidate, build_candidate, [f"Using {candidate}"])
        present = _bootstrap_tags(client, bootstrap_repository, language)
    except (DockerException, requests.RequestException) as exc:
        raise BuildError(f"Could not ask the Docker engine for images: {exc}") from None
    buildable = set(bootstrap_python_versions())
    offered = {v for v in (_parse(tag) for tag in present) if v is not None}
    if on_demand is not None:
        offered |= buildable
    if not offered:
        return BaseImages(candidate, build_candidate, [
            f"{candidate} is not on this host: Docker will pull it "
            f"(on hosts without a registry, run `slipway images bootstrap` for a local "
            f"{name} image)"
        ])
    if request is None and version is not None:
        request = f"Python {version} is asked for"
    chosen, notes = choose_python_version(offered, wanted, request=request)
    tag = f"{chosen[0]}.{chosen[1]}"
    run = f"{bootstrap_repository}/{language}:{tag}"
    build = f"{run}-build"
    missing = [ref for ref in (run, build) if ref.split(":", 1)[1] not in present]
    if missing:
        if on_demand is None or chosen not in buildable:
            if f"{tag}-build" not in present and tag in present:
                # Made before build images existed: install and run on the same image.
                notes.append(f"{build} is not on this host: installing on {run} (run "
                             f"`slipway images bootstrap --kind {language}{tag}-build` "
                             "to build packages from source)")
                return BaseImages(run, run, [*notes, f"Using {run}"])
            raise BuildError(f"Python {tag} needs {', '.join(missing)}, which this host has not "
                             f"built: run `slipway images bootstrap --kind {language}{tag}-build`")
        _build_on_demand(client, [f"{language}{tag}-build"], bootstrap_repository, on_demand,
                         what=f"Python {tag}")
    return BaseImages(run, build, [*notes, f"Using {run} (built by `slipway images bootstrap`)"])


def resolve_base_image(
    client: docker.DockerClient,
    template: str,
    version: str | None,
    default_version: str,
    bootstrap_repository: str,
    language: str = "python",
) -> tuple[str, list[str]]:
    """The run image alone, for callers that install on it too (see ``resolve_base_images``)."""
    images = resolve_base_images(client, template, template, version, default_version,
                                 bootstrap_repository, language)
    return images.run, images.notes


def _build_on_demand(client: docker.DockerClient, kinds: list[str], repository: str,
                     on_demand: OnDemand, *, what: str) -> None:
    """Build ``kinds`` (and what they start FROM) now, one push at a time."""
    log = on_demand.log
    log(f"       {what} is not built on this host yet: building it now (once; a few minutes)")
    LOCK_FILE.touch(exist_ok=True)
    with open(LOCK_FILE) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another push may be building the same image
        try:
            with tempfile.TemporaryDirectory(prefix="slipway-bootstrap-", dir="/var/tmp") as work:
                bootstrap.bootstrap_images(
                    client, repository=repository, mirror=on_demand.mirror,
                    security_mirror=on_demand.security_mirror, workdir=Path(work),
                    log=lambda line: log(f"       {line}"), kinds=kinds,
                )
        except bootstrap.BootstrapError as exc:
            raise BuildError(
                f"Building the {what} image failed: {exc.message}\n"
                f"Run `slipway images bootstrap --kind {kinds[0]}` on the host to see why"
            ) from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _bootstrap_tags(client: docker.DockerClient, repository: str, language: str) -> set[str]:
    """The tags of ``{repository}/{language}`` images this host has ("3.11", "3.11-build")."""
    prefix = f"{repository}/{language}:"
    return {
        tag[len(prefix):]
        for image in client.images.list(name=f"{repository}/{language}")
        for tag in image.tags
        if tag.startswith(prefix)
    }


def _exists(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
    except ImageNotFound:
        return False
    return True


def _parse(version: str) -> tuple[int, int] | None:
    match = _MINOR_TAG_RE.match(version)
    return (int(match["major"]), int(match["minor"])) if match else None


# ------------------------------------------------------------------------ Node

# Node majors an operator may have as template images ("node:22-slim"), newest
# first; asked about only when they meet the app's range.
KNOWN_NODE_MAJORS = (24, 22, 20)


def choose_node_major(majors: Iterable[int], engines: str | None, default: int) -> int | None:
    """The Node major to build with, out of ``majors``, for the ``engines.node`` range.

    The ``default`` major when it meets the range (or there is no range),
    else the highest major that does; None when none does. Raises BuildError
    for a range that cannot be read.
    """
    majors = sorted(set(majors), reverse=True)
    if engines is None:
        meets = majors
    else:
        meets = [major for major in majors if _admits(engines, major)]
    if default in meets:
        return default
    return meets[0] if meets else None


def _admits(engines: str, major: int) -> bool:
    try:
        return admits_major(engines, major)
    except RangeError as exc:
        raise BuildError(
            f'engines.node "{engines}" in package.json is not a version range ({exc}): '
            'write one such as ">=20" or "22.x"'
        ) from None


def node_refusal(engines: str, offered: Iterable[int]) -> str:
    """Why no Node this host offers meets ``engines``: past its end of life, or not offered."""
    have = ", ".join(str(m) for m in sorted(set(offered)))
    old = [major for major in range(NODE_END_OF_LIFE + 1) if _admits(engines, major)]
    if old:
        return (f'engines.node "{engines}" asks for Node {old[-1]}, which reached its end of '
                f"life: this host builds Node {have}")
    return f'engines.node "{engines}" cannot be met: this host builds Node {have}'


def _resolve_node(
    client: docker.DockerClient,
    template: str,
    build_template: str,
    engines: str | None,
    default_version: str,
    repository: str,
    on_demand: OnDemand | None,
) -> BaseImages:
    """resolve_base_images for Node: ``engines`` is an npm range, images are per major.

    A template image this host has wins, then a bootstrap image
    ``{repository}/node:MAJOR`` this host has or (with ``on_demand``) can
    build; with neither, the template image for the chosen major (Docker
    pulls it). Majors past their end of life are never chosen. Raises
    BuildError when the range is met by none ('engines.node ">=26" cannot be
    met: this host builds Node 20, 22, 24').
    """
    default = int(default_version) if default_version.isdigit() else 24
    why = f'engines.node "{engines}"' if engines is not None else f"Node {default} is the default"
    try:
        tags = _bootstrap_tags(client, repository, "node")
        bootstrap_have = {int(t) for t in tags if t.isdigit() and int(t) > NODE_END_OF_LIFE}
        templates = {
            major: template_image(template, str(major))
            for major in {*KNOWN_NODE_MAJORS, default, *bootstrap_have}
        }
        present = {major: ref for major, ref in templates.items() if _exists(client, ref)}
    except (DockerException, requests.RequestException) as exc:
        raise BuildError(f"Could not ask the Docker engine for images: {exc}") from None

    major = choose_node_major(present, engines, default)
    if major is not None:
        build = template_image(build_template, str(major))
        return BaseImages(present[major], build, [f"Using {present[major]} ({why})"])
    buildable = set(bootstrap_node_majors()) if on_demand is not None else set()
    offered = bootstrap_have | buildable
    if offered:
        major = choose_node_major(offered, engines, default)
        if major is None:
            raise BuildError(node_refusal(engines or "", offered | set(present)))
        run = f"{repository}/node:{major}"
        build = f"{run}-build"
        missing = [ref for ref in (run, build) if ref.split(":", 1)[1] not in tags]
        notes = [f"Using {run} ({why})"]
        if missing:
            if major not in buildable:
                if f"{major}-build" not in tags:
                    return BaseImages(run, run, [
                        *notes, f"{build} is not on this host: installing on {run} (run "
                        f"`slipway images bootstrap --kind node{major}-build` to build addons)"])
            else:
                _build_on_demand(client, [f"node{major}-build"], repository, on_demand,
                                 what=f"Node {major}")
        return BaseImages(run, build, notes)
    major = choose_node_major(templates, engines, default)
    if major is None:
        raise BuildError(node_refusal(engines or "", templates))
    return BaseImages(templates[major], template_image(build_template, str(major)), [
        f"{templates[major]} is not on this host: Docker will pull it "
        "(on hosts without a registry, run `slipway images bootstrap` for a local Node.js image)"
    ])
