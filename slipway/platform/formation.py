"""Formations: how many containers of each Procfile process type an app runs.

The pure half (``process_types``, ``desired_scale``, ``plan_scale``,
``validate_scale``, ``rollback_target``, ``images_to_prune``) decides; the rest
reads and writes the ``formations`` table and applies a formation on Docker.

Default scale: every process type of the Procfile runs ONE container (``web``
and workers alike, as on Dokku) until ``ps:scale`` says otherwise. A pushed
``worker:`` line is expected to run; scaling it to 0 is one command away.
``release`` is the release-phase command, never a long-running process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from slipway.platform.errors import BadRequest, InvalidInput, NotFound
from slipway.platform.models import App, Formation

DEFAULT_SCALE = 1
# Not scalable: the release phase runs once per deploy, one-off runs per request.
ONE_OFF_TYPES = frozenset({"release", "run"})
PROCESS_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,29}")


def process_types(processes: Mapping[str, str]) -> list[str]:
    """The long-running process types of a release, ``web`` first.

    ``web`` is always one: without a Procfile line it runs the image's own command.
    """
    others = sorted(p for p in processes if p != "web" and p not in ONE_OFF_TYPES)
    return ["web", *others]


def desired_scale(processes: Mapping[str, str], scales: Mapping[str, int]) -> dict[str, int]:
    """How many containers each process type of a release should run."""
    return {p: scales.get(p, DEFAULT_SCALE) for p in process_types(processes)}


@dataclass(frozen=True)
class ScalePlan:
    """What to do to reach a formation: containers to start per type, ids to stop."""

    start: dict[str, int]
    stop: list[str]


def plan_scale(
    desired: Mapping[str, int], actual: Mapping[str, list[str]],
    replace: Iterable[str] = (),
) -> ScalePlan:
    """Containers to start and stop so ``actual`` (ids per type) matches ``desired``.

    Types in ``replace`` get all-new containers (a restart); types not desired at
    all (removed from the Procfile) are stopped entirely. Surplus containers are
    stopped from the end of each list, so the oldest keep serving.
    """
    replace = set(replace)
    start: dict[str, int] = {}
    stop: list[str] = []
    for ptype, ids in actual.items():
        if ptype not in desired:
            stop.extend(ids)
    for ptype, want in desired.items():
        have = list(actual.get(ptype, []))
        if ptype in replace:
            stop.extend(have)
            have = []
        if len(have) > want:
            stop.extend(have[want:])
        elif len(have) < want:
            start[ptype] = want - len(have)
    return ScalePlan(start=start, stop=stop)


def validate_scale(body: object, known: Iterable[str], max_scale: int) -> dict[str, int]:
    """Check a ``{"web": 2, "worker": 1}`` body. Raises InvalidInput naming the type."""
    if not isinstance(body, dict) or not body:
        raise BadRequest('Send a JSON object of process types and counts, e.g. {"web": 2}')
    known = list(known)
    changes: dict[str, int] = {}
    for ptype, count in body.items():
        if ptype in ONE_OFF_TYPES:
            raise InvalidInput(f"{ptype} is not a scalable process type", field=ptype)
        if ptype not in known:
            shown = ptype if PROCESS_TYPE.fullmatch(ptype) else "process type"
            raise InvalidInput(
                f"Unknown process type {shown!r}: this app has {', '.join(known)}",
                field=shown,
            )
        # bool is an int in Python; "2" and 2.0 are not counts either.
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidInput(f"Scale of {ptype} must be a whole number from 0 to {max_scale}",
                               field=ptype)
        if count > max_scale:
            raise InvalidInput(f"Scale of {ptype} is above the limit of {max_scale}",
                               field=ptype)
        changes[ptype] = count
    return changes


def rollback_target(
    releases: Mapping[int, str], current: int | None, requested: int | None
) -> int:
    """The version to roll back to, given ``{version: status}`` of an app's releases.

    Default: the newest succeeded release before the current one. Raises NotFound
    for a version that does not exist, InvalidInput for one that never deployed or
    is already current.
    """
    if current is None:
        raise InvalidInput("The app has no release to roll back from: push it first",
                           field="version")
    if requested is None:
        earlier = [v for v, status in releases.items() if v < current and status == "succeeded"]
        if not earlier:
            raise NotFound("No earlier release to roll back to")
        return max(earlier)
    if requested not in releases:
        raise NotFound(f"No release v{requested}", field="version")
    if requested == current:
        raise InvalidInput(f"v{requested} is the current release", field="version")
    if releases[requested] != "succeeded":
        raise InvalidInput(f"v{requested} never deployed: roll back to a release that did",
                           field="version")
    return requested


def images_to_prune(
    releases: Iterable[tuple[int, str]], *, current: int, previous: int | None, keep: int,
    in_use: Iterable[str],
) -> set[str]:
    """The images to delete after a deploy, given ``(version, image)`` of every release.

    Kept: the images of the newest ``keep`` releases, of the current and the
    previous release, and every image a container still uses. Many releases
    share one image (config changes), so an image goes only when no kept
    release refers to it.
    """
    ordered = sorted(releases, reverse=True)
    kept_versions = {v for v, _ in ordered[:max(keep, 0)]} | {current}
    if previous is not None:
        kept_versions.add(previous)
    kept = {image for v, image in ordered if v in kept_versions} | set(in_use)
    return {image for _, image in ordered if image not in kept}


# --- the formations table -------------------------------------------------


def scales(session: Session, app: App) -> dict[str, int]:
    """The scales set with ``ps:scale`` (types never scaled are absent: DEFAULT_SCALE)."""
    rows = session.scalars(select(Formation).where(Formation.app_id == app.id))
    return {row.process_type: row.quantity for row in rows}


def app_formation(session: Session, app: App) -> dict[str, int]:
    """The desired formation of the app's current release ({} before the first deploy)."""
    release = app.current_release
    if release is None:
        return {}
    return desired_scale(release.processes, scales(session, app))


def set_scales(session: Session, app: App, changes: Mapping[str, int]) -> None:
    """Store validated scales (no commit)."""
    existing = {row.process_type: row for row in
                session.scalars(select(Formation).where(Formation.app_id == app.id))}
    for ptype, count in changes.items():
        row = existing.get(ptype)
        if row is None:
            session.add(Formation(app_id=app.id, process_type=ptype, quantity=count))
        else:
            row.quantity = count
    session.flush()
