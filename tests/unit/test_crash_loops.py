"""Crash-loop detection and the safe display of a crashed process's output."""

import datetime as dt

from slipway.platform.ps import CRASH_LOG_LINE_CHARS, is_crashed, safe_lines

NOW = dt.datetime(2026, 11, 24, 1, 0, 0, tzinfo=dt.UTC)


def state(status: str, started: str = "2026-11-24T00:59:55.123456789Z", **extra) -> dict:
    return {"Status": status, "Restarting": status == "restarting", "StartedAt": started,
            "ExitCode": extra.pop("code", 0), **extra}


def test_restarting_and_stopped_processes_are_crashed():
    assert is_crashed(state("restarting"), 1, NOW)
    assert is_crashed(state("exited", code=137), 0, NOW)
    assert is_crashed(state("exited", code=0), 0, NOW)  # a web or worker must not end
    assert is_crashed(state("dead"), 0, NOW)


def test_a_process_up_again_after_restarts_is_crashed_until_it_stays_up():
    assert is_crashed(state("running"), 2, NOW)  # started 5 s ago, 2 restarts
    assert not is_crashed(state("running", "2026-11-24T00:59:00Z"), 5, NOW)  # up a minute
    assert not is_crashed(state("running"), 1, NOW)  # one kill is not a loop
    assert not is_crashed(state("running"), 0, NOW)
    assert not is_crashed(state("created"), 0, NOW)
    assert is_crashed(state("running", "garbage"), 3, NOW)


def test_crash_output_is_decoded_bounded_and_free_of_terminal_controls():
    raw = b"".join(f"line {i}\n".encode() for i in range(50))
    lines = safe_lines(raw, 20)
    assert lines == [f"line {i}" for i in range(30, 50)]
    assert safe_lines(b"bad \xff\xfe bytes\r\n\x1b[31mred\x1b[0m\tok\x00\n") == [
        "bad \ufffd\ufffd bytes", "\ufffd[31mred\ufffd[0m\tok\ufffd"]
    assert safe_lines(b"x" * 10_000) == ["x" * CRASH_LOG_LINE_CHARS]
    assert safe_lines(b"") == []
