"""The Procfile: Heroku's ``type: command`` list of process types.

Commands are shell commands: the runtime runs them with ``/bin/sh -c`` inside
the container, with ``$PORT`` set. They never go into a Dockerfile.
"""

from __future__ import annotations

import json
import re

from slipway.builder.plan import BuildError

PROCESS_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,29}\Z")
PROCESS_TYPE_RULE = (
    'lowercase letters, digits, "-" and "_", starting with a letter, at most 30 characters'
)

# "type: command"; the type is everything before the first colon, so a line
# such as "web gunicorn app:app" (missing colon after the type) is caught by
# the space in the type rather than silently split at "app:app".
_LINE_RE = re.compile(r"^(?P<type>[^:\s]+)[ \t]*:(?P<command>.*)\Z")
# Tab is fine in a shell command; other control characters are not text a
# user meant to type, and NUL cannot even be passed to exec.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SHOWN_LINE_LIMIT = 80


def validate_process_type(name: str) -> str:
    """Return ``name`` if it is a valid process type.

    Valid types match ``^[a-z][a-z0-9_-]{0,29}$`` (``web``, ``worker``,
    ``release``, ``clock-2``). Raises BuildError naming the problem otherwise.
    """
    if not isinstance(name, str) or not PROCESS_TYPE_RE.fullmatch(name):
        raise BuildError(f"Invalid process type {_show(name)}: use {PROCESS_TYPE_RULE}")
    return name


def parse_procfile(text: str) -> dict[str, str]:
    """Parse Procfile text into ``{process type: command}``, in file order.

    Blank lines and lines starting with ``#`` are skipped; whitespace around
    the type, the colon and the command is ignored. Raises BuildError whose
    message names the line number and the problem for a malformed line, an
    invalid or duplicate process type, or an empty command.
    """
    if text.startswith("\ufeff"):  # editors on Windows save a BOM
        text = text[1:]
    processes: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    # Only \n (and \r\n) end lines: str.splitlines would also split on
    # \x0b, \x1c, \u2028..., hiding them from the control-character check.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if match is None:
            raise BuildError(
                f'Procfile line {number}: expected "type: command", got {_show(line)}'
            )
        name, command = match["type"], match["command"].strip()
        if not PROCESS_TYPE_RE.fullmatch(name):
            raise BuildError(
                f"Procfile line {number}: invalid process type {_show(name)}: "
                f"use {PROCESS_TYPE_RULE}"
            )
        if name in processes:
            raise BuildError(
                f"Procfile line {number}: duplicate process type {_show(name)} "
                f"(first defined on line {first_seen[name]})"
            )
        if not command:
            raise BuildError(f"Procfile line {number}: process type {_show(name)} has no command")
        if _CONTROL_RE.search(command):
            raise BuildError(
                f"Procfile line {number}: the command for {_show(name)} "
                "contains a control character"
            )
        processes[name] = command
        first_seen[name] = number
    return processes


def _show(value: object) -> str:
    """Quote user text for an error message: escaped, and cut if long."""
    text = str(value)
    if len(text) > _SHOWN_LINE_LIMIT:
        text = text[:_SHOWN_LINE_LIMIT] + "…"
    return json.dumps(text, ensure_ascii=False)
