"""Builds: one per push, with its status and log."""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import docker
import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from slipway.builder.appjson import read_env, read_healthchecks
from slipway.builder.build import build_image
from slipway.builder.detect import apply_build_config, detect, read_source_file
from slipway.builder.image_refs import image_references, refused_reference
from slipway.builder.images import OnDemand, resolve_base_images
from slipway.builder.limits import Limits, parse_size
from slipway.builder.plan import BuildError
from slipway.builder.unpack import unpack_source
from slipway.config import Settings
from slipway.platform import audit, capsules, config_vars, healthchecks, leases, runtime
from slipway.platform.apps import app_url
from slipway.platform.config_vars import get_config
from slipway.platform.db import paginate, session_scope
from slipway.platform.deploy import app_lock, deploy_release
from slipway.platform.errors import NotFound, SlipwayError
from slipway.platform.logstream import LogWriter, build_log_key
from slipway.platform.models import App, Build, BuildStatus, User, utcnow
from slipway.platform.releases import create_release

logger = logging.getLogger(__name__)

STACK_NAMES = {"python": "Python", "dockerfile": "Dockerfile", "node": "Node.js"}
# The port an app listens on when its image says nothing else (PORT is set to it).
DEFAULT_PORT = 5000


def create_build(session: Session, app: App, *, commit: str, user_id: int | None) -> Build:
    build = Build(app_id=app.id, commit=commit, user_id=user_id)
    session.add(build)
    session.flush()
    return build


def list_builds(session: Session, app: App, *, limit: int, offset: int) -> tuple[list[Build], int]:
    query = select(Build).where(Build.app_id == app.id)
    return paginate(session, query, Build.id.desc(), limit=limit, offset=offset)


def get_build(session: Session, app: App, build_id: int) -> Build:
    build = session.get(Build, build_id)
    if build is None or build.app_id != app.id:
        raise NotFound(f"No build {build_id} for app {app.name}")
    return build


def source_archive(settings: Settings, build: Build) -> Path:
    return settings.builds_dir / f"{build.app.uid}-{build.id}.tar"


def build_limits_of(settings: Settings) -> Limits:
    return Limits(memory=parse_size(settings.build_memory), cpus=settings.build_cpus,
                  pids=settings.build_pids)


def run_build(
    settings: Settings, redis_client: redis.Redis, build_id: int, base: str | None = None,
) -> list[str]:
    """Build a pushed revision, record a release and deploy it.

    ``base`` is the revision the pushed branch pointed to when the push began:
    a push that waited while another push to the app deployed is rejected (its
    branch moved; git would refuse the ref update anyway), so what the app serves
    is always what its branch points to.

    Safe to run twice: a build that is no longer pending is left alone, and one
    found ``building`` with no live heartbeat (its worker died) is marked failed.
    Returns the ids of the containers the new release replaced, for the caller to
    retire.
    """
    with session_scope(settings.database) as session:
        build = session.get(Build, build_id)
        if build is None or build.status in (BuildStatus.SUCCEEDED, BuildStatus.FAILED):
            return []
        log = LogWriter(redis_client, build_log_key(build.app.uid, build.id))
        if build.status == BuildStatus.BUILDING:
            _fail_if_dead(settings, session, redis_client, build)
            return []  # or another worker runs it now
        with leases.Heartbeat(redis_client, build_heartbeat_key(settings, build_id),
                              settings.lease_seconds):
            # The heartbeat first: a `building` build without one is a dead worker's.
            build.status = BuildStatus.BUILDING
            session.commit()
            return _run(settings, redis_client, session, build, log, base)


def _run(
    settings: Settings, redis_client: redis.Redis, session: Session, build: Build,
    log: LogWriter, base: str | None,
) -> list[str]:
    app = build.app
    timings: dict[str, float] = {}
    old: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix=f"slipway-build-{build.id}-"))
    lock = app_lock(redis_client, settings, app.name)
    try:
        if not lock.acquire(blocking=False):
            log.step(f"Waiting for another deploy of {app.name} to finish")
            if not lock.acquire():
                raise SlipwayError("Another deploy of this app did not finish in time")
            log.step("The other deploy finished; going on")
        session.commit()  # a new transaction: see what the lock's last holder recorded
        landed = _landed_meanwhile(session, build, base)
        if landed is not None:
            raise SlipwayError(
                f"Another push to {app.name} deployed {landed.commit[:8]} while this one "
                "waited: pull, merge and push again")
        started = time.monotonic()
        client = runtime.docker_client()
        engine = engine_info(client)
        root = engine.get("DockerRootDir")
        if (low_disk := low_disk_message(settings, Path(root) if root else None)) is not None:
            raise SlipwayError(low_disk)
        unpack_source(source_archive(settings, build), workdir,
                      max_bytes=settings.max_push_bytes)
        # Config vars reach the build as on Heroku: DISABLE_COLLECTSTATIC.
        plan = apply_build_config(detect(workdir),
                                  get_config(settings.resolved_secret_key(), app))
        declared_checks, check_notes = read_healthchecks(workdir)
        declared_env = read_env(workdir)
        config_vars.check_declared(declared_env)
        log.step(f"{STACK_NAMES.get(plan.stack, plan.stack)} app detected")
        for note in (*plan.notes, *check_notes):
            log(f"       {note}")
        # app.json env, set on the first deploy before the build (as Heroku sets it when
        # it creates the app), so the build and this release's config have it.
        seeded = config_vars.seed_from_app_json(
            session, settings.resolved_secret_key(), app, declared_env,
            provided=capsules.capsule_env(session, settings, app),
            limits=config_vars.ConfigLimits.of(settings))
        for note in seeded.notes():
            log(f"       {note}")
        base_image = build_base = None
        if plan.stack in ("python", "node"):
            base_image, build_base, notes = resolve_base_images(
                client,
                getattr(settings, f"{plan.stack}_image"),
                getattr(settings, f"{plan.stack}_build_image"),
                plan.runtime_version,
                getattr(settings, f"{plan.stack}_default_version"),
                settings.bootstrap_repository,
                language=plan.stack,
                request=plan.runtime_request,
                on_demand=OnDemand(mirror=settings.debian_mirror, log=log),
            )
            for note in notes:
                log(f"       {note}")
        if plan.stack == "dockerfile":
            _check_dockerfile_images(settings, client, app, workdir)
        log.step("Building image")
        # Nothing in the tag another tenant could guess: builds may only start from
        # their own app's images, and those are found by label, not by this name.
        tag = f"slipway-app/{app.uid}:{secrets.token_hex(8)}"
        labels = runtime.object_labels(settings.instance_id, app.uid, settings.labels)
        image_id = build_image(
            client, workdir, plan, base_image=base_image or "", tag=tag, labels=labels,
            log=log, timeout=settings.build_timeout, limits=build_limits_of(settings),
            instance=settings.instance_id, cgroup_driver=str(engine.get("CgroupDriver", "")),
            build_base=build_base,
        )
        timings["build"] = time.monotonic() - started
        if runtime.run_as(client, image_id, settings.allow_root):
            log(f"       The image runs as root: Slipway runs it as uid "
                f"{runtime.UNPRIVILEGED_USER.split(':')[0]} (SLIPWAY_ALLOW_ROOT=1 allows root)")
        build.image = tag
        build.stack = plan.stack

        secret_key = settings.resolved_secret_key()
        release = create_release(
            session, secret_key, app,
            image=image_id,
            config=get_config(secret_key, app),
            processes=plan.processes,
            port=runtime.exposed_port(client, image_id) or DEFAULT_PORT,
            healthchecks=healthchecks.resolve(settings, declared_checks),
            description=f"Deploy {build.commit[:8]}",
            build_id=build.id,
            user_id=build.user_id,
        )
        pusher = session.get(User, build.user_id) if build.user_id else None
        if seeded.set or seeded.generated:
            # Keys only: values are secrets.
            audit.record(session, pusher, "config.change", target_kind="app",
                         target_name=app.name, app=app,
                         details={"set": sorted([*seeded.set, *seeded.generated]),
                                  "unset": [], "release": release.version,
                                  "source": "app.json"})
        audit.record(session, pusher, "deploy", target_kind="app", target_name=app.name,
                     app=app, details={"release": release.version, "build": build.id,
                                       "commit": build.commit})
        session.commit()
        log.step(f"Releasing v{release.version}")
        old, deploy_timings = deploy_release(session, settings, redis_client, release, log)
        timings.update(deploy_timings)
        build.status = BuildStatus.SUCCEEDED
        log.step(f"Deployed v{release.version} to {app_url(settings, app)}")
    except BuildError as exc:
        _failed(build, log, exc.message)
    except SlipwayError as exc:
        _failed(build, log, exc.message)
    except Exception as exc:  # noqa: BLE001 - the pusher must hear the build ended
        logger.exception("build %s failed", build.id)
        _failed(build, log, f"Internal error during the build: {type(exc).__name__}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        source_archive(settings, build).unlink(missing_ok=True)
        build.timings = {k: round(v, 3) for k, v in timings.items()}
        build.finished_at = utcnow()
        build.log = log.text
        # Recorded before the lock goes: the next push checks what landed meanwhile.
        session.commit()
        if lock.owned():
            lock.release()
        log.close(build.status)
    return old


def low_disk_message(settings: Settings, *more: Path | None) -> str | None:
    """Why no build can be taken now, when the disk of SLIPWAY_HOME (or of ``more``
    paths, such as Docker's data) has less than SLIPWAY_MIN_FREE_DISK_MB free."""
    settings.builds_dir.mkdir(parents=True, exist_ok=True)
    need = settings.min_free_disk_mb * 1024 * 1024
    for path in (settings.builds_dir, *more):
        if path is None or not path.is_dir():
            continue
        free = shutil.disk_usage(path).free
        if free < need:
            return (f"The Slipway host has {free / 2**20:.0f} MB of disk free "
                    f"in {path}, less than the {settings.min_free_disk_mb} MB a build needs "
                    "(SLIPWAY_MIN_FREE_DISK_MB)")
    return None


def engine_info(client: docker.DockerClient) -> dict:
    """What ``docker info`` says (where the engine keeps images, its cgroup driver);
    empty when the engine does not answer (the build then says so itself)."""
    try:
        return client.info()
    except docker.errors.DockerException:
        return {}


def base_image_patterns(settings: Settings) -> list[re.Pattern[str]]:
    """What the configured base images look like: the bootstrap repository's images and
    the Python and Node templates, any version."""
    patterns = [re.compile(re.escape(settings.bootstrap_repository) + r"/[^/]+")]
    for template in (settings.python_image, settings.node_image):
        patterns.append(re.compile(
            re.escape(template).replace(re.escape("{version}"), r"[0-9][0-9.]*")))
    return patterns


def _check_dockerfile_images(
    settings: Settings, client: docker.DockerClient, app: App, workdir: Path,
) -> None:
    """Refuse an app's own Dockerfile that names an image of this host it may not read
    (another app's), before anything is built."""
    own = runtime.object_labels(settings.instance_id, app.uid, {})
    patterns = base_image_patterns(settings)
    for ref in image_references(read_source_file(workdir, "Dockerfile") or ""):
        why = refused_reference(client, ref.reference, own_labels=own, base_patterns=patterns,
                                app_label=runtime.LABEL_APP)
        if why is not None:
            raise BuildError(
                f"Dockerfile line {ref.line}: {ref.instruction} {ref.reference} is refused: "
                f"{why}. A build can start from the base images, images from a registry and "
                "this app's own images")


def _landed_meanwhile(session: Session, build: Build, base: str | None) -> Build | None:
    """A build of another revision that deployed while ``build`` waited, if any.

    Its push moved the branch away from ``base``, the revision ``build``'s push
    started from.
    """
    if base is None:
        return None
    return session.scalars(
        select(Build).where(
            Build.app_id == build.app_id, Build.id != build.id,
            Build.status == BuildStatus.SUCCEEDED, Build.finished_at >= build.created_at,
            Build.commit != base,
        ).order_by(Build.id.desc()).limit(1)
    ).first()


def build_heartbeat_key(settings: Settings, build_id: int) -> str:
    return leases.heartbeat_key(settings.instance_id, "build", build_id)


INTERRUPTED = "The worker stopped during the build; push again"


def fail_interrupted(session: Session, redis_client: redis.Redis, build: Build) -> None:
    """Mark a build whose worker died failed and end its log, so its pusher hears it."""
    key = build_log_key(build.app.uid, build.id)
    lines = [fields["line"] for _, fields in redis_client.xrange(key) if "line" in fields]
    log = LogWriter(redis_client, key)
    log.lines = lines
    _failed(build, log, INTERRUPTED)
    build.finished_at = utcnow()
    build.log = log.text
    session.commit()
    log.close(BuildStatus.FAILED)
    logger.warning("build %s of %s failed: its worker stopped", build.id, build.app.name)


def fail_stale_builds(settings: Settings, session: Session, redis_client: redis.Redis) -> list[int]:
    """Fail every ``building`` build whose heartbeat stopped; returns their ids.

    A build still running on any worker (this one or another) keeps its heartbeat
    alive, so it is never touched.
    """
    return [build.id for build in
            session.scalars(select(Build).where(Build.status == BuildStatus.BUILDING)).all()
            if _fail_if_dead(settings, session, redis_client, build)]


def _fail_if_dead(
    settings: Settings, session: Session, redis_client: redis.Redis, build: Build,
) -> bool:
    """Fail ``build`` (seen ``building``) when no worker keeps its heartbeat; True if so."""
    if leases.alive(redis_client, build_heartbeat_key(settings, build.id)):
        return False
    # Its worker records the outcome before dropping the heartbeat: read it again, in a
    # new transaction (SQLite keeps a read snapshot until the transaction ends).
    session.commit()
    session.refresh(build)
    if build.status != BuildStatus.BUILDING:
        return False
    fail_interrupted(session, redis_client, build)
    return True


def _failed(build: Build, log: LogWriter, message: str) -> None:
    build.status = BuildStatus.FAILED
    build.error = message
    # Each line of a multi-line message (a container's last output) is its own log line.
    for line in message.splitlines() or [""]:
        log(f" !     {line}".rstrip())
    if _serving(build):
        log(" !     Push rejected: the running release keeps serving")
    else:
        log(" !     Push rejected: nothing was deployed")


def _serving(build: Build) -> bool:
    """Whether the app has a release serving (a failed first push deployed nothing)."""
    try:
        return build.app.current_release_id is not None
    except SQLAlchemyError:
        return True  # the database cannot say: the usual message
