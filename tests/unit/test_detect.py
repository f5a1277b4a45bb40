from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipway.builder.detect import (
    DETECTORS,
    NO_WEB_PROCESS,
    Detector,
    apply_build_config,
    detect,
    normalise_python_version,
    requires_python_lower_bound,
)
from slipway.builder.plan import BuildError, BuildPlan, NothingToBuild

FLASK_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
GUNICORN_APP = "gunicorn --bind 0.0.0.0:$PORT app:app"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def error_of(root: Path) -> str:
    with pytest.raises(BuildError) as info:
        detect(root)
    return info.value.message


# ------------------------------------------------------------------ nothing, Dockerfile


def test_nothing_to_build_says_what_was_looked_for(tmp_path):
    tree(tmp_path, {"README.md": "hi", "app.py": FLASK_APP})
    with pytest.raises(NothingToBuild) as info:
        detect(tmp_path)
    assert info.value.message == (
        "No Dockerfile, requirements.txt, pyproject.toml, Pipfile or package.json found at the "
        "top of the repository"
    )


def test_only_the_top_level_counts(tmp_path):
    tree(tmp_path, {"sub/requirements.txt": "flask\n", "sub/app.py": FLASK_APP})
    with pytest.raises(NothingToBuild):
        detect(tmp_path)


def test_a_later_detector_slots_in_and_joins_the_message(tmp_path):
    def detect_node(source_dir: Path) -> BuildPlan | None:
        if (source_dir / "package.json").is_file():
            return BuildPlan(stack="node")
        return None

    detectors = (*DETECTORS[:2], Detector("Node.js", ("package.json",), detect_node))
    with pytest.raises(NothingToBuild) as info:
        detect(tmp_path, detectors)
    assert info.value.message == (
        "No Dockerfile, requirements.txt, pyproject.toml, Pipfile or package.json found at the "
        "top of the repository"
    )
    tree(tmp_path, {"package.json": "{}"})
    assert detect(tmp_path, detectors).stack == "node"


def test_dockerfile_without_procfile(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM scratch\n"})
    plan = detect(tmp_path)
    assert plan.stack == "dockerfile"
    assert plan.processes == {}
    assert plan.notes == (
        "Using the Dockerfile at the top of the repository",
        "No Procfile: the web process runs the image's own CMD",
    )


def test_dockerfile_wins_over_python_and_takes_procfile(tmp_path):
    tree(tmp_path, {
        "Dockerfile": "FROM scratch\n",
        "requirements.txt": "flask\n",
        "app.py": FLASK_APP,
        "Procfile": "web: ./serve\nworker: ./work\n",
    })
    plan = detect(tmp_path)
    assert plan.stack == "dockerfile"
    assert plan.processes == {"web": "./serve", "worker": "./work"}
    assert "Process types from the Procfile: web, worker" in plan.notes


def test_broken_procfile_fails_detection_with_its_line(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM scratch\n", "Procfile": "web: ok\nweb ./serve\n"})
    assert error_of(tmp_path) == 'Procfile line 2: expected "type: command", got "web ./serve"'


# ------------------------------------------------------------------------ Python: pip


def test_flask_app_with_requirements(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask>=3\n", "app.py": FLASK_APP})
    plan = detect(tmp_path)
    assert plan == BuildPlan(
        stack="python",
        processes={"web": GUNICORN_APP},
        runtime_version=None,
        installer="pip",
        dependency_files=("requirements.txt",),
        extra_packages=("gunicorn",),
        notes=(
            "Installing dependencies from requirements.txt with pip",
            f"No Procfile: web process is `{GUNICORN_APP}`",
            "gunicorn is not among the dependencies: installing it for the web process",
        ),
    )


def test_listed_server_is_not_added(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "Flask==3.0.0  # web\nGunicorn[gevent]>=22 ; python_version>'3'\n",
        "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert plan.extra_packages == ()
    assert plan.processes == {"web": GUNICORN_APP}


def test_procfile_web_is_used_as_is(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "flask\n",
        "app.py": FLASK_APP,
        "Procfile": "web: python app.py\nrelease: flask db upgrade\n",
    })
    plan = detect(tmp_path)
    assert plan.processes == {"web": "python app.py", "release": "flask db upgrade"}
    assert plan.extra_packages == ()
    assert "Process types from the Procfile: web, release" in plan.notes


def test_procfile_without_web_gets_the_default_web(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "flask\n",
        "app.py": FLASK_APP,
        "Procfile": "worker: python worker.py\n",
    })
    plan = detect(tmp_path)
    assert plan.processes == {"web": GUNICORN_APP, "worker": "python worker.py"}
    assert f"The Procfile has no `web:` line: web process is `{GUNICORN_APP}`" in plan.notes


def test_no_web_process_anywhere(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "Procfile": "worker: python w.py\n"})
    assert error_of(tmp_path) == NO_WEB_PROCESS
    assert NO_WEB_PROCESS == (
        "No web process: add a Procfile with a `web:` line, "
        "or an app.py/wsgi.py that defines a WSGI app"
    )


def test_requirements_includes_are_followed_and_copied(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "-r requirements/base.txt\n--constraint=constraints.txt\ngunicorn\n",
        "requirements/base.txt": "-r common.txt\nflask\n",
        "requirements/common.txt": "-r ../requirements.txt\nrequests\n",  # a cycle
        "constraints.txt": "flask<4\n",
        "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert plan.dependency_files == (
        "requirements.txt", "requirements/base.txt", "constraints.txt", "requirements/common.txt",
    )
    assert plan.install_after_copy is False
    assert plan.extra_packages == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-r ../outside.txt", "requirements.txt line 2: ../outside.txt is outside the repository"),
        ("-r /etc/passwd", "requirements.txt line 2: /etc/passwd is outside the repository"),
        ("-r missing.txt", "requirements.txt line 2: missing.txt: no such file in the repository"),
        (
            "-r 'we$ird.txt'",
            "requirements.txt line 2: unsupported file name 'we$ird.txt': use letters, digits, "
            '".", "_", "-" and "/"',
        ),
        ("-r 'unclosed", "requirements.txt line 2: cannot read the file name \"'unclosed\""),
    ],
)
def test_bad_includes(tmp_path, line, message):
    tree(tmp_path, {"requirements.txt": f"flask\n{line}\n", "app.py": FLASK_APP})
    assert error_of(tmp_path) == message


def test_url_includes_are_left_to_pip(tmp_path):
    requirements = "-r https://example.com/r.txt\nflask\n"
    tree(tmp_path, {"requirements.txt": requirements, "app.py": FLASK_APP})
    assert detect(tmp_path).dependency_files == ("requirements.txt",)


@pytest.mark.parametrize("line", ["-e .", "--editable=./libs/x", ".", "./wheels/x.whl",
                                  "pkg @ file:///app/libs/pkg", "-f ./wheels"])
def test_local_paths_install_after_the_code_copy(tmp_path, line):
    tree(tmp_path, {"requirements.txt": f"flask\n{line}\n", "app.py": FLASK_APP})
    plan = detect(tmp_path)
    assert plan.install_after_copy is True
    assert plan.notes[0].startswith(
        "Installing dependencies from requirements.txt with pip, after the code is copied "
        "(requirements.txt line 2 "
    )


def test_vcs_editables_do_not_need_the_code(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "-e git+https://example.com/x.git#egg=x\nflask \\\n  >=3\n",
        "app.py": FLASK_APP,
    })
    assert detect(tmp_path).install_after_copy is False


def test_requirements_take_precedence_over_lock_files_with_a_note(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "flask\n", "pyproject.toml": "[project]\nname='x'\n",
        "uv.lock": "", "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert plan.installer == "pip"
    assert (
        "requirements.txt takes precedence over uv.lock: remove it to install with the other tool"
        in plan.notes
    )


# ---------------------------------------------------------------- Python: pyproject


def test_pep621_pyproject_installs_its_dependencies_inline(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": (
            '[project]\nname = "x"\nrequires-python = ">=3.11"\n'
            'dependencies = ["flask>=3", "uvicorn[standard] ; python_version >= \\"3.8\\""]\n'
        ),
        "main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
    })
    plan = detect(tmp_path)
    assert plan.installer == "pip"
    assert plan.dependencies == ("flask>=3", 'uvicorn[standard] ; python_version >= "3.8"')
    assert plan.dependency_files == ()
    assert plan.extra_packages == ()
    assert plan.processes == {"web": "uvicorn main:app --host 0.0.0.0 --port $PORT"}
    assert plan.runtime_version == "3.11"
    assert plan.notes[0] == (
        "Installing dependencies from [project].dependencies in pyproject.toml with pip"
    )


@pytest.mark.parametrize("dep", ["--index-url=https://evil.example/simple", "-e .", "", "x\ny"])
def test_pep621_dependencies_that_are_not_requirements(tmp_path, dep):
    tree(tmp_path, {
        "pyproject.toml": f'[project]\nname = "x"\ndependencies = [{_toml_str(dep)}]\n',
        "app.py": FLASK_APP,
    })
    assert error_of(tmp_path) == (
        f"pyproject.toml: {dep!r} in [project].dependencies is not a requirement"
    )


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def test_dynamic_dependencies_install_the_project_after_the_copy(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "x"\nversion = "1"\ndynamic = ["dependencies"]\n'
        ),
        "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert (plan.installer, plan.dependency_files, plan.install_after_copy) == (
        "pip", ("pyproject.toml",), True,
    )


def test_pyproject_with_nothing_to_install_from(tmp_path):
    tree(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n", "app.py": FLASK_APP})
    assert error_of(tmp_path) == (
        "pyproject.toml lists no [project] dependencies and has no [build-system]: "
        "add a requirements.txt, or declare [project].dependencies"
    )


def test_invalid_toml(tmp_path):
    tree(tmp_path, {"pyproject.toml": "[project\n", "app.py": FLASK_APP})
    assert error_of(tmp_path).startswith("pyproject.toml is not valid TOML: ")


def test_uv_lock(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": '[project]\nname = "x"\ndependencies = ["flask", "gunicorn"]\n',
        "uv.lock": "version = 1\n",
        "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert (plan.installer, plan.dependency_files, plan.dependencies) == (
        "uv", ("pyproject.toml", "uv.lock"), (),
    )
    assert plan.extra_packages == ()
    assert plan.notes[0] == "Installing dependencies from uv.lock with uv"


def test_poetry_lock_and_tool_poetry(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": (
            '[tool.poetry]\nname = "x"\n[tool.poetry.dependencies]\npython = "^3.12"\n'
            'Flask = "^3.0"\n'
        ),
        "poetry.lock": "",
        "wsgi.py": "from app import make\napplication = make()\n",
    })
    plan = detect(tmp_path)
    assert (plan.installer, plan.dependency_files) == ("poetry", ("pyproject.toml", "poetry.lock"))
    assert plan.runtime_version == "3.12"
    assert plan.processes == {"web": "gunicorn --bind 0.0.0.0:$PORT wsgi:application"}
    assert plan.extra_packages == ("gunicorn",)
    (tmp_path / "poetry.lock").unlink()
    plan = detect(tmp_path)
    assert (plan.installer, plan.dependency_files) == ("poetry", ("pyproject.toml",))
    assert plan.notes[0] == (
        "Installing dependencies from pyproject.toml with Poetry "
        "(no poetry.lock: versions are resolved now)"
    )


def test_pipfile(tmp_path):
    tree(tmp_path, {
        "Pipfile": '[packages]\nflask = "*"\ngunicorn = {version = "*"}\n',
        "Pipfile.lock": "{}",
        "app.py": FLASK_APP,
    })
    plan = detect(tmp_path)
    assert (plan.installer, plan.dependency_files, plan.extra_packages) == (
        "pipenv", ("Pipfile", "Pipfile.lock"), (),
    )
    (tmp_path / "Pipfile.lock").unlink()
    assert error_of(tmp_path) == (
        "Pipfile found without Pipfile.lock: run `pipenv lock` and commit Pipfile.lock"
    )


# ------------------------------------------------------------------- web process


@pytest.mark.parametrize(
    ("files", "web", "server"),
    [
        (
            {"manage.py": 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n',
             "mysite/wsgi.py": "application = get_wsgi_application()\n", "app.py": FLASK_APP},
            "gunicorn --bind 0.0.0.0:$PORT mysite.wsgi",
            "gunicorn",
        ),
        (
            {"manage.py": "# no settings here\n", "config/wsgi.py": "application = x()\n"},
            "gunicorn --bind 0.0.0.0:$PORT config.wsgi",
            "gunicorn",
        ),
        (
            {"main.py": "import flask\nserver: flask.Flask = flask.Flask(__name__)\n"},
            "gunicorn --bind 0.0.0.0:$PORT main:server",
            "gunicorn",
        ),
        (
            {"application.py": "from flask import Flask\napplication = Flask(__name__)\n"},
            "gunicorn --bind 0.0.0.0:$PORT application:application",
            "gunicorn",
        ),
        (
            {"app.py": "from starlette.applications import Starlette\napi = Starlette()\n"},
            "uvicorn app:api --host 0.0.0.0 --port $PORT",
            "uvicorn",
        ),
        (
            {"app.py": "from flask import Flask\n\ndef create_app():\n    return Flask('x')\n"},
            'gunicorn --bind 0.0.0.0:$PORT "app:create_app()"',
            "gunicorn",
        ),
        (
            # app.py has no app object; main.py has one
            {"app.py": "print('hello')\n", "main.py": FLASK_APP},
            "gunicorn --bind 0.0.0.0:$PORT main:app",
            "gunicorn",
        ),
    ],
)
def test_default_web_process_by_convention(tmp_path, files, web, server):
    tree(tmp_path, {"requirements.txt": "flask\n", **files})
    plan = detect(tmp_path)
    assert plan.processes == {"web": web}
    assert plan.extra_packages == (server,)


def test_indented_or_commented_apps_do_not_count(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "flask\n",
        "app.py": "def f():\n    app = Flask(__name__)\n# app = Flask(__name__)\n",
    })
    assert error_of(tmp_path) == NO_WEB_PROCESS


# ----------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("files", "version", "note"),
    [
        ({".python-version": "3.12\n"}, "3.12", "Using Python 3.12 from .python-version"),
        ({".python-version": "3.12.1\n"}, "3.12", "Using Python 3.12 from .python-version"),
        ({".python-version": "python-3.13\n"}, "3.13", "Using Python 3.13 from .python-version"),
        ({".python-version": "# pyenv\n\n3.11.4\n3.10\n"}, "3.11",
         "Using Python 3.11 from .python-version"),
        ({"runtime.txt": "python-3.12.1\n"}, "3.12", "Using Python 3.12 from runtime.txt"),
        ({"runtime.txt": "python-3.9.0", ".python-version": "3.12"}, "3.12",
         "Using Python 3.12 from .python-version"),
        ({"pyproject.toml": '[project]\nrequires-python = ">=3.11,<4"\ndependencies = []\n'},
         "3.11",
         "Using Python 3.11, the lower bound of requires-python in pyproject.toml (>=3.11,<4); "
         "pin another in .python-version"),
    ],
)
def test_python_version(tmp_path, files, version, note):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP, **files})
    plan = detect(tmp_path)
    assert plan.runtime_version == version
    assert note in plan.notes


def test_no_version_pinned(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    assert detect(tmp_path).runtime_version is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (".python-version", "pypy3.10\n",
         ".python-version: cannot read a Python version from 'pypy3.10': "
         'write one such as "3.12"'),
        ("runtime.txt", "python 3\n",
         "runtime.txt: cannot read a Python version from 'python 3': "
         'write one such as "3.12"'),
        (".python-version", "\n\n",
         ".python-version is empty: write a Python version such as 3.12"),
    ],
)
def test_unreadable_version(tmp_path, name, text, message):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP, name: text})
    assert error_of(tmp_path) == message


@pytest.mark.parametrize(
    ("text", "version"),
    [("3.12", "3.12"), ("3.12.1", "3.12"), ("python-3.12", "3.12"), ("cpython-3.12.1", "3.12"),
     (" 3.13.0rc1 ", "3.13"), ("3.14-dev", "3.14"), ("3", None), ("system", None),
     ("3.12\n", "3.12"), ("3.12\nx", None), ("3.x", None)],
)
def test_normalise_python_version(text, version):
    assert normalise_python_version(text) == version


@pytest.mark.parametrize(
    ("spec", "version"),
    [(">=3.11", "3.11"), (">=3.11,<4", "3.11"), ("~=3.12", "3.12"), ("==3.12.*", "3.12"),
     ("^3.11", "3.11"), ("~3.10", "3.10"), (">= 3.9.2, != 3.9.7", "3.9"), ("<4", None),
     (">3.11", None), ("*", None), (">=3.8 || >=3.11", None), (">=3.8,>=3.11", None)],
)
def test_requires_python_lower_bound(spec, version):
    assert requires_python_lower_bound(spec) == version


# ------------------------------------------------------------- hostile trees


def test_procfile_linked_outside_the_repository_is_not_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:the secret line\n")
    repo = tree(tmp_path / "repo", {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    os.symlink(secret, repo / "Procfile")
    message = error_of(repo)
    assert message == "Procfile is a link to a file outside the repository"
    assert "secret" not in message


def test_requirements_linked_outside_are_not_followed(tmp_path):
    (tmp_path / "outside.txt").write_text("flask\n")
    repo = tree(tmp_path / "repo", {"requirements.txt": "-r inside.txt\n", "app.py": FLASK_APP})
    os.symlink(tmp_path / "outside.txt", repo / "inside.txt")
    assert error_of(repo) == "requirements.txt line 1: inside.txt: no such file in the repository"


def test_links_inside_the_repository_are_fine(tmp_path):
    repo = tree(tmp_path, {"requirements/prod.txt": "flask\n", "app.py": FLASK_APP})
    os.symlink("requirements/prod.txt", repo / "requirements.txt")
    assert detect(repo).installer == "pip"


def test_non_utf8_and_oversized_files(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    (tmp_path / "Procfile").write_bytes(b"web: caf\xe9\n")
    assert error_of(tmp_path) == "Procfile is not UTF-8 text"
    (tmp_path / "Procfile").write_text("# " + "x" * 70_000)
    assert error_of(tmp_path) == "Procfile is larger than 64 KiB"
    (tmp_path / "Procfile").unlink()
    (tmp_path / "Procfile").mkdir()
    assert error_of(tmp_path) == "Procfile is not a regular file"


def test_where_the_python_version_came_from_is_kept_for_messages(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP,
                    "runtime.txt": "python-3.7.3\n"})
    plan = detect(tmp_path)
    assert (plan.runtime_version, plan.runtime_request) == (
        "3.7", "runtime.txt asks for python-3.7.3")
    assert detect(tree(tmp_path / "b", {"pyproject.toml": PYPROJECT_311, "app.py": FLASK_APP})
                  ).runtime_request == "requires-python in pyproject.toml asks for >=3.11"


PYPROJECT_311 = '[project]\nname = "x"\nrequires-python = ">=3.11"\ndependencies = ["flask"]\n'


# ------------------------------------------------------------------ collectstatic

MANAGE_PY = (
    "import os, sys\n"
    "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"
)
SETTINGS = (
    "INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.staticfiles', 'whitenoise']\n"
    "STATIC_ROOT = BASE_DIR / 'staticfiles'\n"
)


def django(root: Path, **files: str) -> Path:
    return tree(root, {"manage.py": MANAGE_PY, "mysite/__init__.py": "",
                       "mysite/wsgi.py": "application = get_wsgi_application()\n",
                       "mysite/settings.py": SETTINGS,
                       "requirements.txt": "Django==6.0.*\nwhitenoise\ngunicorn\n", **files})


def test_a_django_app_with_staticfiles_runs_collectstatic(tmp_path):
    plan = detect(django(tmp_path))
    assert plan.collectstatic
    assert plan.processes == {"web": "gunicorn --bind 0.0.0.0:$PORT mysite.wsgi"}
    assert ("Django app: `python manage.py collectstatic --noinput` runs after the code is "
            "copied (DISABLE_COLLECTSTATIC=1 skips it)") in plan.notes


def test_a_settings_package_is_read_whole(tmp_path):
    manage = MANAGE_PY.replace("mysite.settings", "config.settings.production")
    plan = detect(django(tmp_path, **{
        "manage.py": manage, "config/__init__.py": "", "config/settings/__init__.py": "",
        "config/settings/base.py": SETTINGS,
        "config/settings/production.py": "from .base import *\n",
        "Procfile": "web: gunicorn config.wsgi\n"}))
    assert plan.collectstatic


def test_no_collectstatic_without_staticfiles_or_django_or_when_disabled(tmp_path):
    plan = detect(django(tmp_path / "a", **{"mysite/settings.py": "INSTALLED_APPS = []\n"}))
    assert not plan.collectstatic
    assert "django.contrib.staticfiles is not in mysite/settings.py: no collectstatic" in (
        plan.notes)
    # manage.py without Django among the dependencies: not a Django app to Heroku either.
    assert not detect(django(tmp_path / "b", **{"requirements.txt": "flask\ngunicorn\n"})
                      ).collectstatic
    for env in ('{"env": {"DISABLE_COLLECTSTATIC": "1"}}',
                '{"env": {"DISABLE_COLLECTSTATIC": {"value": "1"}}}'):
        plan = detect(django(tmp_path / "c", **{"app.json": env}))
        assert not plan.collectstatic
        assert "DISABLE_COLLECTSTATIC is set in app.json: no collectstatic" in plan.notes
    assert detect(django(tmp_path / "d", **{"app.json": '{"env": {"DISABLE_COLLECTSTATIC": '
                                                          '"0"}}'})).collectstatic


@pytest.mark.parametrize(("value", "runs"), [("1", False), ("true", False), ("0", True),
                                             ("", True), (None, True)])
def test_disable_collectstatic_from_the_apps_config(tmp_path, value, runs):
    plan = detect(django(tmp_path))
    config = {} if value is None else {"DISABLE_COLLECTSTATIC": value}
    changed = apply_build_config(plan, config)
    assert changed.collectstatic is runs
    if not runs:
        assert changed.notes[-1] == "DISABLE_COLLECTSTATIC is set: no collectstatic"
        assert not any(note.startswith("Django app:") for note in changed.notes)
