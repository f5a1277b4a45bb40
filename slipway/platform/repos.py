"""Apps' bare git repositories and the hook that turns a push into a build.

Repositories are named by the app's uid, never its name: a name taken again after
a destroy starts from an empty repository, whatever the old one left behind.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import git

HOOK_SOURCE = Path(__file__).parent / "hooks" / "pre_receive.py"

# Every pushed object is checked before it is taken (a tree with two entries of one
# name, or with `..` or `.git` in it, is refused), and so is what is fetched. The
# checks git only warns about by default are errors here: no app needs such paths.
RECEIVE_CHECKS = {
    "receive.fsckObjects": "true",
    "transfer.fsckObjects": "true",
    "receive.fsck.hasDot": "error",
    "receive.fsck.hasDotdot": "error",
    "receive.fsck.hasDotgit": "error",
    "receive.fsck.fullPathname": "error",
    "receive.fsck.emptyName": "error",
    "receive.fsck.duplicateEntries": "error",
}


def git_config_env(settings: dict[str, str]) -> dict[str, str]:
    """``settings`` as git's GIT_CONFIG_* environment: they hold for every repository a
    git command runs in, whenever it was made."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def repo_path(repos_dir: Path, app_uid: str) -> Path:
    return repos_dir / f"{app_uid}.git"


def ensure_repo(repos_dir: Path, app_uid: str) -> Path:
    """Create the app's bare repository if needed and (re)install its pre-receive hook."""
    path = repo_path(repos_dir, app_uid)
    if not (path / "HEAD").exists():
        repo = git.Repo.init(path, bare=True, mkdir=True, initial_branch="main")
        with repo.config_writer() as config:
            config.set_value("http", "receivepack", "true")
            config.set_value("receive", "denyDeletes", "true")
            config.set_value("receive", "denyNonFastForwards", "false")
            for key, value in RECEIVE_CHECKS.items():
                section, _, option = key.rpartition(".")
                config.set_value(section, option, value)
    hook = path / "hooks" / "pre-receive"
    # Stdlib only, isolated: a fast start on every push, whatever the environment.
    text = f"#!{sys.executable} -IS\n" + HOOK_SOURCE.read_text()
    if not hook.exists() or hook.read_text() != text:
        tmp = hook.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(hook)
    return path


def delete_repo(repos_dir: Path, app_uid: str) -> None:
    shutil.rmtree(repo_path(repos_dir, app_uid), ignore_errors=True)
