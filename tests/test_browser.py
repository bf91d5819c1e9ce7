"""`gateway demo` in a real browser: headless Chromium driven by Selenium.

The demo runs as a subprocess on real ports, exactly as a newcomer starts it. alice (Engineering)
opens the app, lands on the development IdP's login form, signs in, sees the echo upstream showing
her email, signs out through the page's "Sign out" link and sees the signed-out page; bob (Sales),
in a fresh browser profile, gets the 403 page. Every page is saved as a PNG in
`test-artifacts/browser/` at the repo root, so CI can keep them and a person can look at them.

Browser: Debian's `chromium` with the matching `chromium-driver` (`/usr/bin/chromedriver`); no
browser is ever downloaded. Without them (or without the `selenium` package) every test here is
skipped with the reason, never failed.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_process import running_demo

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
WAIT = 20  # seconds for a page to arrive; the demo answers in milliseconds

# Debian's package installs /usr/bin/chromium; other systems name the same browser differently.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium as root in a container, with no outside network: the flags the machine notes give.
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths from PATH; pytest.skip with the reason if either is absent."""
    chromium = next((p for p in map(shutil.which, BROWSER_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    missing = [
        name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None
    ]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not found on PATH: install Debian's chromium and "
            "chromium-driver packages (.ci/run does) to run the browser tests"
        )
    assert chromium is not None and driver is not None
    return chromium, driver


@pytest.fixture(scope="module")
def binaries() -> tuple[str, str]:
    """Skip the module (before starting anything) when there is no browser to drive."""
    pytest.importorskip("selenium", reason="the selenium package is not installed")
    return find_browser()


@pytest.fixture(scope="module")
def demo(binaries: tuple[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    """`python -m gateway demo --port P`: the port and the passwords it printed, by email."""
    with running_demo() as (port, passwords, _):
        yield port, passwords


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """test-artifacts/browser/ at the repo root, emptied of the previous run's screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture
def new_browser(binaries: tuple[str, str], tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Start a headless Chromium with a fresh, empty profile (no cookies) on each call."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = binaries
    started: list[Any] = []

    def start() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in BROWSER_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{len(started)}'}")
        # An explicit driver path: Selenium Manager (which would download one) never runs.
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        driver.set_page_load_timeout(WAIT)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], object], what: str) -> None:
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page read while the browser navigates can fail in several ways (a stale element, a node
    # that left the document, a script on an unloading page): look again, as a person would. A
    # failure that lasts shows up as the timeout, with the page as it was.
    try:
        WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; at {driver.current_url}:\n{page_text(driver)}")


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def heading(driver: Any) -> str:
    # One script reads the heading at one instant: an element handle found first could belong to
    # a document the browser has left by the time its text is asked for.
    return str(
        driver.execute_script("const h = document.querySelector('h1'); return h ? h.innerText : ''")
    )


def status_code(driver: Any) -> int:
    """The HTTP status of the document now shown (Navigation Timing's responseStatus)."""
    return int(
        driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")
    )


def screenshot(driver: Any, artifacts: Path, name: str) -> Path:
    """The whole page, not only the window (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path = artifacts / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def sign_in_at_idp(driver: Any, port: int, email: str, password: str) -> None:
    """Open the demo app; land on the development IdP's form; submit it."""
    from selenium.webdriver.common.by import By

    driver.get(f"http://localhost:{port}/")
    wait_for(
        driver,
        lambda d: (
            d.current_url.startswith(f"http://localhost:{port + 1}/")
            and d.find_elements(By.ID, "password")
        ),
        "the development IdP's login form",
    )
    driver.find_element(By.ID, "username").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)


def submit(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


# --- the tests -------------------------------------------------------------------------------


def test_alice_signs_in_sees_the_upstream_and_signs_out(
    demo: tuple[int, dict[str, str]], new_browser: Callable[[], Any], artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By

    port, passwords = demo
    browser = new_browser()

    sign_in_at_idp(browser, port, "alice@example.com", passwords["alice@example.com"])
    assert heading(browser) == "Sign in"
    assert f"http://localhost:{port}/cdn-cgi/access/callback" in page_text(browser)
    screenshot(browser, artifacts, "1-login-form")

    submit(browser)
    wait_for(browser, lambda d: heading(d).startswith("Hello,"), "the demo upstream's page")
    assert browser.current_url == f"http://localhost:{port}/"
    assert status_code(browser) == 200
    assert heading(browser) == "Hello, alice@example.com"
    assert browser.title == "Demo upstream"
    # The identity arrived as the gateway's headers, and the app token was attached.
    text = page_text(browser)
    assert "Cf-Access-Authenticated-User-Email alice@example.com" in text
    assert '"email": "alice@example.com"' in text
    screenshot(browser, artifacts, "2-upstream")

    browser.find_element(By.LINK_TEXT, "Sign out").click()
    wait_for(browser, lambda d: heading(d) == "You are signed out", "the signed-out page")
    assert browser.current_url.startswith(f"http://localhost:{port}/cdn-cgi/access/logout")
    assert status_code(browser) == 200
    assert not browser.get_cookie("CF_Authorization")
    screenshot(browser, artifacts, "3-signed-out")

    # Signed out for real: the app sends the same browser back to the IdP's login form.
    browser.get(f"http://localhost:{port}/")
    wait_for(
        browser,
        lambda d: d.current_url.startswith(f"http://localhost:{port + 1}/"),
        "the IdP's login form after signing out",
    )
    assert heading(browser) == "Sign in"


def test_bob_gets_the_access_denied_page(
    demo: tuple[int, dict[str, str]], new_browser: Callable[[], Any], artifacts: Path
) -> None:
    port, passwords = demo
    browser = new_browser()

    sign_in_at_idp(browser, port, "bob@example.com", passwords["bob@example.com"])
    submit(browser)
    wait_for(browser, lambda d: heading(d) == "Access denied", "the access-denied page")
    assert browser.current_url.startswith(f"http://localhost:{port}/")
    assert status_code(browser) == 403
    text = page_text(browser)
    assert "You do not have access to Demo app." in text
    assert "The demo app is for the Engineering group only." in text
    assert "Signed in as bob@example.com." in text
    assert "Hello," not in text  # nothing of the upstream
    screenshot(browser, artifacts, "4-access-denied")


def test_without_chromium_the_browser_tests_skip_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a machine without Debian's chromium packages sees: a skip that says why."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: nothing to find
    with pytest.raises(pytest.skip.Exception, match="chromium and chromedriver not found"):
        find_browser()
