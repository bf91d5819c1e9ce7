"""`gateway demo` as a newcomer runs it: a subprocess on real ports, a scripted browser.

alice (Engineering) signs in at the development IdP and reaches the echo upstream, which shows
her email; bob (Sales) gets the 403 page. The admin token and the SCIM secret the demo prints
work; `--host 0.0.0.0` makes the demo usable from other machines; `--print-config` prints a
configuration that `check-config` accepts.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from demo_process import LoginForm, printed, running_demo

from gateway.demo.config import SECRET_VARIABLES


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, dict[str, str], list[str]]]:
    with running_demo() as (port, passwords, output):
        assert any(f"http://localhost:{port}/" in line for line in output)
        yield port, passwords, output


def sign_in(base_url: str, email: str, password: str) -> httpx.Response:
    """Open the demo app in a fresh browser and sign in at the development IdP."""
    with httpx.Client(headers={"Accept": "text/html"}, follow_redirects=True, timeout=10) as web:
        form_page = web.get(f"{base_url}/")
        assert form_page.status_code == 200, form_page.text
        form = LoginForm(form_page.text)
        fields = {**form.fields, "username": email, "password": password}
        return web.post(urljoin(str(form_page.url), form.action), data=fields)


def test_alice_signs_in_and_reaches_the_upstream(
    demo: tuple[int, dict[str, str], list[str]],
) -> None:
    port, passwords, _ = demo
    page = sign_in(f"http://localhost:{port}", "alice@example.com", passwords["alice@example.com"])
    assert page.status_code == 200
    assert str(page.url).startswith(f"http://localhost:{port}/")
    assert "alice@example.com" in page.text
    assert "Cf-Access-Authenticated-User-Email".lower() in page.text.lower()


def test_bob_gets_the_403_page(demo: tuple[int, dict[str, str], list[str]]) -> None:
    port, passwords, _ = demo
    page = sign_in(f"http://localhost:{port}", "bob@example.com", passwords["bob@example.com"])
    assert page.status_code == 403
    assert "Demo app" in page.text


def console_sign_in(base_url: str, email: str, password: str) -> httpx.Response:
    """Open the console in a fresh browser, pick the development IdP, sign in there."""
    with httpx.Client(headers={"Accept": "text/html"}, follow_redirects=True, timeout=10) as web:
        choose = web.get(f"{base_url}/console/")
        assert choose.status_code == 401
        start = choose.text.split('href="/console/login?')[1].split('"')[0].replace("&amp;", "&")
        form_page = web.get(f"{base_url}/console/login?{start}")
        form = LoginForm(form_page.text)
        fields = {**form.fields, "username": email, "password": password}
        return web.post(urljoin(str(form_page.url), form.action), data=fields)


def test_alice_is_the_demos_console_admin(demo: tuple[int, dict[str, str], list[str]]) -> None:
    port, passwords, output = demo
    base = f"http://localhost:{port}"
    assert printed(output, "Console") == f"{base}/console/"
    page = console_sign_in(base, "alice@example.com", passwords["alice@example.com"])
    assert page.status_code == 200
    assert str(page.url) == f"{base}/console/"
    assert "Login methods" in page.text
    refused = console_sign_in(base, "bob@example.com", passwords["bob@example.com"])
    assert refused.status_code == 403


def test_a_wrong_password_does_not_get_in(demo: tuple[int, dict[str, str], list[str]]) -> None:
    port, _, _ = demo
    page = sign_in(f"http://localhost:{port}", "alice@example.com", "not-the-password")
    assert page.status_code == 401
    assert str(page.url).startswith(f"http://localhost:{port + 1}/")  # still at the IdP
    assert "cf-access-authenticated-user-email" not in page.text.lower()


def check_admin_and_scim(base_url: str, output: list[str], passwords: dict[str, str]) -> None:
    """The printed admin token opens the admin API (which lists the user who signed in), the
    printed SCIM secret opens the development IdP's SCIM endpoint; guesses open neither."""
    assert sign_in(base_url, "alice@example.com", passwords["alice@example.com"]).is_success
    token, scim_secret = printed(output, "admin token"), printed(output, "SCIM secret")
    scim_url = f"{base_url}/populations/dev-okta/scim/v2"
    assert any(scim_url in line for line in output)
    with httpx.Client(timeout=10) as client:
        users = client.get(f"{base_url}/api/users", headers={"Authorization": f"Bearer {token}"})
        assert users.status_code == 200, users.text
        assert "alice@example.com" in [u["email"] for u in users.json()["result"]]
        guessed = client.get(f"{base_url}/api/users", headers={"Authorization": "Bearer guess"})
        assert guessed.status_code == 401

        scim = client.get(f"{scim_url}/Users", headers={"Authorization": f"Bearer {scim_secret}"})
        assert scim.status_code == 200, scim.text
        assert scim.json()["totalResults"] == 0  # nothing pushed yet, but the secret works
        wrong = client.get(f"{scim_url}/Users", headers={"Authorization": f"Bearer {token}"})
        assert wrong.status_code == 401


def test_the_printed_admin_token_and_scim_secret_work(
    demo: tuple[int, dict[str, str], list[str]],
) -> None:
    port, passwords, output = demo
    check_admin_and_scim(f"http://localhost:{port}", output, passwords)


def machine_addresses() -> set[str]:
    """This machine's non-loopback IPv4 addresses, as `ip` lists them."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("cannot list this machine's addresses: no `ip` command")
    listing = subprocess.run(
        [ip, "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    addresses = {line.split()[3].split("/")[0] for line in listing.splitlines()}
    return {a for a in addresses if not ipaddress.ip_address(a).is_loopback}


def test_host_0_0_0_0_answers_on_the_machines_address() -> None:
    addresses = machine_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to reach the demo on")
    with running_demo("--host", "0.0.0.0") as (port, passwords, output):  # noqa: S104
        url_line = next(line for line in output if "open http://" in line)
        base_url = url_line.split("open ", 1)[1].strip().rstrip("/")
        parts = urlsplit(base_url)
        assert parts.hostname in addresses, f"{base_url} is not one of {addresses}"
        assert parts.port == port
        page = sign_in(base_url, "alice@example.com", passwords["alice@example.com"])
        assert page.status_code == 200
        assert str(page.url).startswith(f"{base_url}/")
        assert "alice@example.com" in page.text
        assert any("anyone who can reach this machine" in line for line in output)
        check_admin_and_scim(base_url, output, passwords)


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def print_config(*args: str) -> str:
    shown = run_gateway("demo", *args, "--print-config")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_print_config_is_the_config_the_demo_runs(tmp_path: Path) -> None:
    document = tomllib.loads(print_config("--host", "demo.test", "--port", "9100"))
    assert document["gateway"]["public_url"] == "http://demo.test:9100"
    assert document["gateway"]["cookie_secure"] is False
    assert document["gateway"]["admin_token"] == "${GATEWAY_ADMIN_TOKEN}"  # never a value
    idp = document["identity_providers"][0]
    assert idp["config"]["okta_account"] == "http://demo.test:9101"
    assert idp["scim_config"]["enabled"] is True
    assert document["apps"][0]["domain"] == "demo.test"
    assert document["apps"][0]["upstream"] == "http://127.0.0.1:9102"

    # A starting point for a real config: with its variables set, check-config accepts it.
    path = tmp_path / "demo.toml"
    path.write_text(print_config("--port", "9100"), encoding="utf-8")
    variables = {name: "x" * 32 for name in SECRET_VARIABLES}
    checked = run_gateway("check-config", str(path), env={**os.environ, **variables})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = run_gateway("check-config", str(path), env={"PATH": os.environ.get("PATH", "")})
    assert missing.returncode == 1
    assert "gateway.admin_token: environment variable GATEWAY_ADMIN_TOKEN is not set" in (
        missing.stderr
    )


def test_the_demos_plain_http_idp_off_this_machine_is_for_the_demo_only(tmp_path: Path) -> None:
    """The demo's own IdP on a network address runs (a test above signs in through it), but as
    a config of its own it is refused like any plain-http IdP, and the printed text says so."""
    shown = print_config("--host", "demo.test")
    assert "# plain http off this machine: only the demo takes it (a config: https)" in shown
    path = tmp_path / "demo.toml"
    path.write_text(shown, encoding="utf-8")
    variables = {name: "x" * 32 for name in SECRET_VARIABLES}
    checked = run_gateway("check-config", str(path), env={**os.environ, **variables})
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        "identity_providers[0].config.okta_account: must be an https URL"
    ]
    assert "only the demo takes it" not in print_config()  # localhost: nothing to say


def test_an_ipv6_host_is_refused_with_the_reason() -> None:
    refused = run_gateway("demo", "--host", "::1", "--print-config")
    assert refused.returncode == 2
    assert "--host ::1: give a host name, an IPv4 address, 0.0.0.0 or ::" in refused.stderr
