"""The `slipway` command.

Server verbs (up, web, worker, beat, router, users:create, images bootstrap) run
on the Slipway host; client verbs (login, apps, config, releases, builds) talk
to the REST API with the token `slipway login` stored.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import re
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import click
import requests
import requests.auth

from slipway.config import get_settings

CLIENT_CONFIG = Path(os.environ.get("SLIPWAY_CLIENT_CONFIG", "~/.config/slipway/client.json"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Slipway: git push to deploy, on your own machine."""


def main() -> None:
    cli(prog_name="slipway")


# --------------------------------------------------------------------------- server verbs


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@cli.command()
def migrate() -> None:
    """Apply database migrations."""
    from slipway.platform.db import migrate as run_migrations

    settings = get_settings()
    settings.ensure_home()
    run_migrations(settings.database)
    click.echo("Database is up to date")


@cli.command()
@click.option("--migrate/--no-migrate", default=True, help="Apply migrations first.")
def web(migrate: bool) -> None:
    """Serve the API, dashboard and git over HTTP (gunicorn)."""
    from gunicorn.app.base import BaseApplication

    from slipway.platform.db import migrate as run_migrations
    from slipway.web.app import create_app

    settings = get_settings()
    settings.ensure_home()
    if migrate:
        run_migrations(settings.database)
    flask_app = create_app(settings)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.web_host}:{settings.web_port}")
            self.cfg.set("workers", settings.web_workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.web_threads)
            # Pushes stream build logs for as long as the build runs.
            self.cfg.set("timeout", settings.build_timeout + 120)
            self.cfg.set("accesslog", "-")

        def load(self):
            return flask_app

    Server().run()


@cli.command()
def worker() -> None:
    """Run a Celery worker: builds, deploys, capsules."""
    from slipway.platform.celery_app import celery

    settings = get_settings()
    settings.ensure_home()
    celery.worker_main(
        ["worker", "--pool", "threads", "--concurrency", str(settings.worker_concurrency),
         "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    )


@cli.command()
def beat() -> None:
    """Run Celery beat: reconcile, renewals, backups on a timer."""
    from slipway.platform.celery_app import celery

    settings = get_settings()
    settings.ensure_home()
    celery.start(["beat", "--loglevel", "INFO",
                  "--schedule", str(settings.home / "celerybeat-schedule")])


@cli.command()
def router() -> None:
    """Keep nginx in step with the route table published on Redis."""
    from slipway.router.controller import Nginx
    from slipway.router.daemon import run_router

    _logging()
    settings = get_settings()
    settings.ensure_home()
    nginx = Nginx(settings.router_dir, settings.http_port, binary=settings.nginx_binary)
    run_router(settings.redis_url, nginx, stop_event=_stop_on_signals())


def _stop_on_signals():
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@cli.command()
def up() -> None:
    """Run all of Slipway on this machine; Ctrl-C or SIGTERM stops all of it."""
    from slipway.platform.db import migrate as run_migrations
    from slipway.platform.supervisor import Supervisor

    _logging()
    settings = get_settings()
    settings.ensure_home()
    run_migrations(settings.database)
    supervisor = Supervisor(settings)
    stop = _stop_on_signals()
    try:
        supervisor.start()
        click.echo(f"Slipway is up: API and git at {settings.api_url}, "
                   f"apps at http://<app>.{settings.domain}:{settings.http_port}/")
        while not stop.wait(0.5):
            supervisor.check()
    finally:
        supervisor.stop()


@cli.command("users:create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Administrators see every app.")
def users_create(email: str, admin: bool) -> None:
    """Create a user and print a new API token (shown once)."""
    from slipway.platform import users
    from slipway.platform.db import migrate as run_migrations
    from slipway.platform.db import session_scope
    from slipway.platform.errors import SlipwayError

    settings = get_settings()
    settings.ensure_home()
    run_migrations(settings.database)
    try:
        with session_scope(settings.database) as session:
            _user, token = users.create_user(session, email, admin=admin)
    except SlipwayError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(token)


@cli.group()
def images() -> None:
    """Base images for builds and capsules."""


@images.command("bootstrap")
@click.option("--force", is_flag=True, help="Rebuild images that already exist.")
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (python, postgres, ...).")
def images_bootstrap(force: bool, kinds: tuple[str, ...]) -> None:
    """Build local base images from Debian packages (for hosts without a registry)."""
    import tempfile

    from slipway.builder.bootstrap import DEFAULT_KINDS, BootstrapError, bootstrap_images
    from slipway.platform.runtime import docker_client

    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix="slipway-bootstrap-") as workdir:
        try:
            built = bootstrap_images(
                docker_client(), repository=settings.bootstrap_repository,
                mirror=settings.debian_mirror, workdir=Path(workdir), log=click.echo,
                force=force, kinds=kinds or DEFAULT_KINDS,
            )
        except BootstrapError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo("Images ready: " + (", ".join(built) or "none built"))


# --------------------------------------------------------------------------- client verbs


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Client:
    """The REST API, as the CLI uses it."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        # An explicit auth object: otherwise requests would send ~/.netrc's basic credentials.
        self.session.auth = BearerAuth(token)

    def request(self, method: str, path: str, **kwargs):
        try:
            response = self.session.request(method, f"{self.url}/api/v1{path}", timeout=60,
                                            **kwargs)
        except requests.ConnectionError as exc:
            raise click.ClickException(f"Cannot reach Slipway at {self.url}") from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text.strip() or response.reason
            raise click.ClickException(message)
        return response

    def json(self, method: str, path: str, **kwargs):
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None


def _load_client_config() -> dict:
    path = CLIENT_CONFIG.expanduser()
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def client() -> Client:
    stored = _load_client_config()
    url = os.environ.get("SLIPWAY_API_URL") or stored.get("url")
    token = os.environ.get("SLIPWAY_TOKEN") or stored.get("token")
    if not url or not token:
        raise click.ClickException("Not logged in: run `slipway login` first")
    return Client(url, token)


def _git_remote_app() -> str | None:
    try:
        out = subprocess.run(["git", "remote", "get-url", "slipway"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"/git/([a-z][a-z0-9-]*)\.git$", out)
    return match.group(1) if match else None


def resolve_app(app: str | None) -> str:
    app = app or os.environ.get("SLIPWAY_APP") or _git_remote_app()
    if not app:
        raise click.ClickException("No app: pass --app NAME or add a `slipway` git remote")
    return app


app_option = click.option("-a", "--app", "app", help="The app (default: the `slipway` git remote).")


def write_netrc(url: str, token: str, path: Path | None = None) -> Path:
    """Give git the token for the Slipway host, replacing an older entry."""
    path = path or Path("~/.netrc").expanduser()
    host = urllib.parse.urlsplit(url).hostname or "localhost"
    entries: dict[str, tuple[str, str | None, str]] = {}
    if path.exists():
        try:
            parsed = netrc.netrc(str(path))
            entries = {h: (e[0] or "", e[1], e[2] or "") for h, e in parsed.hosts.items()}
        except netrc.NetrcParseError as exc:
            raise click.ClickException(f"Cannot update {path}: {exc}") from exc
    entries[host] = ("slipway", None, token)
    lines = [f"machine {h}\n  login {login}\n  password {password}\n"
             for h, (login, _account, password) in entries.items()]
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("".join(lines))
    return path


@cli.command()
@click.option("--api-url", default=None, help="Slipway's URL (default: this host).")
@click.option("--token", default=None, help="An API token (asked for when not given).")
def login(api_url: str | None, token: str | None) -> None:
    """Store the API URL and token for the CLI and for git."""
    api_url = (api_url or get_settings().api_url).rstrip("/")
    token = token or click.prompt("API token", hide_input=True)
    Client(api_url, token).json("GET", "/apps", params={"limit": 1})
    path = CLIENT_CONFIG.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps({"url": api_url, "token": token}))
    netrc_path = write_netrc(api_url, token)
    click.echo(f"Logged in to {api_url} (token stored in {path}, git credentials in {netrc_path})")


@cli.command("apps:create")
@click.argument("name")
@click.option("--no-remote", is_flag=True, help="Do not add a `slipway` git remote.")
def apps_create(name: str, no_remote: bool) -> None:
    """Create an app (and a `slipway` git remote when run inside a git repository)."""
    app = client().json("POST", "/apps", json={"name": name})
    click.echo(f"Created {app['name']}: {app['url']}")
    click.echo(f"Git remote: {app['git_url']}")
    if not no_remote and Path(".git").exists():
        result = subprocess.run(["git", "remote", "add", "slipway", app["git_url"]],
                                capture_output=True, text=True)
        if result.returncode == 0:
            click.echo("Added git remote slipway: deploy with `git push slipway main`")


@cli.command("apps")
def apps_list() -> None:
    """List your apps."""
    for app in _all_pages("/apps"):
        release = f"v{app['release']}" if app["release"] else "not deployed"
        click.echo(f"{app['name']:<30} {release:<14} {app['url']}")


def _all_pages(path: str):
    api = client()
    offset = 0
    while True:
        page = api.json("GET", path, params={"limit": 100, "offset": offset})
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


@cli.command("apps:info")
@app_option
def apps_info(app: str | None) -> None:
    """Show an app."""
    data = client().json("GET", f"/apps/{resolve_app(app)}")
    for key in ("name", "owner", "url", "git_url", "release", "created_at"):
        click.echo(f"{key + ':':<12} {data[key] if data[key] is not None else '-'}")


@cli.command("apps:destroy")
@app_option
@click.option("--confirm", default=None, help="The app's name, to skip the question.")
def apps_destroy(app: str | None, confirm: str | None) -> None:
    """Destroy an app, its containers, releases and repository."""
    name = resolve_app(app)
    typed = confirm or click.prompt(f"This destroys {name} and everything in it. Type its name")
    if typed != name:
        raise click.ClickException(f"Confirmation {typed!r} does not match {name}: nothing done")
    client().request("DELETE", f"/apps/{name}")
    click.echo(f"Destroyed {name}")


@cli.command("config")
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def config_show(app: str | None, as_json: bool) -> None:
    """Show an app's config vars."""
    config = client().json("GET", f"/apps/{resolve_app(app)}/config")
    if as_json:
        click.echo(json.dumps(config, indent=2, ensure_ascii=False))
        return
    for key, value in sorted(config.items()):
        click.echo(f"{key}={value}")


@cli.command("config:set")
@app_option
@click.argument("pairs", nargs=-1, required=True)
def config_set(app: str | None, pairs: tuple[str, ...]) -> None:
    """Set config vars: KEY=VALUE ... (the app restarts with them)."""
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.ClickException(f"Expected KEY=VALUE, got {pair!r}")
        changes[key] = value
    _patch_config(resolve_app(app), changes)


@cli.command("config:unset")
@app_option
@click.argument("keys", nargs=-1, required=True)
def config_unset(app: str | None, keys: tuple[str, ...]) -> None:
    """Unset config vars (the app restarts without them)."""
    _patch_config(resolve_app(app), dict.fromkeys(keys))


def _patch_config(name: str, changes: dict) -> None:
    response = client().request("PATCH", f"/apps/{name}/config", json=changes)
    release = response.headers.get("Slipway-Release")
    verb = ", ".join(changes)
    click.echo(f"Updated {verb} on {name}" + (f"; restarting as {release}" if release else ""))


@cli.command("releases")
@app_option
def releases_list(app: str | None) -> None:
    """List an app's releases, newest first."""
    for release in _all_pages(f"/apps/{resolve_app(app)}/releases"):
        mark = "*" if release["current"] else " "
        click.echo(f"{mark} v{release['version']:<5} {release['status']:<10} "
                   f"{release['created_at'][:19]}  {release['description']}")


@cli.command("builds")
@app_option
@click.argument("build_id", required=False, type=int)
def builds_list(app: str | None, build_id: int | None) -> None:
    """List an app's builds, or show one build's log."""
    name = resolve_app(app)
    if build_id is not None:
        build = client().json("GET", f"/apps/{name}/builds/{build_id}")
        click.echo(build["log"], nl=False)
        return
    for build in _all_pages(f"/apps/{name}/builds"):
        total = sum(build["timings"].values()) if build["timings"] else 0
        click.echo(f"{build['id']:<6} {build['status']:<10} {build['commit'][:8]}  "
                   f"{build['created_at'][:19]}  {total:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

