"""Helpers shared by the tests: free ports, deadlines, service processes."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# The dashboard password of the users the `accounts` fixture makes.
PASSWORD = "correct horse battery"
# Every Docker object a test makes carries this label, so cleanup can find it; the
# value is this test run's own, so a concurrent run's objects are left alone.
TEST_LABEL = "slipway.test"
TEST_RUN = uuid.uuid4().hex[:12]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message}: {last_error!r}")


@contextlib.contextmanager
def steady_requests(fetch: Callable[[], T]) -> Iterator[list[T]]:
    """Call ``fetch`` in a loop on another thread while the block runs.

    Yields the list its results are appended to, complete once the block ends.
    """
    results: list[T] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            results.append(fetch())

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield results
    finally:
        done.set()
        thread.join(30)


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """Start a private redis-server on a free loopback port; returns (process, url)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (run ./install.sh --dev)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    wait_for(answers, timeout=10, message="redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    import os

    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def start_postgres(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A private PostgreSQL server (initdb in ``workdir``) on a free port; returns (proc, url)."""
    import os

    bindir = POSTGRES_BIN if POSTGRES_BIN.exists() else None
    initdb = str(bindir / "initdb") if bindir else shutil.which("initdb")
    postgres = str(bindir / "postgres") if bindir else shutil.which("postgres")
    if not initdb or not postgres:
        raise RuntimeError("PostgreSQL is not installed (run ./install.sh --dev)")
    data = workdir / "pgdata"
    sockets = workdir / "sock"
    sockets.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "slipway", "--auth=trust", "-E", "UTF8",
                      "--no-sync"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        _as_postgres([postgres, "-D", str(data), "-p", str(port), "-k", str(sockets),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        return subprocess.run(
            [str(bindir / "pg_isready") if bindir else "pg_isready", "-h", "127.0.0.1",
             "-p", str(port)], stdout=subprocess.DEVNULL,
        ).returncode == 0

    wait_for(answers, timeout=30, message="postgres")
    return proc, f"postgresql+psycopg://slipway@127.0.0.1:{port}/postgres"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One request of a ``SteadyLoad``: when it was sent, how long it took, what came back."""

    sent: float  # time.monotonic() when it was sent
    seconds: float
    status: int  # 0 for a connection error or timeout
    error: str = ""
    # Sent a second time after the server closed its keep-alive connection unanswered.
    retried: bool = False

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500

    @property
    def aborted(self) -> bool:
        """The connection was closed or reset before any answer (no 5xx, not refused)."""
        return self.status == 0 and "Connection aborted" in self.error


class SteadyLoad:
    """Constant-rate GETs from ``clients`` threads, each on its own keep-alive session.

    Every thread sends ``rate / clients`` requests per second on a fixed schedule
    (a late request goes at once, it is not skipped), so a stall shows up as
    latency rather than as fewer requests. Connection errors, timeouts and 5xx
    answers are failures.

    ``retry_aborted`` sends a GET once more when the server closed the connection
    without answering, as browsers do (RFC 9112 section 9.3.1): an nginx older than
    1.27.4 (Debian's is 1.22) closes idle keep-alive connections when it reloads,
    and a request crossing that close is reset before nginx reads it.
    """

    def __init__(self, url: str, headers: dict[str, str], *, rate: float = 100.0,
                 clients: int = 4, timeout: float = 10.0, retry_aborted: bool = False) -> None:
        self.url = url
        self.headers = headers
        self.period = clients / rate
        self.clients = clients
        self.timeout = timeout
        self.retry_aborted = retry_aborted
        self.samples: list[Sample] = []
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SteadyLoad:
        for i in range(self.clients):
            thread = threading.Thread(target=self._run, args=(i * self.period / self.clients,))
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self, offset: float) -> None:
        import requests

        session = requests.Session()
        due = time.monotonic() + offset
        while not self._done.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            due += self.period
            sent = time.monotonic()
            sample = self._get(session, sent)
            if sample.aborted and self.retry_aborted:
                sample = dataclasses.replace(self._get(session, sent), retried=True)
            self.samples.append(sample)
        session.close()

    def _get(self, session, sent: float) -> Sample:
        import requests

        try:
            response = session.get(self.url, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return Sample(sent, time.monotonic() - sent, 0, f"{type(exc).__name__}: {exc}"[:300])
        return Sample(sent, time.monotonic() - sent, response.status_code,
                      "" if response.status_code < 500 else response.text[:200])

    def between(self, start: float, end: float) -> list[Sample]:
        """The requests sent from ``start`` to ``end`` (time.monotonic() values)."""
        return [s for s in self.samples if start <= s.sent < end]

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]
