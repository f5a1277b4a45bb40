"""The bounds on runtime log streams, and the server-sent event framing."""

from __future__ import annotations

from slipway.platform.applogs import RateLimiter, _format, clip, container_label
from slipway.web.dashboard.views import sse


def test_long_lines_are_cut_on_a_character_boundary():
    assert clip("short", 10) == "short"
    assert clip("x" * 20, 10) == "x" * 10 + "…"
    assert clip("é" * 10, 5) == "éé…"  # 5 bytes hold two 2-byte characters, not half a third


def test_a_flood_is_thinned_and_the_drop_is_counted():
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    now[0] = 1.5
    assert limiter.allow() == (True, 2)
    assert limiter.allow() == (True, 0)


def test_log_lines_name_their_container():
    container = {"Id": "abcdef123456", "Labels": {"slipway.process": "web"}}
    assert container_label(container) == "web.abcdef"
    raw = b"2026-11-23T10:00:00.000000000Z hello \xff\r"
    assert _format(raw, "web.abcdef") == "2026-11-23T10:00:00.000000000Z web.abcdef: hello \ufffd"


def test_server_sent_events_cannot_be_split_by_the_data():
    assert sse("line", "a\nb\r\n\nevent: end") == (
        "event: line\ndata: a\ndata: b\ndata: \ndata: event: end\n\n")


class FakeAPI:
    """Docker's low-level API as app_log_lines uses it: two containers, one flooding."""

    def __init__(self, chunks_by_id: dict[str, list[bytes]]) -> None:
        self.chunks_by_id = chunks_by_id

    def containers(self, all: bool, filters: dict) -> list[dict]:
        release = {"a1": "7", "b2": "7", "old": "6"}
        return [{"Id": cid, "Labels": {"slipway.process": "web", "slipway.release": release[cid]}}
                for cid in self.chunks_by_id]

    def logs(self, container_id, stream, follow, tail, timestamps):
        assert stream and timestamps and tail == 10
        # In pieces of 64 KiB, as a socket would hand them over.
        data = b"".join(self.chunks_by_id[container_id])
        return (data[i:i + 65536] for i in range(0, len(data), 65536))


class FakeClient:
    def __init__(self, chunks_by_id):
        self.api = FakeAPI(chunks_by_id)


def test_many_megabytes_of_output_arrive_cut_and_thinned():
    from slipway.platform.applogs import app_log_lines

    flood = [b"2026-01-01T00:00:01Z " + b"x" * 5_000_000 + b"\n"]  # one 5 MB line
    flood += [b"2026-01-01T00:00:02Z spam %d\n" % i for i in range(20_000)]
    client = FakeClient({"a1": flood, "b2": [b"2026-01-01T00:00:00Z <script>hi</script>\n"],
                         "old": [b"2026-01-01T00:00:00Z from the old release\n"]})
    lines = list(app_log_lines(client, "inst", "shop", 7, tail=10, follow=True,
                               max_line_bytes=100, max_lines_per_second=50, idle_seconds=5))
    assert all(len(line.encode()) <= 100 + len("…".encode()) for line in lines)
    assert not any("old release" in line for line in lines)
    assert lines.count("2026-01-01T00:00:01Z web.a1: " + "x" * 71 + "…") == 1  # cut once
    assert not any(line.startswith("xxx") for line in lines)  # its rest was skipped
    assert lines[0].startswith("2026-01-01T00:00") and len(lines) < 2000  # thinned, not 20 000

    past = list(app_log_lines(client, "inst", "shop", 7, tail=10, follow=False,
                              max_line_bytes=100, max_lines_per_second=50))
    assert past[0].endswith("b2: <script>hi</script>")  # oldest first across containers
    assert list(app_log_lines(client, "inst", "shop", None, tail=10, follow=False,
                              max_line_bytes=100, max_lines_per_second=50)) == []


def test_following_a_quiet_stream_outlasts_the_redis_client_timeout(tmp_path):
    """A build silent for longer than redis-py's default 5 s read timeout keeps its log."""
    from slipway.platform.logstream import connect, follow
    from tests.support import start_redis, stop_process

    proc, url = start_redis(tmp_path)
    try:
        events = follow(connect(url), "slipway:log:quiet", idle_timeout=6)
        assert next(events) == ("idle", "")
    finally:
        stop_process(proc)
