"""Client verbs for processes: ps, ps:scale, ps:restart, run, rollback."""

from __future__ import annotations

import sys

import click
import requests

from slipway.cli import cli
from slipway.cli.client import app_option, client, resolve_app

SENTINEL = b"\n\x1eslipway-status:"


@cli.command("ps")
@app_option
def ps_list(app: str | None) -> None:
    """List an app's processes and their state (as Docker reports it)."""
    name = resolve_app(app)
    api = client()
    formation = api.json("GET", f"/apps/{name}/formation")
    shown = " ".join(f"{ptype}={count}" for ptype, count in formation.items())
    click.echo(f"=== {name}: {shown or 'not deployed'}")
    for proc in api.json("GET", f"/apps/{name}/ps"):
        release = f"v{proc['release']}" if proc["release"] else "-"
        click.echo(f"{proc['type']:<10} {proc['state']:<11} {release:<6} {proc['name']:<40} "
                   f"{proc['status']}")
        if proc.get("state") == "crashed":
            code = proc.get("exit_code")
            click.echo(f"  {proc['type']} keeps exiting"
                       + (f" (last exit status {code})" if code is not None else "")
                       + f", restarted {proc.get('restarts', 0)} times; last output:")
            for line in proc.get("last_logs") or ["(no output)"]:
                click.echo(f"  | {line}")


@cli.command("ps:scale")
@app_option
@click.argument("pairs", nargs=-1, required=True)
def ps_scale(app: str | None, pairs: tuple[str, ...]) -> None:
    """Scale process types: TYPE=N ... (applies at once)."""
    changes: dict[str, object] = {}
    for pair in pairs:
        ptype, sep, count = pair.partition("=")
        if not sep:
            raise click.ClickException(f"Expected TYPE=N, got {pair!r}")
        # Anything not a whole number goes to the API as it is, which says why it is wrong.
        changes[ptype] = int(count) if count.isdigit() else count
    name = resolve_app(app)
    formation = client().json("PATCH", f"/apps/{name}/formation", json=changes)
    click.echo(f"Scaled {name} to " + " ".join(f"{t}={n}" for t, n in formation.items()))


@cli.command("ps:restart")
@app_option
@click.argument("ptype", required=False)
def ps_restart(app: str | None, ptype: str | None) -> None:
    """Replace an app's containers (of one process type, or all) without dropping traffic."""
    name = resolve_app(app)
    client().json("POST", f"/apps/{name}/ps/restart", json={"type": ptype})
    click.echo(f"Restarted {ptype + ' processes of ' if ptype else ''}{name}")


@cli.command("rollback")
@app_option
@click.argument("version", required=False)
def rollback(app: str | None, version: str | None) -> None:
    """Deploy an earlier release again as a new one (default: the one before the current)."""
    body: dict[str, object] = {}
    if version is not None:
        number = version.removeprefix("v")
        if not number.isdigit():
            raise click.ClickException(f"Expected a release like v3, got {version!r}")
        body["version"] = int(number)
    name = resolve_app(app)
    release = client().json("POST", f"/apps/{name}/rollback", json=body)
    click.echo(f"{release['description']}: {name} is now v{release['version']}")


@cli.command("run", context_settings={"ignore_unknown_options": True})
@app_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(app: str | None, command: tuple[str, ...]) -> None:
    """Run a one-off command in a new container of the current release: run -a APP -- CMD...

    Its output is printed as it comes; exits with the command's exit status.
    """
    name = resolve_app(app)
    api = client()
    try:
        response = api.session.post(f"{api.url}/api/v1/apps/{name}/runs",
                                    json={"command": list(command)}, stream=True,
                                    timeout=(10, None))
    except requests.ConnectionError as exc:
        raise click.ClickException(f"Cannot reach Slipway at {api.url}") from exc
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text.strip() or response.reason
        raise click.ClickException(message)
    sys.exit(relay_run_output(response.iter_content(chunk_size=None), sys.stdout.buffer))


def relay_run_output(chunks, out) -> int:
    """Write a run's output to ``out`` and return the exit status from its trailer.

    The server ends with SENTINEL + status; a trailing newline is held back
    until it is known not to be the sentinel's own. No trailer: the connection
    broke, status 1 (with a note on stderr).
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        at = pending.find(SENTINEL)
        if at >= 0:
            out.write(pending[:at])
            out.flush()
            pending = pending[at:]
            break
        keep = _partial_sentinel(pending)
        out.write(pending[:len(pending) - keep])
        out.flush()
        pending = pending[len(pending) - keep:]
    else:
        out.write(pending)
        out.flush()
        click.echo("Connection to Slipway lost before the command finished", err=True)
        return 1
    # The status line may arrive in pieces.
    for chunk in chunks:
        pending += chunk
    status = pending[len(SENTINEL):].strip()
    try:
        return int(status) if int(status) >= 0 else 1
    except ValueError:
        return 1


def _partial_sentinel(data: bytes) -> int:
    """How many bytes at the end of ``data`` could begin the sentinel."""
    for size in range(min(len(SENTINEL), len(data)), 0, -1):
        if SENTINEL.startswith(data[-size:]):
            return size
    return 0
