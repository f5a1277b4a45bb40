"""Detection: what kind of app a source tree is, and how to build it.

Detection is an ordered list of detectors, each ``detect(source_dir) ->
BuildPlan | None``; the first that recognises the tree wins. Only files at the
top of the repository are looked at, as on Heroku. Every file is read through
``read_source_file``, which refuses links that leave the repository: the tree
comes from a push, and a ``Procfile`` linked to ``/etc/shadow`` must not end
up quoted in an error message.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slipway.builder.plan import BuildError, BuildPlan, NothingToBuild
from slipway.builder.procfile import parse_procfile

MAX_FILE_BYTES = 1024 * 1024
# Module files that conventionally hold a web app, in the order they are tried.
APP_MODULES = ("app", "main", "wsgi", "application", "asgi")
GUNICORN = "gunicorn --bind 0.0.0.0:$PORT {target}"
UVICORN = "uvicorn {target} --host 0.0.0.0 --port $PORT"
NO_WEB_PROCESS = (
    "No web process: add a Procfile with a `web:` line, "
    "or an app.py/wsgi.py that defines a WSGI app"
)
# Dependency file names become COPY sources; keep them to characters that
# Docker neither expands ($VAR) nor treats as wildcards (*, ?, [).
_SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@=-]*(/[A-Za-z0-9_][A-Za-z0-9._+@=-]*)*\Z")


@dataclass(frozen=True)
class Detector:
    """One way of recognising a source tree.

    ``looks_for`` names the top-level files it recognises, for the message
    shown when no detector matches.
    """

    name: str
    looks_for: tuple[str, ...]
    detect: Callable[[Path], BuildPlan | None]


# ---------------------------------------------------------------- reading files


def read_source_file(source_dir: Path, name: str, *, limit: int = MAX_FILE_BYTES) -> str | None:
    """Return the text of ``name`` (a path relative to ``source_dir``), or None if absent.

    Raises BuildError if the path is a link leading outside the repository, is
    not a regular file, is larger than ``limit`` bytes or is not UTF-8 text.
    """
    path = source_dir / name
    if not path.is_symlink() and not path.exists():
        return None
    if not _inside(source_dir, path):
        raise BuildError(f"{name} is a link to a file outside the repository")
    if not path.exists():
        return None  # a dangling link inside the repository: as good as absent
    if not path.is_file():
        raise BuildError(f"{name} is not a regular file")
    if path.stat().st_size > limit:
        raise BuildError(f"{name} is larger than {limit // 1024} KiB")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BuildError(f"{name} is not UTF-8 text") from None


def _is_file(source_dir: Path, name: str) -> bool:
    path = source_dir / name
    return path.is_file() and _inside(source_dir, path)


def _inside(source_dir: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(source_dir.resolve())


def _load_toml(source_dir: Path, name: str) -> dict[str, Any] | None:
    text = read_source_file(source_dir, name)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{name} is not valid TOML: {exc}") from None


def read_procfile(source_dir: Path) -> dict[str, str] | None:
    """The parsed top-level Procfile, or None without one. Raises BuildError if malformed."""
    text = read_source_file(source_dir, "Procfile", limit=64 * 1024)
    return None if text is None else parse_procfile(text)


# ------------------------------------------------------------------ Dockerfile


def detect_dockerfile(source_dir: Path) -> BuildPlan | None:
    """The app's own Dockerfile, built as it is; processes come from its Procfile."""
    if not _is_file(source_dir, "Dockerfile"):
        return None
    notes = ["Using the Dockerfile at the top of the repository"]
    processes = read_procfile(source_dir)
    if processes is None:
        processes = {}
        notes.append("No Procfile: the web process runs the image's own CMD")
    else:
        notes.append(f"Process types from the Procfile: {', '.join(processes)}")
    return BuildPlan(stack="dockerfile", processes=processes, notes=tuple(notes))


# ---------------------------------------------------------------------- Python


@dataclass
class _Install:
    """How the dependencies get installed, and which packages they name."""

    installer: str
    dependency_files: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    install_after_copy: bool = False
    declared: set[str] = field(default_factory=set)
    source: str = ""


def detect_python(source_dir: Path) -> BuildPlan | None:
    """A Python app: requirements.txt, pyproject.toml or Pipfile at the top.

    Raises BuildError for a tree that is Python but cannot be built as it is
    (a malformed file, a Pipfile without its lock, no web process).
    """
    if not any(_is_file(source_dir, n) for n in ("requirements.txt", "pyproject.toml", "Pipfile")):
        return None
    pyproject = _load_toml(source_dir, "pyproject.toml")
    notes: list[str] = []

    install = _choose_installer(source_dir, pyproject, notes)
    notes.insert(0, f"Installing dependencies {install.source}")

    version, request = _python_version(source_dir, pyproject, notes)

    processes = read_procfile(source_dir)
    extra: list[str] = []
    if processes is not None and "web" in processes:
        notes.append(f"Process types from the Procfile: {', '.join(processes)}")
    else:
        default = _default_web(source_dir)
        if default is None:
            raise BuildError(NO_WEB_PROCESS)
        command, server = default
        if processes is None:
            notes.append(f"No Procfile: web process is `{command}`")
            processes = {"web": command}
        else:
            notes.append(f"The Procfile has no `web:` line: web process is `{command}`")
            processes = {"web": command, **processes}
        if _normalise_name(server) not in install.declared:
            extra.append(server)
            notes.append(
                f"{server} is not among the dependencies: installing it for the web process"
            )
    collectstatic = "django" in install.declared and _collectstatic(source_dir, notes)

    return BuildPlan(
        stack="python",
        processes=processes,
        runtime_version=version,
        installer=install.installer,
        dependency_files=install.dependency_files,
        extra_packages=tuple(extra),
        notes=tuple(notes),
        dependencies=install.dependencies,
        install_after_copy=install.install_after_copy,
        collectstatic=collectstatic,
        runtime_request=request,
    )


def _choose_installer(
    source_dir: Path, pyproject: dict[str, Any] | None, notes: list[str]
) -> _Install:
    """requirements.txt, then uv.lock, poetry.lock, Pipfile, [tool.poetry], PEP 621."""
    names = ("uv.lock", "poetry.lock", "Pipfile", "Pipfile.lock")
    has = {name: _is_file(source_dir, name) for name in names}
    project = (pyproject or {}).get("project")
    project = project if isinstance(project, dict) else None
    poetry = ((pyproject or {}).get("tool") or {}).get("poetry")
    poetry = poetry if isinstance(poetry, dict) else None

    if _is_file(source_dir, "requirements.txt"):
        install = _requirements_install(source_dir)
        others = [n for n in ("uv.lock", "poetry.lock", "Pipfile") if has[n]]
        if others:
            notes.append(
                f"requirements.txt takes precedence over {' and '.join(others)}: "
                "remove it to install with the other tool"
            )
        return install

    if pyproject is not None and has["uv.lock"]:
        return _Install(
            "uv",
            dependency_files=("pyproject.toml", "uv.lock"),
            declared=_names(_project_dependencies(project)),
            source="from uv.lock with uv",
        )

    if pyproject is not None and (has["poetry.lock"] or poetry is not None):
        declared = _names(_project_dependencies(project))
        if poetry is not None and isinstance(poetry.get("dependencies"), dict):
            declared |= {_normalise_name(n) for n in poetry["dependencies"]}
        if has["poetry.lock"]:
            files: tuple[str, ...] = ("pyproject.toml", "poetry.lock")
            source = "from poetry.lock with Poetry"
        else:
            files = ("pyproject.toml",)
            source = "from pyproject.toml with Poetry (no poetry.lock: versions are resolved now)"
        return _Install("poetry", dependency_files=files, declared=declared, source=source)

    if has["Pipfile"]:
        if not has["Pipfile.lock"]:
            raise BuildError(
                "Pipfile found without Pipfile.lock: run `pipenv lock` and commit Pipfile.lock"
            )
        pipfile = _load_toml(source_dir, "Pipfile") or {}
        packages = pipfile.get("packages")
        declared = {_normalise_name(n) for n in packages} if isinstance(packages, dict) else set()
        return _Install(
            "pipenv",
            dependency_files=("Pipfile", "Pipfile.lock"),
            declared=declared,
            source="from Pipfile.lock with pipenv",
        )

    # A PEP 621 pyproject.toml with no lock file: pip.
    assert pyproject is not None  # detect_python checked one of the three exists
    dynamic = project.get("dynamic", []) if project is not None else []
    if project is None or "dependencies" in dynamic:
        if "build-system" not in pyproject:
            raise BuildError(
                "pyproject.toml lists no [project] dependencies and has no [build-system]: "
                "add a requirements.txt, or declare [project].dependencies"
            )
        # Only the build backend knows the dependencies: `pip install .`
        # needs the code, so it runs after the code is copied.
        return _Install(
            "pip",
            dependency_files=("pyproject.toml",),
            install_after_copy=True,
            source="by installing the project with pip (its dependencies are dynamic: "
            "every push reinstalls them)",
        )
    dependencies = _project_dependencies(project)
    for requirement in dependencies:
        _check_requirement(requirement)
    return _Install(
        "pip",
        dependencies=tuple(dependencies),
        declared=_names(dependencies),
        source="from [project].dependencies in pyproject.toml with pip",
    )


def _project_dependencies(project: dict[str, Any] | None) -> list[str]:
    deps = (project or {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError("pyproject.toml: [project].dependencies must be a list of strings")
    return deps


# A PEP 508 requirement starts with a distribution name; anything else
# (an option such as "--index-url", a path) is not something
# [project].dependencies may hold, and must not reach pip's command line.
_REQUIREMENT_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*[ \t]*(\[[^\]\x00-\x1f\x7f]*\])?([^\x00-\x1f\x7f]*)\Z"
)


def _check_requirement(requirement: str) -> None:
    if not _REQUIREMENT_RE.match(requirement.strip(" \t")):
        raise BuildError(
            f"pyproject.toml: {requirement!r} in [project].dependencies is not a requirement"
        )


_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: Sequence[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = _NAME_RE.match(requirement.strip())
        if match:
            names.add(_normalise_name(match[1]))
    return names


# -------------------------------------------------------------- requirements.txt

_INCLUDE_RE = re.compile(r"^(--requirement|--constraint|-r|-c)(?:\s*=\s*|\s*)(?P<value>\S.*)\Z")
_EDITABLE_RE = re.compile(r"^(--editable|-e)(?:\s*=\s*|\s*)(?P<value>\S.*)\Z")
_FIND_LINKS_RE = re.compile(r"^(--find-links|-f)(?:\s*=\s*|\s*)(?P<value>\S.*)\Z")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_VCS_RE = re.compile(r"^(git|hg|svn|bzr)\+")


def _requirements_install(source_dir: Path) -> _Install:
    """pip with requirements.txt and every local file it includes (-r, -c)."""
    files: list[str] = []
    declared: set[str] = set()
    needs_code: list[str] = []
    pending = ["requirements.txt"]
    while pending:
        current = pending.pop(0)
        if current in files:
            continue
        files.append(current)
        text = read_source_file(source_dir, current)
        if text is None:  # pragma: no cover - checked before it was queued
            raise BuildError(f"{current}: no such file in the repository")
        for number, line in _requirement_lines(text):
            where = f"{current} line {number}"
            if match := _INCLUDE_RE.match(line):
                target = _include_target(source_dir, current, match["value"], where)
                if target is not None:
                    pending.append(target)
            elif match := _EDITABLE_RE.match(line):
                value = match["value"]
                if not (_URL_RE.match(value) or _VCS_RE.match(value)):
                    needs_code.append(f"{where} installs a local path ({value})")
            elif match := _FIND_LINKS_RE.match(line):
                if not _URL_RE.match(match["value"]):
                    needs_code.append(f"{where} finds packages in a local path")
            elif line.startswith("-"):
                continue  # --index-url, --pre, --hash...: pip's business
            elif line.startswith((".", "/")) or line.startswith("file:") or "@ file:" in line:
                needs_code.append(f"{where} installs a local path ({line})")
            else:
                declared |= _names([line])
    if needs_code:
        return _Install(
            "pip",
            dependency_files=tuple(files),
            install_after_copy=True,
            declared=declared,
            source=f"from requirements.txt with pip, after the code is copied "
            f"({needs_code[0]}): every push reinstalls them",
        )
    return _Install(
        "pip",
        dependency_files=tuple(files),
        declared=declared,
        source="from requirements.txt with pip",
    )


def _requirement_lines(text: str) -> list[tuple[int, str]]:
    """Logical lines of a requirements file: continuations joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    logical, start = "", 0
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not logical:
            start = number
        if raw.endswith("\\"):
            logical += raw[:-1]
            continue
        logical += raw
        line = re.sub(r"(^|\s)#.*$", "", logical).strip()
        if line:
            lines.append((start, line))
        logical = ""
    if logical.strip():
        lines.append((start, logical.strip()))
    return lines


def _include_target(source_dir: Path, current: str, value: str, where: str) -> str | None:
    try:
        words = shlex.split(value)
    except ValueError:
        raise BuildError(f"{where}: cannot read the file name {value!r}") from None
    if len(words) != 1:
        raise BuildError(f"{where}: expected one file name, got {value!r}")
    target = words[0]
    if _URL_RE.match(target):
        return None  # pip fetches it; nothing to copy
    path = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        raise BuildError(f"{where}: {target} is outside the repository")
    if not _SAFE_PATH_RE.match(path):
        raise BuildError(
            f"{where}: unsupported file name {target!r}: use letters, digits, "
            '".", "_", "-" and "/"'
        )
    if not _is_file(source_dir, path):
        raise BuildError(f"{where}: {target}: no such file in the repository")
    return path


# --------------------------------------------------------------- Python version

_VERSION_RE = re.compile(
    r"^(?:c?python-?)?(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:(?:a|b|rc)\d+|-dev)?\Z",
    re.IGNORECASE,
)
_BOUND_RE = re.compile(
    r"^(?P<op>>=|~=|==|\^|~)\s*(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?:\d+|\*))?\Z"
)
_UPPER_RE = re.compile(r"^(<|<=|!=)\s*\d+(\.(\d+|\*))*\Z")


def normalise_python_version(text: str) -> str | None:
    """"3.12", "3.12.1", "python-3.12", "cpython-3.12.1" -> "3.12"; anything else -> None."""
    match = _VERSION_RE.match(text.strip())
    return f"{int(match['major'])}.{int(match['minor'])}" if match else None


def requires_python_lower_bound(spec: str) -> str | None:
    """The "MAJOR.MINOR" lower bound of a simple specifier (">=3.11,<4", "~=3.12", "^3.11").

    None when there is no single clear lower bound (">3.11", "*", "||").
    """
    bounds = []
    for part in (p.strip() for p in spec.split(",")):
        if not part or _UPPER_RE.match(part):
            continue
        match = _BOUND_RE.match(part)
        if match is None:
            return None
        bounds.append(f"{int(match['major'])}.{int(match['minor'])}")
    return bounds[0] if len(bounds) == 1 else None


def _python_version(
    source_dir: Path, pyproject: dict[str, Any] | None, notes: list[str]
) -> tuple[str | None, str | None]:
    """.python-version, then runtime.txt, then requires-python's lower bound.

    Returns the "MAJOR.MINOR" version and where it came from, in words
    ("runtime.txt asks for python-3.7.3"), or (None, None).
    """
    for name in (".python-version", "runtime.txt"):
        text = read_source_file(source_dir, name, limit=4096)
        if text is None:
            continue
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if not lines:
            raise BuildError(f"{name} is empty: write a Python version such as 3.12")
        version = normalise_python_version(lines[0])
        if version is None:
            raise BuildError(
                f"{name}: cannot read a Python version from {lines[0][:40]!r}: "
                'write one such as "3.12"'
            )
        notes.append(f"Using Python {version} from {name}")
        return version, f"{name} asks for {lines[0][:40]}"

    if pyproject is not None:
        project = pyproject.get("project")
        spec = project.get("requires-python") if isinstance(project, dict) else None
        where = "requires-python in pyproject.toml"
        if spec is None:
            poetry_deps = ((pyproject.get("tool") or {}).get("poetry") or {}).get("dependencies")
            if isinstance(poetry_deps, dict):
                spec = poetry_deps.get("python")
                where = "[tool.poetry.dependencies] python in pyproject.toml"
        if isinstance(spec, str):
            version = requires_python_lower_bound(spec)
            if version is not None:
                notes.append(
                    f"Using Python {version}, the lower bound of {where} ({spec}); "
                    "pin another in .python-version"
                )
                return version, f"{where} asks for {spec[:40]}"
    return None, None


# ------------------------------------------------------------------ collectstatic

_SETTINGS_MODULE_RE = re.compile(
    r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"](?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)['\"]"
)
COLLECTSTATIC_ON = (
    "Django app: `python manage.py collectstatic --noinput` runs after the code is copied "
    "(DISABLE_COLLECTSTATIC=1 skips it)"
)


def _collectstatic(source_dir: Path, notes: list[str]) -> bool:
    """Whether a Django app's build runs collectstatic, as Heroku's Python buildpack decides.

    Heroku runs it when manage.py exists and the staticfiles app is installed,
    unless DISABLE_COLLECTSTATIC is set (here: in app.json's env, or the app's
    config, see ``apply_build_config``). The settings module manage.py names
    is read for django.contrib.staticfiles; when it cannot be found it runs,
    as Heroku would, and a failure says what to change.
    """
    manage = read_source_file(source_dir, "manage.py")
    if manage is None:
        return False
    if _disabled(_app_json_env(source_dir).get("DISABLE_COLLECTSTATIC")):
        notes.append("DISABLE_COLLECTSTATIC is set in app.json: no collectstatic")
        return False
    match = _SETTINGS_MODULE_RE.search(manage)
    texts: list[tuple[str, str]] = []
    if match:
        path = match["module"].replace(".", "/")
        # A settings package (config/settings/production.py importing base.py, ...)
        # may list the apps in any of its modules: all of them are read.
        package = path if not _is_file(source_dir, f"{path}.py") else (
            posixpath.dirname(path) if posixpath.basename(posixpath.dirname(path)) == "settings"
            else None)
        names = [f"{path}.py"] if package is None else sorted(
            p.relative_to(source_dir).as_posix() for p in (source_dir / package).glob("*.py"))[:20]
        for name in names:
            text = read_source_file(source_dir, name)
            if text is not None:
                texts.append((name, text))
    if texts and not any("django.contrib.staticfiles" in text for _, text in texts):
        notes.append(
            f"django.contrib.staticfiles is not in {texts[0][0]}: no collectstatic"
        )
        return False
    notes.append(COLLECTSTATIC_ON)
    return True


def _disabled(value: str | None) -> bool:
    """Heroku's reading of DISABLE_COLLECTSTATIC: set to anything but "" or "0"."""
    return value is not None and value.strip() not in ("", "0")


def _app_json_env(source_dir: Path) -> dict[str, str]:
    """app.json's ``env`` as name -> value; ``{"value": ...}`` objects and plain strings."""
    text = read_source_file(source_dir, "app.json", limit=256 * 1024)
    try:
        env = json.loads(text).get("env") if text else None
    except (ValueError, AttributeError):
        return {}  # app.json's own reader reports a malformed file
    if not isinstance(env, dict):
        return {}
    values = {}
    for name, value in env.items():
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, str | int | bool):
            values[name] = str(int(value) if isinstance(value, bool) else value)
    return values


def apply_build_config(plan: BuildPlan, config: Mapping[str, str]) -> BuildPlan:
    """``plan`` as the app's config vars change it: DISABLE_COLLECTSTATIC skips
    collectstatic, as on Heroku, where config vars reach the build."""
    if plan.collectstatic and _disabled(config.get("DISABLE_COLLECTSTATIC")):
        notes = tuple(note for note in plan.notes if note != COLLECTSTATIC_ON)
        return replace(plan, collectstatic=False,
                       notes=(*notes, "DISABLE_COLLECTSTATIC is set: no collectstatic"))
    return plan


# ------------------------------------------------------------ default web process

_ASSIGN_RE = re.compile(
    r"^(?P<var>[A-Za-z_]\w*)\s*(?::[^=\n]*)?=\s*(?P<call>[A-Za-z_][\w.]*)\s*\(", re.MULTILINE
)
_FACTORY_RE = re.compile(r"^def\s+create_app\s*\(", re.MULTILINE)
_WSGI_CALLS = {"Flask", "get_wsgi_application"}
_ASGI_CALLS = {"FastAPI", "Starlette", "get_asgi_application"}
_DJANGO_SETTINGS_RE = re.compile(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"](?P<pkg>[A-Za-z_]\w*)\.")


def _default_web(source_dir: Path) -> tuple[str, str] | None:
    """A web command found by convention, and the server package it runs.

    Django (manage.py and <package>/wsgi.py), then a Flask, FastAPI or
    Starlette app object (or a Flask ``create_app`` factory) in app.py,
    main.py, wsgi.py, application.py or asgi.py.
    """
    django = _django_package(source_dir)
    if django is not None:
        return GUNICORN.format(target=f"{django}.wsgi"), "gunicorn"
    for module in APP_MODULES:
        text = read_source_file(source_dir, f"{module}.py")
        if text is None:
            continue
        found = _app_in_module(module, text)
        if found is not None:
            return found
    return None


def _django_package(source_dir: Path) -> str | None:
    manage = read_source_file(source_dir, "manage.py")
    if manage is None:
        return None
    match = _DJANGO_SETTINGS_RE.search(manage)
    if match and _is_file(source_dir, f"{match['pkg']}/wsgi.py"):
        return match["pkg"]
    candidates = sorted(
        p.parent.name
        for p in source_dir.glob("*/wsgi.py")
        if p.parent.name.isidentifier() and _is_file(source_dir, f"{p.parent.name}/wsgi.py")
    )
    return candidates[0] if len(candidates) == 1 else None


def _app_in_module(module: str, text: str) -> tuple[str, str] | None:
    wsgi: list[str] = []
    asgi: list[str] = []
    for match in _ASSIGN_RE.finditer(text):
        call = match["call"].rsplit(".", 1)[-1]
        if call in _WSGI_CALLS:
            wsgi.append(match["var"])
        elif call in _ASGI_CALLS:
            asgi.append(match["var"])
        elif module == "wsgi" and match["var"] == "application":
            wsgi.append("application")  # PEP 3333's name for the WSGI callable
    if wsgi:
        return GUNICORN.format(target=f"{module}:{_preferred(wsgi)}"), "gunicorn"
    if asgi:
        return UVICORN.format(target=f"{module}:{_preferred(asgi)}"), "uvicorn"
    if _FACTORY_RE.search(text) and re.search(r"\bFlask\b", text):
        # Quoted: the parentheses would be shell syntax.
        return GUNICORN.format(target=f'"{module}:create_app()"'), "gunicorn"
    return None


def _preferred(names: list[str]) -> str:
    for name in ("app", "application"):
        if name in names:
            return name
    return names[0]


# ------------------------------------------------------------------------ Node

NODE_LOCKFILES = {
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
}
# Read by the package manager during the install, so copied with package.json.
NODE_CONFIG_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", ".pnpmfile.cjs")
NODE_MAIN_FILES = ("server.js", "index.js", "app.js")
NO_NODE_WEB_PROCESS = (
    "No web process: add a Procfile with a `web:` line, a \"start\" script in "
    "package.json, or a main file (looked for \"main\" in package.json, "
    "server.js, index.js and app.js)"
)
# "pnpm@9.1.0", "yarn@4.1.1+sha512.abc...": the hash is corepack's business.
_PACKAGE_MANAGER_RE = re.compile(
    r"^(?P<name>npm|yarn|pnpm)@(?P<version>\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.]+)?)(?:\+[0-9A-Za-z.]+)?\Z"
)


def detect_node(source_dir: Path) -> BuildPlan | None:
    """A Node.js app: package.json at the top.

    The package manager comes from the ``packageManager`` field, else the lock
    file; the Node version range from ``engines.node`` (resolved to an image
    later); the web process from the Procfile, else ``npm start``, else
    ``node`` on the main file. Raises BuildError for a lock file without
    package.json, a malformed package.json, or no web process.
    """
    lockfiles = [name for name in NODE_LOCKFILES if _is_file(source_dir, name)]
    text = read_source_file(source_dir, "package.json")
    if text is None:
        if lockfiles:
            raise BuildError(
                f"{lockfiles[0]} found without package.json: commit package.json too"
            )
        return None
    try:
        package = json.loads(text)
    except ValueError as exc:
        raise BuildError(f"package.json is not valid JSON: {exc}") from None
    if not isinstance(package, dict):
        raise BuildError("package.json must hold a JSON object")
    scripts = package.get("scripts") or {}
    if not isinstance(scripts, dict):
        raise BuildError('package.json: "scripts" must be an object')
    notes: list[str] = []

    installer, version = _node_installer(source_dir, package, lockfiles, notes)
    files = ["package.json", *lockfiles[:1]]
    files += [name for name in NODE_CONFIG_FILES if _is_file(source_dir, name)]
    releases = source_dir / ".yarn" / "releases"
    if installer == "yarn-berry" and releases.is_dir() and _inside(source_dir, releases):
        files.append(".yarn/releases")  # the Yarn release yarnPath names

    engines = package.get("engines") or {}
    runtime = engines.get("node") if isinstance(engines, dict) else None
    if runtime is not None:
        if not isinstance(runtime, str) or not runtime.strip() or len(runtime) > 100:
            raise BuildError('package.json: "engines.node" must be a version range such as ">=18"')
        runtime = runtime.strip()
        notes.append(f'Node version from engines.node in package.json: "{runtime}"')

    build_script = isinstance(scripts.get("build"), str) and bool(scripts["build"].strip())
    if build_script:
        notes.append(
            f"Running the build script ({_run_script(installer, 'build')}) after the code is "
            "copied, with devDependencies, which are pruned afterwards"
        )

    processes = read_procfile(source_dir)
    if processes is not None and "web" in processes:
        notes.append(f"Process types from the Procfile: {', '.join(processes)}")
    else:
        command = _node_web(source_dir, package, scripts, installer)
        if processes is None:
            notes.append(f"No Procfile: web process is `{command}`")
            processes = {"web": command}
        else:
            notes.append(f"The Procfile has no `web:` line: web process is `{command}`")
            processes = {"web": command, **processes}

    return BuildPlan(
        stack="node",
        processes=processes,
        runtime_version=runtime,
        installer=installer,
        installer_version=version,
        dependency_files=tuple(files),
        notes=tuple(notes),
        build_script=build_script,
    )


def _node_installer(
    source_dir: Path, package: dict[str, Any], lockfiles: list[str], notes: list[str]
) -> tuple[str, str | None]:
    """The package manager and the version ``packageManager`` pins, if any."""
    field_value = package.get("packageManager")
    name: str | None = None
    version: str | None = None
    if field_value is not None:
        match = _PACKAGE_MANAGER_RE.match(field_value) if isinstance(field_value, str) else None
        if match is None:
            raise BuildError(
                f'package.json: "packageManager" must be npm, yarn or pnpm with a version '
                f'such as "pnpm@9.1.0", not {json.dumps(field_value)[:60]}'
            )
        name, version = match["name"], match["version"]
        notes.append(f"Package manager from packageManager in package.json: {name}@{version}")
    if len(lockfiles) > 1:
        notes.append(f"Several lock files ({', '.join(lockfiles)}): using {lockfiles[0]}")
    if name is None:
        name = NODE_LOCKFILES[lockfiles[0]] if lockfiles else "npm"
    if name == "yarn":
        # A pinned version decides; without one, .yarnrc.yml is Berry's config.
        if version is not None:
            berry = not version.startswith("1.") and version != "1"
        else:
            berry = _is_file(source_dir, ".yarnrc.yml")
        if berry:
            name = "yarn-berry"
    how = {
        "npm": "with npm ci" if lockfiles and lockfiles[0] != "yarn.lock" else
        "with npm install (no lock file: versions are resolved now)",
        "yarn": "with yarn (classic)",
        "yarn-berry": "with yarn (Berry)",
        "pnpm": "with pnpm",
    }[name]
    source = f"from {lockfiles[0]}" if lockfiles else "from package.json"
    notes.insert(0, f"Installing dependencies {source} {how}")
    return name, version


def _run_script(installer: str, script: str) -> str:
    return {"npm": f"npm run {script}", "pnpm": f"pnpm run {script}"}.get(
        installer, f"yarn {script}"
    )


def _node_web(
    source_dir: Path, package: dict[str, Any], scripts: dict[str, Any], installer: str
) -> str:
    """``npm start`` when there is a start script, else ``node`` on the main file.

    Yarn Berry runs both through ``yarn``, which sets up Plug'n'Play when the
    app uses it (no node_modules for plain ``node`` to find).
    """
    berry = installer == "yarn-berry"
    if isinstance(scripts.get("start"), str) and scripts["start"].strip():
        return "yarn start" if berry else "npm start"
    main = package.get("main")
    candidates = [main] if isinstance(main, str) and main.strip() else []
    candidates += NODE_MAIN_FILES
    for candidate in candidates:
        path = posixpath.normpath(candidate.strip())
        if not _SAFE_PATH_RE.match(path) or path.startswith("../"):
            continue
        node = "yarn node" if berry else "node"
        if _is_file(source_dir, path):
            return f"{node} {path}"
        if not path.endswith(".js") and _is_file(source_dir, f"{path}.js"):
            return f"{node} {path}.js"
    raise BuildError(NO_NODE_WEB_PROCESS)


# ------------------------------------------------------------------- detection

DOCKERFILE = Detector("Dockerfile", ("Dockerfile",), detect_dockerfile)
PYTHON = Detector("Python", ("requirements.txt", "pyproject.toml", "Pipfile"), detect_python)
NODE = Detector("Node.js", ("package.json",), detect_node)

# In order: the app's own Dockerfile wins over everything; Node comes after
# Python (a Python app with a package.json for its assets is a Python app).
DETECTORS: tuple[Detector, ...] = (DOCKERFILE, PYTHON, NODE)


def detect(source_dir: Path, detectors: Sequence[Detector] = DETECTORS) -> BuildPlan:
    """Run ``detectors`` in order and return the first plan.

    Raises NothingToBuild, naming every file looked for, when none matches;
    BuildError when a detector recognises the tree but it cannot be built.
    """
    for detector in detectors:
        plan = detector.detect(source_dir)
        if plan is not None:
            return plan
    names = [name for detector in detectors for name in detector.looks_for]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise NothingToBuild(f"No {listed} found at the top of the repository")
