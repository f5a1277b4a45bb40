"""`slipway run` relays output and exits with the status from the stream's trailer."""

import io

from slipway.cli.ps import relay_run_output


def relay(chunks):
    out = io.BytesIO()
    return relay_run_output(iter(chunks), out), out.getvalue()


def test_output_and_status_come_through():
    assert relay([b"hello\n", b"\n\x1eslipway-status:3\n"]) == (3, b"hello\n")


def test_a_sentinel_split_over_chunks_is_still_found():
    assert relay([b"a\n", b"\n\x1eslip", b"way-status:0\n"]) == (0, b"a\n")
    assert relay([b"no newline", b"\n", b"\x1eslipway-status:", b"7\n"]) == (7, b"no newline")


def test_newlines_in_the_output_are_kept():
    assert relay([b"\n\n", b"x\n", b"\n\x1eslipway-status:0\n"]) == (0, b"\n\nx\n")


def test_a_broken_stream_exits_1():
    assert relay([b"partial"]) == (1, b"partial")
    assert relay([b"x\n\x1eslipway-status:-1\n"]) == (1, b"x")
