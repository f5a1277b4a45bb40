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
