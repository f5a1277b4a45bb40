"""The build log stream survives a silent build step (redis-py's default read timeout)."""

from slipway.platform.logstream import connect, follow


def test_a_silent_build_step_reports_idle_instead_of_failing(redis_url):
    client = connect(redis_url)
    client.xadd("slipway:log:test-silent", {"line": "started"})
    stream = follow(client, "slipway:log:test-silent", idle_timeout=5)
    assert next(stream)[0] == "line"
    # redis-py 8 would give up reading after its 5 s default, exactly when XREAD returns.
    assert next(stream) == ("idle", "")
