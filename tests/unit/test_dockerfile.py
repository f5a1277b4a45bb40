"""The rendered Dockerfile (golden files) and the build context that carries it.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_dockerfile.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import pytest

from slipway.builder.build import CONTEXT_DOCKERFILE, PYTHON_EXCLUDES, build_context
from slipway.builder.dockerfile import quote_label, render_dockerfile
from slipway.builder.plan import BuildError, BuildPlan

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dockerfile"
BASE = "slipway/python:3.11"
BUILD = "slipway/python:3.11-build"
LABELS = {"slipway.managed": "1", "slipway.app": "demo"}

PLANS: dict[str, tuple[BuildPlan, dict[str, str]]] = {
    "pip_requirements": (
        BuildPlan(stack="python", installer="pip", dependency_files=("requirements.txt",),
                  extra_packages=("gunicorn",), processes={"web": "gunicorn app:app"}),
        LABELS,
    ),
    "pip_nested_requirements": (
        BuildPlan(stack="python", installer="pip",
                  dependency_files=("requirements.txt", "requirements/base.txt",
                                    "constraints.txt", "requirements/common.txt")),
        LABELS,
    ),
    "pip_pyproject_dependencies": (
        BuildPlan(stack="python", installer="pip",
                  dependencies=("flask>=3", 'uvicorn[standard] ; python_version >= "3.8"'),
                  extra_packages=("gunicorn",)),
        LABELS,
    ),
    "pip_install_after_copy": (
        BuildPlan(stack="python", installer="pip", dependency_files=("requirements.txt",),
                  install_after_copy=True),
        LABELS,
    ),
    "pip_project_dynamic": (
        BuildPlan(stack="python", installer="pip", dependency_files=("pyproject.toml",),
                  install_after_copy=True, extra_packages=("gunicorn",)),
        LABELS,
    ),
    "pip_nothing_to_install": (BuildPlan(stack="python", installer="pip"), {}),
    "uv": (
        BuildPlan(stack="python", installer="uv", dependency_files=("pyproject.toml", "uv.lock"),
                  extra_packages=("uvicorn",)),
        LABELS,
    ),
    "poetry": (
        BuildPlan(stack="python", installer="poetry",
                  dependency_files=("pyproject.toml", "poetry.lock")),
        LABELS,
    ),
    "poetry_without_lock": (
        BuildPlan(stack="python", installer="poetry", dependency_files=("pyproject.toml",),
                  extra_packages=("gunicorn",)),
        LABELS,
    ),
    "pipenv": (
        BuildPlan(stack="python", installer="pipenv", dependency_files=("Pipfile", "Pipfile.lock")),
        LABELS,
    ),
    "django_collectstatic": (
        BuildPlan(stack="python", installer="pip", dependency_files=("requirements.txt",),
                  collectstatic=True, processes={"web": "gunicorn mysite.wsgi"}),
        LABELS,
    ),
    "hostile_labels": (
        BuildPlan(stack="python", installer="pip", dependency_files=("requirements.txt",)),
        {'a "quoted" key': 'say "hi"', "dollar": "$HOME ${PATH} $(id)", "back\\slash": "C:\\x\\",
         "unicode": "café ☕", "spaces": "  padded  ", "empty": "", "single": "it's"},
    ),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_golden(name):
    plan, labels = PLANS[name]
    rendered = render_dockerfile(plan, BASE, labels, BUILD)
    path = GOLDEN / f"{name}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text()


def instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def stages(text: str) -> tuple[list[str], list[str]]:
    """The instructions of the build stage and of the run stage."""
    steps = instructions(text)
    second = [i for i, step in enumerate(steps) if step.startswith("FROM ")][1]
    return steps[:second], steps[second:]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_code_copy_comes_last_but_collectstatic_in_the_run_stage(name):
    plan, labels = PLANS[name]
    build, run = stages(render_dockerfile(plan, BASE, labels, BUILD))
    code_copy = "COPY --chown=10001:10001 . ."
    assert build[0] == f"FROM {BUILD} AS build" and run[0] == f"FROM {BASE}"
    # Installs happen in the build stage only, the code copy in the run stage only.
    assert not any("pip" in step for step in run)
    assert run.count(code_copy) == 1
    assert ("COPY . ." in build) == plan.install_after_copy
    tail = [code_copy, 'RUN ["python", "manage.py", "collectstatic", "--noinput"]']
    assert run[-3:] == ["USER 10001", *tail] if plan.collectstatic else run[-2:] == [
        "USER 10001", code_copy]
    # What does not depend on the code comes first, in this order.
    heads = [step.split()[0] for step in run[:7]]
    assert heads == ["FROM", "LABEL", "ENV", "RUN", "WORKDIR", "COPY", "USER"] if labels else (
        heads[:6] == ["FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER"])
    assert "COPY --from=build /app/.venv /app/.venv" in run


def test_one_image_for_both_stages_without_a_build_image():
    build, run = stages(render_dockerfile(PLANS["pip_requirements"][0], BASE, {}))
    assert build[0] == f"FROM {BASE} AS build" and run[0] == f"FROM {BASE}"


def test_dependency_files_are_copied_before_their_install():
    plan, labels = PLANS["pip_nested_requirements"]
    build, _ = stages(render_dockerfile(plan, BASE, labels, BUILD))
    assert build[5:] == [
        'COPY ["requirements.txt", "constraints.txt", "./"]',
        'COPY ["requirements/base.txt", "requirements/common.txt", "requirements/"]',
        'RUN ["python3", "-m", "pip", "--python", "/app/.venv/bin/python", "install", "-r", '
        '"requirements.txt"]',
    ]


def test_process_commands_never_reach_the_dockerfile():
    plan = BuildPlan(stack="python", installer="pip", dependency_files=("requirements.txt",),
                     processes={"web": "gunicorn SECRET-MARKER:app", "worker": "run $(whoami)"})
    text = render_dockerfile(plan, BASE, {})
    assert "SECRET-MARKER" not in text and "whoami" not in text
    assert "CMD" not in text and "ENTRYPOINT" not in text


def test_environment_and_user():
    text = render_dockerfile(PLANS["pip_requirements"][0], BASE, {})
    for line in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
                 "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_CACHE_DIR=1",
                 "VIRTUAL_ENV=/app/.venv",
                 "PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "useradd --uid 10001", '["python3", "-m", "venv", "--without-pip", "/app/.venv"]',
                 "USER 10001\n"):
        assert line in text


def test_rendering_is_deterministic_for_label_order():
    plan = PLANS["pip_requirements"][0]
    assert render_dockerfile(plan, BASE, {"b": "2", "a": "1"}) == render_dockerfile(
        plan, BASE, {"a": "1", "b": "2"})


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("plain", '"plain"'), ('say "hi"', '"say \\"hi\\""'), ("$HOME", '"\\$HOME"'),
     ("a\\b", '"a\\\\b"'), ("café", '"café"'), ("", '""')],
)
def test_quote_label(text, quoted):
    assert quote_label(text) == quoted


@pytest.mark.parametrize("bad", ["line\nbreak", "tab\there", "nul\x00", "esc\x1b[0m", "del\x7f"])
def test_labels_with_control_characters_are_refused(bad):
    plan = PLANS["pip_requirements"][0]
    with pytest.raises(BuildError, match="contains a control character"):
        render_dockerfile(plan, BASE, {"slipway.app": bad})
    with pytest.raises(BuildError, match="contains a control character"):
        render_dockerfile(plan, BASE, {bad: "1"})


@pytest.mark.parametrize(
    "image",
    ["python:3.12\nRUN curl evil | sh", "python 3.12", "", "-python", 'py"thon', "python:3.12\n"],
)
def test_hostile_base_image_names_are_refused(image):
    with pytest.raises(BuildError, match="Invalid base image name"):
        render_dockerfile(PLANS["pip_requirements"][0], image, {})
    with pytest.raises(BuildError, match="Invalid base image name"):
        render_dockerfile(PLANS["pip_requirements"][0], BASE, {}, image or " ")


def test_hostile_plan_values_are_refused_or_inert():
    base = PLANS["pip_requirements"][0]
    for plan, message in [
        (BuildPlan(stack="python", installer="pip", extra_packages=("gunicorn; rm -rf /",)),
         "Invalid package name"),
        (BuildPlan(stack="python", installer="pip", extra_packages=("--index-url=x",)),
         "Invalid package name"),
        (BuildPlan(stack="python", installer="pip", dependencies=("flask\nRUN evil",)),
         "Invalid dependency"),
        (BuildPlan(stack="python", installer="pip", dependencies=("-e /",)), "Invalid dependency"),
        (BuildPlan(stack="python", installer="pip", dependency_files=("$HOME/r.txt",)),
         "Unsupported dependency file name"),
        (BuildPlan(stack="python", installer="pip", dependency_files=("../r.txt",)),
         "Unsupported dependency file name"),
        (BuildPlan(stack="python", installer="pip", dependency_files=("r*.txt",)),
         "Unsupported dependency file name"),
        (BuildPlan(stack="python", installer="conda", dependency_files=("environment.yml",)),
         "Unknown Python installer 'conda'"),
    ]:
        with pytest.raises(BuildError, match=re.escape(message)):
            render_dockerfile(plan, BASE, {})
    # A dependency with shell syntax is one JSON argument: no shell reads it.
    plan = BuildPlan(stack="python", installer="pip",
                     dependencies=('x ; python_version > "$(id)"',))
    assert ('RUN ["python3", "-m", "pip", "--python", "/app/.venv/bin/python", "install", '
            '"x ; python_version > \\"$(id)\\""]') in (
        render_dockerfile(plan, BASE, {}))
    assert render_dockerfile(base, BASE, {})


def test_only_python_plans_are_rendered():
    with pytest.raises(ValueError):
        render_dockerfile(BuildPlan(stack="dockerfile"), BASE, {})


# ------------------------------------------------------------------ the build context


def members(context) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=context) as tar:
        return {info.name: info for info in tar.getmembers()}


def read_member(context, name: str) -> str:
    context.seek(0)
    with tarfile.open(fileobj=context) as tar:
        return tar.extractfile(name).read().decode()


def app_tree(root: Path) -> Path:
    for name, text in {
        "app.py": "app = 1\n",
        "requirements.txt": "flask\n",
        "static/site.css": "body{}\n",
        "secrets/key.pem": "KEY\n",
        ".dockerignore": "secrets\n*.log\nrequirements.txt\n",
        "debug.log": "log\n",
        ".git/HEAD": "ref\n",
        ".venv/bin/python": "",
        CONTEXT_DOCKERFILE: "FROM evil\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_python_context_carries_the_rendered_dockerfile_and_hides_it(tmp_path):
    app_tree(tmp_path)
    context = build_context(
        tmp_path, dockerfile=(CONTEXT_DOCKERFILE, "FROM ours\n"), excludes=PYTHON_EXCLUDES,
        force_include=("requirements.txt",),
    )
    with context:
        names = members(context)
        assert set(names) == {
            "app.py", "requirements.txt", "static", "static/site.css", ".dockerignore",
            CONTEXT_DOCKERFILE,
        }
        assert read_member(context, CONTEXT_DOCKERFILE) == "FROM ours\n"
        # The daemon drops what this lists once it has read the Dockerfile.
        assert read_member(context, ".dockerignore") == f".dockerignore\n{CONTEXT_DOCKERFILE}\n"
        assert all(info.uid == 0 and info.gid == 0 and info.uname == "" for info in names.values())


def test_dockerfile_context_keeps_the_apps_own_files(tmp_path):
    app_tree(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("secrets\nDockerfile\n")
    with build_context(tmp_path, dockerfile=("Dockerfile", None)) as context:
        names = members(context)
    assert "Dockerfile" in names and ".dockerignore" in names and ".git/HEAD" in names
    assert "secrets/key.pem" not in names and "requirements.txt" in names


def test_links_are_sent_as_links_not_followed(tmp_path):
    (tmp_path / "outside").write_text("host secret\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("app = 1\n")
    os.symlink(tmp_path / "outside", repo / "link")
    os.mkfifo(repo / "fifo")
    with build_context(repo, dockerfile=(CONTEXT_DOCKERFILE, "FROM x\n")) as context:
        names = members(context)
        assert names["link"].issym() and names["link"].linkname == str(tmp_path / "outside")
        assert "fifo" not in names
        context.seek(0)
        assert b"host secret" not in context.read()
