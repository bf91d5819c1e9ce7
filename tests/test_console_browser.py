"""The Okta guide, end to end, through the console in a real browser (issue 13).

`gateway serve` runs as a subprocess on a real Redis from a config with no login method and no
application, exactly as an operator starts. The development IdP (`gateway/demo/devidp.py`) plays
the Okta org and the demo's echo upstream the protected app, both served from this test process
on loopback. The operator signs in to the console with a `gateway console-link` URL (nothing
else can work before a login method exists), then, in headless Chromium: adds the dev IdP as an
Okta login method, presses Test and sees "Your connection works!", turns SCIM on and reads the
secret; the test pushes a user and a group over SCIM with that secret (httpx, as Okta would);
the operator adds an application whose policy is built in the rule builder from the pushed group
(offered by the group picker), checks "who would get in"; the user signs in to the app in a
second browser and reaches it; the operator revokes the user on the Users page, and the app
bounces the user to the IdP. Every console page is saved as a PNG in `test-artifacts/browser/`
(`console-*.png`).

Skipped with the reason, as tests/test_browser.py is, without chromium, chromedriver or selenium.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from harness import free_port
from test_browser import ARTIFACTS, BROWSER_FLAGS, find_browser, heading, page_text, wait_for

from gateway.demo.devidp import DevUser, create_dev_idp
from gateway.demo.echo import create_echo_app

CLIENT_ID = "0oaconsolewalk"
CLIENT_SECRET = "console-walk-client-secret-0123456789"
CAROL = DevUser.generate("carol@example.com", "Carol Contractor", ("Contractors", "Everyone"))
GROUP = "Contractors"
APP_HOST = "wiki.localhost"  # Chromium sends every *.localhost name to the loopback address
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


# --- the servers -----------------------------------------------------------------------------


@contextlib.contextmanager
def served(app: Any, port: int) -> Iterator[None]:
    """An ASGI app on 127.0.0.1:port, from a thread of this process (the test itself is
    synchronous: Selenium drives the browser)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class Walk:
    """Where everything runs."""

    config: Path
    public_url: str  # the team host, as the browser names it
    gateway_port: int
    idp_url: str  # the dev IdP's issuer (its Okta account URL)
    upstream_url: str

    @property
    def app_url(self) -> str:
        return f"http://{APP_HOST}:{self.gateway_port}/"

    def api(self) -> httpx.Client:
        """An HTTP client to the gateway that names the team host (as Okta's SCIM client
        would reach it), over IPv4 whatever `localhost` resolves to first."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.gateway_port}",
            headers={"Host": f"localhost:{self.gateway_port}"},
            timeout=10,
        )


def wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited {process.returncode}")
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}, timeout=1
            )
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gateway did not start")


@pytest.fixture
def walk(binaries: tuple[str, str], tmp_path: Path, redis_url: str) -> Iterator[Walk]:
    gateway_port, idp_port, upstream_port = free_port(), free_port(), free_port()
    public_url = f"http://localhost:{gateway_port}"
    idp_url = f"http://127.0.0.1:{idp_port}"
    dev_idp = create_dev_idp(
        issuer=idp_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{public_url}/cdn-cgi/access/callback"],
        users=[CAROL],
        api_token="console-walk-api-token",
    )
    config = tmp_path / "gateway.toml"
    # No login method, no application: the operator makes them in the console.
    config.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "{public_url}"
            cookie_secret = "console-walk-cookie-secret-0123456789abcdef"
            admin_token = "console-walk-admin-token-0123456789"
            store = "{redis_url}"
            cookie_secure = false
        """)
    )
    with (
        served(dev_idp, idp_port),
        served(create_echo_app(), upstream_port),
    ):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(gateway_port),
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            env={**os.environ},
        )
        try:
            wait_ready(process, gateway_port)
            yield Walk(
                config, public_url, gateway_port, idp_url, f"http://127.0.0.1:{upstream_port}"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binaries() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="the selenium package is not installed")
    return find_browser()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """test-artifacts/browser/, emptied of this file's previous screenshots only."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("console-*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture
def new_browser(binaries: tuple[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A headless Chromium with a fresh profile on each call; `width` x `height` window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = binaries
    started: list[Any] = []

    def start(width: int = 1280, height: int = 900) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in BROWSER_FLAGS:
            if not flag.startswith("--window-size"):
                options.add_argument(flag)
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{len(started)}'}")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        driver.set_page_load_timeout(20)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()


class Shots:
    """Numbered screenshots of the console's pages: `console-01-overview.png`..."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.count = 0

    def take(self, driver: Any, name: str) -> None:
        self.count += 1
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path = self.artifacts / f"console-{self.count:02d}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))


def field(driver: Any, label: str) -> Any:
    """The input a visible `<label>` names, as a person finds it (and as a screen reader
    announces it): every input of the console has one."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.TAG_NAME, "label"):
        if element.text.strip().removesuffix("(optional)").strip() == label:
            target = element.get_attribute("for")
            if target:
                return driver.find_element(By.ID, target)
            return element.find_element(By.TAG_NAME, "input")
    raise AssertionError(f"no field labelled {label!r} on {driver.current_url}")


def fill(driver: Any, label: str, text: str) -> None:
    element = field(driver, label)
    element.clear()
    element.send_keys(text)


def press(driver: Any, text: str) -> None:
    """Click the button (or button-styled link) that says `text`."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.CSS_SELECTOR, "button, a.button, input[type=submit]"):
        if element.is_displayed() and element.text.strip() == text:
            element.click()
            return
    raise AssertionError(f"no button {text!r} on {driver.current_url}:\n{page_text(driver)}")


def choose(driver: Any, label: str, option: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(field(driver, label)).select_by_visible_text(option)


def sign_in_at_idp(driver: Any, walk: Walk, user: DevUser) -> None:
    from selenium.webdriver.common.by import By

    wait_for(
        driver,
        lambda d: d.current_url.startswith(walk.idp_url) and d.find_elements(By.ID, "password"),
        "the development IdP's login form",
    )
    driver.find_element(By.ID, "username").send_keys(user.login)
    driver.find_element(By.ID, "password").send_keys(user.password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def console_link(walk: Walk) -> str:
    """`gateway console-link --config PATH`: the one-time URL it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "console-link", "--config", str(walk.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.search(r"https?://\S+", done.stdout)
    assert found, done.stdout + done.stderr
    return found.group(0)


def push_over_scim(walk: Walk, idp_id: str, secret: str) -> None:
    """What Okta does once the app is assigned: the user, then a pushed group with them in it."""
    base = f"/populations/{idp_id}/scim/v2"
    with walk.api() as api:
        api.headers["Authorization"] = f"Bearer {secret}"
        user = api.post(
            f"{base}/Users",
            json={
                "schemas": [SCIM_USER],
                "userName": CAROL.email,
                "externalId": CAROL.sub,
                "name": {"givenName": "Carol", "familyName": "Contractor"},
                "emails": [{"primary": True, "value": CAROL.email, "type": "work"}],
                "active": True,
                "password": "throw-away-1234",
            },
        )
        assert user.status_code == 201, user.text
        group = api.post(
            f"{base}/Groups",
            json={
                "schemas": [SCIM_GROUP],
                "displayName": GROUP,
                "members": [{"value": user.json()["id"], "display": CAROL.email}],
            },
        )
        assert group.status_code == 201, group.text


# --- the walk --------------------------------------------------------------------------------


def test_the_okta_guide_through_the_console(
    walk: Walk, new_browser: Callable[..., Any], artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = Shots(artifacts)
    admin = new_browser()

    # 1. The first setup: a console link, since no login method works yet.
    admin.get(console_link(walk))
    shots.take(admin, "link")
    press(admin, "Sign in to the console")
    wait_for(admin, lambda d: heading(d) == "Overview", "the console's overview")
    assert "Add a login method" in page_text(admin)
    shots.take(admin, "overview")

    # 2. Login methods: add the dev IdP as Okta, with the guide's fields.
    admin.find_element(By.LINK_TEXT, "Login methods").click()
    wait_for(admin, lambda d: heading(d) == "Login methods", "the login methods")
    shots.take(admin, "identity-providers")
    press(admin, "Add Okta")
    wait_for(admin, lambda d: heading(d) == "Add a login method", "the new login method form")
    fill(admin, "Name", "Okta")
    fill(admin, "App ID", CLIENT_ID)
    fill(admin, "Client secret", CLIENT_SECRET)
    fill(admin, "Okta account URL", walk.idp_url)
    press(admin, "Add login method")
    wait_for(admin, lambda d: "?saved=1" in d.current_url, "the saved login method")
    idp_id = admin.current_url.split("/console/identity-providers/")[1].split("?")[0]
    redirect_url = admin.find_element(By.ID, "redirect-url").get_attribute("value")
    assert redirect_url == f"{walk.public_url}/cdn-cgi/access/callback"  # to paste into Okta
    shots.take(admin, "identity-provider")

    # 3. Test: the /test-idp outcome, signed in at the IdP as Carol.
    idp_page = admin.current_url
    admin.get(f"{walk.public_url}/test-idp?idp={idp_id}")
    sign_in_at_idp(admin, walk, CAROL)
    wait_for(admin, lambda d: "Your connection works!" in page_text(d), "the test outcome")
    shots.take(admin, "test-idp")

    # 4. SCIM: enable, read the secret shown once.
    admin.get(idp_page)
    field(admin, "Enable SCIM").click()
    press(admin, "Save SCIM settings")
    wait_for(admin, lambda d: d.find_elements(By.ID, "scim-secret"), "the SCIM secret")
    assert "it is shown this once" in page_text(admin)
    secret = admin.find_element(By.ID, "scim-secret").get_attribute("value")
    assert secret
    shots.take(admin, "scim-secret")

    # 5. Okta pushes Carol and the Contractors group.
    push_over_scim(walk, idp_id, secret)

    # 6. Applications: a new app whose policy is built from the pushed group.
    admin.find_element(By.LINK_TEXT, "Applications").click()
    wait_for(admin, lambda d: heading(d) == "Applications", "the applications")
    shots.take(admin, "apps-empty")
    press(admin, "Add an application")
    wait_for(admin, lambda d: heading(d) == "New application", "the new application form")
    fill(admin, "Name", "Wiki")
    fill(admin, "Domain", APP_HOST)
    fill(admin, "Upstream URL", walk.upstream_url)
    fill(admin, "Policy name", "Contractors")
    choose(admin, "Add a rule to include", "Okta")
    admin.find_element(By.CSS_SELECTOR, "button[value='add:policies[0].include']").click()
    wait_for(
        admin,
        lambda d: d.find_elements(By.ID, "f-policies[0].include[0].okta.name"),
        "the new Okta rule",
    )
    # The group picker offers the group Okta pushed.
    offered = [
        o.get_attribute("value")
        for o in admin.find_elements(By.CSS_SELECTOR, "datalist#choices-group option")
    ]
    assert GROUP in offered
    assert field(admin, "Name").get_attribute("value") == "Wiki"  # what was typed is kept
    admin.find_element(By.ID, "f-policies[0].include[0].okta.name").send_keys(GROUP)
    shots.take(admin, "app-new")
    # Enter in a field saves, as the visible Save does (not a row's "Remove" above it).
    admin.find_element(By.ID, "f-policies[0].include[0].okta.name").send_keys(Keys.ENTER)
    wait_for(admin, lambda d: "Saved." in page_text(d), "the saved application")
    app_page = admin.current_url.split("?")[0]
    shots.take(admin, "app")

    # 7. Carol signs in to the app and reaches it.
    carol = new_browser()
    carol.get(walk.app_url)
    sign_in_at_idp(carol, walk, CAROL)
    wait_for(carol, lambda d: heading(d) == f"Hello, {CAROL.email}", "the app, as Carol")

    # 8. "Who would get in": Carol, by the Contractors policy.
    admin.get(app_page)
    fill(admin, "User's email", CAROL.email)
    press(admin, "Check")
    wait_for(admin, lambda d: "gets in" in page_text(d), "the explanation")
    assert "by policy Contractors" in page_text(admin)
    shots.take(admin, "app-who")
    admin.get(f"{walk.public_url}/console/apps")
    shots.take(admin, "apps")

    # 9. Users: find Carol, see what the gateway knows, revoke her sessions.
    admin.find_element(By.LINK_TEXT, "Users").click()
    wait_for(admin, lambda d: heading(d) == "Users", "the users")
    fill(admin, "Search by email", "carol")
    press(admin, "Search")
    wait_for(admin, lambda d: d.find_elements(By.LINK_TEXT, CAROL.email), "Carol in the list")
    shots.take(admin, "users")
    admin.find_element(By.LINK_TEXT, CAROL.email).click()
    wait_for(admin, lambda d: heading(d) == CAROL.email, "Carol's page")
    text = page_text(admin)
    assert GROUP in text and '"email": "carol@example.com"' in text
    assert "Wiki" in text  # her session on the app
    assert "Level now: low" in text
    shots.take(admin, "user")
    press(admin, "Revoke sessions…")
    wait_for(admin, lambda d: heading(d).startswith("Revoke the sessions"), "the confirmation")
    shots.take(admin, "user-revoke")
    press(admin, "Revoke sessions")
    wait_for(admin, lambda d: "Revoked" in page_text(d), "the revocation")
    assert "No active session." in page_text(admin)

    # 10. The app bounces Carol: back to the IdP's login form.
    carol.get(walk.app_url)
    wait_for(carol, lambda d: d.current_url.startswith(walk.idp_url), "Carol bounced to the IdP")

    # 11. Logs: her sign-in, the SCIM pushes, and the console's changes, by whom.
    admin.find_element(By.LINK_TEXT, "Logs").click()
    wait_for(admin, lambda d: heading(d) == "Logs", "the logs")
    text = page_text(admin)
    assert f"sign-in {CAROL.email} Wiki allow Contractors" in text
    assert f"POST User {CAROL.email} 201 success" in text
    assert f"POST Group {GROUP} 201 success" in text
    assert f"console-link revoke sessions user {CAROL.email}" in text
    assert "console-link create app Wiki" in text
    shots.take(admin, "logs")

    # 12. Risk: the well-known URL to enter in Okta; then the settings; then a phone.
    admin.find_element(By.LINK_TEXT, "Risk").click()
    wait_for(admin, lambda d: heading(d) == "Risk", "the risk page")
    well_known = admin.find_element(By.ID, "well-known-url").get_attribute("value")
    assert well_known == f"{walk.public_url}/.well-known/ssf-configuration"
    shots.take(admin, "risk")
    admin.find_element(By.LINK_TEXT, "Settings").click()
    wait_for(admin, lambda d: heading(d) == "Settings", "the settings page")
    shots.take(admin, "settings")
    phone = admin
    phone.set_window_size(390, 844)
    for path, name in [
        ("/console/", "phone-overview"),
        (app_page.removeprefix(walk.public_url), "phone-app"),
        ("/console/logs", "phone-logs"),
    ]:
        phone.get(walk.public_url + path)
        wait_for(phone, lambda d: heading(d) != "", f"the {name} page")
        shots.take(phone, name)
