"""Sign-in timing: a wrong password for a real user against an unknown email.

The two must take about the same time, so timing does not tell an attacker which
emails have accounts. Uses Flask's test client on a temporary SQLite database
and a private redis-server; prints the median and spread of each case and the
time of one scrypt hash.

    .venv/bin/python bench/signin.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import start_redis, stop_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slipway-bench-signin-"))
    proc, redis_url = start_redis(root)
    os.environ.update(SLIPWAY_HOME=str(root / "home"), DATABASE_URL=f"sqlite:///{root}/s.db",
                      SLIPWAY_SECRET_KEY="bench", REDIS_URL=redis_url,
                      SLIPWAY_LOGIN_MAX_FAILURES=str(10**6))
    try:
        from slipway.config import get_settings
        from slipway.platform import db, users
        from slipway.web.app import create_app

        settings = get_settings()
        db.migrate(settings.database)
        with db.session_scope(settings.database) as session:
            user, _ = users.create_user(session, "real@example.com")
            users.set_password(session, user, "the right one")
        client = create_app(settings).test_client()
        page = client.get("/login").data
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()

        def attempt(email: str) -> float:
            start = time.perf_counter()
            response = client.post("/login", data={"email": email, "password": "wrong",
                                                   "csrf_token": csrf})
            elapsed = time.perf_counter() - start
            assert response.status_code == 401, response.status_code
            return elapsed * 1000

        attempt("warmup@example.com")  # the dummy hash is made on first use
        known, unknown = [], []
        for _ in range(args.rounds):
            known.append(attempt("real@example.com"))
            unknown.append(attempt("nobody@example.com"))
        start = time.perf_counter()
        users.hash_password("x" * 12)
        hash_ms = (time.perf_counter() - start) * 1000
        for name, values in (("wrong password, known email", known),
                             ("unknown email", unknown)):
            q = statistics.quantiles(values, n=10)
            print(f"{name:28} median {statistics.median(values):6.1f} ms  "
                  f"p10 {q[0]:6.1f}  p90 {q[-1]:6.1f}  (n={len(values)})")
        print(f"{'one scrypt hash':28} {hash_ms:6.1f} ms")
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
