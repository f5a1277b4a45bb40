"""Git over smart HTTP: `git http-backend` behind token authentication.

The pre-receive hook of each repository posts the pushed revision back to
``/git/<app>.git/slipway-build`` with a short-lived signed token, and streams
the build's log to the pusher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading

from flask import Blueprint, Response, request, stream_with_context
from itsdangerous import BadSignature, URLSafeTimedSerializer

from slipway.platform import apps as app_service
from slipway.platform import builds as build_service
from slipway.platform import repos, tasks
from slipway.platform.errors import (
    BadRequest,
    InsufficientStorage,
    NotFound,
    SlipwayError,
    TooLarge,
    Unauthorized,
)
from slipway.platform.logstream import END, build_log_key, connect, follow
from slipway.platform.models import App, User
from slipway.web.app import db_session, error_headers, settings
from slipway.web.auth import authenticate_basic

bp = Blueprint("git", __name__, url_prefix="/git")

SERVICES = ("info/refs", "git-upload-pack", "git-receive-pack")
STATUS_PREFIX = "\x1eslipway-status:"
HOOK_TOKEN_MAX_AGE = 3600
CHUNK = 64 * 1024


def _hook_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings().resolved_secret_key(), salt="slipway-hook")


@bp.errorhandler(Unauthorized)
def _unauthorized(exc: Unauthorized):
    # git asks for credentials only when told which scheme to use.
    return Response(exc.message + "\n", 401, {"WWW-Authenticate": 'Basic realm="Slipway"'},
                    mimetype="text/plain")


@bp.errorhandler(SlipwayError)
def _git_error(exc: SlipwayError):
    return Response(exc.message + "\n", exc.status, error_headers(exc), mimetype="text/plain")


def _find_app(name: str) -> tuple[App, User]:
    user = authenticate_basic()
    return app_service.get_app(db_session(), user, name), user


@bp.route("/<name>.git/<path:service>", methods=["GET", "POST"])
def smart_http(name: str, service: str):
    if service not in SERVICES:
        raise NotFound("Only the smart HTTP protocol is served")
    app, user = _find_app(name)
    s = settings()
    repos.ensure_repo(s.repos_dir, app.uid)
    token = _hook_signer().dumps({"app": app.uid, "user": user.id})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(s.repos_dir),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{app.uid}.git/{service}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string.decode(),
        "CONTENT_TYPE": request.content_type or "",
        "REMOTE_USER": user.email,
        "REMOTE_ADDR": request.remote_addr or "",
        "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        "SLIPWAY_HOOK_URL": f"http://127.0.0.1:{s.web_port}/git/{app.name}.git/slipway-build",
        "SLIPWAY_HOOK_TOKEN": token,
        "SLIPWAY_MAX_PUSH_BYTES": str(s.max_push_bytes),
        **repos.git_config_env({**repos.RECEIVE_CHECKS,
                                "receive.maxInputSize": str(s.max_push_bytes)}),
    }
    if request.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    db_session().close()  # a push can take minutes; don't hold a connection

    source = request.stream
    if service == "git-receive-pack" and request.method == "POST":
        spooled = _spool_push(s.max_push_bytes, s.builds_dir)
        if isinstance(spooled, Response):
            return spooled
        source, env["CONTENT_LENGTH"] = spooled[0], str(spooled[1])
    proc = subprocess.Popen(
        [shutil.which("git") or "git", "http-backend"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    threading.Thread(target=_feed, args=(source, proc.stdin), daemon=True).start()
    status, headers = _read_cgi_headers(proc.stdout)

    def body():
        try:
            while chunk := proc.stdout.read1(CHUNK):
                yield chunk
        finally:
            proc.stdout.close()
            proc.wait()

    return Response(stream_with_context(body()), status=status, headers=headers,
                    direct_passthrough=True)


def _feed(source, sink) -> None:
    try:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        for stream in (sink, source):
            try:
                # gunicorn's request body (a GET's) has no close(): nothing to release.
                if hasattr(stream, "close"):
                    stream.close()
            except OSError:
                pass


def _read_commands(stream, limit: int = 64 * 1024) -> bytes:
    """The pkt-lines of a receive-pack request up to its first flush (the ref updates)."""
    data = b""
    while len(data) < limit:
        size = stream.read(4)
        if len(size) < 4:
            break
        data += size
        try:
            length = int(size, 16)
        except ValueError:
            break
        if length == 0:
            break
        data += stream.read(max(length - 4, 0))
    return data


def _drain(stream, most: int) -> None:
    """Read and drop what is left of a refused body (at most ``most`` bytes): a client
    still sending would otherwise see a broken pipe instead of the answer."""
    drained = 0
    while drained < most and (chunk := stream.read(CHUNK)):
        drained += len(chunk)


def _refusal(commands: bytes, message: str, reason: bytes = b"push too large") -> Response:
    """A receive-pack answer that rejects every ref of the push, so git shows ``message``
    as ``remote:`` text and each ref as ``[remote rejected]``."""
    refs, capabilities = [], b""
    rest = commands
    while len(rest) >= 4 and rest[:4] != b"0000":
        try:
            length = int(rest[:4], 16)
        except ValueError:  # not git talking: there is nothing more to read
            break
        if length < 4:
            break
        line, rest = rest[4:length], rest[length:]
        command, _, caps = line.rstrip(b"\n").partition(b"\0")
        capabilities = capabilities or caps
        if len(command.split()) == 3:
            refs.append(command.split()[2])

    def pkt(payload: bytes) -> bytes:
        return b"%04x" % (len(payload) + 4) + payload

    report = pkt(b"unpack " + reason + b"\n")
    report += b"".join(pkt(b"ng " + ref + b" " + reason + b"\n") for ref in refs) + b"0000"
    if b"side-band" in capabilities:
        body = pkt(b"\x02" + message.encode() + b"\n") + pkt(b"\x01" + report) + b"0000"
    else:
        body = report
    return Response(body, 200, mimetype="application/x-git-receive-pack-result")


def _spool_push(limit: int, directory) -> Response | tuple[tempfile.SpooledTemporaryFile, int]:
    """The push's request body in a temporary file and its size, or a refusal when it is
    larger than ``limit`` (SLIPWAY_MAX_PUSH_BYTES): then nothing reaches the repository.
    The rest of an oversized body is read and dropped (up to a bound), so git hears the
    answer."""
    stream = request.stream
    gzipped = bool(request.headers.get("Content-Encoding"))
    commands = b"" if gzipped else _read_commands(stream)
    if (low_disk := build_service.low_disk_message(settings())) is not None:
        low_disk = f"Push rejected: {low_disk}"
        _drain(stream, 4 * limit)
        if gzipped:
            raise InsufficientStorage(low_disk)
        return _refusal(commands, low_disk, b"disk full")
    declared = request.content_length
    size = len(commands)
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, dir=directory)
    spool.write(commands)
    if declared is None or declared <= limit:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                break
            spool.write(chunk)
    if (declared or 0) > limit or size > limit:
        spool.close()
        _drain(stream, 4 * limit)
        megabytes = limit / (1024 * 1024)
        message = (f"Push rejected: it is larger than {megabytes:g} MB "
                   f"(SLIPWAY_MAX_PUSH_BYTES); the running release is untouched")
        if gzipped:
            raise TooLarge(message)
        return _refusal(commands, message)
    spool.seek(0)
    return spool, size


def _copy_at_most(source, sink, limit: int) -> None:
    """Copy ``source`` to ``sink``, stopping with TooLarge past ``limit`` bytes, whatever
    the request declared."""
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise _tree_too_large(limit)
        sink.write(chunk)


def _tree_too_large(limit: int) -> TooLarge:
    return TooLarge(f"Push rejected: the pushed tree is larger than {limit / (1024 * 1024):g} MB "
                    "(SLIPWAY_MAX_PUSH_BYTES); the running release is untouched")


def _read_cgi_headers(stream) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stream.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").partition(":")
        key, value = key.strip(), value.strip()
        if key.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((key, value))
    return status, headers


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


@bp.post("/<name>.git/slipway-build")
def hook_build(name: str):
    """Called by the pre-receive hook: store the revision, queue its build, stream its log."""
    header = request.headers.get("Authorization", "")
    try:
        claims = _hook_signer().loads(header.removeprefix("Bearer "), max_age=HOOK_TOKEN_MAX_AGE)
    except BadSignature as exc:
        raise Unauthorized("Invalid hook token") from exc
    commit = request.args.get("commit", "")
    if not _is_object_id(commit):
        raise BadRequest("Invalid commit id", field="commit")
    # The revision the branch pointed to before the push (all zeros for a new branch);
    # hooks installed before it was sent send none.
    base = request.args.get("base")
    if base is not None and not _is_object_id(base):
        raise BadRequest("Invalid base commit id", field="base")

    s = settings()
    if (request.content_length or 0) > s.max_push_bytes:
        _drain(request.stream, 4 * s.max_push_bytes)  # so the hook hears the answer
        raise _tree_too_large(s.max_push_bytes)
    if (low_disk := build_service.low_disk_message(s)) is not None:
        _drain(request.stream, 4 * s.max_push_bytes)
        raise InsufficientStorage(f"Push rejected: {low_disk}")
    session = db_session()
    app = session.query(App).filter_by(name=name).one_or_none()
    # The token names the app's uid: a token of a destroyed app never reaches the next
    # app of its name.
    if app is None or claims.get("app") != app.uid:
        raise Unauthorized("Invalid hook token")
    # The whole revision first: a push cut off mid-upload leaves no build behind.
    with tempfile.NamedTemporaryFile(dir=s.builds_dir, suffix=".upload", delete=False) as out:
        try:
            _copy_at_most(request.stream, out, s.max_push_bytes)
        except BaseException:
            os.unlink(out.name)
            raise
    build = build_service.create_build(session, app, commit=commit, user_id=claims.get("user"))
    session.commit()
    os.replace(out.name, build_service.source_archive(s, build))
    tasks.build.delay(build.id, base)
    build_id, log_key = build.id, build_log_key(app.uid, build.id)
    session.close()

    def stream():
        yield f"-----> Build {build_id} of {name} queued ({commit[:8]})\n"
        waited = 0.0
        redis_client = connect(s.redis_url)
        for kind, text in follow(redis_client, log_key, idle_timeout=5):
            if kind == END:
                yield f"{STATUS_PREFIX}{text}\n"
                return
            if kind == "idle":
                waited += 5
                yield f"       ... still working ({waited:.0f} s without output)\n"
                continue
            yield text + "\n"

    return Response(stream(), mimetype="text/plain")
