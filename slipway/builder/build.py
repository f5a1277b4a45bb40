"""The Docker build: a source tree and a plan in, an image id out.

This runs on every push, so it avoids work: the build context is tarred here
(honouring the app's .dockerignore) with file owners normalised, the rendered
Dockerfile travels inside the context under a name the daemon drops before
``COPY . .`` sees it (so it never lands in the image nor touches the code
layer's cache key), and the build output is streamed to ``log`` line by line
as the daemon sends it.

The build request is made here rather than through ``APIClient.build`` to
hold on to the HTTP response: enforcing the timeout means shutting its socket
down, which is also what makes the daemon cancel the build and kill the step
that hangs.
"""

from __future__ import annotations

import collections
import io
import json
import re
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import docker
import requests
from docker.errors import DockerException
from docker.utils import exclude_paths

from slipway.builder.detect import read_source_file
from slipway.builder.dockerfile import render_dockerfile, render_node_dockerfile
from slipway.builder.limits import Limits, build_limits
from slipway.builder.plan import BuildError, BuildPlan

# Where the rendered Dockerfile sits in the context. The generated
# .dockerignore lists it, and the daemon removes files its .dockerignore lists
# once it has read them, so `COPY . .` never sees it.
CONTEXT_DOCKERFILE = ".slipway.Dockerfile"
# Never copied into a python image: a committed .venv would land on top of the
# image's /app/.venv, and .git is not part of an app.
PYTHON_EXCLUDES = (".git", ".venv")
# A committed node_modules would land on top of the installed one, built for
# another machine.
NODE_EXCLUDES = (".git", "node_modules")
ERROR_TAIL_LINES = 15
CONNECT_TIMEOUT = 30.0
# Docker's step bookkeeping, which says nothing a pusher needs.
_NOISE_RE = re.compile(
    r"^( ---> Running in [0-9a-f]+| ---> [0-9a-f]{12}|Removing intermediate container [0-9a-f]+)$"
)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP_RE = re.compile(r"^Step (?P<step>\d+/\d+) : (?P<instruction>.*)\Z")
# What a compiler, pip or node-gyp says when a C header or library is missing.
_MISSING_HEADER_RE = re.compile(r"fatal error: (?P<header>[\w./+-]+\.h): No such file")
_MISSING_TOOL_RE = re.compile(
    r"(?P<tool>pg_config|mysql_config|pkg-config|xslt-config|xml2-config)\b.*not found"
    r"|Can not find valid pkg-config name"
)


def build_image(
    client: docker.DockerClient,
    source_dir: Path,
    plan: BuildPlan,
    *,
    base_image: str,
    tag: str,
    labels: dict[str, str],
    log: Callable[[str], None],
    timeout: float,
    limits: Limits | None = None,
    instance: str = "",
    cgroup_driver: str = "",
    build_base: str | None = None,
) -> str:
    """Build ``source_dir`` as ``plan`` says, tag it ``tag``; return the image id.

    A python or node plan is built from the rendered Dockerfile: dependencies
    installed ``FROM build_base`` (``base_image`` when None), the app run
    ``FROM base_image``, with ``labels`` in both; a dockerfile plan from the
    app's own Dockerfile, with ``labels`` added by Docker. Output goes to ``log`` line by line as it
    comes. Raises BuildError for a failed build (with its last lines of
    output), a build that takes longer than ``timeout`` seconds ("Build timed
    out after N s"), or a Docker engine that cannot be reached; intermediate
    containers are removed either way. With ``limits`` the steps run confined
    (see ``limits.build_limits``; ``instance`` names their cgroup, and
    ``cgroup_driver`` is the daemon's, from ``docker info``), and a build that
    fails at a limit says which.
    """
    params: dict[str, Any] = {"t": tag, "rm": "1", "forcerm": "1", "pull": "0", "q": "0"}
    if plan.stack in ("python", "node"):
        if plan.stack == "python":
            dockerfile = render_dockerfile(plan, base_image, labels, build_base)
        else:
            dockerfile = render_node_dockerfile(plan, base_image, labels, build_base)
        context = build_context(
            source_dir,
            dockerfile=(CONTEXT_DOCKERFILE, dockerfile),
            excludes=PYTHON_EXCLUDES if plan.stack == "python" else NODE_EXCLUDES,
            force_include=plan.dependency_files,
        )
        params["dockerfile"] = CONTEXT_DOCKERFILE
    elif plan.stack == "dockerfile":
        context = build_context(source_dir, dockerfile=("Dockerfile", None))
        params["dockerfile"] = "Dockerfile"
        if labels:
            params["labels"] = json.dumps(labels)
    else:
        raise BuildError(f"Slipway cannot build a {plan.stack} app yet")
    with context:
        if limits is None:
            return _run_build(client, context, params, log, timeout)
        with build_limits(limits, instance, cgroup_driver) as confined:
            if confined.note:
                log(f"       {confined.note}")
            try:
                return _run_build(client, context, {**params, **confined.params}, log, timeout)
            except BuildError as exc:
                reached = confined.reached(limits)
                # Memory at the limit may be page cache the kernel took back: it failed
                # the step only if the step was killed.
                if "returned a non-zero code: 137" not in exc.message:
                    reached.pop("memory", None)
                if not reached:
                    raise
                raise BuildError(f"The build ran into {' and '.join(reached.values())}\n"
                                 + exc.message) from None


def build_context(
    source_dir: Path,
    *,
    dockerfile: tuple[str, str | None],
    excludes: tuple[str, ...] = (),
    force_include: tuple[str, ...] = (),
) -> IO[bytes]:
    """A tar of ``source_dir`` for the daemon, as a file positioned at its start.

    Honours the app's .dockerignore and .slugignore (Heroku's list of paths
    left out of the build) plus ``excludes``; ``force_include`` paths and the
    Dockerfile are sent even when ignored. ``dockerfile`` is (name,
    text): with text, that Dockerfile is added under name together with a
    generated .dockerignore that makes the daemon drop it and itself before
    any COPY; with None, the app's own file of that name is used as it is.
    Owners are normalised to root so the cache key does not depend on which
    user checked the code out. Raises BuildError for an unreadable file.
    """
    name, text = dockerfile
    patterns = _ignore_patterns(read_source_file(source_dir, ".dockerignore") or "")
    patterns += [
        _slugignore_pattern(line)
        for line in _ignore_patterns(read_source_file(source_dir, ".slugignore") or "")
    ]
    patterns += list(excludes)
    patterns += [f"!{path}" for path in force_include]
    if text is not None:
        patterns.append(".dockerignore")  # replaced by the generated one
    try:
        paths = sorted(exclude_paths(str(source_dir), patterns, dockerfile=name))
    except OSError as exc:
        raise BuildError(f"Could not read the source tree: {exc}") from None

    out = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                if text is not None and path in (name, ".dockerignore"):
                    continue
                _add(tar, source_dir, path)
            if text is not None:
                _add_bytes(tar, ".dockerignore", f".dockerignore\n{name}\n".encode())
                _add_bytes(tar, name, text.encode())
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _ignore_patterns(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _slugignore_pattern(line: str) -> str:
    """A .slugignore line as a .dockerignore pattern.

    Heroku reads .slugignore like .gitignore: a name without a slash matches
    at any depth ("*.psd", "tmp"), a leading slash anchors it at the top.
    """
    if line.startswith("/"):
        return line.lstrip("/")
    if "/" in line.rstrip("/"):
        return line
    return f"**/{line}"


def _add(tar: tarfile.TarFile, source_dir: Path, path: str) -> None:
    try:
        info = tar.gettarinfo(str(source_dir / path), arcname=path)
    except OSError as exc:
        raise BuildError(f"Could not read {path}: {exc.strerror}") from None
    if info is None or not (info.isfile() or info.isdir() or info.issym()):
        return  # sockets, fifos, devices: not app content
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        try:
            with open(source_dir / path, "rb") as handle:
                tar.addfile(info, handle)
        except OSError as exc:
            raise BuildError(f"Could not read {path}: {exc.strerror}") from None
    else:
        tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------ the request


def _run_build(
    client: docker.DockerClient,
    context: IO[bytes],
    params: dict[str, Any],
    log: Callable[[str], None],
    timeout: float,
) -> str:
    deadline = time.monotonic() + timeout
    timed_out = BuildError(f"Build timed out after {timeout:g} s")
    url = f"{client.api.base_url}/v{client.api.api_version}/build"
    try:
        response = client.api.post(
            url,
            params=params,
            data=context,
            headers={"Content-Type": "application/tar"},
            stream=True,
            timeout=(min(CONNECT_TIMEOUT, timeout), max(deadline - time.monotonic(), 0.001)),
        )
    except requests.Timeout:
        raise timed_out from None
    except (requests.RequestException, DockerException, OSError) as exc:
        raise BuildError(f"Could not reach the Docker engine: {exc}") from None

    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _abort(response)

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    timer.daemon = True
    timer.start()
    output = _Output(log)
    try:
        if response.status_code != 200:
            raise BuildError(f"The Docker engine refused the build: {_error_text(response)}")
        image_id = output.consume(response)
    except BuildError:
        if expired.is_set():
            raise timed_out from None
        raise
    except (requests.RequestException, DockerException, OSError, ValueError) as exc:
        if expired.is_set() or time.monotonic() >= deadline:
            raise timed_out from None
        raise BuildError(f"Lost the Docker engine during the build: {exc}") from None
    finally:
        timer.cancel()
        response.close()
    if output.error is not None:
        raise BuildError(output.failure())
    if image_id is None:
        if expired.is_set():
            raise timed_out
        raise BuildError(output.failure("The Docker engine ended the build without an image"))
    phases = output.phases()
    if phases:
        log("       Build phases: "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items()))
    return image_id


def _abort(response: requests.Response) -> None:
    """Cut the build's connection; the daemon then cancels the build.

    Runs on the timer thread while the build thread is blocked reading: only
    ``shutdown`` wakes a blocked ``recv`` (``close`` does not).
    """
    raw = response.raw
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
            return
        except OSError:
            pass
    response.close()


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", "")).strip() or response.reason
    except ValueError:
        return response.text.strip()[:500] or str(response.status_code)


class _Output:
    """Turns the daemon's JSON messages into log lines, the image id and the error."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.partial = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
        self.step: str | None = None
        self.instruction = ""
        self.error: str | None = None
        self.image_id: str | None = None
        self.missing: str | None = None  # a header or tool the failing step lacked
        self.started: list[tuple[str, float]] = []  # (instruction, when its step began)
        self.ended = 0.0

    def consume(self, response: requests.Response) -> str | None:
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            *messages, buffer = buffer.split(b"\n")
            for message in messages:
                self.message(message)
        self.message(buffer)
        self.flush()
        self.ended = time.monotonic()
        return self.image_id

    def message(self, raw: bytes) -> None:
        raw = raw.strip()
        if not raw:
            return
        try:
            message = json.loads(raw)
        except ValueError:
            self.text(raw.decode("utf-8", "replace") + "\n")
            return
        if not isinstance(message, dict):
            return
        if "stream" in message:
            self.text(str(message["stream"]))
        if "status" in message and "progress" not in message:
            line = str(message["status"])
            if message.get("id"):
                line = f"{message['id']}: {line}"
            self.text(line + "\n")
        aux = message.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self.image_id = aux["ID"]
        if "error" in message or "errorDetail" in message:
            detail = message.get("errorDetail") or {}
            self.error = str(message.get("error") or detail.get("message") or "unknown error")

    def text(self, text: str) -> None:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.line(line)

    def flush(self) -> None:
        if self.partial:
            self.line(self.partial)
            self.partial = ""

    def line(self, line: str) -> None:
        # Docker colours a step's stderr; progress output redraws a line
        # with \r: keep the text of its last state.
        line = _ANSI_RE.sub("", line).rstrip().rsplit("\r", 1)[-1].rstrip()
        if not line or _NOISE_RE.match(line):
            return
        step = _STEP_RE.match(line)
        if step:
            self.step = f"step {step['step']} ({step['instruction'][:80]})"
            self.instruction = step["instruction"]
            self.started.append((self.instruction, time.monotonic()))
            self.tail.clear()  # the error message quotes the failing step's output only
            self.missing = None
        else:
            self.tail.append(line)
            if self.missing is None and (
                match := _MISSING_HEADER_RE.search(line) or _MISSING_TOOL_RE.search(line)
            ):
                found = match.groupdict()
                self.missing = found.get("header") or found.get("tool") or "a pkg-config package"
        self.log(line)

    def phases(self) -> dict[str, float]:
        """Seconds per phase of a two-stage build (the install stage, the rest of the run
        stage, its copy of the dependencies, the code copy, the steps after it); empty
        for a build of another shape."""
        if not self.started or not self.started[0][0].endswith(" AS build"):
            return {}
        ends = [when for _, when in self.started[1:]] + [self.ended]
        phases: dict[str, float] = {}
        stage, after_code = "build stage", False
        for (instruction, began), ended in zip(self.started, ends, strict=True):
            if instruction.startswith("FROM ") and not instruction.endswith(" AS build"):
                stage = "run stage"
            if instruction.startswith("COPY --from=build"):
                name = "dependency copy"
            elif instruction.startswith("COPY --chown="):
                name, after_code = "code copy", True
            elif after_code and "collectstatic" in instruction:
                name = "collectstatic"
            elif after_code and instruction.startswith("RUN"):
                name = "build script"
            else:
                name = stage
            phases[name] = phases.get(name, 0.0) + ended - began
        return phases

    def failure(self, error: str | None = None) -> str:
        error = (error or self.error or "unknown error").strip()
        where = f" at {self.step}" if self.step else ""
        message = f"The build failed{where}: {error}"
        tail = [line for line in self.tail if line.strip() != error]
        if tail:
            message += "\nLast lines of output:\n" + "\n".join(f"  {line}" for line in tail)
        if self.instruction.upper().startswith("FROM "):
            message += (
                "\nThe base image is not on this host and could not be pulled: "
                "run `slipway images bootstrap` on hosts without a registry"
            )
        elif "collectstatic" in self.instruction:
            message += (
                "\ncollectstatic failed: fix the error above (STATIC_ROOT must be set, to a "
                'directory inside the app such as BASE_DIR / "staticfiles"), or set '
                "DISABLE_COLLECTSTATIC=1 to build without it"
            )
        elif self.missing is not None:
            message += (
                f"\nA package compiles against {self.missing}, which the build image lacks "
                "(it has the headers of libpq, libffi, OpenSSL, libjpeg, zlib, MariaDB, "
                "libxml2 and libxslt): use a version of the package that ships a binary wheel "
                "or prebuilt addon, or build with your own Dockerfile that installs its -dev "
                "package"
            )
        return message
