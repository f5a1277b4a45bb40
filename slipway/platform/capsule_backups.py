"""Capsule backups: pg_dump (custom format) or a Redis RDB snapshot, kept under
SLIPWAY_HOME/backups/<capsule>/, and restores that validate the file first.

Dumps are taken inside the capsule's container (its tools match its server), with
the password the container already has in its environment: never on a command line.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from slipway.config import Settings
from slipway.platform import runtime
from slipway.platform.capsules import docker_name
from slipway.platform.errors import BadRequest, Conflict, InvalidInput, NotFound, SlipwayError
from slipway.platform.models import Capsule, CapsuleStatus

# What each kind's file starts with, and its extension.
MAGIC = {"postgres": b"PGDMP", "redis": b"REDIS"}
EXTENSION = {"postgres": "pgdump", "redis": "rdb"}
BACKUP_NAME = re.compile(r"\d{8}T\d{6}\d{6}Z\.(pgdump|rdb)")

# Constant scripts run inside the capsule's container: no user input reaches them.
DUMP = {
    "postgres": 'PGPASSWORD="$POSTGRES_PASSWORD" exec pg_dump -Fc -h 127.0.0.1 '
                '-U "$POSTGRES_USER" "$POSTGRES_DB"',
    "redis": 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --rdb /tmp/slipway-backup.rdb >&2 '
             '&& cat /tmp/slipway-backup.rdb; status=$?; rm -f /tmp/slipway-backup.rdb; '
             'exit $status',
}
CHECK = {
    "postgres": "pg_restore --list /tmp/slipway-restore.pgdump >/dev/null",
    "redis": "redis-check-rdb /tmp/slipway-restore.rdb",
}
CHECK_NAME = {"postgres": "slipway-restore.pgdump", "redis": "slipway-restore.rdb"}
PG_RESTORE = ('PGPASSWORD="$POSTGRES_PASSWORD" pg_restore --clean --if-exists --no-owner '
              '--single-transaction --exit-on-error -h 127.0.0.1 -U "$POSTGRES_USER" '
              '-d "$POSTGRES_DB" /tmp/slipway-restore.pgdump; status=$?; '
              'rm -f /tmp/slipway-restore.pgdump; exit $status')


class BackupFailed(SlipwayError):
    code = "backup_failed"
    status = 500


@dataclass(frozen=True)
class Backup:
    name: str
    size: int
    created_at: dt.datetime


def backups_dir(settings: Settings, capsule: Capsule) -> Path:
    return settings.home / "backups" / capsule.name


def list_backups(settings: Settings, capsule: Capsule) -> list[Backup]:
    """This capsule's backups, newest first."""
    directory = backups_dir(settings, capsule)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if BACKUP_NAME.fullmatch(path.name):
            stat = path.stat()
            found.append(Backup(path.name, stat.st_size,
                                dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)))
    return sorted(found, key=lambda b: b.name, reverse=True)


def _available(capsule: Capsule) -> None:
    if capsule.status != CapsuleStatus.AVAILABLE:
        raise Conflict(f"Capsule {capsule.name} is {capsule.status.value}, not available")


def take_backup(settings: Settings, capsule: Capsule) -> Backup:
    """Dump the capsule into a new file (written aside, then renamed). Raises Conflict
    when the capsule is not available, BackupFailed when the dump fails."""
    _available(capsule)
    client = runtime.docker_client()
    directory = backups_dir(settings, capsule)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{stamp}.{EXTENSION[capsule.kind]}"
    partial = path.with_name("." + path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            os.chmod(partial, 0o600)
            status, errors = _exec_to(client, settings, capsule, DUMP[capsule.kind], out)
        if status != 0:
            raise BackupFailed(f"Backup of {capsule.name} failed: {errors.strip()[-500:]}")
        with open(partial, "rb") as handle:
            if handle.read(5) != MAGIC[capsule.kind]:
                raise BackupFailed(f"Backup of {capsule.name} failed: the dump is not valid")
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    stat = path.stat()
    return Backup(path.name, stat.st_size, dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC))


def prune(settings: Settings, capsule: Capsule, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` backups; returns the names removed."""
    removed = []
    for backup in list_backups(settings, capsule)[keep:]:
        (backups_dir(settings, capsule) / backup.name).unlink(missing_ok=True)
        removed.append(backup.name)
    return removed


def check_backup(capsule: Capsule, path: Path) -> None:
    """Refuse a file that is not a backup of this capsule's kind. Raises InvalidInput."""
    with open(path, "rb") as handle:
        head = handle.read(5)
    if head != MAGIC[capsule.kind]:
        other = next((k for k, magic in MAGIC.items() if magic == head), None)
        why = (f"it is a {other} backup" if other else "it is not a backup (bad header)")
        raise InvalidInput(f"Cannot restore {path.name} into {capsule.name}: {why}; "
                           "nothing was changed", field="backup")


def restore_backup(settings: Settings, capsule: Capsule, name: object) -> None:
    """Load a backup back into the capsule after validating it; a bad file changes nothing.

    Raises InvalidInput (bad name or file), NotFound, Conflict (not available),
    BackupFailed (the restore itself failed: PostgreSQL restores in one transaction).
    """
    _available(capsule)
    if not isinstance(name, str) or not BACKUP_NAME.fullmatch(name):
        raise InvalidInput("backup must be a backup name as `capsules:backups` lists it",
                           field="backup")
    path = backups_dir(settings, capsule) / name
    if not path.is_file():
        raise NotFound(f"No backup {name} of {capsule.name}")
    check_backup(capsule, path)
    client = runtime.docker_client()
    container = client.containers.get(docker_name(settings.instance_id, capsule.name))
    try:
        # The server's own tool reads the whole file before anything is touched.
        _put_file(container, path, "/tmp", CHECK_NAME[capsule.kind])
        status, errors = _exec_to(client, settings, capsule, CHECK[capsule.kind], io.BytesIO())
        if status != 0:
            _exec_to(client, settings, capsule, f"rm -f /tmp/{CHECK_NAME[capsule.kind]}",
                     io.BytesIO())
            raise InvalidInput(f"Cannot restore {name} into {capsule.name}: the file is "
                               "corrupt; nothing was changed", field="backup")
        if capsule.kind == "postgres":
            status, errors = _exec_to(client, settings, capsule, PG_RESTORE, io.BytesIO())
            if status != 0:
                raise BackupFailed(f"Restore of {name} failed and was rolled back: "
                                   f"{errors.strip()[-500:]}")
        else:
            # Redis reads dump.rdb at start: stop (its shutdown save happens first),
            # replace the file, start.
            container.stop(timeout=settings.stop_timeout)
            try:
                _put_file(container, path, "/data", "dump.rdb")
            finally:
                container.start()
    except DockerException as exc:
        raise BackupFailed(f"Restore of {name} failed: {runtime.explain(exc)}") from exc


def _put_file(container, path: Path, directory: str, name: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tar.gettarinfo(str(path), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o644
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    container.put_archive(directory, buffer.getvalue())


def _exec_to(client: docker.DockerClient, settings: Settings, capsule: Capsule, script: str,
             out) -> tuple[int, str]:
    """Run a constant script in the capsule's container; stdout to ``out``.
    Returns (exit status, stderr)."""
    name = docker_name(settings.instance_id, capsule.name)
    exec_id = client.api.exec_create(name, ["/bin/sh", "-c", script], stdout=True,
                                     stderr=True)["Id"]
    errors = []
    for stdout, stderr in client.api.exec_start(exec_id, stream=True, demux=True):
        if stdout:
            out.write(stdout)
        if stderr:
            errors.append(stderr.decode(errors="replace"))
    return client.api.exec_inspect(exec_id)["ExitCode"], "".join(errors)


def check_name(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest("Send the backup's name as \"backup\"", field="backup")
    return value
