"""Real apps deploy unmodified: Django with whitenoise's manifest storage (collectstatic at
build), psycopg2 compiled from source against libpq, Python 3.14 from .python-version,
Node 24 from engines.node with an addon compiled by node-gyp; and what is refused.

Real parts: `slipway up`, the Docker engine with the bootstrapped slipway/python:3.14
and slipway/node:24 images and their -build images, PyPI and the npm registry, git
over smart HTTP. One stack serves every app of the module.
"""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_node_apps import commit, new_app, push
from tests.support import TEST_LABEL, TEST_RUN

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REJECTED = "Push rejected: the running release keeps serving"


@pytest.fixture(scope="module")
def stack():
    with Stack.running(prefix="slipway-e2e-real-") as stack:
        stack.sign_up("real@example.com")
        yield stack


def containers(name: str) -> list:
    return docker.from_env().containers.list(all=True, filters={"label": [
        f"slipway.app-name={name}", f"{TEST_LABEL}={TEST_RUN}"]})


def run_in_image(name: str, command: str) -> str:
    [web] = [c for c in containers(name) if c.labels.get("slipway.process") == "web"]
    image = web.attrs["Config"]["Image"]
    return docker.from_env().containers.run(
        image, ["sh", "-c", command], remove=True, labels={TEST_LABEL: TEST_RUN}, user="0",
    ).decode()


@pytest.fixture(scope="module")
def django(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "django_whitenoise", "djangoapp")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    return repo, result.stderr


def test_django_with_manifest_storage_serves_its_hashed_static_files(stack, django):
    _, log = django
    assert "Using Python 3.14 from .python-version" in log
    assert "Using slipway/python:3.14 (built by `slipway images bootstrap`)" in log
    assert "Django app: `python manage.py collectstatic --noinput` runs after" in log
    assert "1 static file copied to '/app/staticfiles', 1 post-processed." in log
    page = stack.fetch("djangoapp")
    assert page.status_code == 200, page.text[:500]
    assert "Hello from Django on Python 3.14" in page.text
    [css] = re.findall(r'href="(/static/site\.[0-9a-f]{12}\.css)"', page.text)
    static = stack.fetch("djangoapp", css)
    assert static.status_code == 200 and "color" in static.text


def test_psycopg2_compiles_in_the_build_stage_and_runs_on_the_small_image(stack, django):
    _, log = django
    assert "Building wheel for psycopg2" in log
    assert "FROM slipway/python:3.14-build AS build" in log
    assert re.fullmatch(r"psycopg2 2\.9\.\d+ libpq \d+\n", stack.fetch("djangoapp", "/libpq").text)
    # The run image has libpq but no compiler, headers or build stage leftovers.
    out = run_in_image("djangoapp", "ls /usr/lib/x86_64-linux-gnu/libpq.so.5; "
                       "command -v gcc || echo no-gcc; ls /usr/include/postgresql 2>&1 | head -1")
    assert out.split("\n")[:2] == ["/usr/lib/x86_64-linux-gnu/libpq.so.5", "no-gcc"]
    assert "No such file" in out


def test_a_failing_collectstatic_rejects_the_push_saying_what_to_change(stack, django):
    repo, _ = django
    settings = repo / "mysite" / "settings.py"
    good = settings.read_text()
    settings.write_text(good.replace('STATIC_ROOT = BASE_DIR / "staticfiles"\n', ""))
    commit(stack, repo, "no STATIC_ROOT")
    result = push(stack, repo)
    assert result.returncode != 0
    assert ("django.core.exceptions.ImproperlyConfigured: You're using the staticfiles app "
            "without having set the STATIC_ROOT setting to a filesystem path.") in result.stderr
    assert ("collectstatic failed: fix the error above (STATIC_ROOT must be set, to a directory "
            'inside the app such as BASE_DIR / "staticfiles"), or set DISABLE_COLLECTSTATIC=1 '
            "to build without it") in result.stderr
    assert REJECTED in result.stderr
    assert "Hello from Django" in stack.fetch("djangoapp").text

    # The app's config opts out, as on Heroku: the push builds without collectstatic.
    stack.slipway("config:set", "DISABLE_COLLECTSTATIC=1", "--app", "djangoapp")
    settings.write_text(good.replace("CompressedManifestStaticFilesStorage",
                                     "CompressedStaticFilesStorage"))
    commit(stack, repo, "no manifest")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert "DISABLE_COLLECTSTATIC is set: no collectstatic" in result.stderr
    assert "collectstatic --noinput" not in result.stderr.split("Building image")[1]
    assert "Hello from Django" in stack.fetch("djangoapp").text


def test_end_of_life_python_is_refused_and_nothing_is_deployed(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "flask_app", "oldpython")
    (repo / "runtime.txt").write_text("python-3.7.3\n")
    commit(stack, repo, "python 3.7")
    result = push(stack, repo)
    assert result.returncode != 0
    assert ("runtime.txt asks for python-3.7.3, which reached its end of life: this host "
            "builds Python 3.11, 3.13, 3.14 (3.10 and 3.12 get 3.11 and 3.13)") in result.stderr
    assert "Building image" not in result.stderr
    assert containers("oldpython") == []
    assert stack.fetch("oldpython").status_code == 404


def test_a_procfile_naming_a_missing_program_says_what_to_change(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "flask_app", "noprogram")
    (repo / "Procfile").write_text("web: no-such-server --port $PORT\n")
    commit(stack, repo, "a typo in the Procfile")
    result = push(stack, repo)
    assert result.returncode != 0
    assert ("The web process exited before passing its health check (exit status 127): its "
            "command was not found: the Procfile's web line names a program the image does "
            "not have; fix the Procfile or add the package that provides it") in result.stderr
    assert "no-such-server: not found" in result.stderr  # the shell's own line
    assert "Push rejected: nothing was deployed" in result.stderr


def test_a_missing_header_rejects_the_push_with_the_compiler_error(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "python_missing_header", "noheader")
    result = push(stack, repo)
    assert result.returncode != 0
    assert "fatal error: yaml.h: No such file or directory" in result.stderr
    assert ("A package compiles against yaml.h, which the build image lacks (it has the headers "
            "of libpq, libffi, OpenSSL, libjpeg, zlib, MariaDB, libxml2 and libxslt): use a "
            "version of the package that ships a binary wheel or prebuilt addon, or build with "
            "your own Dockerfile that installs its -dev package") in result.stderr
    assert containers("noheader") == []


def test_node_24_with_an_addon_built_by_node_gyp(stack, tmp_path_factory):
    repo = new_app(stack, tmp_path_factory, "node_addon", "addon")
    result = push(stack, repo)
    assert result.returncode == 0, result.stderr
    assert 'Using slipway/node:24 (engines.node "24")' in result.stderr
    assert "FROM slipway/node:24-build AS build" in result.stderr
    assert stack.fetch("addon").text == "node 24, addon loaded\n"
    out = run_in_image("addon", "ls node_modules/unix-dgram/build/Release/; "
                       "command -v g++ || echo no-g++")
    assert "unix_dgram.node" in out and "no-g++" in out
