"""`gateway demo` as a newcomer runs it: a subprocess on real ports, a scripted browser.

alice (Engineering) signs in at the development IdP and reaches the echo upstream, which shows
her email; bob (Sales) gets the 403 page.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin

import httpx
import pytest
from demo_process import LoginForm, running_demo


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, dict[str, str]]]:
    with running_demo() as (port, passwords, output):
        assert any(f"http://localhost:{port}/" in line for line in output)
        yield port, passwords


def sign_in(port: int, email: str, password: str) -> httpx.Response:
    """Open the demo app in a fresh browser and sign in at the development IdP."""
    with httpx.Client(headers={"Accept": "text/html"}, follow_redirects=True, timeout=10) as web:
        form_page = web.get(f"http://localhost:{port}/")
        assert form_page.status_code == 200, form_page.text
        form = LoginForm(form_page.text)
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
