"""Client verbs for capsules: managed PostgreSQL and Redis."""

from __future__ import annotations

import os
import shutil

import click

from slipway.cli import cli
from slipway.cli.client import all_pages, app_option, client, resolve_app

# Run inside the capsule's container, where the password already is in the
# environment: it never appears on a command line. Constant: no user input.
CONNECT_COMMANDS = {
    "postgres": 'PGPASSWORD="$POSTGRES_PASSWORD" exec psql -h 127.0.0.1 -U "$POSTGRES_USER" '
                '"$POSTGRES_DB"',
    "redis": 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli',
}


@cli.command("capsules:create")
@click.argument("kind", type=click.Choice(["postgres", "redis"]))
@click.argument("name")
@click.option("--version", "version", default=None, metavar="MAJOR",
              help="Major version, e.g. 18 for PostgreSQL or 8 for Redis "
                   "(default: the newest the server offers).")
def capsules_create(kind: str, name: str, version: str | None) -> None:
    """Create a managed PostgreSQL or Redis capsule (provisioned in the background)."""
    body = {"kind": kind, "name": name}
    if version is not None:
        body["version"] = version
    capsule = client().json("POST", "/capsules", json=body)
    click.echo(f"Creating {capsule['name']} ({kind} {capsule['version']}): status "
               f"{capsule['status']}; see `slipway capsules:info {capsule['name']}`")


@cli.command("capsules")
def capsules_list() -> None:
    """List your capsules."""
    for capsule in all_pages("/capsules"):
        apps = ", ".join(f"{a['app']} ({a['as']}_URL)" for a in capsule["attachments"]) or "-"
        kind = f"{capsule['kind']} {capsule['version'] or ''}".strip()
        click.echo(f"{capsule['name']:<30} {kind:<12} {capsule['status']:<13} {apps}")


@cli.command("capsules:info")
@click.argument("name")
def capsules_info(name: str) -> None:
    """Show a capsule, with the URL to reach it from the Slipway host."""
    data = client().json("GET", f"/capsules/{name}")
    for key in ("name", "kind", "version", "status", "error", "url", "created_at"):
        click.echo(f"{key + ':':<12} {data[key] if data[key] is not None else '-'}")
    apps = ", ".join(f"{a['app']} as {a['as']}_URL" for a in data["attachments"]) or "-"
    click.echo(f"{'attached:':<12} {apps}")


@cli.command("capsules:attach")
@click.argument("name")
@app_option
@click.option("--as", "alias", default=None,
              help="Variable prefix: DATABASE sets DATABASE_URL (default DATABASE or REDIS).")
def capsules_attach(name: str, app: str | None, alias: str | None) -> None:
    """Attach a capsule to an app and redeploy it with <AS>_URL."""
    app_name = resolve_app(app)
    body: dict = {"capsule": name}
    if alias is not None:
        body["as"] = alias
    response = client().request("POST", f"/apps/{app_name}/capsules", json=body)
    release = response.headers.get("Slipway-Release")
    click.echo(f"Attached {name} to {app_name}"
               + (f": deploying {release}" if release else ": used from its next deploy"))


@cli.command("capsules:detach")
@click.argument("name")
@app_option
def capsules_detach(name: str, app: str | None) -> None:
    """Detach a capsule from an app (its data stays) and redeploy the app without it."""
    app_name = resolve_app(app)
    client().request("DELETE", f"/apps/{app_name}/capsules/{name}")
    click.echo(f"Detached {name} from {app_name}")


@cli.command("capsules:destroy")
@click.argument("name")
@click.option("--confirm", default=None, help="The capsule's name, to skip the question.")
def capsules_destroy(name: str, confirm: str | None) -> None:
    """Destroy a capsule and all its data."""
    typed = confirm or click.prompt(f"This destroys {name} and all its data. Type its name")
    client().request("DELETE", f"/capsules/{name}", json={"confirm": typed})
    click.echo(f"Destroyed {name}")


@cli.command("capsules:backup")
@click.argument("name")
def capsules_backup(name: str) -> None:
    """Back up a capsule now (pg_dump or a Redis RDB snapshot) on the Slipway host."""
    backup = client().json("POST", f"/capsules/{name}/backups")
    click.echo(f"Backed up {name}: {backup['name']} ({backup['size']} bytes)")


@cli.command("capsules:backups")
@click.argument("name")
def capsules_backups(name: str) -> None:
    """List a capsule's backups, newest first."""
    for backup in client().json("GET", f"/capsules/{name}/backups")["items"]:
        click.echo(f"{backup['name']:<32} {backup['created_at']:<34} {backup['size']:>12} bytes")


@cli.command("capsules:restore")
@click.argument("name")
@click.argument("backup")
@click.option("--confirm", default=None, help="The capsule's name, to skip the question.")
def capsules_restore(name: str, backup: str, confirm: str | None) -> None:
    """Replace a capsule's data with a backup (validated first; asks for the name back)."""
    typed = confirm or click.prompt(f"This replaces the data in {name} with {backup}. "
                                    "Type its name")
    if typed != name:
        raise click.ClickException(f"Confirmation {typed!r} does not match {name}: nothing done")
    client().json("POST", f"/capsules/{name}/restore", json={"backup": backup})
    click.echo(f"Restored {backup} into {name}")


@cli.command("capsules:connect")
@click.argument("name")
def capsules_connect(name: str) -> None:
    """Open psql or redis-cli inside the capsule's container (on the Slipway host)."""
    data = client().json("GET", f"/capsules/{name}")
    docker = shutil.which("docker")
    if docker is None:
        raise click.ClickException("capsules:connect runs on the Slipway host: docker not found")
    os.execv(docker, [docker, "exec", "-it", data["container"],
                      "/bin/sh", "-c", CONNECT_COMMANDS[data["kind"]]])
