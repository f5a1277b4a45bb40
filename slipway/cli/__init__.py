"""The `slipway` command.

Server verbs (`slipway.cli.server`: up, web, worker, beat, router, users:create, users:passwd,
images bootstrap) run on the Slipway host; client verbs (login, apps, config,
releases, builds, logs) talk to the REST API with the token `slipway login` stored.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Slipway: git push to deploy, on your own machine."""


def main() -> None:
    cli(prog_name="slipway")


# Each module registers its verbs on `cli`.
from slipway.cli import (  # noqa: E402,F401
    apps,
    audit,
    capsules,
    client,
    domains,
    logs,
    ps,
    server,
)
