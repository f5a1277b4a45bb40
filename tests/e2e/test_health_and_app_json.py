"""Real apps deploy unmodified: host-checking apps are health-checked as their users
reach them, app.json `env` is set on the first deploy, and a failed first push says
that nothing was deployed.

Real parts: `slipway up`, the git client over smart HTTP, the Docker engine, nginx.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from pathlib import Path

import docker
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_push_to_deploy import commit
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# Like Django behind a proxy: 400 to any Host but its own (ALLOWED_HOSTS), 500 when
# the router's X-Forwarded-Proto is missing or wrong. BROKEN makes every page a 500
# for its own users too, with a traceback in its output.
STRICT_SERVER = textwrap.dedent('''
    import http.server, os, sys

    OWN_HOST, PROTO, TEXT, BROKEN = {host!r}, "http", {text!r}, {broken!r}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Host", "").rsplit(":", 1)[0] != OWN_HOST:
                self.answer(400, "Invalid HTTP_HOST header: %r" % self.headers.get("Host"))
            elif self.headers.get("X-Forwarded-Proto") != PROTO or BROKEN:
                print("Traceback: Internal Server Error: " + self.path, file=sys.stderr,
                      flush=True)
                self.answer(500, "Server Error (500)")
            else:
                self.answer(200, "ok" if self.path == "/health" else TEXT)

        def answer(self, status, text):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
''')

# Serves the length of SECRET_KEY at /, its digest at /digest and GREETING at /greeting.
SECRET_SERVER = textwrap.dedent('''
    import hashlib, http.server, os

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            secret = os.environ.get("SECRET_KEY", "")
            text = {"/": str(len(secret)), "/digest": hashlib.sha256(secret.encode()).hexdigest(),
                    "/greeting": os.environ.get("GREETING", "<unset>")}.get(self.path, "")
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
''')


def base_image() -> str:
    tags = [tag for image in docker.from_env().api.images() for tag in image.get("RepoTags") or []]
    return sorted(t for t in tags if t.startswith(("slipway/python:", "python:")))[-1]


def dockerfile() -> str:
    """A Dockerfile app: no dependencies to install, so a push builds in seconds."""
    return (f"FROM {base_image()}\nCOPY server.py /srv/server.py\nUSER 10001\n"
            'CMD ["python3", "-u", "/srv/server.py"]\n')


@pytest.fixture(scope="module")
def stack():
    with Stack.running({"SLIPWAY_HEALTH_WAIT": "0.5"}) as stack:
        stack.sign_up("dev@example.com")
        yield stack


def new_app(stack: Stack, path: Path, name: str, files: dict[str, str]) -> Path:
    path.mkdir()
    stack.git("init", "-q", "-b", "main", cwd=path)
    write(path, files)
    commit(stack, path, "first")
    stack.slipway("apps:create", name, cwd=path)
    return path


def write(repo: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(text)


def push(stack: Stack, repo: Path) -> subprocess.CompletedProcess:
    return stack.git("push", "slipway", "main", cwd=repo, check=False)


def strict(text: str, broken: bool = False) -> str:
    return STRICT_SERVER.format(host="strict.localhost", text=text, broken=broken)


def test_a_host_checking_app_is_checked_as_its_users_reach_it(stack, tmp_path):
    # A declared check wants a 2xx: asked at the container's IP, as before, it got a 400.
    app_json = json.dumps({"healthchecks": {"web": [{"path": "/health", "content": "ok"}]}})
    repo = new_app(stack, tmp_path / "strict", "strict", {
        "Dockerfile": dockerfile(), "server.py": strict("strict v1"), "app.json": app_json})
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "remote: -----> Deployed v1" in result.stderr
    assert stack.fetch("strict").text == "strict v1"

    # Every page answers its users 500 (Django's case): the default check sees it too.
    write(repo, {"server.py": strict("strict v2", broken=True), "app.json": None})
    commit(stack, repo, "broken")
    result = push(stack, repo)
    assert result.returncode != 0
    assert ("remote:  !     Health check GET / failed 5 time(s), last: answered 500 (asked "
            f"with Host strict.localhost:{stack.http_port}, X-Forwarded-Proto http)"
            in result.stderr), result.stderr
    assert "remote:  !     Traceback: Internal Server Error: /" in result.stderr
    assert "remote:  !     Push rejected: the running release keeps serving" in result.stderr
    assert stack.fetch("strict").text == "strict v1"

    # Restarts check the same way.
    stack.slipway("ps:restart", "--app", "strict")
    assert stack.fetch("strict").text == "strict v1"


def test_a_failed_first_push_says_nothing_was_deployed(stack, tmp_path):
    repo = new_app(stack, tmp_path / "never", "never", {
        "Dockerfile": dockerfile(), "server.py": SECRET_SERVER,
        "app.json": json.dumps({"env": {"my-key": {"value": "x"}}})})
    result = push(stack, repo)
    assert result.returncode != 0
    assert ("remote:  !     app.json env/my-key: Invalid config key 'my-key': use letters, "
            "digits and underscores, not starting with a digit") in result.stderr
    assert "remote:  !     Push rejected: nothing was deployed" in result.stderr
    assert "keeps serving" not in result.stderr


def test_app_json_env_is_set_on_the_first_deploy_and_kept(stack, tmp_path):
    app_json = json.dumps({"env": {
        "SECRET_KEY": {"description": "signs sessions", "generator": "secret"},
        "GREETING": {"value": "hello from app.json"},
        "STRIPE_KEY": {"description": "from your Stripe dashboard"},
        "OPTIONAL": {"required": False},
    }})
    repo = new_app(stack, tmp_path / "secretive", "secretive", {
        "Dockerfile": dockerfile(), "server.py": SECRET_SERVER, "app.json": app_json})
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert ("remote:        Config vars set from app.json: GREETING, SECRET_KEY (generated)"
            in result.stderr)
    assert ("remote:        app.json env/STRIPE_KEY is required and not set: "
            "slipway config:set STRIPE_KEY=...") in result.stderr
    assert "OPTIONAL" not in result.stderr
    config = json.loads(stack.slipway("config", "--app", "secretive", "--json").stdout)
    secret = config["SECRET_KEY"]
    assert secret not in result.stderr and set(config) == {"SECRET_KEY", "GREETING"}
    assert stack.fetch("secretive").text == "64"
    assert stack.fetch("secretive", "/greeting").text == "hello from app.json"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert stack.fetch("secretive", "/digest").text == digest

    # Later pushes set nothing, and change nothing the user changed.
    stack.slipway("config:set", "--app", "secretive", "GREETING=mine")
    wait_for(lambda: stack.fetch("secretive", "/greeting").text == "mine", timeout=60,
             message="the config change to deploy")
    write(repo, {"server.py": SECRET_SERVER + "\n# v2\n"})
    commit(stack, repo, "second")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "Config vars set" not in result.stderr
    assert stack.fetch("secretive", "/digest").text == digest
    assert stack.fetch("secretive", "/greeting").text == "mine"
