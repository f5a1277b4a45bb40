"""Process operations on a deployed app: ps, scale, restart, one-off runs, rollback.

Each takes the app's deploy lock, so it never races a push or another change.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from slipway.config import Settings
from slipway.platform import audit, capsules, config_vars, formation, releases, runtime
from slipway.platform.deploy import app_lock, apply_formation, deploy_release, process_spec
from slipway.platform.errors import DeployFailed, InvalidInput, NotFound
from slipway.platform.logstream import connect
from slipway.platform.models import App, Release, User

MAX_ARGV = 256
MAX_ARG_BYTES = 32 * 1024


# A process that restarted this often and last started this recently is in a crash
# loop (Docker waits 0.1 s, 0.2 s, 0.4 s ... up to a minute between restarts, and
# starts over once a process stays up 10 s).
CRASH_RESTARTS = 2
CRASH_WINDOW = dt.timedelta(seconds=30)
# What `ps` shows of a crashed process's output.
CRASH_LOG_LINES = 20
CRASH_LOG_LINE_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Containers reconcile removed for writing more than SLIPWAY_CONTAINER_DISK are gone
# from Docker: `ps` shows the last few per app for an hour, with the reason.
OVER_DISK_KEEP = 5
OVER_DISK_TTL = 3600


def is_crashed(state: Mapping, restarts: int, now: dt.datetime) -> bool:
    """Whether a long-running process keeps exiting, from Docker's ``State`` of it.

    Restarting (Docker waits to start it again), stopped (exited or dead: nothing
    restarts it until reconcile replaces it), or running again after
    ``CRASH_RESTARTS`` restarts, the last one less than ``CRASH_WINDOW`` ago.
    """
    status = state.get("Status", "")
    if state.get("Restarting") or status in ("restarting", "exited", "dead"):
        return True
    if status == "running" and restarts >= CRASH_RESTARTS:
        started = _parse_time(state.get("StartedAt", ""))
        return started is None or now - started < CRASH_WINDOW
    return False


def _parse_time(text: str) -> dt.datetime | None:
    # Docker gives nanoseconds ("2026-11-24T00:49:35.255215898Z"); Python takes micro.
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        return dt.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    except ValueError:
        return None


def safe_lines(raw: bytes, limit: int = CRASH_LOG_LINES) -> list[str]:
    """The last ``limit`` lines of raw output, decoded (bad bytes replaced), terminal
    control characters shown as U+FFFD and each line cut to a bounded length."""
    lines = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [_CONTROL.sub("\ufffd", line)[:CRASH_LOG_LINE_CHARS] for line in lines[-limit:]]


def crashed_containers(client, containers: Iterable[dict]) -> set[str]:
    """The ids of the listed long-running containers that are in a crash loop."""
    now = dt.datetime.now(dt.UTC)
    crashed = set()
    for c in containers:
        if c["Labels"].get(runtime.LABEL_PROCESS) in runtime.ONE_OFF_PROCESSES:
            continue
        info = runtime.inspect(client, c["Id"])
        if info is not None and is_crashed(info["State"], info.get("RestartCount", 0), now):
            crashed.add(c["Id"])
    return crashed


def _over_disk_key(settings: Settings, app: str) -> str:
    return f"slipway:{settings.instance_id}:over-disk:{app}"


def record_over_disk(
    redis_client: redis.Redis, settings: Settings, container: Mapping, reason: str,
) -> None:
    """Note that ``container`` (as ``runtime.app_containers`` lists it) was removed for
    ``reason``, for ``list_processes`` to show."""
    labels = container["Labels"]
    key = _over_disk_key(settings, labels.get(runtime.LABEL_APP, ""))
    entry = {"type": labels.get(runtime.LABEL_PROCESS, ""),
             "name": container["Names"][0].lstrip("/") if container.get("Names")
             else container["Id"][:12],
             "release_id": labels.get(runtime.LABEL_RELEASE, ""),
             "created": container["Created"], "removed": time.time(), "reason": reason}
    with redis_client.pipeline() as pipe:
        pipe.lpush(key, json.dumps(entry))
        pipe.ltrim(key, 0, OVER_DISK_KEEP - 1)
        pipe.expire(key, OVER_DISK_TTL)
        pipe.execute()


def removed_over_disk(
    redis_client: redis.Redis, settings: Settings, app: str, versions: Mapping[str, int],
) -> list[dict]:
    """``list_processes`` rows of the app's containers removed by ``record_over_disk``:
    state ``exited``, the reason in ``status``."""
    rows = []
    for raw in redis_client.lrange(_over_disk_key(settings, app), 0, OVER_DISK_KEEP - 1):
        entry = json.loads(raw)
        removed = dt.datetime.fromtimestamp(entry["removed"], dt.UTC)
        rows.append({
            "type": entry["type"], "name": entry["name"], "state": "exited",
            "status": f"Removed {removed:%Y-%m-%d %H:%M:%S} UTC: {entry['reason']}",
            "release": versions.get(entry["release_id"]),
            "created_at": dt.datetime.fromtimestamp(entry["created"], dt.UTC).isoformat(),
            "restarts": 0, "exit_code": None, "last_logs": [],
        })
    return rows


def list_processes(session: Session, settings: Settings, app: App) -> list[dict]:
    """The app's containers as Docker reports them: type, name, state, release version.

    A process in a crash loop has state ``crashed`` and its last log lines; one that
    reconcile removed for writing too much (``record_over_disk``) shows for an hour
    as ``exited``, with the reason.
    """
    client = runtime.docker_client()
    versions = {str(rid): v for rid, v in session.execute(
        select(Release.id, Release.version).where(Release.app_id == app.id))}
    now = dt.datetime.now(dt.UTC)
    rows = []
    for c in runtime.app_containers(client, settings.instance_id, app.uid, all=True):
        labels = c["Labels"]
        info = runtime.inspect(client, c["Id"])
        if info is None:
            continue  # removed since it was listed
        restarts = info.get("RestartCount", 0)
        crashed = labels.get(runtime.LABEL_PROCESS) not in runtime.ONE_OFF_PROCESSES \
            and is_crashed(info["State"], restarts, now)
        rows.append({
            "type": labels.get(runtime.LABEL_PROCESS, ""),
            "name": c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12],
            "state": "crashed" if crashed else c["State"],
            "status": c.get("Status", ""),
            "release": versions.get(labels.get(runtime.LABEL_RELEASE, "")),
            "created_at": dt.datetime.fromtimestamp(c["Created"], dt.UTC).isoformat(),
            "restarts": restarts,
            # While it runs between two crashes Docker reports 0: nothing to show then.
            "exit_code": info["State"].get("ExitCode")
            if crashed and info["State"].get("Status") != "running" else None,
            "last_logs": safe_lines(runtime.raw_logs(client, c["Id"], CRASH_LOG_LINES) or b"")
            if crashed else [],
        })
    try:
        rows += removed_over_disk(connect(settings.redis_url), settings, app.uid, versions)
    except redis.RedisError:
        pass  # Docker's own view still answers
    return sorted(rows, key=lambda r: (r["type"] != "web", r["type"], r["name"]))


def scale(
    session: Session, settings: Settings, redis_client: redis.Redis, app: App, body: object,
    *, actor: User | None,
) -> tuple[dict[str, int], list[str]]:
    """Validate and store new scales, then apply them at once.

    Returns the new formation and the container ids to retire after the drain
    period. Raises BadRequest/InvalidInput (nothing changes) or DeployFailed.
    """
    release = app.current_release
    if release is None:
        raise InvalidInput(f"{app.name} has no processes yet: push it first",
                           field="formation")
    changes = formation.validate_scale(
        body, formation.process_types(release.processes), settings.max_scale)
    with app_lock(redis_client, settings, app.name):
        session.refresh(app)
        before = formation.scales(session, app)
        formation.set_scales(session, app, changes)
        session.commit()
        try:
            retired = apply_formation(session, settings, redis_client, app)
        except DeployFailed:
            # New containers did not come up: the formation stays what actually runs.
            formation.set_scales(session, app, {
                ptype: before.get(ptype, formation.DEFAULT_SCALE) for ptype in changes})
            session.commit()
            raise
        mark_retiring(redis_client, settings, retired)
        audit.record(session, actor, "scale", target_kind="app", target_name=app.name, app=app,
                     details={"formation": changes})
        session.commit()
    return formation.app_formation(session, app), retired


def restart(
    session: Session, settings: Settings, redis_client: redis.Redis, app: App,
    ptype: object = None, *, actor: User | None,
) -> list[str]:
    """Replace the containers of one process type (or all): new ones first, then the switch."""
    release = app.current_release
    if release is None:
        raise InvalidInput(f"{app.name} has no processes yet: push it first", field="type")
    types = formation.process_types(release.processes)
    if ptype is not None and ptype not in types:
        shown = ptype if isinstance(ptype, str) and formation.PROCESS_TYPE.fullmatch(ptype) \
            else "process type"
        raise InvalidInput(f"Unknown process type {shown!r}: this app has {', '.join(types)}",
                           field="type")
    with app_lock(redis_client, settings, app.name):
        session.refresh(app)
        retired = apply_formation(session, settings, redis_client, app,
                                  replace=types if ptype is None else [ptype])
        mark_retiring(redis_client, settings, retired)
        audit.record(session, actor, "restart", target_kind="app", target_name=app.name,
                     app=app, details={"type": ptype})
        session.commit()
        return retired


def _retiring_key(settings: Settings, container_id: str) -> str:
    return f"slipway:{settings.instance_id}:retiring:{container_id}"


def mark_retiring(redis_client: redis.Redis, settings: Settings, ids: Iterable[str]) -> None:
    """Note containers of the current release that are out of the route and will be
    stopped after the drain period, so reconcile does not count them (it would stop
    the new ones as surplus instead). Called before the app's lock is released."""
    ttl = int(settings.drain_seconds + settings.stop_timeout + 300)
    for container_id in ids:
        redis_client.set(_retiring_key(settings, container_id), "1", ex=ttl)


def retiring(redis_client: redis.Redis, settings: Settings, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are marked by ``mark_retiring``."""
    if not ids:
        return set()
    found = redis_client.mget([_retiring_key(settings, i) for i in ids])
    return {i for i, mark in zip(ids, found, strict=True) if mark}


def validate_command(command: object) -> list[str]:
    """A one-off command: a non-empty argv list of strings. Raises InvalidInput."""
    if (not isinstance(command, list) or not command or len(command) > MAX_ARGV
            or not all(isinstance(arg, str) for arg in command)):
        raise InvalidInput("command must be a non-empty list of strings (an argv)",
                           field="command")
    if any("\x00" in arg for arg in command) or sum(len(a.encode()) for a in command) \
            > MAX_ARG_BYTES:
        raise InvalidInput(f"command must have no NUL bytes and at most {MAX_ARG_BYTES} bytes",
                           field="command")
    if not command[0]:
        raise InvalidInput("command must start with a program name", field="command")
    return command


def run(settings: Settings, app: App, command: object) -> Iterator[bytes | int]:
    """Run ``command`` in a one-off container of the current release.

    Validates first (raises InvalidInput before anything runs); then yields the
    output as it comes and, last, the exit status (an int). The container is
    removed at the end.
    """
    command = validate_command(command)
    release = app.current_release
    if release is None:
        raise InvalidInput(f"{app.name} has no release yet: push it first", field="command")
    client = runtime.docker_client()
    if not runtime.image_exists(client, release.image):
        raise InvalidInput(f"The image of v{release.version} is gone: push again",
                           field="command")
    runtime.ensure_network(client, settings.instance_id, app.uid, settings.labels)
    # Attached capsules too, as in the app's own containers (e.g. `run -- python migrate.py`).
    session = object_session(app)
    env = {**releases.release_config(settings.resolved_secret_key(), release),
           **capsules.capsule_env(session, settings, app)}
    spec = process_spec(settings, release, env, "run", command)
    return _stream_run(client, spec, settings.run_timeout,
                       capsules.capsule_networks(session, settings, app))


def _stream_run(client, spec: dict, timeout: float,
                networks: Sequence[str] = ()) -> Iterator[bytes | int]:
    import queue
    import threading

    chunks: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            chunks.put(runtime.run_one_off(client, spec, chunks.put, timeout=timeout,
                                           networks=networks))
        except Exception as exc:  # noqa: BLE001 - the caller must hear the run ended
            message = getattr(exc, "message", type(exc).__name__)
            chunks.put(f"{message}\n".encode())
            chunks.put(-1)

    threading.Thread(target=work, daemon=True).start()
    while True:
        item = chunks.get()
        yield item
        if isinstance(item, int):
            return


def rollback(
    session: Session, settings: Settings, redis_client: redis.Redis, app: App, user: User,
    version: object = None,
) -> tuple[Release, list[str]]:
    """Make a new release with an earlier one's image, processes and config, and deploy it.

    Raises NotFound for a release that does not exist, InvalidInput for one whose
    image is gone or that never deployed (nothing changes), DeployFailed when the
    new release does not come up (the running one keeps serving).
    """
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise InvalidInput("version must be a whole number, e.g. 3", field="version")
    _rollback_target(session, app, version)  # bad input fails before anything waits
    with app_lock(redis_client, settings, app.name):
        session.refresh(app)
        target_version = _rollback_target(session, app, version)
        target = session.scalar(select(Release).where(
            Release.app_id == app.id, Release.version == target_version))
        if target is None:  # pragma: no cover - rollback_target checked it
            raise NotFound(f"No release v{target_version}", field="version")
        client = runtime.docker_client()
        if not runtime.image_exists(client, target.image):
            raise InvalidInput(
                f"The image of v{target_version} was pruned: it cannot be rolled back to",
                field="version")
        secret_key = settings.resolved_secret_key()
        release = releases.create_release(
            session, secret_key, app,
            image=target.image, config=releases.release_config(secret_key, target),
            processes=target.processes, port=target.port, healthchecks=target.healthchecks,
            description=f"Rollback to v{target_version}", user_id=user.id,
        )
        audit.record(session, user, "rollback", target_kind="app", target_name=app.name, app=app,
                     details={"release": release.version, "to": target_version})
        session.commit()
        # Rollbacks skip the release phase: migrations run forward only.
        old, _ = deploy_release(session, settings, redis_client, release, lambda line: None,
                                release_phase=False)
        # Only now that it serves: the app's config vars become the rolled-back ones.
        wanted = releases.release_config(secret_key, release)
        changes: dict[str, str | None] = {
            **dict.fromkeys(config_vars.get_config(secret_key, app)), **wanted}
        config_vars.apply_changes(session, secret_key, app, changes, limits=None)
        session.commit()
    return release, old


def _rollback_target(session: Session, app: App, version: int | None) -> int:
    statuses = {v: s.value for v, s in session.execute(
        select(Release.version, Release.status).where(Release.app_id == app.id))}
    current = app.current_release.version if app.current_release else None
    return formation.rollback_target(statuses, current, version)
