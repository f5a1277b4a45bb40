"""Push Node.js apps (npm with Express, pnpm with a build script, yarn) through the router.

Real parts: `slipway up`, the Docker engine with the bootstrapped
slipway/node images, the npm registry (through the host's CA bundle), git over
smart HTTP. The fixtures' lock files were made with the machine's npm and pnpm.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def stack():
    with Stack.running(prefix="slipway-e2e-node-", language="node") as stack:
        stack.sign_up("node@example.com")
        yield stack


def commit(stack: Stack, repo: Path, message: str) -> None:
    stack.git("add", "-A", cwd=repo)
    stack.git("commit", "-qm", message, cwd=repo)


def new_app(stack: Stack, tmp_path_factory, fixture: str, name: str) -> Path:
    repo = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(FIXTURES / fixture, repo)
    stack.git("init", "-q", "-b", "main", cwd=repo)
    commit(stack, repo, "first")
    stack.slipway("apps:create", name, cwd=repo)
    return repo


def push(stack: Stack, repo: Path):
    return stack.git("push", "slipway", "main", cwd=repo, check=False)


@pytest.fixture(scope="module")
def express(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "node_express", "express")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "remote: -----> Node.js app detected" in result.stderr
    assert "Installing dependencies from package-lock.json with npm ci" in result.stderr
    # ">=18" admits the default, Node 24 (the active LTS); 18 itself is past its end of life.
    assert 'Using slipway/node:24 (engines.node ">=18")' in result.stderr
    assert "FROM slipway/node:24-build AS build" in result.stderr
    assert "remote: -----> Deployed v1" in result.stderr
    return repo


def test_express_app_answers_through_the_router(stack, express):
    response = stack.fetch("express")
    assert response.status_code == 200
    assert response.text == "hello from express (NODE_ENV=production)\n"


def test_code_only_change_reuses_the_dependency_layer(stack, express):
    (express / "message.js").write_text('module.exports = "hello again from express";\n')
    commit(stack, express, "code only")
    result = push(stack, express)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    install = next(i for i, line in enumerate(lines) if 'RUN ["npm", "ci", "--omit=dev"]' in line)
    assert "Using cache" in lines[install + 1]  # npm ci did not run again
    assert stack.fetch("express").text == "hello again from express (NODE_ENV=production)\n"


def test_impossible_engines_range_is_rejected_and_the_old_release_serves(stack, express):
    before = stack.fetch("express").text
    remote_before = stack.git("ls-remote", "slipway", "refs/heads/main", cwd=express).stdout
    package = json.loads((express / "package.json").read_text())
    package["engines"] = {"node": ">=26"}
    (express / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    commit(stack, express, "node 26")
    result = push(stack, express)
    assert result.returncode != 0
    assert 'engines.node ">=26" cannot be met: this host builds Node 20, 22, 24' in result.stderr
    assert "Push rejected: the running release keeps serving" in result.stderr
    assert stack.fetch("express").text == before
    assert stack.git("ls-remote", "slipway", "refs/heads/main", cwd=express).stdout == (
        remote_before)


def test_pnpm_app_with_a_build_script(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "node_pnpm", "pnpm-app")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "Installing dependencies from pnpm-lock.yaml with pnpm" in result.stderr
    response = stack.fetch("pnpm-app")
    assert response.status_code == 200
    # is-number was there for the build and is gone from what runs.
    assert response.text == "hello from pnpm, built true 1m devDependencies pruned\n"


def test_yarn_classic_app_defaults_to_index_js(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "node_yarn", "yarn-app")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "Installing dependencies from yarn.lock with yarn (classic)" in result.stderr
    assert "No Procfile: web process is `node index.js`" in result.stderr
    assert stack.fetch("yarn-app").text == "hello from yarn 1s\n"
