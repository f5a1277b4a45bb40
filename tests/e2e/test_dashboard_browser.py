"""The dashboard in a real browser (Debian's Chromium driven by Playwright).

Real parts: `slipway up`, Docker, nginx, Redis, git. Screenshots of the main
pages at desktop and phone width land in artifacts/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.stack import Stack
from tests.support import wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "dashboard pass 1"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Prints a line per request (HTML in it, to see it shown escaped) and shows one config var.
APP_PY = textwrap.dedent('''
    import os

    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        print("served / <b>marker-" + os.environ.get("GREETING", "none") + "</b>", flush=True)
        return "ok\\n"


    @app.get("/env/<key>")
    def env(key):
        return os.environ.get(key, "<unset>")
''')


@pytest.fixture(scope="module")
def stack():
    stack = Stack.temporary()
    try:
        stack.start()
        yield stack
    finally:
        SHOTS.parent.mkdir(parents=True, exist_ok=True)
        if stack.log.exists():  # kept for a person to read when a test failed
            shutil.copy(stack.log, SHOTS.parent / "dashboard-e2e-slipway-up.log")
        stack.stop()


@pytest.fixture(scope="module")
def token(stack):
    return stack.slipway("users:create", "web@example.com", "--password", PASSWORD).stdout.strip()


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("No /usr/bin/chromium: run ./install.sh --dev")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_(chromium, stack, token):
    context = chromium.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    page.fill("input[name=email]", "web@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:text-is('Sign in')")
    page.wait_for_url("**/apps")
    yield page
    context.close()


def shoot(page, name: str) -> None:
    """Screenshots at desktop and phone width, for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_wrong_password_is_refused_in_the_browser(chromium, stack, token):
    context = chromium.new_context(base_url=stack.api_url)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=email]", "web@example.com")
    page.fill("input[name=password]", "not it")
    page.click("button:text-is('Sign in')")
    assert page.locator(".error").inner_text() == "Wrong email or password"
    shoot(page, "login")
    context.close()


def test_create_push_configure_and_watch_logs(page_, stack, token, tmp_path_factory):
    page = page_
    # Create the app in the form (a bad name first: the error shows in the form).
    page.fill("input[name=name]", "Bad Name")
    page.click("button:text-is('Create')")
    assert "App name must be 2-30 characters" in page.locator("#name-error").inner_text()
    page.fill("input[name=name]", "webby")
    page.click("button:text-is('Create')")
    page.wait_for_url("**/apps/webby")
    assert "not deployed yet" in page.inner_text("dl.facts")

    # Push from git, as a developer would.
    repo = tmp_path_factory.mktemp("webby")
    (repo / "app.py").write_text(APP_PY)
    (repo / "requirements.txt").write_text("flask==3.1.*\ngunicorn==23.*\n")
    (repo / "Procfile").write_text("web: gunicorn --bind 0.0.0.0:$PORT --workers 1 app:app\n")
    stack.git("init", "-q", "-b", "main", cwd=repo)
    stack.git("add", "-A", cwd=repo)
    stack.git("commit", "-qm", "first", cwd=repo)
    remote = f"http://x:{token}@{stack.api_url.removeprefix('http://')}/git/webby.git"
    push = stack.git("push", remote, "main", cwd=repo, check=False)
    assert push.returncode == 0, push.stderr

    page.reload()
    assert "v1" in page.inner_text("dl.facts")
    assert "running" in page.inner_text("dl.facts")
    shoot(page, "app")
    page.click("table.list >> text=/^#\\d+$/")
    assert "-----> Deployed v1" in page.inner_text("#build-log")
    assert "succeeded" in page.inner_text("#build-status")

    # Set a config var in the form; the page follows the release until it is live.
    page.click("nav.tabs >> text=Config vars")
    page.fill(".config-row.new >> nth=0 >> input[name=key]", "GREETING")
    page.fill(".config-row.new >> nth=0 >> textarea[name=value]", "hi<i>there</i>")
    page.click("button:text-is('Save and restart')")
    progress = page.locator("#release-progress")
    progress.filter(has_text="v2 is live").wait_for(timeout=60_000)
    assert stack.fetch("webby", "/env/GREETING").text == "hi<i>there</i>"
    assert page.locator("textarea.masked").count() == 1  # masked until revealed
    page.click("#reveal")
    assert page.locator("textarea.masked").count() == 0
    shoot(page, "config")

    # The live log shows what the app prints, as text (its HTML not interpreted).
    page.click("nav.tabs >> text=Logs")
    page.locator("#log-state").filter(has_text="live").wait_for()
    wait_for(lambda: stack.fetch("webby").status_code == 200 and page.locator(
        "#app-log div", has_text="<b>marker-hi<i>there</i></b>").count() > 0,
        timeout=30, interval=0.5, message="the app's line in the log view")
    assert page.locator("#app-log b").count() == 0
    # Only the live release's containers: v1's line (GREETING unset) is not repeated.
    assert page.locator("#app-log div", has_text="marker-none").count() == 0
    page.fill("#log-filter", "no such text")
    assert page.locator("#app-log div:not(.hidden)").count() == 0
    page.fill("#log-filter", "")
    shoot(page, "logs")

    # The same lines through the API and the CLI.
    logs = requests.get(f"{stack.api_url}/api/v1/apps/webby/logs?tail=50",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert logs.status_code == 200 and "marker-hi<i>there</i>" in logs.text
    stack.slipway("login", "--api-url", stack.api_url, "--token", token)
    assert "marker-hi" in stack.slipway("logs", "--app", "webby", "-n", "20").stdout

    page.goto("/apps")
    assert "webby" in page.inner_text("table.list") and "v2" in page.inner_text("table.list")
    shoot(page, "apps")


def test_capsule_attach_and_domains_in_the_browser(page_, stack, token):
    """Runs after the test above: it attaches a capsule to the app that test pushed."""
    page = page_
    apps = requests.get(f"{stack.api_url}/api/v1/apps/webby",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if apps.status_code != 200:
        pytest.fail("webby is missing: run this module whole (the test above pushes it)")

    # Create a Postgres capsule in the form (a bad name first); the page follows it
    # from provisioning to available by itself.
    page.click("header nav >> text=Capsules")
    page.fill("input[name=name]", "Web DB")
    page.click("button:text-is('Create')")
    assert page.locator("#name-error").inner_text().startswith("Capsule name must be 2-30")
    page.check("input[name=kind][value=postgres]")
    page.fill("input[name=name]", "webby-db")
    started = time.monotonic()
    page.click("button:text-is('Create')")
    page.wait_for_url("**/capsules/webby-db")
    page.locator("#capsule-status", has_text="available").wait_for(timeout=120_000)
    page.locator("#reveal-url").wait_for()  # the page reloads itself once it settles
    assert page.inner_text("#capsule-status") == "available"
    print(f"capsule available on the page {time.monotonic() - started:.1f} s after Create")
    assert page.locator("#capsule-url").is_hidden()  # revealed on click only
    page.click("#reveal-url")
    assert page.inner_text("#capsule-url").startswith("postgres://slipway:")

    # Attach it to webby: a new release gives the app DATABASE_URL.
    page.select_option("select[name=app]", "webby")
    started = time.monotonic()
    page.click("button:text-is('Attach')")
    flash = page.inner_text(".flash")
    assert re.fullmatch(r"Attached webby-db to webby as release v\d+", flash), flash
    assert "DATABASE_URL" in page.inner_text("table.list")
    wait_for(lambda: stack.fetch("webby", "/env/DATABASE_URL").text.endswith(
        "@capsule-webby-db:5432/slipway"), timeout=120, interval=0.5,
        message="webby's DATABASE_URL after the attach")
    print(f"app serves DATABASE_URL {time.monotonic() - started:.1f} s after Attach")
    # A backup, listed with its time and size (the URL stays hidden in the screenshot).
    page.click("button:text-is('Back up now')")
    assert re.fullmatch(r"Backed up webby-db as \d{8}T\d{12}Z\.pgdump",
                        page.inner_text(".flash"))
    assert re.search(r"\d+(\.\d)? (Bytes|kB)", page.inner_text("[data-label=Size]"))
    assert page.locator("#capsule-url").is_hidden()
    shoot(page, "capsule")
    page.goto("/capsules")
    assert "webby-db" in page.inner_text("table.list")
    shoot(page, "capsules")

    # Add a custom domain on the app's Domains tab; it is listed with its certificate status.
    page.goto("/apps/webby")
    page.click("nav.tabs >> text=Domains")
    page.fill("input[name=hostname]", "not a host")
    page.click("button:text-is('Add domain')")
    assert page.locator("#hostname-error").count() == 1
    page.fill("input[name=hostname]", "www.webby.test")
    page.click("button:text-is('Add domain')")
    assert page.inner_text(".flash") == "Added www.webby.test"
    row = page.locator("#domains tr", has_text="www.webby.test")
    # The stack serves *.localhost with TLS off, so no certificate is asked for.
    assert row.locator("[data-label=Certificate]").inner_text().strip() == "none"
    shoot(page, "domains")


def test_revoked_token_is_refused_by_the_api(page_, stack):
    page = page_
    page.goto("/tokens")
    page.fill("input[name=name]", "ci")
    page.click("button:text-is('Create token')")
    new = page.inner_text("#new-token").strip()
    assert re.fullmatch(r"slp_\S+", new)
    api = f"{stack.api_url}/api/v1/apps"
    assert requests.get(api, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    shoot(page, "tokens")
    page.click(f"button[aria-label='Revoke {new[:8]}']")
    assert f"Revoked token {new[:8]}" in page.inner_text(".flash")
    refused = requests.get(api, headers={"Authorization": f"Bearer {new}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "Invalid API token"


def test_scale_and_roll_back_in_the_processes_tab(page_, stack):
    """Runs after test_create_push_configure_and_watch_logs: webby's v2 set GREETING."""
    page = page_
    page.goto("/apps/webby/formation")
    assert page.locator("#processes td[data-label=Type]", has_text="web").count() == 1
    # A bad count is refused in the form and nothing changes.
    page.fill("input[name='scale:web']", "11")
    page.click("button:text-is('Scale')")
    assert page.inner_text("#formation-error") == "Scale of web is above the limit of 10"
    page.fill("input[name='scale:web']", "2")
    page.click("button:text-is('Scale')")
    page.locator(".flash", has_text="Scaled: web=2").wait_for(timeout=120_000)
    running_web = page.locator("#processes tr", has=page.locator("td[data-label=Type]",
                                                                 has_text="web"))
    assert running_web.filter(has_text="running").count() == 2
    shoot(page, "formation")

    assert stack.fetch("webby", "/env/GREETING").text == "hi<i>there</i>"
    # Earlier tests in this module may have made releases (a capsule attach does).
    latest = int(page.locator("#releases td[data-label=Version]").first.inner_text()
                 .strip().lstrip("v").split()[0])
    page.click("button:text-is('Roll back to v1')")
    new = f"v{latest + 1}"
    page.locator("#release-progress").filter(has_text=f"{new} is live").wait_for(
        timeout=120_000)
    assert f"Rolled back: Rollback to v1 as {new}" in page.inner_text(".flash")
    wait_for(lambda: stack.fetch("webby", "/env/GREETING").text == "<unset>",
             timeout=30, interval=0.5, message="v1's config served after the rollback")
