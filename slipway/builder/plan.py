"""What detection decides about a source tree, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


class BuildError(Exception):
    """A build that cannot go on; ``message`` is shown to the pusher as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NothingToBuild(BuildError):
    """No detector recognised the source tree."""


@dataclass(frozen=True)
class BuildPlan:
    """How to turn one source tree into an image.

    ``stack`` is "python" or "node" (a Dockerfile is rendered) or "dockerfile" (the app's
    own Dockerfile is used as it is). ``processes`` maps Procfile process types
    to shell commands; for a "dockerfile" plan without a Procfile it is empty
    and the image's own CMD runs as ``web``.

    For the python stack: ``installer`` is "pip", "uv", "poetry" or "pipenv";
    ``dependency_files`` are the repository paths the install reads (copied
    before the code so the dependency layer survives code-only pushes; for pip
    the first one is the file given to ``pip install -r``, or "pyproject.toml"
    for ``pip install .``); ``dependencies`` are PEP 508 requirements read from
    pyproject.toml's ``[project].dependencies`` and installed as they are;
    ``install_after_copy`` is true when the install needs the code itself
    (``-e .``, local paths, dynamic dependencies), which costs a reinstall on
    every push; ``extra_packages`` are installed too (the server the default
    web process needs, e.g. gunicorn).

    For the node stack: ``installer`` is "npm" (``npm ci`` with a lock file,
    ``npm install`` without), "yarn" (classic), "yarn-berry" or "pnpm";
    ``installer_version`` is the version the ``packageManager`` field pins, if
    any; ``runtime_version`` is the ``engines.node`` range as written;
    ``dependency_files`` are package.json, the lock file and the package
    manager's config files; ``build_script`` is true when package.json has a
    ``build`` script to run after the code is copied.

    ``collectstatic`` is true for a Django app whose static files are built
    with ``python manage.py collectstatic --noinput`` after the code is copied
    (off with DISABLE_COLLECTSTATIC=1, see ``detect.apply_build_config``).
    """

    stack: str
    processes: dict[str, str] = field(default_factory=dict)
    runtime_version: str | None = None
    installer: str | None = None
    dependency_files: tuple[str, ...] = ()
    extra_packages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    install_after_copy: bool = False
    installer_version: str | None = None
    build_script: bool = False
    collectstatic: bool = False
    # Where runtime_version came from, for messages ("runtime.txt asks for python-3.7.3").
    runtime_request: str | None = None
