"""app.json: the health checks an app declares, in Dokku's shape, as plain data.

Only the ``healthchecks`` key is read; the rest of app.json (Heroku's ``env``,
``scripts``, ...) is left alone. A check looks like::

    {"healthchecks": {"web": [{"type": "startup", "path": "/health",
                               "timeout": 5, "attempts": 5, "wait": 1,
                               "initialDelay": 0, "content": "ok"}]}}

Every value is validated here; a bad one raises BuildError with a key-path
message (``app.json healthchecks/web/0/path: must start with /``) so the push
is rejected before anything is built.
"""

from __future__ import annotations

import json
import math
import re
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
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildError(f"{APP_JSON}: not valid JSON ({exc.msg}, line {exc.lineno} "
                         f"column {exc.colno})") from None
    if not isinstance(document, dict):
        raise BuildError(f"{APP_JSON}: must be a JSON object")
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


def _parse_check(item: object, where: str) -> dict | None:
    """One check as plain data, or None for a check type that does not gate deploys."""
    if not isinstance(item, dict):
        raise _bad(where, "must be an object")
    for key in item:
        if key not in CHECK_KEYS:
            raise _bad(f"{where}/{_shown_key(key)}",
                       f"is not supported (use {', '.join(CHECK_KEYS)})")
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
