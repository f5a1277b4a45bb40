"""The router's cost: throughput and latency through nginx vs straight to the app, over
HTTP and HTTPS; how soon a new route answers; render+check+reload with TLS routes.

Usage: .venv/bin/python bench/router.py [--seconds 5] [--runs 3] [--connections 16]
                                        [--threads 2] [--sizes 10,100,1000]
                                        [--app express|node-http|python] [--static]
                                        [--workers N]

The app answers GET / with a 256-byte body: by default an Express app (the
dependencies of tests/fixtures/node_express, npm ci); ``--app node-http`` a bare
Node.js ``http`` server, which does nothing but answer (about 15 us of CPU per
request, less than nginx spends proxying it: the worst case for a proxy); ``--app
python`` a Flask app under the web command Slipway picks for it (gunicorn, sync
workers, which close every connection). It is built by Slipway's builder from the
host's base image and started with the container spec and limits of a deploy
(``container_spec``: 1 CPU, 512 MB), on its own bridge network. One load tool,
``wrk``, with the same threads, connections, duration and request for every target:

- direct:       wrk to the container's address on its network (ip:port)
- router HTTP:  wrk to nginx on loopback, Host: the route's host
- router HTTPS: the same over TLS with SNI (a certificate from an internal CA)

nginx runs with the config Slipway renders, its upstream being that container
address (as routes are since the router stopped going through docker-proxy),
picked by the Lua balancer when the module is installed; ``--static`` renders it
into the config instead (the baseline without Lua). ``--workers`` sets nginx's
worker processes (default: one per core, as the router runs it).
Each of ``--runs`` rounds measures the three targets one after the other; the
medians over rounds are printed, and the ratio to direct is the median of each
round's ratio (a round's targets share the machine's load of the moment, which on
a shared machine swings more between rounds than within one). Targets: router
>= 0.9x direct rps over HTTP (0.8x over HTTPS); a route live within 0.5 s of
``apply``; 1,000 routes rendered, checked and reloaded within 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from slipway.builder.build import build_image  # noqa: E402
from slipway.builder.detect import detect  # noqa: E402
from slipway.builder.images import resolve_base_image  # noqa: E402
from slipway.config import Settings  # noqa: E402
from slipway.platform import runtime  # noqa: E402
from slipway.platform.healthchecks import default_check  # noqa: E402
from slipway.router.certs import CertificateStore, InternalCA, new_key_pem  # noqa: E402
from slipway.router.controller import Nginx, _children  # noqa: E402
from slipway.router.routes import HostCertificate, Route, RouteTable  # noqa: E402

PLAIN_HOST = "bench.example.test"
TLS_HOST = "bench-tls.example.test"
APP = "routerbench"
PORT = 5000
BENCH_LABEL = "slipway.bench"
SERVER_JS = """const http = require("http");
const body = Buffer.alloc(256, "x");
http.createServer((req, res) => {
  res.writeHead(200, {"Content-Type": "text/plain", "Content-Length": body.length});
  res.end(body);
}).listen(Number(process.env.PORT), "0.0.0.0");
"""
PACKAGE_JSON = '{"name": "routerbench", "version": "1.0.0", "private": true}\n'
EXPRESS_JS = """const express = require("express");
const app = express();
const body = "x".repeat(256);
app.get("/", (req, res) => res.type("text/plain").send(body));
app.listen(Number(process.env.PORT), "0.0.0.0");
"""
NODE_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "node_express"
APP_PY = """from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "x" * 256
"""
APPS = {
    "express": {"package.json": (NODE_FIXTURE / "package.json").read_text(),
                "package-lock.json": (NODE_FIXTURE / "package-lock.json").read_text(),
                "server.js": EXPRESS_JS},
    "node-http": {"package.json": PACKAGE_JSON, "server.js": SERVER_JS,
                  "Procfile": "web: node server.js\n"},
    # No Procfile: the web command is the one Slipway chooses for a Flask app.
    "python": {"app.py": APP_PY, "requirements.txt": "flask==3.1.*\ngunicorn==23.*\n"},
}
# wrk resolves the URL's host itself; the route's host names resolve nowhere, so
# connect to nginx on loopback while keeping the host for SNI and the Host header.
WRK_LOOPBACK = """wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(client: docker.DockerClient, settings: Settings, work: Path,
              kind: str = "express") -> tuple[str, str]:
    """Build the ``kind`` app as a push would and start it as a deploy would.

    Returns (container id, ip:port on its network).
    """
    source = work / "app"
    source.mkdir()
    for name, text in APPS[kind].items():
        (source / name).write_text(text)
    plan = detect(source)
    base, _ = resolve_base_image(client, getattr(settings, f"{plan.stack}_image"),
                                 plan.runtime_version,
                                 getattr(settings, f"{plan.stack}_default_version"),
                                 settings.bootstrap_repository, language=plan.stack)
    labels = runtime.object_labels(settings.instance_id, APP, settings.labels)
    image = build_image(client, source, plan, base_image=base,
                        tag=f"slipway-bench/{APP}:{settings.instance_id}", labels=labels,
                        log=lambda line: None, timeout=600)
    runtime.ensure_network(client, settings.instance_id, APP, settings.labels)
    spec = runtime.container_spec(
        instance=settings.instance_id, app=APP, app_name=APP, release_id=1, version=1,
        process="web",
        image=image, command=plan.processes["web"], env={}, port=PORT,
        memory=settings.container_memory, cpus=settings.container_cpus,
        pids=settings.container_pids, labels=settings.labels, suffix=uuid.uuid4().hex[:6],
    )
    container_id, address = runtime.start(client, spec)
    assert address is not None
    runtime.wait_healthy(client, container_id, address, default_check(settings), timeout=30,
                         interval=0.05)
    return container_id, address


def cleanup(client: docker.DockerClient, settings: Settings) -> None:
    """Remove the bench's container, network and image (found by this run's label)."""
    label = {"label": f"{BENCH_LABEL}={settings.labels[BENCH_LABEL]}"}
    for container in client.containers.list(all=True, filters=label, sparse=True):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for image in client.images.list(filters=label):
        client.images.remove(image.id, force=True)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (docker-init, the shell, the server...)."""
    return [pid, *(d for child in _children(pid) for d in descendants(child))]


def wrk(url: str, args: argparse.Namespace, script: Path | None, host: str,
        watched: dict[str, list[int]]) -> dict[str, float]:
    """One wrk run: requests per second, p50 and p99 latency (ms), errors, and the CPU
    microseconds per request of wrk and of each process group in ``watched``."""
    argv = ["wrk", f"--threads={args.threads}", f"--connections={args.connections}",
            f"--duration={args.seconds:g}s", "--latency", "--timeout=5s",
            "-H", f"Host: {host}"]
    if script is not None:
        argv += ["--script", str(script)]
    before = {name: cpu_seconds(pids) for name, pids in watched.items()}
    load_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    load_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {name: cpu_seconds(pids) - before[name] for name, pids in watched.items()}
    used["wrk"] = (load_after.ru_utime + load_after.ru_stime
                   - load_before.ru_utime - load_before.ru_stime)
    # wrk pads latencies given in seconds ("1.45s "): allow trailing blanks.
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))
    return {
        **{f"cpu_{name}_us": 1e6 * seconds / max(1, requests) for name, seconds in used.items()},
        "rps": float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1)),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "errors": errors + (int(bad.group(1)) if bad else 0),
    }


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def tls_table(generation: int, size: int, cert: HostCertificate, upstream: str) -> RouteTable:
    """``size`` routes, each with a certificate, as with TLS on (the same files for
    all: nginx, or the Lua side, loads each one anyway).

    App names carry the generation, so each table differs from the last in more than
    addresses: every apply renders, checks and reloads (no address-only switch),
    and hands over the certificates of all its hosts, new to nginx.
    """
    routes = []
    for i in range(size):
        app = f"app{i}g{generation}"
        host = f"{app}.example.test"
        routes.append(Route(app=app, hosts=(host,), upstreams=(upstream,),
                            certificates=(HostCertificate(host, cert.certificate, cert.key),)))
    return RouteTable(generation, tuple(routes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run (default 5)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds of direct, router HTTP, router HTTPS (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--app", choices=sorted(APPS), default="express",
                        help="the app behind the router (default express)")
    parser.add_argument("--static", action="store_true",
                        help="static upstreams (no Lua balancer), the baseline")
    parser.add_argument("--workers", type=int, default=None,
                        help="nginx worker processes (default: one per core)")
    parser.add_argument("--reload-runs", type=int, default=3,
                        help="applies per route-table size (default 3)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (./install.sh --dev installs it)")

    work = Path(tempfile.mkdtemp(prefix="slipway-bench-router-"))
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(home=work / "home", instance=f"bench{run_id}",
                        labels={BENCH_LABEL: run_id})
    client = docker.from_env()
    nginx = Nginx(work / "router", free_port(), listen_address="127.0.0.1",
                  https_port=free_port(), dynamic=False if args.static else None,
                  workers=args.workers)
    script = work / "loopback.lua"
    script.write_text(WRK_LOOPBACK)
    try:
        started = time.monotonic()
        container_id, upstream = start_app(client, settings, work, args.app)
        app_pid = client.api.inspect_container(container_id)["State"]["Pid"]
        print(f"app: {args.app} container at {upstream} (built and started in "
              f"{time.monotonic() - started:.1f} s); nginx: {nginx.workers or 'auto'} worker(s), "
              f"{'Lua balancer' if nginx.dynamic else 'static upstreams'}")
        key = new_key_pem()
        ca = InternalCA(work / "ca")
        stored = CertificateStore(work / "certs").save(TLS_HOST, key, ca.issue(TLS_HOST, key))
        cert = HostCertificate(TLS_HOST, str(stored.certificate), str(stored.key))
        # One host over plain HTTP, one with a certificate (its HTTP redirects), same app.
        nginx.start(RouteTable(1, (
            Route("bench", (PLAIN_HOST,), (upstream,)),
            Route("benchtls", (TLS_HOST,), (upstream,), certificates=(cert,)),
        )))
        targets = {
            "direct": (f"http://{upstream}/", None, PLAIN_HOST),
            "router HTTP": (f"http://{PLAIN_HOST}:{nginx.http_port}/", script, PLAIN_HOST),
            "router HTTPS": (f"https://{TLS_HOST}:{nginx.https_port}/", script, TLS_HOST),
        }
        print(f"load: wrk, {args.threads} threads, {args.connections} keep-alive connections, "
              f"{args.seconds:g} s per run, GET / (256-byte body); {args.runs} rounds")
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for round_ in range(args.runs):
            # nginx's workers and the app (docker-init, node) are read anew each round.
            watched = {"nginx": _children(nginx.pid()), "app": descendants(app_pid)}
            for name, (url, lua, host) in targets.items():
                samples[name].append(wrk(url, args, lua, host, watched))
            direct = samples["direct"][-1]["rps"]
            print(f"  round {round_ + 1}: direct {direct:.0f}  " + "  ".join(
                f"{name} {runs[-1]['rps']:.0f} ({runs[-1]['rps'] / direct:.2f}x)"
                for name, runs in samples.items() if name != "direct"), flush=True)
        for name, runs in samples.items():
            ratio = statistics.median(r["rps"] / d["rps"] for r, d in zip(runs, samples["direct"],
                                                                          strict=True))
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            target = {"router HTTP": " (target 0.90x)", "router HTTPS": " (target 0.80x)"}
            print(f"{name:<13} {rps:9.0f} rps  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"errors {sum(r['errors'] for r in runs):.0f}  "
                  f"({ratio:.2f}x direct{target.get(name, '')})")
        # Where the time goes: all three share the machine's cores, so every
        # microsecond nginx spends per request is taken from the load and the app.
        print("CPU per request (median, us): " + "; ".join(
            f"{name}: " + ", ".join(
                f"{who} {statistics.median(r[f'cpu_{who}_us'] for r in runs):.1f}"
                for who in ("wrk", "nginx", "app"))
            for name, runs in samples.items()))

        # A new route: from the start of apply() (what a finished deploy waits for,
        # through the router daemon) to the first 200 from the new host.
        live = []
        for generation in range(3, 3 + 5):
            host = f"new{generation}.example.test"
            table = RouteTable(generation, (Route(f"new{generation}", (host,), (upstream,)),))
            started = time.monotonic()
            nginx.apply(table)
            while True:
                conn = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
                conn.request("GET", "/", headers={"Host": host})
                if conn.getresponse().status == 200:
                    break
            live.append(time.monotonic() - started)
        print(f"route live after apply: median {statistics.median(live) * 1000:.0f} ms, "
              f"max {max(live) * 1000:.0f} ms (target 500 ms)")

        for size in (int(s) for s in args.sizes.split(",")):
            timings = []
            for run in range(args.reload_runs):
                nginx.apply(tls_table(100 + size * 10 + run, size, cert, upstream))
                timings.append(dict(nginx.last_timings))
            med = {step: statistics.median(t[step] for t in timings) * 1000
                   for step in ("render", "check", "reload", "total")}
            print(f"{size:>5} routes with TLS: render {med['render']:6.1f} ms  "
                  f"check {med['check']:6.1f} ms  reload {med['reload']:6.1f} ms  "
                  f"total {med['total']:6.1f} ms (target 1000 ms at 1000)")
    finally:
        nginx.stop()
        cleanup(client, settings)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
