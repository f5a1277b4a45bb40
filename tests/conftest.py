from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from slipway.config import reset_settings
from slipway.platform import db
from slipway.platform.logstream import connect
from tests.support import PASSWORD, start_postgres, start_redis, stop_process


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server for the whole session."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def postgres_url():
    """A private PostgreSQL server for the whole session."""
    # Not under pytest's tmp: its 0700 parents keep the postgres user out.
    workdir = Path(tempfile.mkdtemp(prefix="slipway-test-pg-"))
    workdir.chmod(0o755)
    proc, url = start_postgres(workdir)
    yield url
    stop_process(proc)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A migrated, empty database: SQLite in a temp dir, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'slipway.db'}"
        db.migrate(url)
        yield url
        db.dispose_all()
        return
    import uuid

    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + f"/{name}"
    db.migrate(url)
    yield url
    db.dispose_all()
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path, monkeypatch, database_url, redis_url):
    """Settings for one test: a fresh SLIPWAY_HOME and database, the session's Redis
    (counters are kept per SLIPWAY_HOME, so tests do not share them)."""
    monkeypatch.setenv("SLIPWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLIPWAY_SECRET_KEY", "test-secret-key")
    reset_settings()
    from slipway.config import get_settings

    yield get_settings()
    reset_settings()


@pytest.fixture
def client(settings):
    """A Flask test client of the whole web app on ``settings``."""
    from slipway.web.app import create_app

    return create_app(settings).test_client()


@pytest.fixture
def dash_settings(settings, redis_url):
    """Settings for dashboard tests, on a Redis without other tests' sign-in counters
    and sessions."""
    connect(redis_url).flushdb()
    return settings.model_copy(update={"redis_url": redis_url})


@pytest.fixture
def web(dash_settings):
    """The web app on ``dash_settings``."""
    from slipway.web.app import create_app

    return create_app(dash_settings)


@pytest.fixture
def accounts(dash_settings):
    """Two users with dashboard passwords (PASSWORD), ada and bob: their API tokens."""
    from slipway.platform import users

    tokens = {}
    with db.session_scope(dash_settings.database) as session:
        for name in ("ada", "bob"):
            user, token = users.create_user(session, f"{name}@example.com")
            users.set_password(session, user, PASSWORD)
            tokens[name] = token
    return tokens
