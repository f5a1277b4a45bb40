"""Client verb for the audit log."""

from __future__ import annotations

import json

import click

from slipway.cli import cli
from slipway.cli.client import client


@cli.command("audit")
@click.option("-a", "--app", "app", help="Only events about this app.")
@click.option("--action", help="Only this action, e.g. config.change or deploy.")
@click.option("-n", "--num", "num", default=50, show_default=True,
              type=click.IntRange(1, 100), help="How many of the newest events.")
def audit(app: str | None, action: str | None, num: int) -> None:
    """Who did what, newest first (yours and those on your apps; an admin's: all)."""
    params: dict[str, str | int] = {"limit": num}
    if app:
        params["app"] = app
    if action:
        params["action"] = action
    page = client().json("GET", "/audit", params=params)
    for event in page["items"]:
        target = f"{event['target']['kind']} {event['target']['name']}"
        details = json.dumps(event["details"], sort_keys=True) if event["details"] else ""
        click.echo(f"{event['time'][:19]}Z  {event['actor'] or '(host)':<24} "
                   f"{event['action']:<16} {target:<32} {details}".rstrip())
