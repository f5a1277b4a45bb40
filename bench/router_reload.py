"""How long a route change takes with a real nginx: render, check, reload until live.

Usage: .venv/bin/python bench/router_reload.py [--sizes 10,100,1000] [--runs 5] [--static]

For each table size it starts nginx on a free loopback port, applies ``--runs``
tables of that size (each different, so every apply is a real change) and prints
the median of each step as measured by ``Nginx.apply``:

- render: ``render_nginx`` (validation included)
- check:  writing the candidate and ``nginx -t``
- reload: ``os.replace`` + SIGHUP + until a fresh connection gets the new
          generation and the old workers have stopped accepting; with dynamic
          upstreams (the default when the Lua module is installed) these tables
          change addresses only, so check is 0 and this is posting the address
          table until the new generation answers
- total:  what a deploy waits for

``--static`` renders addresses into nginx.conf (SLIPWAY_ROUTER_UPSTREAMS=static),
the baseline: every apply reloads.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slipway.router.controller import Nginx  # noqa: E402
from slipway.router.routes import Route, RouteTable  # noqa: E402

STEPS = ("render", "check", "reload", "total")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def table(generation: int, size: int) -> RouteTable:
    """``size`` routes, two hosts and two upstreams each; ports shift per generation."""
    return RouteTable(generation, tuple(
        Route(
            app=f"app{i}",
            hosts=(f"app{i}.localhost", f"www.app{i}.example.com"),
            upstreams=(f"127.0.0.1:{20000 + (i + generation) % 40000}",
                       f"127.0.0.1:{20001 + (i + generation) % 40000}"),
        )
        for i in range(size)
    ))


def measure(size: int, runs: int, work: Path, dynamic: bool | None) -> dict[str, float]:
    state = work / f"router-{size}"
    nginx = Nginx(state, free_port(), dynamic=dynamic)
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    try:
        nginx.start(table(0, size))
        for generation in range(1, runs + 1):
            nginx.apply(table(generation, size))
            for step in STEPS:
                samples[step].append(nginx.last_timings[step])
    finally:
        nginx.stop()
    return {step: statistics.median(values) for step, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000",
                        help="comma-separated route counts (default: 10,100,1000)")
    parser.add_argument("--runs", type=int, default=5, help="applies per size (default: 5)")
    parser.add_argument("--static", action="store_true",
                        help="static upstreams: every apply reloads nginx")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    try:
        print(f"nginx route switch, median of {args.runs} applies (seconds)")
        print(f"{'routes':>7} " + " ".join(f"{step:>8}" for step in STEPS))
        for size in sizes:
            result = measure(size, args.runs, work, False if args.static else None)
            print(f"{size:>7} " + " ".join(f"{result[step]:8.4f}" for step in STEPS), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
