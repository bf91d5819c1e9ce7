"""`gateway demo` as a newcomer runs it: a subprocess on real ports, a scripted browser.

alice (Engineering) signs in at the development IdP and reaches the echo upstream, which shows
her email; bob (Sales) gets the 403 page.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest


def three_free_ports() -> int:
    """A port P with P, P+1 and P+2 free (the demo's gateway, IdP and upstream)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 2 > 65535:
            continue
        try:
            for port in (base + 1, base + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three consecutive free ports")


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, dict[str, str]]]:
    port = three_free_ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    passwords: dict[str, str] = {}
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while len(passwords) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"(\S+@example\.com)\s+password: (\S+)", line)
            if found:
                passwords[found.group(1)] = found.group(2)
        assert len(passwords) == 2, "demo did not start:\n" + "".join(output)
        assert any(f"http://localhost:{port}/" in line for line in output)
        yield port, passwords
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


class _Form(HTMLParser):
    """The login form's action and its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def sign_in(port: int, email: str, password: str) -> httpx.Response:
    """Open the demo app in a fresh browser and sign in at the development IdP."""
    with httpx.Client(headers={"Accept": "text/html"}, follow_redirects=True, timeout=10) as web:
        form_page = web.get(f"http://localhost:{port}/")
        assert form_page.status_code == 200, form_page.text
        form = _Form()
        form.feed(form_page.text)
        fields = {**form.fields, "username": email, "password": password}
        return web.post(urljoin(str(form_page.url), form.action), data=fields)


def test_alice_signs_in_and_reaches_the_upstream(demo: tuple[int, dict[str, str]]) -> None:
    port, passwords = demo
    page = sign_in(port, "alice@example.com", passwords["alice@example.com"])
    assert page.status_code == 200
    assert str(page.url).startswith(f"http://localhost:{port}/")
    assert "alice@example.com" in page.text
    assert "Cf-Access-Authenticated-User-Email".lower() in page.text.lower()


def test_bob_gets_the_403_page(demo: tuple[int, dict[str, str]]) -> None:
    port, passwords = demo
    page = sign_in(port, "bob@example.com", passwords["bob@example.com"])
    assert page.status_code == 403
    assert "Demo app" in page.text


def test_a_wrong_password_does_not_get_in(demo: tuple[int, dict[str, str]]) -> None:
    port, _ = demo
    page = sign_in(port, "alice@example.com", "not-the-password")
    assert page.status_code == 401
    assert str(page.url).startswith(f"http://localhost:{port + 1}/")  # still at the IdP
    assert "cf-access-authenticated-user-email" not in page.text.lower()
