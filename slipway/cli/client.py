"""The REST API client behind the client verbs, and `slipway login`."""

from __future__ import annotations

import json
import netrc
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import click
import requests
import requests.auth

from slipway.cli import cli
from slipway.config import get_settings

CLIENT_CONFIG = Path(os.environ.get("SLIPWAY_CLIENT_CONFIG", "~/.config/slipway/client.json"))



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
        kwargs.setdefault("timeout", 60)
        try:
            response = self.session.request(method, f"{self.url}/api/v1{path}", **kwargs)
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


def all_pages(path: str):
    api = client()
    offset = 0
    while True:
        page = api.json("GET", path, params={"limit": 100, "offset": offset})
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


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
