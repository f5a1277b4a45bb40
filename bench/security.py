"""What the security work costs: the token failure limit, the audit log, build limits.

Each case is timed against its own baseline in the same run: an authenticated GET
with the Redis failure check against the same GET with the check left out, and a
config change that writes an audit event against one that does not. Uses Flask's
test client on a temporary SQLite database and a private redis-server; prints
medians, spreads and the ratio to the baseline.

With ``--builds N`` it also builds the Flask fixture cold (its dependency layer made
new each time: pip installs from the package index) N times with the build limits
(SLIPWAY_BUILD_MEMORY, _CPUS, _PIDS at their defaults: the build's own cgroup) and N
times without, interleaved, on the local Docker engine.

    .venv/bin/python bench/security.py [--rounds 300] [--builds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import start_redis, stop_process  # noqa: E402


class NoLimit:
    """The baseline: a failure limit that never checks Redis."""

    def retry_after(self, who: str) -> int:
        return 0

    def fail(self, who: str) -> None:
        pass


def timed(call, rounds: int) -> list[float]:
    values = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        values.append((time.perf_counter() - start) * 1000)
    return values


def report(name: str, values: list[float], baseline: list[float] | None = None) -> None:
    q = statistics.quantiles(values, n=10)
    line = (f"{name:36} median {statistics.median(values):6.2f} ms  p10 {q[0]:6.2f}  "
            f"p90 {q[-1]:6.2f}  (n={len(values)})")
    if baseline:
        line += f"  x{statistics.median(values) / statistics.median(baseline):.2f}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--builds", type=int, default=0,
                        help="cold builds with and without the build limits (each)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slipway-bench-security-"))
    proc, redis_url = start_redis(root)
    os.environ.update(SLIPWAY_HOME=str(root / "home"), DATABASE_URL=f"sqlite:///{root}/s.db",
                      SLIPWAY_SECRET_KEY="bench", REDIS_URL=redis_url)
    try:
        from slipway.config import get_settings
        from slipway.platform import audit, db, users
        from slipway.web import auth
        from slipway.web.app import create_app

        settings = get_settings()
        db.migrate(settings.database)
        with db.session_scope(settings.database) as session:
            _, token = users.create_user(session, "ada@example.com")
        headers = {"Authorization": f"Bearer {token}"}
        client = create_app(settings).test_client()
        assert client.post("/api/v1/apps", json={"name": "shop"},
                           headers=headers).status_code == 201

        def get_apps() -> None:
            assert client.get("/api/v1/apps", headers=headers).status_code == 200

        counter = iter(range(10**9))

        def change_config() -> None:
            response = client.patch("/api/v1/apps/shop/config",
                                    json={"K": str(next(counter))}, headers=headers)
            assert response.status_code == 200

        limited, unlimited, audited, unaudited = [], [], [], []
        real_limit, real_record = auth._token_limit, audit.record
        for _ in range(5):  # interleaved batches, so drift hits both sides alike
            auth._token_limit = real_limit
            limited += timed(get_apps, args.rounds // 5)
            auth._token_limit = NoLimit
            unlimited += timed(get_apps, args.rounds // 5)
            auth._token_limit = real_limit
            audit.record = real_record
            audited += timed(change_config, args.rounds // 5)
            audit.record = lambda *a, **k: None
            unaudited += timed(change_config, args.rounds // 5)
            audit.record = real_record
        report("GET /apps without the failure check", unlimited)
        report("GET /apps with the failure check", limited, unlimited)
        report("PATCH config without an audit event", unaudited)
        report("PATCH config with an audit event", audited, unaudited)
        if args.builds:
            bench_build_limits(settings, root, args.builds)
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


def bench_build_limits(settings, root: Path, rounds: int) -> None:
    import uuid

    import docker

    from slipway.builder.build import build_image
    from slipway.builder.detect import detect
    from slipway.builder.images import resolve_base_image
    from slipway.platform.builds import build_limits_of
    from tests.support import TEST_LABEL, TEST_RUN

    client = docker.from_env()
    source = root / "app"
    shutil.copytree(Path(__file__).resolve().parent.parent / "tests/fixtures/flask_app", source)
    requirements = (source / "requirements.txt").read_text()
    limits = build_limits_of(settings)
    driver = client.info().get("CgroupDriver", "")
    times: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for limited in ((True, False) if round_ % 2 == 0 else (False, True)):
            # A new dependency layer: pip installs from the index, as on a first push.
            (source / "requirements.txt").write_text(f"{requirements}# {uuid.uuid4().hex}\n")
            plan = detect(source)
            base, _ = resolve_base_image(client, settings.python_image, plan.runtime_version,
                                         settings.python_default_version,
                                         settings.bootstrap_repository)
            tag = f"slipway-bench/limits:{uuid.uuid4().hex[:8]}"
            start = time.perf_counter()
            build_image(client, source, plan, base_image=base, tag=tag,
                        labels={TEST_LABEL: TEST_RUN}, log=lambda line: None, timeout=600,
                        limits=limits if limited else None, instance="bench",
                        cgroup_driver=driver)
            times[limited].append((time.perf_counter() - start) * 1000)
            client.images.remove(tag, force=True)
    report("cold build without limits", times[False])
    report(f"cold build with limits ({limits.describe()})", times[True], times[False])


if __name__ == "__main__":
    main()
