"""The part of npm's semver ranges Slipway needs: which Node majors a range admits.

``engines.node`` in package.json is an npm range (">=18", "^20", "20.x",
"18 || 20", ">=18.17 <21", "16 - 20", "lts/*"). Base images are one per Node
major, so the only question is whether a range admits some version of a
given major. Each ``||`` alternative becomes a half-open interval of
versions [low, high); a major N admits the range when some alternative meets
[N.0.0, (N+1).0.0). Prerelease tags and build metadata are ignored: an image
carries a released Node.

No PyPI library fitted: ``node-semver`` is a port of an old npm semver whose
last release is years old, and answering "does this range meet major N" takes
the interval arithmetic below.
"""

from __future__ import annotations

import re

Version = tuple[int, int, int]
_INFINITY: Version = (10**9, 0, 0)
_ZERO: Version = (0, 0, 0)
# A partial version: "20", "20.1", "20.1.2", "20.x", "v20", "20.1.2-rc.1+build".
_PARTIAL_RE = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*])(?:\.(?P<patch>\d+|[xX*]))?)?"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?\Z"
)
_COMPARATOR_RE = re.compile(r"^(?P<op>>=|<=|>|<|=|\^|~>|~)?\s*(?P<version>\S+)\Z")
# Aliases nvm and friends accept; a base image of any major meets them.
_ANY = {"", "*", "x", "X", "latest", "node", "current", "lts/*", "lts"}


class RangeError(ValueError):
    """A range this module cannot read."""


def _partial(text: str) -> tuple[int | None, int | None, int | None]:
    match = _PARTIAL_RE.match(text)
    if match is None:
        raise RangeError(f"not a version: {text!r}")
    parts: list[int | None] = []
    for name in ("major", "minor", "patch"):
        value = match[name]
        parts.append(None if value is None or value in "xX*" else int(value))
    major, minor, patch = parts
    # "x.1" means "x": once a part is a wildcard, the rest are too.
    if major is None:
        return None, None, None
    if minor is None:
        return major, None, None
    return major, minor, patch


def _bounds(op: str, text: str) -> tuple[Version, Version]:
    """The interval [low, high) one comparator admits."""
    major, minor, patch = _partial(text)
    if major is None:
        return _ZERO, _INFINITY
    # The first version the partial covers, and the first one after it.
    first: Version = (major, minor or 0, patch or 0)
    if minor is None:
        after: Version = (major + 1, 0, 0)
    elif patch is None:
        after = (major, minor + 1, 0)
    else:
        after = (major, minor, patch + 1)
    if op in ("", "="):
        return first, after
    if op == ">=":
        return first, _INFINITY
    if op == ">":
        return after, _INFINITY
    if op == "<":
        return _ZERO, first
    if op == "<=":
        return _ZERO, after
    if op in ("~", "~>"):
        return first, (major + 1, 0, 0) if minor is None else (major, minor + 1, 0)
    # "^": up to the next change of the first non-zero part.
    if major > 0 or minor is None:
        return first, (major + 1, 0, 0)
    if minor > 0 or patch is None:
        return first, (0, minor + 1, 0)
    return first, (0, 0, patch + 1)


def parse_range(text: str) -> list[tuple[Version, Version]]:
    """The intervals [low, high) of the ``||`` alternatives of an npm range.

    Raises RangeError for text that is not a range ("banana", ">= 18 <").
    """
    intervals = []
    for alternative in text.split("||"):
        alternative = alternative.strip()
        if alternative in _ANY:
            intervals.append((_ZERO, _INFINITY))
            continue
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
        if hyphen:
            comparators = [(">=", hyphen[1]), ("<=", hyphen[2])]
        else:
            # ">= 18" is ">=18": glue operators to the version that follows.
            words = re.sub(r"(>=|<=|>|<|=|\^|~>|~)\s+", r"\1", alternative).split()
            comparators = []
            for word in words:
                match = _COMPARATOR_RE.match(word)
                if match is None:
                    raise RangeError(f"not a comparator: {word!r}")
                comparators.append((match["op"] or "", match["version"]))
        low, high = _ZERO, _INFINITY
        for op, version in comparators:
            c_low, c_high = _bounds(op, version)
            low, high = max(low, c_low), min(high, c_high)
        intervals.append((low, high))
    return intervals


def admits_major(text: str, major: int) -> bool:
    """Whether the npm range ``text`` admits some version of Node ``major``.

    Raises RangeError for text that is not a range.
    """
    start, end = (major, 0, 0), (major + 1, 0, 0)
    return any(max(low, start) < min(high, end) for low, high in parse_range(text))
