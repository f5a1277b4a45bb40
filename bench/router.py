"""The router's cost: throughput and latency through nginx vs straight to the app, over
HTTP and HTTPS; how soon a new route answers; render+check+reload with TLS routes.

Usage: .venv/bin/python bench/router.py [--seconds 5] [--connections 16] [--procs 2]
                                        [--sizes 10,100,1000]

The upstream is a small threaded Python HTTP server on loopback; the load
generator (the same for every target) is ``--procs`` processes each holding
``--connections / --procs`` keep-alive connections, each sending GETs in a loop
for ``--seconds``. HTTPS uses a certificate from an internal CA with SNI.
Targets: router >= 0.9x direct rps over HTTP (0.8x HTTPS); a route live within
0.5 s; 1,000 routes rendered, checked and reloaded within 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import multiprocessing
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slipway.router.certs import CertificateStore, InternalCA, new_key_pem  # noqa: E402
from slipway.router.controller import Nginx  # noqa: E402
from slipway.router.routes import HostCertificate, Route, RouteTable  # noqa: E402

HOST = "bench.example.test"
BODY = b"x" * 256


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


def start_upstream() -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, server.server_address[1]


def _connection(port: int, tls_ca: str | None) -> http.client.HTTPConnection:
    if tls_ca is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    context = ssl.create_default_context(cafile=tls_ca)

    class SNIConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = context.wrap_socket(sock, server_hostname=HOST)

    return SNIConnection(HOST, port, timeout=10, context=context)


def _worker(port: int, tls_ca: str | None, connections: int, seconds: float,
            out: multiprocessing.Queue) -> None:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        nonlocal errors
        conn = _connection(port, tls_ca)
        mine: list[float] = []
        bad = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = _connection(port, tls_ca)
                continue
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, errors))


def load(port: int, tls_ca: str | None, connections: int, procs: int,
         seconds: float) -> dict[str, float]:
    """Requests per second, p50 and p99 latency (ms) and errors against one target."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    per = max(1, connections // procs)
    workers = [multiprocessing.Process(target=_worker, args=(port, tls_ca, per, seconds, queue))
               for _ in range(procs)]
    for w in workers:
        w.start()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        lat, err = queue.get()
        latencies.extend(lat)
        errors += err
    for w in workers:
        w.join()
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
    }


def tls_table(generation: int, size: int, cert: HostCertificate) -> RouteTable:
    """``size`` routes; every other one has a certificate (the same files: nginx loads each)."""
    routes = []
    for i in range(size):
        host = f"app{i}.example.test"
        certs = (HostCertificate(host, cert.certificate, cert.key),) if i % 2 == 0 else ()
        routes.append(Route(app=f"app{i}", hosts=(host,),
                            upstreams=(f"127.0.0.1:{20000 + (i + generation) % 40000}",),
                            certificates=certs))
    return RouteTable(generation, tuple(routes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="slipway-bench-router-"))
    work.chmod(0o755)
    upstream, upstream_port = start_upstream()
    key = new_key_pem()
    ca = InternalCA(work / "ca")
    stored = CertificateStore(work / "certs").save(HOST, key, ca.issue(HOST, key))
    cert = HostCertificate(HOST, str(stored.certificate), str(stored.key))
    nginx = Nginx(work / "router", free_port(), listen_address="127.0.0.1",
                  https_port=free_port())
    try:
        # A plain HTTP route, and the same app over HTTPS (HTTP then redirects, so
        # HTTP is measured on the first table and HTTPS on the second).
        plain = Route("bench", (HOST,), (f"127.0.0.1:{upstream_port}",))
        nginx.start(RouteTable(1, (plain,)))
        print(f"load: {args.connections} keep-alive connections from {args.procs} processes, "
              f"{args.seconds:g} s each, GET / (256-byte body)")
        results = {"direct HTTP": load(upstream_port, None, args.connections, args.procs,
                                       args.seconds),
                   "router HTTP": load(nginx.http_port, None, args.connections, args.procs,
                                       args.seconds)}
        nginx.apply(RouteTable(2, (Route("bench", (HOST,), (f"127.0.0.1:{upstream_port}",),
                                         certificates=(cert,)),)))
        results["router HTTPS"] = load(nginx.https_port, str(ca.certificate_path),
                                       args.connections, args.procs, args.seconds)
        direct = results["direct HTTP"]["rps"]
        for name, r in results.items():
            print(f"{name:<13} {r['rps']:9.0f} rps  p50 {r['p50_ms']:6.2f} ms  "
                  f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}  "
                  f"({r['rps'] / direct:.2f}x direct)")

        # A new route: from the start of apply() (what a finished deploy calls, via
        # the daemon) to the first 200 from the new host.
        samples = []
        for generation in range(3, 3 + 5):
            app = f"new{generation}"
            host = f"{app}.example.test"
            table = RouteTable(generation, (Route(app, (host,), (f"127.0.0.1:{upstream_port}",)),))
            started = time.monotonic()
            nginx.apply(table)
            while True:
                conn = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
                conn.request("GET", "/", headers={"Host": host})
                if conn.getresponse().status == 200:
                    break
            samples.append(time.monotonic() - started)
        print(f"route live after apply: median {statistics.median(samples) * 1000:.0f} ms, "
              f"max {max(samples) * 1000:.0f} ms (target 500 ms)")

        for size in (int(s) for s in args.sizes.split(",")):
            timings = []
            for run in range(args.runs):
                nginx.apply(tls_table(100 + size * 10 + run, size, cert))
                timings.append(dict(nginx.last_timings))
            med = {step: statistics.median(t[step] for t in timings) * 1000
                   for step in ("render", "check", "reload", "total")}
            with_tls = size // 2 + size % 2
            print(f"{size:>5} routes ({with_tls} with TLS): render {med['render']:6.1f} ms  "
                  f"check {med['check']:6.1f} ms  reload {med['reload']:6.1f} ms  "
                  f"total {med['total']:6.1f} ms (target 1000 ms at 1000)")
    finally:
        nginx.stop()
        upstream.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
