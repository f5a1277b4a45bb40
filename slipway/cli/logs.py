"""`slipway logs`: the runtime logs of an app's process containers."""

from __future__ import annotations

import click
import requests

from slipway.cli import cli
from slipway.cli.client import app_option, client, resolve_app


@cli.command("logs")
@app_option
@click.option("-n", "--num", "num", default=100, show_default=True,
              help="How many past lines of each container to show first.")
@click.option("-t", "--tail", "follow", is_flag=True, help="Keep following new lines.")
def logs(app: str | None, num: int, follow: bool) -> None:
    """Show the app's logs (and follow them with --tail)."""
    name = resolve_app(app)
    params = {"tail": str(num), "follow": "1" if follow else "0"}
    # A followed stream may be quiet for long: no read timeout, only a connect timeout.
    response = client().request("GET", f"/apps/{name}/logs", params=params, stream=True,
                                timeout=(10, None if follow else 60))
    try:
        for line in response.iter_lines(decode_unicode=True):
            click.echo(line)
    except requests.ConnectionError as exc:
        raise click.ClickException("The log stream was cut off") from exc
    except KeyboardInterrupt:
        pass
    finally:
        response.close()
