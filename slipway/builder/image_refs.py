"""Which images an app's own Dockerfile builds on, and whether it may.

A build runs on a Docker engine shared by every tenant: a ``FROM`` or
``COPY --from`` naming another app's image would read that app's code and
secrets. ``image_references`` reads a Dockerfile as the daemon does (parser
directives, line continuations, global ``ARG`` defaults, stage names) and lists
each image it names; ``refused_reference`` decides one, asking the engine what a
name resolves to there. Allowed: the base images (the bootstrap repository's
and the configured templates'), images from a registry, and the app's own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

import docker
from docker.errors import APIError, NotFound

_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_VARIABLE_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")
_FROM_FLAG_RE = re.compile(r"^--from=(.+)$", re.IGNORECASE)
_MOUNT_FROM_RE = re.compile(r"(?:^|,)from=([^,]+)", re.IGNORECASE)


@dataclass(frozen=True)
class ImageReference:
    line: int  # 1-based, where the instruction starts
    instruction: str  # "FROM", "COPY --from", "RUN --mount"
    reference: str


def image_references(text: str) -> list[ImageReference]:
    """Every image ``text`` names, in order; names of its own stages are left out."""
    references: list[ImageReference] = []
    global_args: dict[str, str] = {}
    stages: list[str] = []  # each stage's name, or "" when it has none

    def is_stage(name: str) -> bool:
        name = name.lower()
        return name in stages or name.isdigit() and int(name) < len(stages)

    for line, instruction in _instructions(text):
        words = _split(instruction)
        if not words:
            continue
        keyword = words[0].upper()
        if keyword == "ONBUILD" and len(words) > 1:
            words, keyword = words[1:], words[1].upper()
        args = words[1:]
        if keyword == "ARG" and not stages:
            for arg in args:
                name, equals, default = arg.partition("=")
                if equals:
                    global_args[name] = default
        elif keyword == "FROM":
            positional = [a for a in args if not a.startswith("--")]
            if not positional:
                continue
            image = _expand(positional[0], global_args)
            if not is_stage(image):
                references.append(ImageReference(line, "FROM", image))
            named = len(positional) >= 3 and positional[1].lower() == "as"
            stages.append(positional[2].lower() if named else "")
        elif keyword in ("COPY", "ADD"):
            for arg in args:
                match = _FROM_FLAG_RE.match(arg)
                if match and not is_stage(match[1]):
                    references.append(ImageReference(line, f"{keyword} --from", match[1]))
        elif keyword == "RUN":
            for arg in args:
                if arg.lower().startswith("--mount="):
                    match = _MOUNT_FROM_RE.search(arg[len("--mount="):])
                    if match and not is_stage(match[1]):
                        references.append(ImageReference(line, "RUN --mount", match[1]))
    return references


def _instructions(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, logical line) of each instruction, continuations joined."""
    escape = "\\"
    lines = text.splitlines()
    # Parser directives: comments of the form `# key=value` before anything else.
    for raw in lines:
        match = _DIRECTIVE_RE.match(raw)
        if not match:
            break
        if match[1].lower() == "escape" and match[2] in ("\\", "`"):
            escape = match[2]
    current: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped
        if not current:
            start = number
        if raw.rstrip().endswith(escape):
            current.append(raw.rstrip()[:-1])
            continue
        current.append(raw)
        yield start, " ".join(current)
        current = []
    if current:
        yield start, " ".join(current)


def _split(instruction: str) -> list[str]:
    try:
        return shlex.split(instruction, comments=False, posix=True)
    except ValueError:  # an unclosed quote: the daemon reads the words as they are
        return instruction.split()


def _expand(word: str, variables: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` (with ``:-``/``:+`` forms) from the global ARG defaults;
    Slipway passes no build arguments, so the defaults are the values."""
    def value(match: re.Match) -> str:
        name, op, alternative = match["braced"] or match["bare"], match["op"], match["word"]
        known = variables.get(name)
        # With a colon an empty value counts as unset, as in the shell.
        is_set = known is not None and (known != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return known if is_set else alternative
        if op in ("+", ":+"):
            return alternative if is_set else ""
        return known or ""
    return _VARIABLE_RE.sub(value, word)


def refused_reference(
    client: docker.DockerClient,
    reference: str,
    *,
    own_labels: dict[str, str],
    base_patterns: Iterable[re.Pattern[str]],
    app_label: str,
) -> str | None:
    """Why a build may not use ``reference``, or None when it may.

    What the engine has under that name (or id) is what the build would use:
    nothing there means a pull from a registry, which is allowed. Found locally, it
    must carry ``own_labels`` (the app's own image), or carry no ``app_label`` (no
    app's image at all) and be a base image or one pulled from a registry.
    """
    if reference.lower() == "scratch":
        return None
    try:
        image = client.api.inspect_image(reference)
    except NotFound:
        return None
    except APIError as exc:
        if exc.status_code == 400:  # not a valid reference: the build says so itself
            return None
        raise
    labels = (image.get("Config") or {}).get("Labels") or {}
    if all(labels.get(key) == value for key, value in own_labels.items()):
        return None
    if app_label not in labels:
        names = [reference, *(image.get("RepoTags") or [])]
        if any(pattern.fullmatch(name) for name in names for pattern in base_patterns):
            return None
        if image.get("RepoDigests"):
            return None
    return "it is an image of this host that is neither a base image nor this app's own"
