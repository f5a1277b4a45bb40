"""A push is hostile until proven otherwise: it writes nothing outside its build
directory, builds on no other tenant's image, stays within its limits, and an app
destroyed hands nothing to the next app of its name.

Real parts: `slipway up`, the git client over smart HTTP, the Docker engine, nginx.
"""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path

import docker
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import TEST_LABEL, TEST_RUN, wait_for

pytestmark = pytest.mark.e2e

SERVER = textwrap.dedent('''
    import http.server, os

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = open("/srv/static/message.txt", "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
''')

APP_DOCKERFILE = textwrap.dedent("""
    FROM slipway/python:3.11
    COPY . /srv
    USER 10001
    CMD ["python3", "/srv/server.py"]
""")

BUILD_MEMORY_MB = 128
BUILD_PIDS = 64


@pytest.fixture(scope="module")
def stack():
    with Stack.running({
        "SLIPWAY_BUILD_MEMORY": f"{BUILD_MEMORY_MB}m",
        "SLIPWAY_BUILD_PIDS": str(BUILD_PIDS),
        "SLIPWAY_RECONCILE_INTERVAL": "2",
    }) as stack:
        yield stack


@pytest.fixture(scope="module")
def users(stack):
    """Two tenants, each with a token; ``use(email)`` logs the CLI and git in as one."""
    tokens = {email: stack.sign_up(email) for email in ("alice@example.com", "bob@example.com")}

    def use(email: str) -> None:
        stack.slipway("login", "--api-url", stack.api_url, "--token", tokens[email])
    return use


def new_repo(stack: Stack, path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    stack.git("init", "-q", "-b", "main", cwd=path)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def push(stack: Stack, repo: Path) -> subprocess.CompletedProcess:
    return stack.git("push", "slipway", "main", cwd=repo, check=False)


def deployed_app(stack: Stack, tmp_path: Path, name: str) -> Path:
    """``name`` created and pushed: it serves its static/message.txt through a symlink
    that stays inside the tree (static -> public)."""
    repo = new_repo(stack, tmp_path / name, {
        "Dockerfile": APP_DOCKERFILE, "server.py": SERVER, "public/message.txt": f"I am {name}"})
    (repo / "static").symlink_to("public")
    commit(stack, repo, "app")
    stack.slipway("apps:create", name, cwd=repo)
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert stack.fetch(name).text == f"I am {name}"
    return repo


def image_of(name: str) -> tuple[str, str]:
    """(tag, id) of the image the app's web container runs."""
    client = docker.from_env()
    [web] = client.containers.list(filters={"label": [
        f"slipway.app-name={name}", "slipway.process=web", f"{TEST_LABEL}={TEST_RUN}"]})
    image = client.images.get(web.attrs["Image"])
    [tag] = image.tags
    return tag, image.id


def test_a_tree_that_writes_through_its_own_symlinks_is_refused(stack, users, tmp_path):
    # `a -> .`, a directory `a/` holding `y -> ../<outside>`, and `y/` with a file: made
    # with git's plumbing, as no checkout can hold it.
    users("alice@example.com")
    outside = Path(f"/tmp/slipway-outside-{uuid.uuid4().hex[:8]}")
    repo = new_repo(stack, tmp_path / "mkt", {})
    stack.slipway("apps:create", "iso-mktree", cwd=repo)

    def obj(*args: str, data: str = "") -> str:
        return subprocess.run(["git", *args], cwd=repo, env=stack.env, input=data, text=True,
                              capture_output=True, check=True).stdout.strip()

    blob = obj("hash-object", "-w", "--stdin", data="pwned")
    dot = obj("hash-object", "-w", "--stdin", data=".")
    out = obj("hash-object", "-w", "--stdin", data=f"../{outside.name}")
    a_tree = obj("mktree", data=f"120000 blob {out}\ty\n")
    y_tree = obj("mktree", data=f"100644 blob {blob}\tfile\n")
    root = obj("mktree", "--missing",
               data=f"120000 blob {dot}\ta\n040000 tree {a_tree}\ta\n040000 tree {y_tree}\ty\n")
    head = obj("commit-tree", root, "-m", "crafted")
    stack.git("update-ref", "refs/heads/main", head, cwd=repo)
    result = push(stack, repo)
    assert result.returncode != 0
    assert "duplicateEntries: contains duplicate file entries" in result.stderr, result.stderr
    assert not outside.exists()
    assert stack.git("ls-remote", "slipway", cwd=repo).stdout == ""


@pytest.mark.parametrize(("links", "refused"), [
    ({"escape": "../../../../../../etc"}, "escape"),
    # Each link alone resolves inside; together they climb out.
    ({"s": ".", "t": "s/.."}, "t"),
])
def test_a_symlink_out_of_the_tree_rejects_the_push_naming_it(stack, users, tmp_path, links,
                                                               refused):
    users("alice@example.com")
    name = f"iso-link-{refused}"
    repo = new_repo(stack, tmp_path / name, {"Dockerfile": APP_DOCKERFILE, "server.py": SERVER})
    for link, target in links.items():
        (repo / link).symlink_to(target)
    commit(stack, repo, "links")
    stack.slipway("apps:create", name, cwd=repo)
    result = push(stack, repo)
    assert result.returncode != 0
    assert (f"remote:  !     Refusing to unpack '{refused}': it is a symlink that points "
            "outside the app") in result.stderr, result.stderr


def test_a_build_cannot_start_from_another_tenants_image(stack, users, tmp_path):
    users("alice@example.com")
    deployed_app(stack, tmp_path, "iso-victim")
    tag, image_id = image_of("iso-victim")
    assert tag.startswith("slipway-app/") and "iso-victim" not in tag

    users("bob@example.com")
    attacks = {
        "from-tag": (f"FROM {tag}\n", 1, f"FROM {tag}"),
        "from-id": (f"FROM {image_id}\n", 1, f"FROM {image_id}"),
        "from-arg": (f"ARG BASE={image_id[7:19]}\nFROM ${{BASE}}\n", 2, f"FROM {image_id[7:19]}"),
        "copy-from": (f"FROM slipway/python:3.11\nCOPY --from={tag} /srv /stolen\n", 2,
                      f"COPY --from {tag}"),
    }
    for label, (dockerfile, line, what) in attacks.items():
        name = f"iso-{label}"
        repo = new_repo(stack, tmp_path / name, {"Dockerfile": dockerfile})
        commit(stack, repo, "attack")
        stack.slipway("apps:create", name, cwd=repo)
        result = push(stack, repo)
        assert result.returncode != 0, label
        assert (f"Dockerfile line {line}: {what} is refused: it is an image of this host that "
                "is neither a base image nor this app's own. A build can start from the base "
                "images, images from a registry and this app's own images") in result.stderr, \
            result.stderr

    # Its own earlier image is fine.
    repo = deployed_app(stack, tmp_path, "iso-own")
    own_tag, _ = image_of("iso-own")
    (repo / "Dockerfile").write_text(f"FROM {own_tag}\nRUN echo again > /tmp/again\n")
    commit(stack, repo, "from my own image")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert stack.fetch("iso-own").text == "I am iso-own"


def test_a_destroy_docker_refuses_hands_nothing_to_the_next_app_of_that_name(
        stack, users, tmp_path):
    users("alice@example.com")
    (tmp_path / "alice").mkdir()
    deployed_app(stack, tmp_path / "alice", "iso-reborn")
    tag, image_id = image_of("iso-reborn")
    client = docker.from_env()
    # A container Slipway does not know (the labels it would inherit from the image are
    # overridden) holds the image: Docker refuses to remove it.
    blocker = client.containers.run(image_id, ["sleep", "300"], detach=True,
                                    labels={TEST_LABEL: TEST_RUN, "slipway.instance": "other"})
    try:
        out = stack.slipway("apps:destroy", "--app", "iso-reborn", "--confirm", "iso-reborn")
        assert "Destroyed iso-reborn" in out.stdout
        assert client.images.get(image_id)  # still there, for reconcile

        users("bob@example.com")
        (tmp_path / "bob").mkdir()
        repo = new_repo(stack, tmp_path / "bob" / "iso-reborn", {
            "Dockerfile": f"FROM {tag}\n"})
        commit(stack, repo, "reuse the name")
        stack.slipway("apps:create", "iso-reborn", cwd=repo)
        assert stack.git("ls-remote", "slipway", cwd=repo).stdout == ""  # no old commits
        assert stack.slipway("builds", "--app", "iso-reborn").stdout == ""
        assert stack.slipway("config", "--app", "iso-reborn").stdout == ""
        result = push(stack, repo)
        assert result.returncode != 0
        assert f"Dockerfile line 1: FROM {tag} is refused" in result.stderr, result.stderr
    finally:
        blocker.remove(force=True)
    # Once nothing holds it, reconcile removes what the destroy could not.
    wait_for(lambda: not any(image.id == image_id for image in client.images.list()),
             timeout=30, message="reconcile to remove the destroyed app's image")


@pytest.mark.parametrize(("step", "message"), [
    ("RUN for i in $(seq 1 200); do sleep 5 & done; wait",
     f"The build ran into its process limit ({BUILD_PIDS} processes, SLIPWAY_BUILD_PIDS)"),
    ("RUN awk 'BEGIN { s = \"x\"; for (i = 0; i < 31; i++) s = s s; print length(s) }'",
     f"The build ran into its memory limit ({BUILD_MEMORY_MB} MB, SLIPWAY_BUILD_MEMORY)"),
])
def test_a_build_step_past_its_limits_fails_naming_the_limit(stack, users, tmp_path, step,
                                                             message):
    users("bob@example.com")
    name = "iso-forks" if "seq" in step else "iso-memory"
    repo = new_repo(stack, tmp_path / name, {"Dockerfile": f"FROM slipway/python:3.11\n{step}\n"})
    commit(stack, repo, "greedy")
    stack.slipway("apps:create", name, cwd=repo)
    result = push(stack, repo)
    assert result.returncode != 0
    assert f"remote:  !     {message}" in result.stderr, result.stderr
    # The machine is fine: another app still builds and serves.
    deployed_app(stack, tmp_path, f"{name}-next")
