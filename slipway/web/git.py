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
from slipway.platform.errors import BadRequest, NotFound, SlipwayError, Unauthorized
from slipway.platform.logstream import END, build_log_key, connect, follow
from slipway.platform.models import App, User
from slipway.web.app import db_session, settings
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
    return Response(exc.message + "\n", exc.status, mimetype="text/plain")


def _find_app(name: str) -> tuple[App, User]:
    user = authenticate_basic()
    return app_service.get_app(db_session(), user, name), user


@bp.route("/<name>.git/<path:service>", methods=["GET", "POST"])
def smart_http(name: str, service: str):
    if service not in SERVICES:
        raise NotFound("Only the smart HTTP protocol is served")
    app, user = _find_app(name)
    s = settings()
    repos.ensure_repo(s.repos_dir, app.name)
    token = _hook_signer().dumps({"app": app.name, "user": user.id})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(s.repos_dir),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{app.name}.git/{service}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string.decode(),
        "CONTENT_TYPE": request.content_type or "",
        "REMOTE_USER": user.email,
        "REMOTE_ADDR": request.remote_addr or "",
        "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        "SLIPWAY_HOOK_URL": f"http://127.0.0.1:{s.web_port}/git/{app.name}.git/slipway-build",
        "SLIPWAY_HOOK_TOKEN": token,
    }
    if request.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    db_session().close()  # a push can take minutes; don't hold a connection

    proc = subprocess.Popen(
        [shutil.which("git") or "git", "http-backend"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    threading.Thread(target=_feed, args=(request.stream, proc.stdin), daemon=True).start()
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
        try:
            sink.close()
        except OSError:
            pass


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
    if claims.get("app") != name:
        raise Unauthorized("Invalid hook token")
    commit = request.args.get("commit", "")
    if not _is_object_id(commit):
        raise BadRequest("Invalid commit id", field="commit")
    # The revision the branch pointed to before the push (all zeros for a new branch);
    # hooks installed before it was sent send none.
    base = request.args.get("base")
    if base is not None and not _is_object_id(base):
        raise BadRequest("Invalid base commit id", field="base")

    s = settings()
    session = db_session()
    app = session.query(App).filter_by(name=name).one_or_none()
    if app is None:
        raise NotFound(f"No app named {name}")
    # The whole revision first: a push cut off mid-upload leaves no build behind.
    s.builds_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=s.builds_dir, suffix=".upload", delete=False) as out:
        try:
            shutil.copyfileobj(request.stream, out, CHUNK)
        except BaseException:
            os.unlink(out.name)
            raise
    build = build_service.create_build(session, app, commit=commit, user_id=claims.get("user"))
    session.commit()
    os.replace(out.name, build_service.source_archive(s, build.id))
    tasks.build.delay(build.id, base)
    build_id = build.id
    session.close()

    def stream():
        yield f"-----> Build {build_id} of {name} queued ({commit[:8]})\n"
        waited = 0.0
        redis_client = connect(s.redis_url)
        for kind, text in follow(redis_client, build_log_key(build_id), idle_timeout=5):
            if kind == END:
                yield f"{STATUS_PREFIX}{text}\n"
                return
            if kind == "idle":
                waited += 5
                yield f"       ... still working ({waited:.0f} s without output)\n"
                continue
            yield text + "\n"

    return Response(stream(), mimetype="text/plain")
