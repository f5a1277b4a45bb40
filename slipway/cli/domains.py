"""Client verbs for domains and TLS: domains, domains:add/remove/renew, tls:hsts."""

from __future__ import annotations

from urllib.parse import quote

import click

from slipway.cli import cli
from slipway.cli.client import app_option, client, resolve_app


def _expiry(domain: dict) -> str:
    return domain["expires_at"][:10] if domain["expires_at"] else "-"


@cli.command("domains")
@app_option
def domains_list(app: str | None) -> None:
    """List an app's domains and the status of their certificates."""
    data = client().json("GET", f"/apps/{resolve_app(app)}/domains")
    click.echo(f"TLS: {data['tls']}, HSTS: {'on' if data['hsts'] else 'off'}")
    listed = {d["hostname"] for d in data["items"]}
    if data["default"] not in listed:
        click.echo(f"{data['default']:<50} {'default':<8} {'none':<8} -")
    for domain in data["items"]:
        kind = "custom" if domain["custom"] else "default"
        click.echo(f"{domain['hostname']:<50} {kind:<8} {domain['status']:<8} "
                   f"{_expiry(domain)}")
        if domain["last_error"]:
            click.echo(f"    last error: {domain['last_error']}")


@cli.command("domains:add")
@app_option
@click.argument("hostname")
def domains_add(app: str | None, hostname: str) -> None:
    """Route HOSTNAME to the app; a certificate is requested in the background."""
    name = resolve_app(app)
    domain = client().json("POST", f"/apps/{name}/domains", json={"hostname": hostname})
    click.echo(f"Added {domain['hostname']} to {name}")


@cli.command("domains:remove")
@app_option
@click.argument("hostname")
def domains_remove(app: str | None, hostname: str) -> None:
    """Stop routing HOSTNAME to the app."""
    name = resolve_app(app)
    client().request("DELETE", f"/apps/{name}/domains/{quote(hostname, safe='')}")
    click.echo(f"Removed {hostname} from {name}")


@cli.command("domains:renew")
@app_option
@click.argument("hostname")
def domains_renew(app: str | None, hostname: str) -> None:
    """Get a new certificate for HOSTNAME now (in the background)."""
    name = resolve_app(app)
    client().json("POST", f"/apps/{name}/domains/{quote(hostname, safe='')}/renew")
    click.echo(f"Renewing the certificate of {hostname}; `slipway domains` shows its status")


@cli.command("tls:hsts")
@app_option
@click.argument("state", type=click.Choice(["on", "off", "default"]))
def tls_hsts(app: str | None, state: str) -> None:
    """Turn Strict-Transport-Security on or off for the app (default: SLIPWAY_HSTS)."""
    name = resolve_app(app)
    value = {"on": True, "off": False, "default": None}[state]
    data = client().json("PATCH", f"/apps/{name}/tls", json={"hsts": value})
    click.echo(f"HSTS for {name}: {'on' if data['hsts'] else 'off'}")
