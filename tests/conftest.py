from __future__ import annotations

import pytest

from tests.support import start_redis, stop_process


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server for the whole session."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(proc)
