"""Limits on one build: memory, CPUs and processes over all of its steps together.

Docker's build API takes memory and CPU limits per step but none on processes,
so each build gets a cgroup of its own, made here and handed to the daemon as
the steps' cgroup parent: every step container is a child of it and the
limits hold for the build as a whole. That works with Docker's cgroupfs driver
(cgroup v1 or v2) when this process may write the cgroup tree (root). Elsewhere
(the systemd driver, an unprivileged Slipway) the steps get Docker's per-step
memory and CPU limits and the process limit cannot be set; ``BuildLimits.note``
says so in the build log.

After a failed build the cgroup's peaks tell which limit it reached: that is how
the failure message can name the limit instead of "exit status 137".
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
_SIZE_RE = re.compile(r"^([0-9]+)([kmg]?)$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
CPU_PERIOD_US = 100_000
# Longer than any build runs (SLIPWAY_BUILD_TIMEOUT is checked well before).
STALE_CGROUP_SECONDS = 24 * 3600


def parse_size(text: str) -> int:
    """Bytes of ``512m``-style sizes (k, m, g are powers of 1024)."""
    match = _SIZE_RE.match(text.strip().lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True)
class Limits:
    memory: int  # bytes
    cpus: float
    pids: int

    def describe(self) -> str:
        return (f"{self.memory / 2**20:g} MB of memory, {self.cpus:g} CPUs, "
                f"{self.pids} processes")


@dataclass
class BuildLimits:
    """What to add to the build request, and how to read back which limit was reached."""

    params: dict[str, Any]
    note: str | None
    cgroup: _Cgroup | None

    def reached(self, limits: Limits) -> dict[str, str]:
        """The limits the build's peaks reached ("memory", "pids"), each described with
        the setting a user can look up."""
        if self.cgroup is None:
            return {}
        found = {}
        if self.cgroup.memory_peak() >= limits.memory:
            found["memory"] = (f"its memory limit ({limits.memory / 2**20:g} MB, "
                               "SLIPWAY_BUILD_MEMORY)")
        if self.cgroup.pids_peak() >= limits.pids:
            found["pids"] = f"its process limit ({limits.pids} processes, SLIPWAY_BUILD_PIDS)"
        return found


@contextlib.contextmanager
def build_limits(limits: Limits, instance: str, cgroup_driver: str) -> Iterator[BuildLimits]:
    """The limits of one build, for as long as it runs; its cgroup is removed after.

    ``cgroup_driver`` is the daemon's (``docker info``): only with ``cgroupfs`` does it
    take a cgroup path as the parent.
    """
    cgroup = None
    if cgroup_driver == "cgroupfs":
        with contextlib.suppress(OSError):  # not root, or no such controllers
            cgroup = _Cgroup.create(limits, instance)
    if cgroup is None:
        # Per step: each RUN gets the whole memory and CPU limit; processes are not limited.
        yield BuildLimits(
            params={"memory": limits.memory, "memswap": limits.memory,
                    "cpuperiod": CPU_PERIOD_US, "cpuquota": int(limits.cpus * CPU_PERIOD_US)},
            note="Build steps are limited to the memory and CPUs of SLIPWAY_BUILD_* each; "
                 "their processes are not limited (the Docker engine's cgroups are not "
                 "Slipway's to manage here)",
            cgroup=None)
        return
    try:
        yield BuildLimits(params={"cgroupparent": cgroup.parent}, note=None, cgroup=cgroup)
    finally:
        cgroup.remove()


class _Cgroup:
    """One build's cgroup: under each v1 controller, or once in the v2 tree."""

    def __init__(self, dirs: dict[str, Path], parent: str, unified: bool) -> None:
        self.dirs = dirs
        self.parent = parent
        self.unified = unified

    @classmethod
    def create(cls, limits: Limits, instance: str) -> _Cgroup | None:
        group = f"slipway-builds-{instance}"
        name = secrets.token_hex(6)
        parent = f"/{group}/{name}"
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return cls._create_v2(limits, group, name, parent)
        return cls._create_v1(limits, group, name, parent)

    @classmethod
    def _create_v1(cls, limits: Limits, group: str, name: str, parent: str) -> _Cgroup | None:
        dirs = {c: CGROUP_ROOT / c / group / name for c in ("memory", "pids", "cpu")}
        if not all(d.parent.parent.is_dir() for d in dirs.values()):
            return None
        cgroup = cls(dirs, parent, unified=False)
        try:
            for directory in dirs.values():
                _sweep(directory.parent)
                directory.mkdir(parents=True, exist_ok=True)
            _write(dirs["memory"] / "memory.limit_in_bytes", limits.memory)
            memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # with swap accounting: no swapping past the limit either
                _write(memsw, limits.memory)
            _write(dirs["pids"] / "pids.max", limits.pids)
            _write(dirs["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(dirs["cpu"] / "cpu.cfs_quota_us", int(limits.cpus * CPU_PERIOD_US))
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    @classmethod
    def _create_v2(cls, limits: Limits, group: str, name: str, parent: str) -> _Cgroup | None:
        top = CGROUP_ROOT / group
        directory = top / name
        cgroup = cls({"unified": directory}, parent, unified=True)
        try:
            top.mkdir(exist_ok=True)
            _sweep(top)
            _write(top / "cgroup.subtree_control", "+memory +pids +cpu")
            directory.mkdir(exist_ok=True)
            _write(directory / "memory.max", limits.memory)
            if (directory / "memory.swap.max").exists():
                _write(directory / "memory.swap.max", 0)
            _write(directory / "pids.max", limits.pids)
            _write(directory / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def memory_peak(self) -> int:
        if self.unified:
            return _read_int(self.dirs["unified"] / "memory.peak")
        return _read_int(self.dirs["memory"] / "memory.max_usage_in_bytes")

    def pids_peak(self) -> int:
        directory = self.dirs["unified"] if self.unified else self.dirs["pids"]
        return _read_int(directory / "pids.peak")

    def remove(self) -> None:
        # The daemon removed its step cgroups with their containers; what is left is ours.
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                directory.rmdir()


def _sweep(group: Path) -> None:
    """Remove the cgroups of builds whose worker died. Only old ones: a running build's
    cgroup is empty between two steps, and the daemon would make it again unlimited."""
    if not group.is_dir():
        return
    stale = time.time() - STALE_CGROUP_SECONDS
    for child in group.iterdir():
        with contextlib.suppress(OSError):
            if child.is_dir() and child.stat().st_mtime < stale:
                child.rmdir()


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
