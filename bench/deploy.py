"""Push-to-live times: cold (first push, dependencies installed) and warm (code-only change).

Starts a whole Slipway (`slipway up`) in a temporary home on free ports, pushes a
small Flask app (two dependencies), with ``--stack node`` an Express app
(npm ci from tests/fixtures/node_express's package-lock.json), or with
``--stack django`` a Django app with whitenoise's manifest storage (Django,
whitenoise, gunicorn from the package index; collectstatic at every build),
with the real git client, and measures from the start of `git push` to the new
text served through the router (polled every 10 ms from another thread). Prints
the median and spread of each, the time of each phase as the build recorded it,
and the build's own phases (install stage, run stage, dependency copy, code
copy, collectstatic) from its "Build phases" log line.

    .venv/bin/python bench/deploy.py [--stack python|node|django] [--warm 7] [--cold 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.stack import Stack  # noqa: E402

APP_PY = '''from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "{text}\\n"
'''
SERVER_JS = """const express = require("express");
const app = express();
app.get("/", (req, res) => res.send({text} + "\\n"));
app.listen(Number(process.env.PORT), "0.0.0.0");
"""
NODE_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "node_express"
DJANGO_FIXTURE = NODE_FIXTURE.parent / "django_whitenoise"
DJANGO_URLS = """from django.http import HttpResponse
from django.templatetags.static import static
from django.urls import path


def index(request):
    static("site.css")  # the manifest collectstatic wrote: a 500 without it
    return HttpResponse({text} + "\\n")


urlpatterns = [path("", index)]
"""
PHASES = ("receive", "build", "start", "health", "route")
BUILD_PHASES = ("build stage", "run stage", "dependency copy", "code copy", "collectstatic")
_BUILD_PHASES_RE = re.compile(r"Build phases: (?P<phases>.*)$", re.MULTILINE)
_PHASE_RE = re.compile(r"([a-z][a-z ]*[a-z]) (\d+\.\d+) s")


def write_app(repo: Path, text: str, nonce: str) -> None:
    (repo / "app.py").write_text(APP_PY.format(text=text))
    # The nonce comment changes the dependency layer's input: a cold install.
    (repo / "requirements.txt").write_text(f"# {nonce}\nflask==3.1.*\ngunicorn==23.*\n")
    (repo / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT app:app\n")


def write_node_app(repo: Path, text: str, nonce: str | None) -> None:
    """The Express fixture's dependencies, serving ``text``; a nonce makes the install cold."""
    for name in ("package.json", "package-lock.json"):
        if not (repo / name).exists():
            shutil.copy(NODE_FIXTURE / name, repo / name)
    if nonce is not None:
        # package.json is an input of the dependency layer: a new description
        # makes npm ci run again.
        package = json.loads((repo / "package.json").read_text())
        package["description"] = nonce
        (repo / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    (repo / "server.js").write_text(SERVER_JS.replace("{text}", json.dumps(text)))


def write_django_app(repo: Path, text: str, nonce: str | None) -> None:
    """The Django fixture without psycopg2 (the bench times the index's packages, not a
    compile), serving ``text``; a nonce makes the install cold."""
    if not (repo / "manage.py").exists():
        shutil.copytree(DJANGO_FIXTURE, repo, dirs_exist_ok=True)
        (repo / ".python-version").unlink()  # the default Python
    if nonce is not None:
        (repo / "requirements.txt").write_text(
            f"# {nonce}\nDjango==6.0.*\nwhitenoise==6.*\ngunicorn==23.*\n")
    (repo / "mysite" / "urls.py").write_text(DJANGO_URLS.replace("{text}", json.dumps(text)))


def build_phases(push_output: str) -> dict[str, float]:
    """The "Build phases" line of a push's output, as {phase: seconds}."""
    match = _BUILD_PHASES_RE.search(push_output)
    if match is None:
        return {}
    return {name: float(seconds)
            for name, seconds in _PHASE_RE.findall(match["phases"])}


def push_and_wait(stack: Stack, repo: Path, app: str, text: str) -> tuple[float, dict]:
    """Commit, push, and time until ``text`` is served; returns (seconds, build timings)."""
    stack.git("add", "-A", cwd=repo)
    stack.git("commit", "-qm", text, cwd=repo)
    served = threading.Event()
    seen_at: list[float] = []

    def poll() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not served.is_set():
            try:
                if stack.fetch(app).text == text + "\n":
                    seen_at.append(time.monotonic())
                    served.set()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.01)

    started = time.monotonic()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    push = stack.git("push", "-q", "slipway", "main", cwd=repo, check=False)
    if push.returncode != 0:
        raise SystemExit(f"push failed:\n{push.stderr}")
    poller.join(300)
    if not seen_at:
        raise SystemExit("the new text was never served")
    builds = requests.get(f"{stack.api_url}/api/v1/apps/{app}/builds?limit=1",
                          headers=stack.auth, timeout=10).json()["items"]
    timings = dict(builds[0]["timings"])
    total = seen_at[0] - started
    timings["receive"] = max(0.0, total - sum(timings.values()))
    timings.update({f"build: {k}": v for k, v in build_phases(push.stderr).items()})
    return total, timings


def summary(name: str, runs: list[tuple[float, dict]]) -> None:
    totals = [total for total, _ in runs]
    print(f"{name}: median {statistics.median(totals):.2f} s, "
          f"min {min(totals):.2f} s, max {max(totals):.2f} s over {len(totals)} pushes")
    for phase in PHASES:
        values = [t.get(phase, 0.0) for _, t in runs]
        print(f"    {phase:<8} median {statistics.median(values):.3f} s")
    for phase in BUILD_PHASES:
        values = [t[f"build: {phase}"] for _, t in runs if f"build: {phase}" in t]
        if values:
            print(f"      {phase:<16} median {statistics.median(values):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=7, help="code-only pushes (at least 5)")
    parser.add_argument("--cold", type=int, default=3, help="first pushes of new apps")
    parser.add_argument("--stack", choices=("python", "node", "django"), default="python",
                        help="a Flask app (python), an Express app (node) or a Django app")
    args = parser.parse_args()
    node = args.stack == "node"
    django = args.stack == "django"

    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as root:
        stack = Stack(Path(root))
        stack.start()
        try:
            token = stack.slipway("users:create", "bench@example.com").stdout.strip()
            stack.slipway("login", "--api-url", stack.api_url, "--token", token)
            stack.auth = {"Authorization": f"Bearer {token}"}
            cold, warm = [], []
            for i in range(args.cold):
                repo = Path(root) / f"cold{i}"
                repo.mkdir()
                stack.git("init", "-q", "-b", "main", cwd=repo)
                name = f"bench-{uuid.uuid4().hex[:6]}"
                stack.slipway("apps:create", name, cwd=repo)
                if node:
                    write_node_app(repo, f"cold {i}", uuid.uuid4().hex)
                elif django:
                    write_django_app(repo, f"cold {i}", uuid.uuid4().hex)
                else:
                    write_app(repo, f"cold {i}", uuid.uuid4().hex)
                cold.append(push_and_wait(stack, repo, name, f"cold {i}"))
                print(f"cold push {i + 1}: {cold[-1][0]:.2f} s", flush=True)
            for i in range(args.warm):
                if node:
                    write_node_app(repo, f"warm {i}", None)
                elif django:
                    write_django_app(repo, f"warm {i}", None)
                else:
                    (repo / "app.py").write_text(APP_PY.format(text=f"warm {i}"))
                warm.append(push_and_wait(stack, repo, name, f"warm {i}"))
                print(f"warm push {i + 1}: {warm[-1][0]:.2f} s", flush=True)
            print()
            summary(f"{args.stack}: cold push-to-live", cold)
            summary(f"{args.stack}: warm push-to-live", warm)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
