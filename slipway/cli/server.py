"""Verbs that run on the Slipway host: its processes, users and base images."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from slipway.cli import cli
from slipway.config import Settings, get_settings

if TYPE_CHECKING:
    from slipway.router.controller import Nginx


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

    def pre_request(worker, req) -> None:
        # gthread waits for a new connection's first bytes without a thread, but then
        # reads the request in one: a client that stalls mid-body (or stops reading
        # the answer) would hold that thread for good. Each socket wait is bounded.
        sock = getattr(getattr(req, "unreader", None), "sock", None)
        if sock is not None:
            sock.settimeout(settings.client_timeout)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.web_host}:{settings.web_port}")
            self.cfg.set("workers", settings.web_workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.web_threads)
            self.cfg.set("pre_request", pre_request)
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
    from slipway.router.daemon import run_router

    _logging()
    settings = get_settings()
    settings.ensure_home()
    run_router(settings.redis_url, _nginx(settings), stop_event=_stop_on_signals())


def _nginx(settings: Settings) -> Nginx:
    """The router's nginx, as the settings describe it."""
    from slipway.router.controller import Nginx

    dynamic = {"auto": None, "dynamic": True, "static": False}[settings.router_upstreams]
    return Nginx(settings.router_dir, settings.http_port, binary=settings.nginx_binary,
                 https_port=None if settings.tls == "off" else settings.https_port,
                 dynamic=dynamic, workers=settings.router_workers or None)


def _check_router(settings: Settings) -> None:
    """Stop with a clear message, before anything starts, when the router could not
    serve: nginx or its Lua module missing (SLIPWAY_ROUTER_UPSTREAMS=dynamic), its
    runtime directory unusable, or its config refused by ``nginx -t``. ACME
    challenges need no check of their own: they go to the Lua side, or to files in
    the runtime directory with static upstreams."""
    from slipway.router.errors import RouterError

    try:
        _nginx(settings).preflight()
    except RouterError as exc:
        raise click.ClickException(f"the router cannot start: {exc.message}") from exc


def _stop_on_signals():

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
    try:
        settings.ensure_home()
    except OSError as exc:
        raise click.ClickException(f"cannot use SLIPWAY_HOME: {exc}") from exc
    _check_router(settings)
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
        _stop_nginx(settings)


def _stop_nginx(settings: Settings) -> None:
    """Stop the router's nginx, which runs detached from every part: the router stops
    it as it exits, but not when it was killed (by ``Supervisor.stop``'s deadline) or
    lay dead awaiting its restart. Found by pid and by config path, so ``slipway up``
    leaves nothing running."""
    from slipway.router.errors import RouterError

    try:
        _nginx(settings).stop()
    except RouterError as exc:
        logging.getLogger(__name__).error("could not stop nginx: %s", exc.message)


@cli.command("users:create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Administrators see every app.")
@click.option("--password", help="Dashboard password (asked for when given as '-').")
def users_create(email: str, admin: bool, password: str | None) -> None:
    """Create a user and print a new API token (shown once).

    Without --password the user can use the API and git but not the dashboard
    until `slipway users:passwd EMAIL` sets one.
    """
    from slipway.platform import users

    if password == "-":
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    def create(session):
        _user, token = users.create_user(session, email, admin=admin)
        if password is not None:
            users.set_password(session, _user, password)
        return token

    click.echo(_with_session(create))


@cli.command("users:passwd")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new dashboard password (asked for when not given).")
def users_passwd(email: str, password: str) -> None:
    """Set a user's dashboard password."""
    from slipway.platform import users
    from slipway.platform.errors import NotFound

    def change(session):
        user = users.get_by_email(session, email)
        if user is None:
            raise NotFound(f"No user with email {email}")
        users.set_password(session, user, password)

    _with_session(change)
    click.echo(f"Password set for {email}")


def _with_session(action):
    """Run ``action(session)`` on a migrated database; domain errors become CLI errors."""
    from slipway.platform.db import migrate as run_migrations
    from slipway.platform.db import session_scope
    from slipway.platform.errors import SlipwayError

    settings = get_settings()
    settings.ensure_home()
    run_migrations(settings.database)
    try:
        with session_scope(settings.database) as session:
            return action(session)
    except SlipwayError as exc:
        raise click.ClickException(exc.message) from exc


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
