"""Which base image a build starts FROM, given what this Docker host has.

``choose_image`` is pure; ``resolve_base_image`` asks Docker two cheap
questions (does this image exist, which bootstrap images are there) and runs
on every push.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import docker
import requests
from docker.errors import DockerException, ImageNotFound

from slipway.builder.plan import BuildError
from slipway.builder.semver import RangeError, admits_major

_MINOR_TAG_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\Z")
_LANGUAGE_NAMES = {"python": "Python", "node": "Node.js"}


def template_image(template: str, version: str) -> str:
    """The template with ``{version}`` replaced ("python:{version}-slim" -> "python:3.12-slim")."""
    # Not str.format: an operator's template may hold other braces.
    return template.replace("{version}", version)


def choose_image(
    available: Iterable[str],
    wanted: str,
    *,
    repository: str,
    language: str = "python",
    requested: bool = True,
) -> tuple[str, list[str]] | None:
    """Pick one of the bootstrap images ``available`` (references such as "slipway/python:3.11").

    Only ``{repository}/{language}:MAJOR.MINOR`` references count. Picks the
    ``wanted`` "MAJOR.MINOR" exactly, else the nearest higher minor of the
    same major, else the highest version there is; returns the reference and
    notes saying which and why, or None if there is none. ``requested`` is
    false when ``wanted`` is only the default version (the notes say so).
    """
    prefix = f"{repository}/{language}:"
    versions: dict[tuple[int, int], str] = {}
    for reference in available:
        if not reference.startswith(prefix):
            continue
        match = _MINOR_TAG_RE.match(reference[len(prefix):])
        if match:
            versions[(int(match["major"]), int(match["minor"]))] = reference
    if not versions:
        return None
    name = _LANGUAGE_NAMES.get(language, language)
    wanted_version = _parse(wanted)
    if wanted_version in versions:
        reference = versions[wanted_version]
        return reference, [f"Using {reference} (built by `slipway images bootstrap`)"]
    higher = sorted(
        v for v in versions
        if wanted_version is not None and v[0] == wanted_version[0] and v[1] > wanted_version[1]
    )
    chosen = higher[0] if higher else max(versions)
    reference = versions[chosen]
    what = f"{name} {wanted} {'requested' if requested else 'is the default'}"
    return reference, [f"{what}; this host has {chosen[0]}.{chosen[1]}: using {reference}"]


def resolve_base_image(
    client: docker.DockerClient,
    template: str,
    version: str | None,
    default_version: str,
    bootstrap_repository: str,
    language: str = "python",
) -> tuple[str, list[str]]:
    """The base image for a build, and notes for the build log.

    In order: the ``template`` image for ``version`` (or ``default_version``)
    if this host has it; else the best ``{bootstrap_repository}/{language}``
    image (see ``choose_image``); else the template image, which Docker pulls
    where a registry answers. Raises BuildError if Docker cannot be asked.
    """
    if language == "node":
        return _resolve_node(client, template, version, default_version, bootstrap_repository)
    wanted = version or default_version
    name = _LANGUAGE_NAMES.get(language, language)
    candidate = template_image(template, wanted)
    try:
        if _exists(client, candidate):
            return candidate, [f"Using {candidate}"]
        references = [
            tag
            for image in client.images.list(name=f"{bootstrap_repository}/{language}")
            for tag in image.tags
        ]
    except (DockerException, requests.RequestException) as exc:
        raise BuildError(f"Could not ask the Docker engine for images: {exc}") from None
    chosen = choose_image(
        references, wanted, repository=bootstrap_repository, language=language,
        requested=version is not None,
    )
    if chosen is not None:
        return chosen
    return candidate, [
        f"{candidate} is not on this host: Docker will pull it "
        f"(on hosts without a registry, run `slipway images bootstrap` for a local {name} image)"
    ]


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

_MAJOR_TAG_RE = re.compile(r"^(?P<major>\d+)\Z")
# Node majors an operator may have as template images ("node:22-slim"), newest
# first; asked about only when they meet the app's range.
KNOWN_NODE_MAJORS = (24, 22, 20, 18)


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
        try:
            meets = [major for major in majors if admits_major(engines, major)]
        except RangeError as exc:
            raise BuildError(
                f'engines.node "{engines}" in package.json is not a version range ({exc}): '
                'write one such as ">=18" or "20.x"'
            ) from None
    if default in meets:
        return default
    return meets[0] if meets else None


def _resolve_node(
    client: docker.DockerClient,
    template: str,
    engines: str | None,
    default_version: str,
    repository: str,
) -> tuple[str, list[str]]:
    """resolve_base_image for Node: ``engines`` is an npm range, images are per major.

    A template image this host has wins, then a bootstrap image
    ``{repository}/node:MAJOR``; with neither, the template image for the
    chosen major (Docker pulls it). Raises BuildError when the range is met by
    no image this host has ('engines.node ">=22" cannot be met: this host has
    Node 18, 20').
    """
    default = int(default_version) if default_version.isdigit() else 20
    why = f'engines.node "{engines}"' if engines is not None else f"Node {default} is the default"
    try:
        bootstrap = {}
        for image in client.images.list(name=f"{repository}/node"):
            for tag in image.tags:
                match = _MAJOR_TAG_RE.match(tag.removeprefix(f"{repository}/node:"))
                if tag.startswith(f"{repository}/node:") and match:
                    bootstrap[int(match["major"])] = tag
        templates = {
            major: template_image(template, str(major))
            for major in {*KNOWN_NODE_MAJORS, default, *bootstrap}
        }
        present = {major: ref for major, ref in templates.items() if _exists(client, ref)}
    except (DockerException, requests.RequestException) as exc:
        raise BuildError(f"Could not ask the Docker engine for images: {exc}") from None

    for available in (present, bootstrap):
        major = choose_node_major(available, engines, default)
        if major is not None:
            return available[major], [f"Using {available[major]} ({why})"]
    if present or bootstrap:
        have = ", ".join(str(m) for m in sorted({*present, *bootstrap}))
        raise BuildError(f'engines.node "{engines}" cannot be met: this host has Node {have}')
    major = choose_node_major(templates, engines, default)
    if major is None:
        raise BuildError(
            f'engines.node "{engines}" cannot be met: Slipway knows Node '
            f"{', '.join(str(m) for m in sorted(templates))}"
        )
    return templates[major], [
        f"{templates[major]} is not on this host: Docker will pull it "
        "(on hosts without a registry, run `slipway images bootstrap` for a local Node.js image)"
    ]
