"""Apps' bare git repositories and the hook that turns a push into a build."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import git

HOOK_SOURCE = Path(__file__).parent / "hooks" / "pre_receive.py"


def repo_path(repos_dir: Path, app: str) -> Path:
    return repos_dir / f"{app}.git"


def ensure_repo(repos_dir: Path, app: str) -> Path:
    """Create the app's bare repository if needed and (re)install its pre-receive hook."""
    path = repo_path(repos_dir, app)
    if not (path / "HEAD").exists():
        repo = git.Repo.init(path, bare=True, mkdir=True, initial_branch="main")
        with repo.config_writer() as config:
            config.set_value("http", "receivepack", "true")
            config.set_value("receive", "denyDeletes", "true")
            config.set_value("receive", "denyNonFastForwards", "false")
    hook = path / "hooks" / "pre-receive"
    # Stdlib only, isolated: a fast start on every push, whatever the environment.
    text = f"#!{sys.executable} -IS\n" + HOOK_SOURCE.read_text()
    if not hook.exists() or hook.read_text() != text:
        tmp = hook.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(hook)
    return path


def delete_repo(repos_dir: Path, app: str) -> None:
    shutil.rmtree(repo_path(repos_dir, app), ignore_errors=True)
