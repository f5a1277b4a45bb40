"""HTTP-01 challenge responses: files nginx serves at /.well-known/acme-challenge/<token>.

Whoever answers a challenge (the Celery worker running the ACME client) writes
the key authorization into the router's state directory with :func:`publish`;
nginx serves it to the ACME server from every HTTP server. The worker and the
router therefore share the router's state directory (``SLIPWAY_HOME/router``),
as they do on one machine with ``slipway up``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from slipway.router.errors import InvalidRouteError
from slipway.router.nginx import StatePaths

# RFC 8555 tokens are base64url without padding; nothing else may become a file name.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


def _path(state_dir: Path, token: str) -> Path:
    if not _TOKEN_RE.fullmatch(token):
        raise InvalidRouteError(f"token: {token[:40]!r} is not a base64url ACME token",
                                field="token")
    return StatePaths(Path(state_dir)).challenges / token


def publish(state_dir: Path, token: str, key_authorization: str) -> Path:
    """Write the response for ``token`` atomically, world-readable; return its path.

    Raises InvalidRouteError for a token that is not base64url (it names a file).
    """
    path = _path(state_dir, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key_authorization)
        # nginx workers run as another user and read the file themselves.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def withdraw(state_dir: Path, token: str) -> None:
    """Remove the response for ``token`` (no error if it is already gone)."""
    with contextlib.suppress(FileNotFoundError):
        _path(state_dir, token).unlink()
