"""Client verbs for apps, config vars, releases and builds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from slipway.cli import cli
from slipway.cli.client import all_pages, app_option, client, resolve_app


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
    for app in all_pages("/apps"):
        release = f"v{app['release']}" if app["release"] else "not deployed"
        click.echo(f"{app['name']:<30} {release:<14} {app['url']}")


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
    for release in all_pages(f"/apps/{resolve_app(app)}/releases"):
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
    for build in all_pages(f"/apps/{name}/builds"):
        total = sum(build["timings"].values()) if build["timings"] else 0
        click.echo(f"{build['id']:<6} {build['status']:<10} {build['commit'][:8]}  "
                   f"{build['created_at'][:19]}  {total:.1f} s")
