"""app.json: the health checks (Dokku's shape) and config vars (Heroku's ``env``) an
app declares, as plain data.

The ``healthchecks`` and ``env`` keys are read; the rest of app.json (``scripts``,
``addons``, ...) is left alone. A check looks like::

    {"healthchecks": {"web": [{"type": "startup", "path": "/health",
                               "timeout": 5, "attempts": 5, "wait": 1,
                               "initialDelay": 0, "content": "ok"}]}}

and ``env`` as on Heroku, each key a string (its value) or an object::

    {"env": {"SECRET_KEY": {"description": "Django's", "generator": "secret"},
             "WEB_CONCURRENCY": {"value": "3"}, "LOG_LEVEL": "info",
             "STRIPE_KEY": {"required": true}}}

Every value is validated here (config keys themselves by the platform's
validator); a bad one raises BuildError with a key-path message
(``app.json healthchecks/web/0/path: must start with /``) so the push is
rejected before anything is built.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from slipway.builder.detect import read_source_file
from slipway.builder.plan import BuildError

APP_JSON = "app.json"
# Dokku's check types. Only startup checks gate a deploy; the others are
# periodic checks Slipway does not run, so they are skipped with a note.
CHECK_TYPES = ("startup", "liveness", "readiness")
# Keys of one check Slipway understands; "name" is a label and changes nothing.
CHECK_KEYS = ("type", "name", "path", "timeout", "attempts", "wait", "initialDelay", "content")
MAX_SECONDS = 600
MAX_ATTEMPTS = 100
MAX_PATH = 2048
MAX_CONTENT = 1024
# A request target: printable ASCII without spaces (it goes into the request line).
_PATH_RE = re.compile(r"^/[\x21-\x7e]*\Z")


# Keys of one env entry (Heroku's); "description" and "order" are for people and forms.
ENV_KEYS = ("description", "value", "required", "generator", "order")
GENERATORS = ("secret",)


@dataclass(frozen=True)
class EnvVar:
    """One entry of app.json ``env``: a ``value`` or a ``generator`` to set it from on
    the app's first deploy, or neither (the user sets it); ``required`` as on Heroku
    (true unless said otherwise)."""

    key: str
    value: str | None = None
    generator: str | None = None
    required: bool = True


def read_env(source_dir: Path) -> list[EnvVar]:
    """The config vars app.json declares (``[]`` without an app.json or ``env`` key).

    Raises BuildError naming the key path of the first bad entry. Keys are only
    checked to be strings: whether they are valid config keys is the platform's to say.
    """
    text = read_source_file(source_dir, APP_JSON, limit=256 * 1024)
    return [] if text is None else parse_env(text)


def parse_env(text: str) -> list[EnvVar]:
    """Parse app.json text; see :func:`read_env`."""
    declared = _document(text).get("env")
    if declared is None:
        return []
    if not isinstance(declared, dict):
        raise _bad("env", "must be an object of config vars, e.g. {\"SECRET_KEY\": {...}}")
    found = []
    for key, entry in declared.items():
        where = f"env/{_shown_key(key)}"
        if isinstance(entry, str):  # Heroku's shorthand for {"value": ...}
            found.append(EnvVar(key, value=entry))
            continue
        if not isinstance(entry, dict):
            raise _bad(where, "must be a string (its value) or an object")
        _only(entry, ENV_KEYS, where)
        value, generator = entry.get("value"), entry.get("generator")
        if value is not None and not isinstance(value, str):
            raise _bad(f"{where}/value", "must be a string")
        if generator is not None and generator not in GENERATORS:
            raise _bad(f"{where}/generator", f"must be one of {', '.join(GENERATORS)}")
        if value is not None and generator is not None:
            raise _bad(where, "has both a value and a generator: give one")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise _bad(f"{where}/required", "must be true or false")
        if not isinstance(entry.get("description", ""), str):
            raise _bad(f"{where}/description", "must be a string")
        found.append(EnvVar(key, value=value, generator=generator, required=required))
    return found


def read_healthchecks(source_dir: Path) -> tuple[dict[str, list[dict]], list[str]]:
    """The startup checks app.json declares, by process type, and notes for the build log.

    Returns ``({}, [])`` without an app.json or without a ``healthchecks`` key.
    Each check is a dict of the keys given (``path``, ``timeout``, ``attempts``,
    ``wait``, ``initial_delay``, ``content``); defaults are the platform's to fill.
    Raises BuildError naming the key path of the first bad value.
    """
    text = read_source_file(source_dir, APP_JSON, limit=256 * 1024)
    if text is None:
        return {}, []
    return parse_healthchecks(text)


def parse_healthchecks(text: str) -> tuple[dict[str, list[dict]], list[str]]:
    """Parse app.json text; see :func:`read_healthchecks`."""
    document = _document(text)
    if "healthchecks" not in document:
        return {}, []
    declared = document["healthchecks"]
    if not isinstance(declared, dict):
        raise _bad("healthchecks", "must be an object of process types, e.g. {\"web\": [...]}")
    checks: dict[str, list[dict]] = {}
    notes: list[str] = []
    for ptype, items in declared.items():
        where = f"healthchecks/{_shown_key(ptype)}"
        if ptype != "web":
            raise _bad(where, "only the web process can be health-checked (it alone has a port)")
        if not isinstance(items, list):
            raise _bad(where, "must be a list of checks")
        for index, item in enumerate(items):
            check = _parse_check(item, f"{where}/{index}")
            if check is None:
                notes.append(f"{APP_JSON} {where}/{index}: only startup checks run; skipped")
            else:
                checks.setdefault(ptype, []).append(check)
    for ptype, found in checks.items():
        paths = ", ".join(check.get("path", "/") for check in found)
        notes.append(f"Health checks of {ptype} from {APP_JSON}: {paths}")
    return checks, notes


def _document(text: str) -> dict:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildError(f"{APP_JSON}: not valid JSON ({exc.msg}, line {exc.lineno} "
                         f"column {exc.colno})") from None
    if not isinstance(document, dict):
        raise BuildError(f"{APP_JSON}: must be a JSON object")
    return document


def _only(item: dict, allowed: tuple[str, ...], where: str) -> None:
    """Refuse a key of ``item`` that is not ``allowed``, naming its path."""
    for key in item:
        if key not in allowed:
            raise _bad(f"{where}/{_shown_key(key)}",
                       f"is not supported (use {', '.join(allowed)})")


def _parse_check(item: object, where: str) -> dict | None:
    """One check as plain data, or None for a check type that does not gate deploys."""
    if not isinstance(item, dict):
        raise _bad(where, "must be an object")
    _only(item, CHECK_KEYS, where)
    kind = item.get("type", "startup")
    if kind not in CHECK_TYPES:
        raise _bad(f"{where}/type", f"must be one of {', '.join(CHECK_TYPES)}")
    if "name" in item and not isinstance(item["name"], str):
        raise _bad(f"{where}/name", "must be a string")
    if kind != "startup":
        return None
    check: dict = {}
    if "path" in item:
        path = item["path"]
        if not isinstance(path, str):
            raise _bad(f"{where}/path", "must be a string")
        if not path.startswith("/"):
            raise _bad(f"{where}/path", "must start with /")
        if len(path) > MAX_PATH or not _PATH_RE.fullmatch(path):
            raise _bad(f"{where}/path", f"must be at most {MAX_PATH} printable ASCII "
                                        "characters without spaces")
        check["path"] = path
    for key, name, minimum in (("timeout", "timeout", 0.0), ("wait", "wait", 0.0),
                               ("initialDelay", "initial_delay", 0.0)):
        if key in item:
            check[name] = _seconds(item[key], f"{where}/{key}", positive=key == "timeout",
                                   minimum=minimum)
    if "attempts" in item:
        attempts = item["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) \
                or not 1 <= attempts <= MAX_ATTEMPTS:
            raise _bad(f"{where}/attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS}")
        check["attempts"] = attempts
    if "content" in item:
        content = item["content"]
        if not isinstance(content, str) or not content or len(content) > MAX_CONTENT:
            raise _bad(f"{where}/content",
                       f"must be a non-empty string of at most {MAX_CONTENT} characters")
        check["content"] = content
    return check


def _seconds(value: object, where: str, *, positive: bool, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(where, "must be a number of seconds")
    if (positive and value <= 0) or value < minimum or value > MAX_SECONDS:
        low = "above 0" if positive else "from 0"
        raise _bad(where, f"must be {low} to {MAX_SECONDS} seconds")
    return float(value)


def _shown_key(key: str) -> str:
    return key if len(key) <= 40 else key[:40] + "…"


def _bad(where: str, reason: str) -> BuildError:
    return BuildError(f"{APP_JSON} {where}: {reason}")
