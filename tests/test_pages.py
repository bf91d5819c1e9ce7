"""The pages browsers see: result pages that survive a reload, words for the end user, the
operator's branding on every page, and a templates directory that replaces a page.

A sign-in that ends in access denied, and the IdP test's outcome, used to be rendered at the
callback URL, where a reload could only say "this sign-in link has expired". Now the callback
keeps the page for a few minutes and sends the browser to a URL of its own.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, EchoUpstream, browser, running, settings_doc, start_sign_in

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore
from gateway.web.pages import RESULT_TTL

# A 1x1 transparent PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@contextlib.asynccontextmanager
async def serve(store: Store, doc: dict[str, Any]) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(doc), store=store)) as app:
        yield app


async def denied_sign_in(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.Response:
    """Bob (not in Engineering) signs in to the team-host app: the callback's answer."""
    authorize = await start_sign_in(client, "/docs")
    return await client.get(okta.authorize(authorize, "00ubob"))


def visible(page: httpx.Response) -> str:
    return html.unescape(page.text)


# --- refresh-safe result pages --------------------------------------------------------------


async def test_a_denied_sign_in_ends_on_a_page_that_can_be_reloaded(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    callback = await denied_sign_in(client, okta)
    assert callback.status_code == 302
    location = callback.headers["location"]
    assert re.fullmatch(r"/cdn-cgi/access/denied/[\w-]{20,}", location)
    first = await client.get(location)
    again = await client.get(location)  # a reload
    assert first.status_code == again.status_code == 403
    assert first.text == again.text
    page = visible(first)
    assert "You do not have access to" in page and "Team Docs" in page
    assert "Ask #it-help for access." in page
    assert "expired" not in page
    # What the user can do: sign in again (after a group change) or try again; a reference.
    assert f"/cdn-cgi/access/logout?returnTo={TEAM.replace(':', '%3A').replace('/', '%2F')}" in page
    assert "Try again</a>" in page
    assert re.search(r'helpdesk: <span class="ref">[\w-]+</span>', page)
    # Operator detail stays out of the user's page: no policy or rule is named.
    assert "Engineering" not in page
    assert upstream.requests == []


async def test_an_expired_or_unknown_denied_page_says_so_in_words(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/cdn-cgi/access/denied/no-such-page")
    assert response.status_code == 404
    assert "This page has expired" in response.text


async def test_the_test_result_can_be_reloaded_and_shared_but_not_for_long(
    upstream: EchoUpstream, okta: FakeOkta, clock: Any
) -> None:
    store = MemoryStore(clock=clock)
    async with serve(store, settings_doc(upstream.url)) as app:
        async with browser(app) as tester, browser(app) as colleague:
            start = await tester.get(f"/test-idp?idp={IDP_ID}")
            callback = await tester.get(okta.authorize(start.headers["location"], "00ualice"))
            assert callback.status_code == 302
            location = callback.headers["location"]
            assert location.startswith("/test-idp/result/")
            first = await tester.get(location)
            again = await tester.get(location)
            shared = await colleague.get(location)  # no cookie of the tester's
            assert first.status_code == again.status_code == shared.status_code == 200
            assert first.text == again.text == shared.text
            assert "Your connection works!" in first.text
            raw_id_token = okta.routes["token"].calls.last.response.json()["id_token"]
            assert raw_id_token.split(".")[2] not in first.text  # claims, never the token
            clock.advance(RESULT_TTL + 1)
            gone = await colleague.get(location)
            assert gone.status_code == 404
            assert "Run the test again" in gone.text
    await store.close()


async def test_without_a_valid_idp_the_test_page_lists_the_idps_to_test(
    client: httpx.AsyncClient,
) -> None:
    for url, status in (("/test-idp", 400), ("/test-idp?idp=nope", 404)):
        response = await client.get(url)
        assert response.status_code == status
        assert f'href="/test-idp?idp={IDP_ID}"' in response.text
        assert "Test Okta" in response.text


# --- words for the reader -------------------------------------------------------------------


async def test_an_error_page_gives_the_user_a_reference_and_keeps_advice_for_the_operator(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    authorize = await start_sign_in(client, "/docs")
    okta.routes["token"].respond(401, json={"error": "invalid_client"})
    response = await client.get(okta.authorize(authorize, "00ualice"))
    assert response.status_code >= 400
    page = visible(response)
    assert re.search(r'helpdesk: <span class="ref">[0-9a-f]+</span>', page)
    assert "<summary>Details for your administrator</summary>" in page


# --- branding and templates -----------------------------------------------------------------


def branded_doc(upstream: str, tmp_path: Path, **extra: str) -> dict[str, Any]:
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    doc = settings_doc(upstream)
    doc["gateway"].update(
        name="Example Corp Access", logo=str(logo), footer="IT helpdesk: extension 4242", **extra
    )
    return doc


async def test_branding_appears_on_every_page(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, tmp_path: Path
) -> None:
    doc = branded_doc(upstream.url, tmp_path)
    doc["apps"][1]["auto_redirect_to_identity"] = False  # the wiki shows the IdP picker
    async with serve(store, doc) as app, browser(app) as client:
        denied_at = (await denied_sign_in(client, okta)).headers["location"]
        pages = {
            "denied": await client.get(denied_at),
            "signed out": await client.get("/cdn-cgi/access/logout"),
            "error": await client.get("https://nowhere.example.com/"),
            "test chooser": await client.get("/test-idp"),
        }
        async with browser(app, "https://wiki.example.com") as wiki:
            login = (await wiki.get("/")).headers["location"]
        pages["picker"] = await client.get(login)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    for name, page in pages.items():
        assert "text/html" in page.headers["content-type"], name
        assert "Example Corp Access" in page.text, name
        assert f'src="{data_url}"' in page.text, name
        assert "IT helpdesk: extension 4242" in page.text, name
        assert "img-src data:" in page.headers["content-security-policy"], name


async def test_a_template_in_templates_dir_replaces_that_page_only(
    store: Store, upstream: EchoUpstream, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "signed_out.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>See you soon</h1>{% endblock %}'
    )
    doc = branded_doc(upstream.url, tmp_path, templates_dir=str(templates))
    async with serve(store, doc) as app, browser(app) as client:
        signed_out = await client.get("/cdn-cgi/access/logout")
        other = await client.get("https://nowhere.example.com/")
    assert "<h1>See you soon</h1>" in signed_out.text
    assert "Example Corp Access" in signed_out.text  # the packaged base.html, still branded
    assert "No application is served at this address." in other.text  # not replaced


def test_branding_keys_are_checked(tmp_path: Path) -> None:
    doc = settings_doc("http://127.0.0.1:9")
    doc["gateway"].update(
        logo=str(tmp_path / "missing.png"), templates_dir=str(tmp_path / "missing")
    )
    try:
        parse_settings(doc)
    except Exception as exc:
        problems = getattr(exc, "problems", [])
    else:
        problems = []
    assert any(p.startswith("gateway.logo: no such file") for p in problems), problems
    assert any(p.startswith("gateway.templates_dir: no such directory") for p in problems)
