"""Requests lost and held while an app is redeployed, scaled and rolled back under load.

Starts a whole Slipway (`slipway up`) in a temporary home on free ports, with the
production defaults for draining and stopping, and pushes a small Flask app
(gunicorn, two workers). A constant-rate HTTP load runs through the router from
several keep-alive client threads for the whole run (tests/support.py
SteadyLoad). First an idle window (nothing deploying), then the deploy window:
20 redeploys (git pushes of a code change, each timed until the new text is
served), one scale up and down (web=2, then web=1) and one rollback.

Printed for each window: requests sent, failed (connection errors, timeouts and
5xx) and latency p50/p99/max. "held" is the deploy window's slowest request minus
the idle p99: how much longer than a normal slow request any request waited
because of a switch (the bar is 0.2 s). The five slowest requests are shown
with when they were sent relative to the nearest switch (a push's new text
first served, or a scale or rollback command returning), which tells a
switch's stall from builds competing for the CPU. Failed requests are listed;
"closed unanswered" counts the failures that were a keep-alive connection reset
before any answer: nginx before 1.27.4 (Debian's is 1.22) closes its idle client
connections when it reloads, and a request crossing that close is reset (a browser
resends such a GET; python-requests does not, and neither does this bench).

    .venv/bin/python bench/zero_downtime.py [--deploys 20] [--rate 100] [--clients 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deploy import APP_PY, push_and_wait, write_app  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.support import Sample, SteadyLoad  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, samples: list[Sample], seconds: float) -> float:
    """Print one window's numbers; returns its p99 latency."""
    latencies = [s.seconds for s in samples]
    failed = [s for s in samples if s.failed]
    aborted = sum(s.aborted for s in failed)
    p99 = percentile(latencies, 0.99)
    print(f"{name:<8} {seconds:6.1f} s  sent {len(samples):6d}  failed {len(failed):4d} "
          f"({aborted} closed unanswered)  "
          f"p50 {percentile(latencies, 0.5) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
          f"max {max(latencies) * 1000:7.1f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=20, help="redeploys (git pushes)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle window")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as root:
        Path(root).chmod(0o755)  # nginx's workers read the state directory
        # The defaults a production install runs with, not the e2e stack's short ones.
        stack = Stack(Path(root), env={"SLIPWAY_DRAIN_SECONDS": "2", "SLIPWAY_STOP_TIMEOUT": "10"})
        stack.start()
        try:
            token = stack.slipway("users:create", "bench@example.com").stdout.strip()
            stack.slipway("login", "--api-url", stack.api_url, "--token", token)
            stack.auth = {"Authorization": f"Bearer {token}"}
            repo = Path(root) / "app"
            repo.mkdir()
            stack.git("init", "-q", "-b", "main", cwd=repo)
            name = f"zero-{uuid.uuid4().hex[:6]}"
            stack.slipway("apps:create", name, cwd=repo)
            write_app(repo, "deploy 0", uuid.uuid4().hex)
            push_and_wait(stack, repo, name, "deploy 0")

            url = f"http://127.0.0.1:{stack.http_port}/"
            with SteadyLoad(url, {"Host": f"{name}.localhost"}, rate=args.rate,
                            clients=args.clients) as load:
                time.sleep(1)  # connections open, gunicorn workers warm
                idle_start = time.monotonic()
                time.sleep(args.idle)
                deploy_start = time.monotonic()
                pushes = []
                # When each switch was seen (the new text served, or the command done).
                switches: list[tuple[str, float]] = []
                for i in range(1, args.deploys + 1):
                    (repo / "app.py").write_text(APP_PY.format(text=f"deploy {i}"))
                    started = time.monotonic()
                    pushes.append(push_and_wait(stack, repo, name, f"deploy {i}")[0])
                    switches.append((f"push {i}", started + pushes[-1]))
                    print(f"push {i}: live in {pushes[-1]:.2f} s", flush=True)
                for what, argv in (("scale web=2", ["ps:scale", "--app", name, "web=2"]),
                                   ("scale web=1", ["ps:scale", "--app", name, "web=1"]),
                                   ("rollback", ["rollback", "--app", name])):
                    started = time.monotonic()
                    stack.slipway(*argv)
                    switches.append((what, time.monotonic()))
                    print(f"{what}: {time.monotonic() - started:.2f} s", flush=True)
                # Requests sent just before the end finish inside the window; the last
                # retired containers stop after the drain period.
                time.sleep(3)
                deploy_end = time.monotonic()

            idle = load.between(idle_start, deploy_start)
            during = load.between(deploy_start, deploy_end)
            print()
            print(f"load: {args.rate:g} requests/s from {args.clients} keep-alive clients; "
                  f"{args.deploys} pushes (median {statistics.median(pushes):.2f} s to live), "
                  "scale up and down, rollback")
            idle_p99 = report("idle", idle, deploy_start - idle_start)
            report("deploys", during, deploy_end - deploy_start)
            held = max(s.seconds for s in during) - idle_p99
            print(f"held:    {held * 1000:.1f} ms (slowest request during deploys minus idle p99)")
            print("slowest requests during deploys, sent relative to the nearest switch:")
            for sample in sorted(during, key=lambda s: -s.seconds)[:5]:
                what, at = min(switches, key=lambda w: abs(sample.sent - w[1]))
                print(f"    {sample.seconds * 1000:7.1f} ms, sent {sample.sent - at:+.2f} s "
                      f"from {what}")
            for sample in [s for s in load.samples if s.failed][:20]:
                print(f"failed at +{sample.sent - idle_start:.2f} s after {sample.seconds:.3f} s: "
                      f"{sample.status or sample.error}")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
