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
    client: docker.DockerClient, instance: str, app: str, release_id: int | None, *,
    tail: int, follow: bool,
    max_line_bytes: int, max_lines_per_second: int, idle_seconds: float = 15.0,
) -> Iterator[str]:
    """Lines (without newline) from the running process containers of release
    ``release_id`` (none when it is None) of the app whose uid is ``app``:
    "<timestamp> <process>.<id>: text".

    Without ``follow``, the last ``tail`` lines of each container, oldest first. With
    ``follow``, a never-ending stream; yields "" every ``idle_seconds`` without output
    so a caller can keep its connection alive. Long lines are cut and floods are thinned
    (with a "[slipway] N lines dropped" notice), so a chatty app cannot exhaust the reader.
    """
    # Only the current release's: old ones draining after a deploy would repeat stale output.
    # One-off `slipway run` containers print to their own caller instead.
    containers = [
        c for c in runtime.app_containers(client, instance, app)
        if release_id is not None
        and c.get("Labels", {}).get(runtime.LABEL_RELEASE) == str(release_id)
        and c.get("Labels", {}).get(runtime.LABEL_PROCESS) != "run"
    ]
    limiter = RateLimiter(max_lines_per_second)
    if not follow:
        lines: list[str] = []
        for container in containers:
            lines.extend(_read(client, container, tail=tail, follow=False,
                               max_line_bytes=max_line_bytes))
        lines.sort()  # each line starts with its RFC 3339 timestamp
        yield from lines
        return

    # One thread per container feeds a bounded queue; when the reader stops, the streams close.
    lines_q: queue.Queue = queue.Queue(maxsize=2000)
    streams: list = []
    stop = threading.Event()

    def pump(container: dict) -> None:
        try:
            for line in _read(client, container, tail=tail, follow=True,
                              max_line_bytes=max_line_bytes, streams=streams):
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
            yield item
    finally:
        stop.set()
        for stream in list(streams):
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail; nothing to do
                pass


def _read(client: docker.DockerClient, container: dict, *, tail: int, follow: bool,
          max_line_bytes: int, streams: list | None = None) -> Iterator[str]:
    """Decoded lines of one container's log, named after the timestamp, cut to size.

    Memory stays bounded by ``max_line_bytes`` plus one chunk, however long a line is.
    """
    name = container_label(container)
    try:
        stream = client.api.logs(container["Id"], stream=True, follow=follow, tail=tail,
                                 timestamps=True)
        if streams is not None:
            streams.append(stream)
        pending = b""
        skipping = False  # inside a line already cut: drop bytes until its newline
        for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                if skipping:
                    skipping = False
                    continue
                yield clip(_format(raw, name), max_line_bytes)
            if len(pending) > max_line_bytes + 64:  # room for the timestamp and name
                if not skipping:
                    yield clip(_format(pending, name), max_line_bytes)
                pending, skipping = b"", True
        if pending and not skipping:
            yield clip(_format(pending, name), max_line_bytes)
    except DockerException:
        return  # the container went away (a redeploy): its stream just ends


def _format(raw: bytes, name: str) -> str:
    stamp, _, text = raw.decode(errors="replace").rstrip("\r").partition(" ")
    return f"{stamp} {name}: {text}"
