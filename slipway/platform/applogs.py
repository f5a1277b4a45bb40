"""Runtime logs of an app's containers, merged into one bounded stream of lines."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import docker
from docker.errors import DockerException

from slipway.platform import runtime

_END = object()


def container_label(container: dict) -> str:
    """A short name for a container in log lines: its process type and id, e.g. ``web.1a2b3c``."""
    process = container.get("Labels", {}).get(runtime.LABEL_PROCESS, "app")
    return f"{process}.{container['Id'][:6]}"


def clip(line: str, max_bytes: int) -> str:
    """``line`` cut to ``max_bytes`` of UTF-8 (marked with an ellipsis when cut)."""
    raw = line.encode()
    if len(raw) <= max_bytes:
        return line
    return raw[:max_bytes].decode(errors="ignore") + "…"


class RateLimiter:
    """Lets ``per_second`` lines through each second and counts the ones it drops."""

    def __init__(self, per_second: int, clock=time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self.window = clock()
        self.count = 0
        self.dropped = 0

    def allow(self) -> tuple[bool, int]:
        """(whether this line may pass, lines dropped since the last one that passed)."""
        now = self.clock()
        if now - self.window >= 1:
            self.window, self.count = now, 0
        if self.count >= self.per_second:
            self.dropped += 1
            return False, 0
        self.count += 1
        dropped, self.dropped = self.dropped, 0
        return True, dropped


def app_log_lines(
    client: docker.DockerClient, instance: str, app: str, *, tail: int, follow: bool,
    max_line_bytes: int, max_lines_per_second: int, idle_seconds: float = 15.0,
) -> Iterator[str]:
    """Lines (without newline) from every running container of ``app``: "<ts> <proc.id>: text".

    Without ``follow``, the last ``tail`` lines of each container, oldest first. With
    ``follow``, a never-ending stream; yields "" every ``idle_seconds`` without output
    so a caller can keep its connection alive. Long lines are cut and floods are thinned
    (with a "[slipway] N lines dropped" notice), so a chatty app cannot exhaust the reader.
    """
    containers = runtime.app_containers(client, instance, app, process="web")
    limiter = RateLimiter(max_lines_per_second)
    if not follow:
        lines: list[str] = []
        for container in containers:
            lines.extend(_read(client, container, tail=tail, follow=False))
        lines.sort()  # each line starts with its RFC 3339 timestamp
        for line in lines:
            yield clip(line, max_line_bytes)
        return

    # One thread per container feeds a bounded queue; when the reader stops, the streams close.
    lines_q: queue.Queue = queue.Queue(maxsize=2000)
    streams: list = []
    stop = threading.Event()

    def pump(container: dict) -> None:
        try:
            for line in _read(client, container, tail=tail, follow=True, streams=streams):
                if stop.is_set():
                    return
                try:
                    lines_q.put(line, timeout=1)
                except queue.Full:  # the reader is behind: drop rather than grow
                    continue
        finally:
            lines_q.put(_END)

    threads = [threading.Thread(target=pump, args=(c,), daemon=True) for c in containers]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            try:
                item = lines_q.get(timeout=idle_seconds)
            except queue.Empty:
                yield ""
                continue
            if item is _END:
                running -= 1
                continue
            allowed, dropped = limiter.allow()
            if not allowed:
                continue
            if dropped:
                yield f"[slipway] {dropped} lines dropped (more than {max_lines_per_second}/s)"
            yield clip(item, max_line_bytes)
    finally:
        stop.set()
        for stream in list(streams):
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; nothing to do
                pass


def _read(client: docker.DockerClient, container: dict, *, tail: int, follow: bool,
          streams: list | None = None) -> Iterator[str]:
    """Decoded lines of one container's log, prefixed after the timestamp with its name."""
    name = container_label(container)
    try:
        if follow:
            stream = client.api.logs(container["Id"], stream=True, follow=True, tail=tail,
                                     timestamps=True)
            streams.append(stream)
            chunks = stream
        else:
            chunks = [client.api.logs(container["Id"], stream=False, tail=tail, timestamps=True)]
        pending = b""
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield _format(raw, name)
            if len(pending) > 1 << 20:  # a megabyte without a newline: cut it here
                yield _format(pending, name)
                pending = b""
        if pending:
            yield _format(pending, name)
    except DockerException:
        return  # the container went away (a redeploy): its stream just ends


def _format(raw: bytes, name: str) -> str:
    stamp, _, text = raw.decode(errors="replace").rstrip("\r").partition(" ")
    return f"{stamp} {name}: {text}"
