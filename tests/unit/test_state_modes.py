"""SLIPWAY_HOME is private, and nginx's runtime directory lies outside it."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from slipway.config import Settings
from slipway.router.controller import default_runtime_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_home_makes_and_tightens_it_to_0700_with_a_private_database(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "slipway.db").touch(mode=0o644)
    (home / "slipway.db").chmod(0o644)
    settings = Settings(home=home, database_url=None)
    settings.ensure_home()
    assert mode(home) == 0o700
    assert mode(home / "slipway.db") == 0o600
    for path in (settings.repos_dir, settings.builds_dir, settings.router_dir):
        assert mode(path) == 0o700


def test_a_new_database_file_is_private_before_sqlite_opens_it(tmp_path):
    settings = Settings(home=tmp_path / "new", database_url=None)
    settings.ensure_home()
    database = tmp_path / "new" / "slipway.db"
    assert database.stat().st_size == 0 and mode(database) == 0o600


def test_no_database_file_with_another_database(tmp_path):
    Settings(home=tmp_path / "h", database_url="postgresql+psycopg://x/y").ensure_home()
    assert not (tmp_path / "h" / "slipway.db").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_a_home_of_another_user_is_refused(tmp_path):
    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(PermissionError) as caught:
        Settings(home=home).ensure_home()
    assert str(caught.value) == (f"SLIPWAY_HOME {home} belongs to uid {nobody.pw_uid}, not to "
                                 "this user (uid 0): run Slipway as its owner")
    assert mode(home) == 0o755


def test_the_runtime_dir_is_outside_home_and_one_per_state_dir():
    state = Path("/var/lib/slipway/router")
    as_root = default_runtime_dir(state, 0)
    assert as_root.parent == Path("/var/lib/slipway-nginx")
    assert default_runtime_dir(state, 1000) == Path(f"/var/tmp/slipway-nginx-1000-{as_root.name}")
    assert default_runtime_dir(Path("/srv/other/router"), 0) != as_root
    assert not as_root.is_relative_to(state.parent)
