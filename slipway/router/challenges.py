"""HTTP-01 challenge responses, answered by nginx at /.well-known/acme-challenge/<token>.

Whoever answers a challenge (the Celery worker running the ACME client) hands the
key authorization to the router of ``state_dir`` with :func:`publish`, and takes
it back with :func:`withdraw`. nginx's workers never read SLIPWAY_HOME, so the
response reaches them one of two ways, whichever the running config serves:

- dynamic upstreams (the Lua module): posted over the router's private control
  socket into a shared dict, like addresses and certificates; no file at all.
- static upstreams (no Lua): a world-readable file in the runtime directory
  outside SLIPWAY_HOME (see ``controller.default_runtime_dir``); a key
  authorization is public by design, anyone who asks the host gets it.

The router makes the file directory only while its config serves files from it,
so its presence says which way to go. Either way the publisher runs on the
router's host as the router's user, as it does with ``slipway up``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

from slipway.router.controller import default_runtime_dir, post_control
from slipway.router.errors import InvalidRouteError, NginxError
from slipway.router.nginx import CHALLENGES_HEADER, CHALLENGES_PATH, StatePaths

log = logging.getLogger("slipway.router")

# RFC 8555 tokens are base64url without padding; nothing else may name a file or
# a dict key. A key authorization is the token, a dot and a base64url thumbprint.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_THUMBPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_POST_TIMEOUT = 10.0


def _paths(state_dir: Path, token: str) -> StatePaths:
    if not _TOKEN_RE.fullmatch(token):
        raise InvalidRouteError(f"token: {token[:40]!r} is not a base64url ACME token",
                                field="token")
    root = Path(state_dir).absolute()
    return StatePaths(root, default_runtime_dir(root))


def publish(state_dir: Path, token: str, key_authorization: str) -> None:
    """Make the router of ``state_dir`` answer ``token`` with ``key_authorization``.

    Raises InvalidRouteError for a token or key authorization that is not
    base64url, NginxError when the router is not there to take it.
    """
    paths = _paths(state_dir, token)
    prefix, dot, thumbprint = key_authorization.partition(".")
    if prefix != token or not dot or not _THUMBPRINT_RE.fullmatch(thumbprint):
        raise InvalidRouteError("key_authorization: not the token, a dot and a base64url "
                                "thumbprint", field="key_authorization")
    if paths.challenges.is_dir():
        _write(paths.challenges / token, key_authorization)
    else:
        _post(paths, f"set {token} {key_authorization}")


def withdraw(state_dir: Path, token: str) -> None:
    """Stop answering ``token`` (no error if it is not answered; a router that is
    gone is only logged: a posted response expires within the hour anyway)."""
    paths = _paths(state_dir, token)
    with contextlib.suppress(FileNotFoundError):
        (paths.challenges / token).unlink()
    if not paths.challenges.is_dir():
        try:
            _post(paths, f"drop {token}")
        except NginxError as exc:
            log.warning("could not withdraw an ACME challenge response: %s", exc.message)


def _post(paths: StatePaths, line: str) -> None:
    post_control(paths.control_socket, CHALLENGES_PATH, f"{CHALLENGES_HEADER}\n{line}\n",
                 "challenge response", timeout=_POST_TIMEOUT)


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, world-readable (workers read it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
