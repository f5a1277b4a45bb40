"""The builder against a real Docker engine, plus how daemon output is read.

Every image and container made here carries ``slipway.test=<this run>``, so no
earlier run's build cache can make a cache assertion pass by accident, and is
removed at the end.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.errors import DockerException, ImageNotFound

from slipway.builder.build import _Output, build_image
from slipway.builder.detect import detect
from slipway.builder.images import resolve_base_images
from slipway.builder.plan import BuildError, BuildPlan
from tests.support import TEST_LABEL, TEST_RUN, free_port, wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LABELS = {TEST_LABEL: TEST_RUN}
RUN_FILTER = {"label": f"{TEST_LABEL}={TEST_RUN}"}


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    _remove_everything_from_this_run(client)
    client.close()


def _remove_everything_from_this_run(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters=RUN_FILTER):
        container.remove(force=True, v=True)
    # Tagged images first: removing them prunes their untagged parents.
    for _ in range(3):
        images = client.images.list(all=True, filters=RUN_FILTER)
        if not images:
            return
        for image in sorted(images, key=lambda i: not i.tags):
            try:
                client.images.remove(image.id, force=True)
            except DockerException:
                pass  # a parent of one not yet removed; the next pass gets it


@pytest.fixture(scope="module")
def base_image(client: docker.DockerClient) -> str:
    """The run image; its build image is remembered for ``build``."""
    image, build_base, _ = resolve_base_images(
        client, "python:{version}-slim", "python:{version}", None, "3.14", "slipway")
    try:
        client.images.get(image)
    except ImageNotFound:
        pytest.skip("no python base image: run slipway images bootstrap")
    BUILD_BASES[image] = build_base
    return image


# Run image -> build image, as resolve_base_images paired them.
BUILD_BASES: dict[str, str] = {}


@pytest.fixture
def flask_app(tmp_path: Path) -> Path:
    source = tmp_path / "flask_app"
    shutil.copytree(FIXTURES / "flask_app", source)
    return source


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def after(self, prefix: str) -> str:
        """The line that follows the first line starting with ``prefix``."""
        for index, line in enumerate(self):
            if line.startswith(prefix):
                return self[index + 1] if index + 1 < len(self) else ""
        raise AssertionError(f"no line starting with {prefix!r} in {list(self)}")


def build(client, source: Path, plan: BuildPlan, base: str, *, labels=None, timeout=300.0,
          name: str = "app") -> tuple[str, Log, str, float]:
    log = Log()
    tag = f"slipway-test/{name}:{TEST_RUN}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    image_id = build_image(client, source, plan, base_image=base, build_base=BUILD_BASES.get(base),
                           tag=tag, labels=labels or LABELS, log=log, timeout=timeout)
    return image_id, log, tag, time.monotonic() - started


def leftover_containers(client) -> list:
    return client.containers.list(all=True, filters=RUN_FILTER)


# ----------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_flask_app_builds_serves_and_rebuilds_code_only_from_cache(client, base_image, flask_app):
    plan = detect(flask_app)
    assert plan.processes["web"] == "gunicorn --bind 0.0.0.0:$PORT app:app"

    first_id, first_log, tag, _ = build(client, flask_app, plan, base_image, name="flask")
    assert client.images.get(tag).id == first_id
    pip_step = next(line for line in first_log if "pip" in line and line.startswith("Step "))
    assert first_log.after(pip_step) != " ---> Using cache"  # a fresh run: really installed
    assert any("Successfully installed" in line and "flask" in line.lower() for line in first_log)

    # The image serves the app with the plan's web command, as the runtime runs it.
    port = free_port()
    container = client.containers.run(
        first_id, ["/bin/sh", "-c", plan.processes["web"]], detach=True,
        environment={"PORT": "8000", "GREETING": "e2e"}, ports={"8000/tcp": ("127.0.0.1", port)},
        labels=LABELS,
    )
    try:
        body = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1).text,
                        timeout=30, message="the app to answer")
        assert body == "Hello from Slipway (e2e)\n"
        top = container.exec_run(["id", "-u"]).output.decode().strip()
        assert top == "10001"
        listing = set(container.exec_run(["ls", "-A", "/app"]).output.decode().split())
        # The rendered Dockerfile and .dockerignore never reach the image.
        assert {".venv", "app.py", "requirements.txt"} <= listing
        assert not listing & {".slipway.Dockerfile", ".dockerignore"}
    finally:
        container.remove(force=True)

    # A code-only change: every layer but the code copy comes from the cache.
    (flask_app / "app.py").write_text((flask_app / "app.py").read_text() + "\n# v2\n")
    (flask_app / "notes.log").write_text("ignored by .dockerignore\n")
    second_id, second_log, _, seconds = build(client, flask_app, plan, base_image, name="flask")
    print(f"code-only rebuild: {seconds:.3f} s")
    assert second_id != first_id
    assert second_log.after(pip_step) == " ---> Using cache"
    assert second_log.after("Step 15/15 : COPY --chown=10001:10001 . .") != " ---> Using cache"
    # The venv copied from the build stage is reused too: only the code layer is new.
    assert second_log.after("Step 13/15 : COPY --from=build /app/.venv /app/.venv") == (
        " ---> Using cache")
    assert seconds < 5.0

    def install_layer(image_id: str) -> str:
        history = client.api.history(image_id)
        # The venv the build stage installed, as the run stage copied it.
        return next(h["Id"] for h in history if "in /app/.venv" in h["CreatedBy"])

    assert install_layer(second_id) == install_layer(first_id)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("fixture", "installer", "greeting"),
    [("python_uv", "uv", "uv"), ("python_poetry", "poetry", "poetry"),
     ("python_pipenv", "pipenv", "pipenv")],
)
def test_lock_file_installers(client, base_image, tmp_path, fixture, installer, greeting):
    source = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, source)
    plan = detect(source)
    assert plan.installer == installer
    image_id, log, _, _ = build(client, source, plan, base_image, name=fixture.replace("_", "-"))
    # The locked main dependencies are installed; dev-only ones (pytest) are not.
    check = (
        "import importlib.util as u, flask, gunicorn, app; "
        "print(flask.__version__, u.find_spec('pytest') is None, app.index())"
    )
    out = client.containers.run(image_id, ["python", "-c", check], remove=True, labels=LABELS)
    assert out.decode().split() == ["3.1.3", "True", greeting]


@pytest.mark.e2e
def test_broken_requirements_fail_with_the_pip_error(client, base_image, flask_app):
    (flask_app / "requirements.txt").write_text("flask==0.0.999\n")
    plan = detect(flask_app)
    with pytest.raises(BuildError) as info:
        build(client, flask_app, plan, base_image, name="broken")
    message = info.value.message
    assert message.startswith('The build failed at step 7/15 (RUN ["python3", "-m", "pip", ')
    assert "returned a non-zero code: 1" in message
    assert "flask==0.0.999" in message.split("Last lines of output:")[1]
    assert "\x1b" not in message
    assert leftover_containers(client) == []


@pytest.mark.e2e
def test_hung_build_times_out_and_leaves_no_container(client, base_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {base_image}\nLABEL {TEST_LABEL}={TEST_RUN}\n"
        "RUN echo waiting && sleep 120\n"
    )
    plan = detect(tmp_path)
    log = Log()
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        build_image(client, tmp_path, plan, base_image="", tag=f"slipway-test/hang:{TEST_RUN}",
                    labels=LABELS, log=log, timeout=3)
    elapsed = time.monotonic() - started
    assert info.value.message == "Build timed out after 3 s"
    assert 3 <= elapsed < 8
    assert "waiting" in log
    # The daemon cancels the build when the connection goes, and forcerm
    # removes the step's container.
    wait_for(lambda: leftover_containers(client) == [], timeout=20,
             message="the build container to go")


@pytest.mark.e2e
def test_own_dockerfile_with_hostile_labels(client, base_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(f'FROM {base_image}\nCMD ["python3", "-c", "print(1)"]\n')
    (tmp_path / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    labels = {**LABELS, "slipway.app": "it's \"quoted\" $HOME ${X} \\ café"}
    image_id, log, _, _ = build(client, tmp_path, detect(tmp_path), "", labels=labels,
                                name="own")
    image_labels = client.images.get(image_id).labels
    assert {k: v for k, v in image_labels.items() if k in labels} == labels
    assert any(line.startswith("Step 1/") for line in log)


@pytest.mark.e2e
def test_python_labels_round_trip_and_build_files_stay_out(client, base_image, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    (tmp_path / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "secret.txt").write_text("not for the image\n")
    (tmp_path / "serve.py").write_text("print('hi')\n")
    labels = {**LABELS, 'a "key"': "say \"hi\" $HOME ${PATH} $(id) `id` \\n it's", "e": "é ☕"}
    plan = detect(tmp_path)
    image_id, _, _, _ = build(client, tmp_path, plan, base_image, labels=labels, name="labels")
    image = client.images.get(image_id)
    assert {k: v for k, v in image.labels.items() if k in labels} == labels
    listing = client.containers.run(image_id, ["ls", "-A", "/app"], remove=True,
                                    labels=LABELS).decode().split()
    assert sorted(listing) == [".venv", "Procfile", "pyproject.toml", "serve.py"]


@pytest.mark.e2e
def test_missing_base_image_says_how_to_get_one(client, flask_app):
    plan = detect(flask_app)
    missing = f"slipway-test/no-such-python:{TEST_RUN}"
    with pytest.raises(BuildError) as info:
        build(client, flask_app, plan, missing, name="nobase")
    message = info.value.message
    assert message.startswith(f"The build failed at step 1/15 (FROM {missing} AS build)")
    assert message.endswith(
        "The base image is not on this host and could not be pulled: "
        "run `slipway images bootstrap` on hosts without a registry"
    )


@pytest.mark.e2e
def test_invalid_tag_is_refused_as_a_build_error(client, base_image, flask_app):
    with pytest.raises(BuildError, match="^The Docker engine refused the build: "):
        build_image(client, flask_app, detect(flask_app), base_image=base_image,
                    tag="Not A Tag", labels=LABELS, log=Log(), timeout=60)


def test_unreachable_engine_is_a_build_error(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    # TCP, not a missing unix socket: the SDK leaks the socket of a failed unix connect.
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{free_port()}", version="1.41")
    try:
        with pytest.raises(BuildError, match="^Could not reach the Docker engine: "):
            build_image(client, tmp_path, detect(tmp_path), base_image="", tag="x:y",
                        labels={}, log=Log(), timeout=5)
    finally:
        client.close()


def test_unknown_stack_is_a_build_error(tmp_path):
    with pytest.raises(BuildError, match="^Slipway cannot build a ruby app yet$"):
        build_image(None, tmp_path, BuildPlan(stack="ruby"), base_image="", tag="x:y", labels={},
                    log=Log(), timeout=5)


# ---------------------------------------- how daemon messages become lines (no engine)


class FakeResponse:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def iter_content(self, chunk_size=None):
        yield from self.chunks


def test_output_splits_messages_and_lines_across_chunks():
    log = Log()
    output = _Output(log)
    chunks = [
        b'{"stream":"Step 1/2 : FROM x\\n"}\r\n{"stream":" ---> 0123456789ab\\n"}\r\n{"str',
        b'eam":"Collecting fla"}\r\n{"stream":"sk\\n\\u001b[91mWARNING: red\\u001b[0m\\n"}',
        b'\r\n{"stream":"Removing intermediate container 0123456789ab\\n"}\r\n',
        b'{"stream":"50%\\r100%\\n"}\r\n{"status":"Pulling fs layer","id":"abc"}\r\n',
        b'{"status":"Downloading","progress":"[==>   ]","id":"abc"}\r\n',
        b'{"aux":{"ID":"sha256:feed"}}\r\n{"stream":"Successfully built feed\\n"}\r\nnot json',
    ]
    assert output.consume(FakeResponse(chunks)) == "sha256:feed"
    assert log == [
        "Step 1/2 : FROM x", "Collecting flask", "WARNING: red", "100%",
        "abc: Pulling fs layer", "Successfully built feed", "not json",
    ]
    assert output.error is None


def test_output_error_names_the_step_and_quotes_its_output_only():
    output = _Output(Log())
    output.consume(FakeResponse([
        b'{"stream":"Step 6/9 : COPY x ./\\n"}\n{"stream":"copied\\n"}\n',
        b'{"stream":"Step 7/9 : RUN pip install -r requirements.txt\\n"}\n',
        b'{"stream":"ERROR: No matching distribution found for nope\\n"}\n',
        b'{"errorDetail":{"code":1,"message":"The command returned a non-zero code: 1"},'
        b'"error":"The command returned a non-zero code: 1"}\n',
    ]))
    assert output.failure() == (
        "The build failed at step 7/9 (RUN pip install -r requirements.txt): "
        "The command returned a non-zero code: 1\n"
        "Last lines of output:\n"
        "  ERROR: No matching distribution found for nope"
    )


def test_a_missing_header_is_named_with_what_to_change():
    output = _Output(Log())
    output.consume(FakeResponse([
        b'{"stream":"Step 7/15 : RUN [\\"python3\\", \\"-m\\", \\"pip\\"]\\n"}\n',
        b'{"stream":"  fastyaml.c:2:10: fatal error: yaml.h: No such file or directory\\n"}\n',
        b'{"stream":"  error: command \'/usr/bin/gcc\' failed with exit code 1\\n"}\n',
        b'{"error":"The command returned a non-zero code: 1"}\n',
    ]))
    assert output.failure().endswith(
        "\nA package compiles against yaml.h, which the build image lacks (it has the headers "
        "of libpq, libffi, OpenSSL, libjpeg, zlib, MariaDB, libxml2 and libxslt): use a version "
        "of the package that ships a binary wheel or prebuilt addon, or build with your own "
        "Dockerfile that installs its -dev package")
    output = _Output(Log())
    output.consume(FakeResponse([
        b'{"stream":"Step 7/15 : RUN pip install psycopg2\\n"}\n',
        b'{"stream":"Error: pg_config executable not found.\\n"}\n',
        b'{"error":"The command returned a non-zero code: 1"}\n',
    ]))
    assert "\nA package compiles against pg_config, which the build image lacks" in (
        output.failure())


def test_build_phases_of_a_two_stage_build():
    output = _Output(Log())
    steps = ["FROM b AS build", "RUN pip install", "FROM r", "COPY --from=build /app/.venv x",
             "USER 10001", "COPY --chown=10001:10001 . .", "RUN python manage.py collectstatic"]
    output.consume(FakeResponse([
        f'{{"stream":"Step {i}/7 : {step}\\n"}}\n'.encode() for i, step in enumerate(steps, 1)
    ]))
    assert list(output.phases()) == ["build stage", "run stage", "dependency copy", "code copy",
                                     "collectstatic"]
    assert _Output(Log()).phases() == {}
