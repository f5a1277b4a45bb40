"""A push hears its own build's log and status, also after an app was deleted and its
ids came back: SQLite reuses the ids of deleted rows (apps and builds alike), which
PostgreSQL never does; the log stream is keyed by the app's never-reused uid.

Real parts: `slipway up` on SQLite and on PostgreSQL, the git client over smart HTTP,
the Docker engine, nginx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_health_and_app_json import SECRET_SERVER, base_image, new_app, push

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh_postgres(postgres_url) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"e2e_{uuid.uuid4().hex[:12]}"
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(request) -> Iterator[tuple[Stack, str]]:
    settings = {}
    if request.param == "postgresql":
        settings["DATABASE_URL"] = request.getfixturevalue("fresh_postgres")
    with Stack.running(settings) as stack:
        stack.sign_up("dev@example.com")
        yield stack, request.param


def build_ids(stack: Stack, app: str) -> list[tuple[int, str]]:
    lines = stack.slipway("builds", "--app", app).stdout.splitlines()
    return [(int(line.split()[0]), line.split()[1]) for line in lines]


def test_a_push_after_an_app_was_deleted_hears_its_own_log_and_status(stack, tmp_path: Path):
    stack, database = stack
    failing = f"FROM {base_image()}\nRUN echo OLD-BUILD-LINE && exit 3\n"
    old = new_app(stack, tmp_path / "old", "old", {"Dockerfile": failing})
    result = push(stack, old)
    assert result.returncode != 0
    assert "OLD-BUILD-LINE" in result.stderr
    assert "remote:  !     Push rejected: nothing was deployed" in result.stderr
    [(old_build, status)] = build_ids(stack, "old")
    assert status == "failed"
    stack.slipway("apps:destroy", "--app", "old", "--confirm", "old")

    server = (f"FROM {base_image()}\nCOPY server.py /srv/server.py\nUSER 10001\n"
              'CMD ["python3", "-u", "/srv/server.py"]\n')
    new = new_app(stack, tmp_path / "new", "new", {"Dockerfile": server,
                                                   "server.py": SECRET_SERVER})
    result = push(stack, new)
    assert result.returncode == 0, result.stderr
    assert "remote: -----> Deployed v1" in result.stderr
    assert "OLD-BUILD-LINE" not in result.stderr and "Push rejected" not in result.stderr
    [(new_build, status)] = build_ids(stack, "new")
    assert status == "succeeded"
    if database == "sqlite":
        assert new_build == old_build  # the id came back: the case this test is about
    log = stack.slipway("builds", "--app", "new", str(new_build)).stdout
    assert "Deployed v1" in log and "OLD-BUILD-LINE" not in log
    assert stack.fetch("new").status_code == 200
