"""Every Slipway setting, in one place.

Settings come from ``SLIPWAY_*`` environment variables (``DATABASE_URL`` and
``REDIS_URL`` keep their conventional names) and have defaults that work on one
machine. ``get_settings()`` is the one way the rest of the code reads them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    # Private (0700): the secret key, the database, certificate keys and backups live
    # here, and nginx's workers never read it. root keeps it in /var/lib, where a
    # system service's state belongs, rather than in /root.
    home: Path = Field(
        default_factory=lambda: Path("/var/lib/slipway" if os.geteuid() == 0 else "~/.slipway"),
        description="State directory",
    )
    domain: str = "localhost"
    http_port: int = 80
    https_port: int = 443
    web_port: int = 5000
    web_host: str = "0.0.0.0"
    # The address the CLI, git remotes and hooks use to reach the web process.
    public_url: str | None = None

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SLIPWAY_DATABASE_URL")
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SLIPWAY_REDIS_URL"),
    )
    secret_key: str | None = None

    # Base images: "{version}" is replaced by the runtime version an app asks for.
    python_image: str = "python:{version}-slim"
    # Dependencies install on the build image (compilers, headers), the app runs on the
    # one above; the full official images have gcc and the usual -dev packages.
    python_build_image: str = "python:{version}"
    # Heroku's default for new apps: the newest Python.
    python_default_version: str = "3.14"
    node_image: str = "node:{version}-slim"
    node_build_image: str = "node:{version}"
    # A Node major: what an app without engines.node gets (the active LTS, as on Heroku).
    node_default_version: str = "24"
    # Capsule images: "{version}" is replaced by the capsule's major version; where the
    # host lacks that image, {bootstrap_repository}/postgres:{version} (or redis) is used,
    # built from Debian packages on first use. Without "{version}", one fixed image that
    # serves only the version of its tag (as older settings had: slipway/postgres:15).
    postgres_image: str = "postgres:{version}"
    redis_image: str = "redis:{version}"
    # Where `slipway images bootstrap` puts the images it builds from Debian packages.
    bootstrap_repository: str = "slipway"
    debian_mirror: str = "http://deb.debian.org/debian"

    # Names this installation's Docker objects, so several can share one engine
    # (default: derived from SLIPWAY_HOME).
    instance: str | None = Field(default=None, pattern=r"^[a-z0-9]{1,16}$")
    # Extra labels on every container, network and image Slipway makes (JSON object).
    labels: dict[str, str] = Field(default_factory=dict)

    # Builds
    build_timeout: int = 900
    # What one build may use, all of its steps together: memory (bytes, or with a k, m
    # or g suffix), CPUs and processes. A step past the memory or process limit fails
    # the build with a message naming the limit.
    build_memory: str = Field(default="2g", pattern=r"^[0-9]+[kmg]?$")
    build_cpus: float = Field(default=2.0, gt=0)
    build_pids: int = Field(default=512, ge=16)
    # Pushes are refused while the disk of SLIPWAY_HOME (and Docker's) has less free.
    min_free_disk_mb: int = Field(default=1024, ge=0)

    # Self-healing
    # Deploy locks and build heartbeats expire this long after their holder stops
    # renewing them (a killed worker): then the app deploys again, the build is failed.
    lease_seconds: float = Field(default=30.0, ge=3)
    # Seconds between reconcile passes (containers, crash loops, routes, stale builds).
    reconcile_interval: float = Field(default=10.0, gt=0)

    # App containers
    container_memory: str = "512m"
    container_cpus: float = 1.0
    container_pids: int = 256
    # What an app container may write (Docker sizes: k, m, g): a tmpfs of this size at
    # /tmp and at /var/tmp (counted in its memory), and this much in its writable layer,
    # enforced by Docker where the storage driver has quotas, else by reconcile, which
    # replaces a container over it (see runtime.TMP_SIZE).
    container_tmp_size: str = Field(default="256m", pattern=r"^[1-9][0-9]*[kmgKMG]?$")
    container_disk: str = Field(default="1g", pattern=r"^[1-9][0-9]*[kmgKMG]?$")
    # WEB_CONCURRENCY in every app container unless the app's config sets it: gunicorn
    # (and many Node cluster helpers) start that many workers, as on Heroku.
    web_concurrency: int = Field(default=2, ge=1, le=64)
    # Health checks of new web containers, unless the app's app.json declares its own:
    # seconds a container may take to accept connections on PORT (polled every
    # `health_interval`), the path requested, and, once it answers, how long each
    # request may take, how many failed answers fail the deploy and the wait between them.
    health_timeout: float = 30.0
    health_interval: float = 0.05
    health_path: str = Field(default="/", pattern=r"^/[\x21-\x7e]*$")
    health_request_timeout: float = Field(default=5.0, gt=0)
    health_attempts: int = Field(default=5, ge=1)
    health_wait: float = Field(default=1.0, ge=0)
    # Seconds a stopping container gets between SIGTERM and SIGKILL to finish its requests.
    stop_timeout: int = 10
    # Replaced containers stay up this long after the router stopped sending them
    # new requests, so requests already sent to them finish before SIGTERM.
    drain_seconds: float = Field(default=2.0, ge=0)
    route_timeout: float = 10.0
    # Formations: the most containers one process type of an app may be scaled to.
    max_scale: int = 10
    # The release phase (`release:` in the Procfile) fails after this many seconds.
    release_timeout: int = 600
    # Images of the newest this-many releases are kept (and always the current and previous).
    keep_releases: int = 5
    # Config vars per app: at most this many keys and bytes (keys and values together),
    # well under what a process environment holds (Heroku allows 32 KiB).
    config_max_keys: int = Field(default=1000, ge=1)
    config_max_bytes: int = Field(default=32 * 1024, ge=1)
    # `slipway run` containers are killed after this many seconds.
    run_timeout: int = 3600
    # Let an app whose image runs as root (its own Dockerfile without USER) run as root;
    # otherwise it runs as uid 10001, like the images Slipway renders.
    allow_root: bool = False

    # Capsules (managed PostgreSQL and Redis)
    capsule_memory: str = "256m"
    # The major version of a capsule created without one; empty: the newest offered.
    postgres_default_version: str = ""
    redis_default_version: str = ""
    # Seconds a new capsule may take to accept an authenticated connection.
    capsule_ready_timeout: float = 60.0
    capsule_ready_interval: float = 0.05
    # The daily backup keeps this many backups per capsule.
    capsule_backups_keep: int = 7
    # Seconds between scheduled backups (daily).
    capsule_backup_interval: float = 86400.0

    # Router (nginx)
    nginx_binary: str = "nginx"
    # How app addresses reach nginx: "dynamic" posts them to a Lua balancer, so a
    # deploy, scale, restart or rollback needs no reload; "static" writes them into
    # nginx.conf and reloads; "auto" is dynamic when libnginx-mod-http-lua is
    # installed and nginx accepts it.
    router_upstreams: Literal["auto", "dynamic", "static"] = "auto"
    # nginx worker processes; 0 is one per core. Fewer leave more CPU to the apps
    # on a shared host, at the cost of the router's own throughput.
    router_workers: int = Field(default=0, ge=0, le=1024)

    # TLS: "acme" gets certificates from the ACME directory over HTTP-01,
    # "internal" issues them from a local CA kept in SLIPWAY_HOME/ca (for
    # *.localhost and private networks), "off" serves HTTP only. "auto" (the
    # default) is "off" for a *.localhost domain, which no public CA will
    # certify, and "acme" for any other.
    tls: Literal["auto", "acme", "internal", "off"] = "auto"
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_email: str | None = None
    # A PEM bundle to trust the ACME directory's own HTTPS with (e.g. pebble's);
    # None trusts the system's CAs.
    acme_ca_bundle: Path | None = None
    # Renew certificates expiring within this many days (beat checks every
    # `certificate_check_interval` seconds, which also retries failures).
    renew_before_days: int = 30
    certificate_check_interval: float = 300.0
    # The first retry after a failed issuance; each further failure doubles it (to 6 h).
    certificate_retry_seconds: float = 60.0
    # Strict-Transport-Security on HTTPS responses, unless an app says otherwise.
    hsts: bool = False

    # Processes started by `slipway up` / `slipway web`
    web_workers: int = 2
    web_threads: int = 16
    # Seconds the web process waits for a client's next bytes (a request body sent
    # slowly, an answer not read) before it drops the request with 408.
    client_timeout: float = 60.0
    worker_concurrency: int = 4

    # The largest API or dashboard request body (JSON, forms), in bytes: beyond, 413.
    max_body_bytes: int = 1024 * 1024
    # The largest git push (the pack, and the pushed tree as the hook sends it), in bytes.
    max_push_bytes: int = 512 * 1024 * 1024

    # Dashboard
    # Send the session cookie only over HTTPS: set it when the dashboard is served over TLS.
    cookie_secure: bool = False
    session_hours: int = 12
    # Failed sign-ins per IP address and email before further tries wait out the window.
    login_max_failures: int = 5
    login_window_seconds: int = 300
    # Failed sign-ins per IP address across all emails in the same window (one password
    # tried against many accounts).
    login_max_failures_per_address: int = Field(default=20, ge=1)
    # Requests with a wrong API token (API and git) per client address; beyond them every
    # token from that address is refused with 429 until the window ends.
    auth_max_failures: int = 20
    auth_window_seconds: int = 300

    # Runtime logs (`slipway logs`, the dashboard's log view)
    log_tail_max: int = 5000
    # Longer lines are cut; beyond the rate, lines are dropped with a notice.
    log_max_line_bytes: int = 4096
    log_max_lines_per_second: int = 500

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _resolve_tls(self) -> Settings:
        if self.tls == "auto":
            local = self.domain == "localhost" or self.domain.endswith(".localhost")
            self.tls = "off" if local else "acme"
        return self

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'slipway.db'}"

    @property
    def instance_id(self) -> str:
        return self.instance or hashlib.sha256(str(self.home).encode()).hexdigest()[:8]

    @property
    def api_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.web_port}").rstrip("/")

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def router_dir(self) -> Path:
        return self.home / "router"

    @property
    def certs_dir(self) -> Path:
        """Certificates and keys (keys 0600), the ACME account key and the internal CA."""
        return self.home / "certs"

    def ensure_home(self) -> None:
        """Make SLIPWAY_HOME and its directories, private to this user: the home is
        made (or tightened to) 0700, and the SQLite database 0600 before SQLite
        creates it with the umask's mode. Raises PermissionError when the home is
        another user's."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.home.stat().st_uid != os.geteuid():
            raise PermissionError(f"SLIPWAY_HOME {self.home} belongs to uid "
                                  f"{self.home.stat().st_uid}, not to this user "
                                  f"(uid {os.geteuid()}): run Slipway as its owner")
        self.home.chmod(0o700)
        for path in (self.repos_dir, self.builds_dir, self.router_dir):
            path.mkdir(mode=0o700, exist_ok=True)
        if self.database_url is None:
            database = self.home / "slipway.db"
            database.touch(mode=0o600)
            database.chmod(0o600)

    def resolved_secret_key(self) -> str:
        """The secret key: from the environment, else generated once into SLIPWAY_HOME (0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret_key"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key


@functools.cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between apps)."""
    get_settings.cache_clear()
