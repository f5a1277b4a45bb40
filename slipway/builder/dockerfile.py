"""Render the Dockerfile for a python or node plan (pure: plan in, text out).

The Node layout follows the same rules (dependency files and their install
before the code; the build script, which needs the code, right after it);
see ``render_node_dockerfile``.

Layout, and why:

- Two stages, as Heroku builds on its build image and runs on a smaller one:
  dependencies are installed in a stage ``FROM`` the build image (compilers,
  pkg-config, -dev headers: psycopg2 or mysqlclient from source build there),
  and only what they installed (/app/.venv, node_modules) is copied into the
  stage ``FROM`` the run image, which has the runtime libraries only.
- Everything that does not depend on the code comes first (FROM, LABEL, ENV,
  the user, the virtualenv, WORKDIR), then the dependency files are copied and
  installed, and the code ``COPY . .`` comes last but for the steps that need
  the code (Django's collectstatic, a Node build script). A push that changes
  only code then reuses every other layer, the install stage included; the
  legacy builder makes one container per step, so any step after the code
  copy costs time on every push.
- Dependencies go into a virtualenv at /app/.venv made with ``python3 -m
  venv --without-pip`` and filled by the image's own ``python3 -m pip
  --python``, which works with Debian's python3 and the official images alike
  (the build image is the run image plus tools, so the venv's interpreter is
  at the same path in both stages). Installs run as root, so the app cannot
  rewrite its own dependencies; the app runs as uid 10001 and owns /app, so it
  may write to its directory, as on Heroku's ephemeral filesystem.
- A pyproject.toml project without a lock file has its [project].dependencies
  installed by name before the code is copied (``pip install .`` would need
  the code, and reinstall on every push); the project itself is not installed,
  as uv's ``--no-install-project`` and Poetry's ``--no-root`` do. Only when
  the dependencies are dynamic, or requirements.txt installs a local path,
  does the install run after the code copy: correctness over speed.
- Values from the plan reach the Dockerfile only as JSON-form arguments or
  escaped double-quoted strings; process commands never do (the runtime runs
  them with /bin/sh -c).
"""

from __future__ import annotations

import json
import posixpath
import re

from slipway.builder.plan import BuildError, BuildPlan

APP_DIR = "/app"
VENV = "/app/.venv"
APP_UID = 10001
# Written out in full rather than "$PATH": images made with `docker import`
# carry no PATH in their config, and "$PATH" would expand to nothing.
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The image's own pip installs into the venv, which is made without one: ensurepip
# costs two seconds of every cold build, and 13 MB the run stage would copy.
PIP = ["python3", "-m", "pip", "--python", f"{VENV}/bin/python"]
PIP_SHELL = " ".join(PIP)

# Docker image references: registry/name:tag@digest, no spaces or quotes.
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z")
# Docker keeps \n inside a quoted LABEL value as the two characters "\" "n":
# a control character cannot be written faithfully, so it is refused.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# What extra_packages may hold: a distribution name with optional extras and
# version specifier ("gunicorn", "uvicorn[standard]>=0.30").
_PACKAGE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]*\])?([<>=!~]=?[A-Za-z0-9.*+!,<>=~-]+)?\Z"
)
_DEPENDENCY_RE = re.compile(r"^[A-Za-z0-9][^\x00-\x1f\x7f]*\Z")
_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@=-]*(/[A-Za-z0-9_][A-Za-z0-9._+@=-]*)*\Z")

HEADER = """\
# Rendered by Slipway for a Python app; it is not part of the app's files.
# Dependencies are installed in a build stage (compilers and headers) and copied
# into the run stage before the code, so a push that changes only code reuses
# every layer before the code copy.
"""

_PYTHON_ENV = ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
               "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_CACHE_DIR=1", "PIP_PROGRESS_BAR=off")


def _env(*settings: str) -> str:
    return "ENV " + " \\\n    ".join(settings) + "\n"


ENV = _env(*_PYTHON_ENV, f"VIRTUAL_ENV={VENV}", f"PATH={PATH}")
# The build stage's: its python3 must be the image's (which has pip), not the venv's.
BUILD_ENV = _env(*_PYTHON_ENV, f"PATH={PATH.split(':', 1)[1]}")

BUILD_SETUP = f"""\
WORKDIR {APP_DIR}
RUN ["python3", "-m", "venv", "--without-pip", "{VENV}"]
"""

SETUP = f"""\
RUN useradd --uid {APP_UID} --user-group --home-dir {APP_DIR} --no-create-home \\
        --shell /usr/sbin/nologin app \\
 && install -d -o {APP_UID} -g {APP_UID} {APP_DIR}
WORKDIR {APP_DIR}
"""

# Django's static files, as Heroku's Python buildpack makes them: after the
# code is copied, as the app's user (STATIC_ROOT is inside the app's directory).
COLLECTSTATIC = 'RUN ["python", "manage.py", "collectstatic", "--noinput"]\n'

# Lock-file installers run from a throwaway virtualenv under /tmp, export the
# locked versions to a requirements file (reading only the lock: no
# resolution), and pip installs that: one network client (pip, which honours
# the image's PIP_CERT) for every installer.
UV = f"""\
RUN python3 -m venv /tmp/uv \\
 && /tmp/uv/bin/pip install --quiet uv \\
 && /tmp/uv/bin/uv export --quiet --frozen --no-dev --no-hashes --no-emit-project \\
        --output-file /tmp/requirements.txt \\
 && {PIP_SHELL} install -r /tmp/requirements.txt \\
 && rm -rf /tmp/uv /tmp/requirements.txt
"""

PIPENV = f"""\
RUN python3 -m venv /tmp/pipenv \\
 && /tmp/pipenv/bin/pip install --quiet pipenv \\
 && PIPENV_VERBOSITY=-1 /tmp/pipenv/bin/pipenv requirements > /tmp/requirements.txt \\
 && {PIP_SHELL} install -r /tmp/requirements.txt \\
 && rm -rf /tmp/pipenv /tmp/requirements.txt
"""

# Poetry exports rather than installs: `poetry install` asks the index about
# every locked package again (PyPI's JSON API, which some proxies do not
# serve), while `poetry export` only reads poetry.lock. Without a lock, Poetry
# has to resolve first (`poetry lock`).
POETRY = f"""\
RUN python3 -m venv /tmp/poetry \\
 && /tmp/poetry/bin/pip install --quiet poetry poetry-plugin-export \\
{{lock}} && POETRY_CACHE_DIR=/tmp/poetry-cache /tmp/poetry/bin/poetry export --only main \\
        --without-hashes --format requirements.txt --output /tmp/requirements.txt \\
 && {PIP_SHELL} install -r /tmp/requirements.txt \\
 && rm -rf /tmp/poetry /tmp/poetry-cache /tmp/requirements.txt
"""
POETRY_LOCK = """\
 && POETRY_CACHE_DIR=/tmp/poetry-cache /tmp/poetry/bin/poetry lock --no-interaction \\
"""


def render_dockerfile(
    plan: BuildPlan, base_image: str, labels: dict[str, str], build_image: str | None = None,
) -> str:
    """The Dockerfile text for a python ``plan``: installed ``FROM build_image``, run
    ``FROM base_image`` (the same image when ``build_image`` is None).

    ``labels`` become a LABEL instruction in both stages (so the build stage's
    layers are found by label too), escaped for Docker's quoting. The code
    ``COPY`` comes after the install unless ``plan.install_after_copy``, and
    only collectstatic follows it. Raises BuildError for an image name, label,
    package or file name that cannot be written safely, and ValueError for a
    plan that is not python.
    """
    if plan.stack != "python":
        raise ValueError(f"render_dockerfile renders python plans, not {plan.stack!r}")
    build_image = build_image or base_image
    for image in (base_image, build_image):
        if not _IMAGE_RE.match(image):
            raise BuildError(f"Invalid base image name {image!r}")
    for package in plan.extra_packages:
        if not _PACKAGE_RE.match(package):
            raise BuildError(f"Invalid package name {package!r}")
    for dependency in plan.dependencies:
        if not _DEPENDENCY_RE.match(dependency):
            raise BuildError(f"Invalid dependency {dependency!r}")

    label = [_label_instruction(labels)] if labels else []
    parts = [HEADER, f"FROM {build_image} AS build\n", *label, BUILD_ENV, BUILD_SETUP]
    if plan.install_after_copy:
        # The install reads the code (-e ., local paths, a dynamic
        # [project]): correctness over speed, it reruns on every push.
        parts += ["COPY . .\n", *_install(plan)]
    else:
        parts += [*_copy_dependency_files(plan), *_install(plan)]
    parts += [
        f"\nFROM {base_image}\n", *label, ENV, SETUP,
        f"COPY --from=build {VENV} {VENV}\n",
        f"USER {APP_UID}\n",
        f"COPY --chown={APP_UID}:{APP_UID} . .\n",
    ]
    if plan.collectstatic:
        parts.append(COLLECTSTATIC)
    return "".join(parts)


def _install(plan: BuildPlan) -> list[str]:
    """The RUN instructions that install dependencies and extra packages."""
    extra = list(plan.extra_packages)
    if plan.installer == "pip":
        if plan.dependencies:
            args = [*plan.dependencies, *extra]
        elif plan.dependency_files[:1] == ("pyproject.toml",):
            args = [".", *extra]
        elif plan.dependency_files:
            args = ["-r", _checked_path(plan.dependency_files[0]), *extra]
        else:
            args = extra
        return [_run_exec([*PIP, "install", *args])] if args else []
    locked = "poetry.lock" in plan.dependency_files
    tools = {
        "uv": UV,
        "poetry": POETRY.format(lock="" if locked else POETRY_LOCK),
        "pipenv": PIPENV,
    }
    if plan.installer not in tools:
        raise BuildError(f"Unknown Python installer {plan.installer!r}")
    steps = [tools[plan.installer]]
    if extra:
        steps.append(_run_exec([*PIP, "install", *extra]))
    return steps


def _copy_dependency_files(plan: BuildPlan) -> list[str]:
    """COPY the dependency files, one instruction per directory.

    Docker copies several sources into a directory by their base names, so
    "requirements/base.txt" must go to "requirements/" on its own.
    """
    if plan.installer == "pip" and plan.dependencies:
        return []  # the requirements are in the RUN line itself
    by_dir: dict[str, list[str]] = {}
    for path in plan.dependency_files:
        by_dir.setdefault(posixpath.dirname(_checked_path(path)), []).append(path)
    lines = []
    for directory, paths in by_dir.items():
        dest = f"{directory}/" if directory else "./"
        lines.append(f"COPY {json.dumps([*paths, dest])}\n")
    return lines


def _checked_path(path: str) -> str:
    if not _PATH_RE.match(path) or ".." in path.split("/"):
        raise BuildError(f"Unsupported dependency file name {path!r}")
    return path


def _run_exec(argv: list[str]) -> str:
    """A JSON-form RUN: no shell reads the arguments."""
    return f"RUN {json.dumps(argv, ensure_ascii=False)}\n"


def quote_label(text: str) -> str:
    """``text`` as a double-quoted Dockerfile word that Docker reads back byte for byte.

    Inside double quotes Docker unescapes ``\\"``, ``\\\\`` and ``\\$`` and expands
    ``$VAR``; everything else is literal. Raises BuildError for control
    characters, which have no faithful spelling.
    """
    if _CONTROL_RE.search(text):
        raise BuildError(f"Label {json.dumps(text)} contains a control character")
    return json.dumps(text, ensure_ascii=False).replace("$", "\\$")


def _label_instruction(labels: dict[str, str]) -> str:
    pairs = []
    for key, value in sorted(labels.items()):
        if not key:
            raise BuildError("Label names must not be empty")
        pairs.append(f"{quote_label(key)}={quote_label(value)}")
    return "LABEL " + " \\\n      ".join(pairs) + "\n"


# ------------------------------------------------------------------------ Node

NODE_HEADER = """\
# Rendered by Slipway for a Node.js app; it is not part of the app's files.
# Dependencies are installed in a build stage (node-gyp's compilers and headers)
# and copied into the run stage before the code, so a push that changes only
# code reuses every layer before the code copy.
"""

# node_modules/.bin first, so Procfile commands find the app's own tools.
NODE_PATH = f"{APP_DIR}/node_modules/.bin:" + PATH.split(":", 1)[1]
NODE_ENV = f"""\
ENV NODE_ENV=production \\
    npm_config_update_notifier=false \\
    npm_config_fund=false \\
    npm_config_audit=false \\
    YARN_ENABLE_TELEMETRY=0 \\
    PATH={NODE_PATH}
"""

NODE_SETUP = f"""\
RUN useradd --uid {APP_UID} --user-group --home-dir {APP_DIR} --no-create-home \\
        --shell /usr/sbin/nologin app \\
 && install -d -o {APP_UID} -g {APP_UID} {APP_DIR}
WORKDIR {APP_DIR}
"""

# A version as the packageManager field pins it ("9.1.0", "4.1.1", "1.22.22").
_TOOL_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}(-[0-9A-Za-z.]+)?\Z")
# The versions installed when package.json pins none.
DEFAULT_TOOL_VERSIONS = {"pnpm": "9", "yarn": "1", "yarn-berry": "4"}
NODE_INSTALLERS = ("npm", "yarn", "yarn-berry", "pnpm")
# Detection only ever names these: anything else in a plan is refused.
NODE_DEPENDENCY_FILES = frozenset({
    "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
    ".npmrc", ".yarnrc", ".yarnrc.yml", ".pnpmfile.cjs", ".yarn/releases",
})


def render_node_dockerfile(
    plan: BuildPlan, base_image: str, labels: dict[str, str], build_image: str | None = None,
) -> str:
    """The Dockerfile text for a node ``plan``: installed ``FROM build_image``, run
    ``FROM base_image`` (the same image when ``build_image`` is None).

    Build stage: the package manager (pnpm, yarn) installed with npm, then the
    dependency files copied and installed (with devDependencies when there is
    a build script; addons compile here). Run stage: the package manager
    again, what the install left in /app (node_modules), the code, then the
    build script and the prune of devDependencies. NODE_ENV=production; the
    app runs as uid 10001, which owns /app. Raises BuildError for an image,
    label, version or file name that cannot be written safely, and ValueError
    for a plan that is not node.
    """
    if plan.stack != "node":
        raise ValueError(f"render_node_dockerfile renders node plans, not {plan.stack!r}")
    build_image = build_image or base_image
    for image in (base_image, build_image):
        if not _IMAGE_RE.match(image):
            raise BuildError(f"Invalid base image name {image!r}")
    if plan.installer not in NODE_INSTALLERS:
        raise BuildError(f"Unknown Node.js package manager {plan.installer!r}")
    if plan.installer_version is not None and not _TOOL_VERSION_RE.match(plan.installer_version):
        raise BuildError(f"Invalid package manager version {plan.installer_version!r}")
    for path in plan.dependency_files:
        if path not in NODE_DEPENDENCY_FILES:
            raise BuildError(f"Unsupported dependency file name {path!r}")
    files = list(plan.dependency_files)
    locked = any(
        name in files
        for name in ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")
    )

    label = [_label_instruction(labels)] if labels else []
    tool = _node_tool(plan)
    parts = [NODE_HEADER, f"FROM {build_image} AS build\n", *label, NODE_ENV,
             f"WORKDIR {APP_DIR}\n", *tool]
    top = [path for path in files if "/" not in path]
    parts.append(f"COPY {json.dumps([*top, './'])}\n")
    for path in files:
        if "/" in path:  # .yarn/releases, a directory: copied to its own place
            parts.append(f"COPY {json.dumps([path, path + '/'])}\n")
    parts.append(_node_install(plan, locked))
    # All of /app: node_modules, and Yarn's .pnp.cjs and .yarn/ when it makes them.
    parts += [f"\nFROM {base_image}\n", *label, NODE_ENV, NODE_SETUP, *tool,
              f"COPY --from=build {APP_DIR} {APP_DIR}\n"]
    parts.append(f"COPY --chown={APP_UID}:{APP_UID} . .\n")
    if plan.build_script:
        parts.append(_node_build(plan, locked))
    parts.append(f"USER {APP_UID}\n")
    return "".join(parts)


def _node_tool(plan: BuildPlan) -> list[str]:
    """Install the package manager, when it is not npm, in a layer of its own."""
    if plan.installer == "npm":
        return []
    if plan.installer == "yarn-berry":
        # Berry from its npm distribution rather than corepack: corepack's
        # signature check fails against the registry's current keys (seen with
        # Debian's Node 18 and 20). Berry also runs a release committed under
        # .yarn/releases when .yarnrc.yml's yarnPath names it.
        version = plan.installer_version or DEFAULT_TOOL_VERSIONS["yarn-berry"]
        return [_run_exec(["npm", "install", "--global", f"@yarnpkg/cli-dist@{version}"])]
    tool = "pnpm" if plan.installer == "pnpm" else "yarn"
    version = plan.installer_version or DEFAULT_TOOL_VERSIONS[tool]
    return [_run_exec(["npm", "install", "--global", f"{tool}@{version}"])]


def _node_install(plan: BuildPlan, locked: bool) -> str:
    """The dependency install: devDependencies too when a build script needs them."""
    dev = plan.build_script
    if plan.installer == "npm":
        verb = "ci" if locked else "install"
        return _run_exec(["npm", verb, "--include=dev" if dev else "--omit=dev"])
    if plan.installer == "yarn":
        frozen = ["--frozen-lockfile"] if locked else []
        return _run_exec(
            ["yarn", "install", *frozen, f"--production={'false' if dev else 'true'}",
             "--non-interactive"]
        )
    if plan.installer == "pnpm":
        frozen = ["--frozen-lockfile"] if locked else []
        return _run_exec(["pnpm", "install", *frozen, f"--prod={'false' if dev else 'true'}"])
    # Berry installs devDependencies whatever NODE_ENV says; without a build
    # script they are dropped at once (`workspaces focus` is built into Yarn 4).
    install = "yarn install --immutable" if locked else "yarn install"
    if dev:
        return f"RUN {install}\n"
    return f"RUN {install} \\\n && yarn workspaces focus --all --production\n"


def _node_build(plan: BuildPlan, locked: bool) -> str:
    """Run the build script, then drop devDependencies from what runs."""
    if plan.installer == "npm":
        return "RUN npm run build \\\n && npm prune --omit=dev\n"
    if plan.installer == "pnpm":
        return "RUN pnpm run build \\\n && pnpm prune --prod\n"
    if plan.installer == "yarn":
        frozen = " --frozen-lockfile" if locked else ""
        return f"RUN yarn build \\\n && yarn install{frozen} --production=true --non-interactive\n"
    return "RUN yarn build \\\n && yarn workspaces focus --all --production\n"
