"""Capsule provisioning times: from `POST /api/v1/capsules` to status `available`.

Starts a whole Slipway (`slipway up`) in a temporary home on free ports, creates
capsules of each kind through the REST API, polls their status every 20 ms and
destroys them. Prints the median and spread (min-max) per kind.

    .venv/bin/python bench/capsules.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.stack import Stack  # noqa: E402

TARGETS = {"postgres": 5.0, "redis": 2.0}


def provision_time(stack: Stack, headers: dict, kind: str, name: str) -> float:
    """Seconds from the POST to `available`; destroys the capsule afterwards."""
    api = f"{stack.api_url}/api/v1"
    started = time.monotonic()
    response = requests.post(f"{api}/capsules", json={"kind": kind, "name": name},
                             headers=headers, timeout=30)
    response.raise_for_status()
    deadline = started + 120
    while time.monotonic() < deadline:
        data = requests.get(f"{api}/capsules/{name}", headers=headers, timeout=30).json()
        if data["status"] == "available":
            elapsed = time.monotonic() - started
            break
        if data["status"] == "failed":
            raise RuntimeError(f"{name} failed: {data['error']}")
        time.sleep(0.02)
    else:
        raise RuntimeError(f"{name} not available within 120 s")
    requests.delete(f"{api}/capsules/{name}", json={"confirm": name}, headers=headers,
                    timeout=60).raise_for_status()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    root.chmod(0o755)
    stack = Stack(root)
    failed = False
    try:
        stack.start()
        token = stack.slipway("users:create", "bench@example.com").stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        for kind in ("postgres", "redis"):
            times = [provision_time(stack, headers, kind, f"bench-{kind[:2]}-{i}")
                     for i in range(args.runs)]
            median = statistics.median(times)
            verdict = "ok" if median <= TARGETS[kind] else "over target"
            failed |= median > TARGETS[kind]
            print(f"{kind:<9} POST -> available: median {median:.2f} s, "
                  f"spread {min(times):.2f}-{max(times):.2f} s over {len(times)} "
                  f"(target <= {TARGETS[kind]:g} s: {verdict})  "
                  + " ".join(f"{t:.2f}" for t in times))
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
