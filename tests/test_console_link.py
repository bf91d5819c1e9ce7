"""`gateway console-link` (SPEC 1, 9): a one-time URL, valid 10 minutes, that signs the operator
in to the console as a break-glass administrator: once, across instances, never into an app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, instance
from clock import FakeClock
from console_harness import console_doc, csrf_of, post_form
from fake_okta import BASE, CLIENT_ID, CLIENT_SECRET, FakeOkta
from harness import TEAM, EchoUpstream, browser, running

from gateway.app import Gateway, create_app
from gateway.cli import main
from gateway.config import parse_settings
from gateway.console import link
from gateway.state.store import Store


@pytest_asyncio.fixture
async def gateway(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, clock: FakeClock
) -> AsyncIterator[Gateway]:
    # No [console.policy]: nobody signs in to the console; only a link opens it.
    settings = parse_settings(console_doc(upstream.url, policy=None))
    async with running(create_app(settings, store=store, clock=clock)) as app:
        yield app


async def follow_link(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """Open the link, press its button; the answer to the button's POST."""
    page = await client.get(url.removeprefix(TEAM))
    assert page.status_code == 200
    assert 'action="/console/link"' in page.text
    token = page.text.split('name="token" value="')[1].split('"')[0]
    return await post_form(client, "/console/link", {"token": token}, csrf=None)


async def test_a_link_works_once(gateway: Gateway, store: Store, clock: FakeClock) -> None:
    url = link.link_url(TEAM, await link.issue(store, clock))
    async with browser(gateway) as first, browser(gateway) as second:
        assert (await first.get("/console/")).status_code == 401
        answer = await follow_link(first, url)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/"
        home = await first.get("/console/")
        assert home.status_code == 200
        assert "console-link" in home.text
        again = await follow_link(second, url)
        assert again.status_code == 403
        assert "expired or was already used" in again.text
        assert (await second.get("/console/")).status_code == 401


async def test_a_link_expires_after_10_minutes(
    gateway: Gateway, store: Store, clock: FakeClock
) -> None:
    fresh = link.link_url(TEAM, await link.issue(store, clock))
    stale = link.link_url(TEAM, await link.issue(store, clock))
    clock.advance(599)
    async with browser(gateway) as client:
        assert (await follow_link(client, fresh)).status_code == 303
    clock.advance(2)  # 601 s after it was made
    async with browser(gateway) as client:
        assert (await follow_link(client, stale)).status_code == 403
        assert (await client.get("/console/")).status_code == 401


async def test_opening_the_link_does_not_spend_it(
    gateway: Gateway, store: Store, clock: FakeClock
) -> None:
    url = link.link_url(TEAM, await link.issue(store, clock))
    async with browser(gateway) as preview, browser(gateway) as client:
        assert (await preview.get(url.removeprefix(TEAM))).status_code == 200  # a link preview
        assert (await follow_link(client, url)).status_code == 303


async def test_a_link_is_refused_from_another_origin_and_unknown_tokens_fail(
    gateway: Gateway, store: Store, clock: FakeClock
) -> None:
    token = await link.issue(store, clock)
    async with browser(gateway) as client:
        foreign = await post_form(
            client, "/console/link", {"token": token}, csrf=None, origin="https://evil.example"
        )
        assert foreign.status_code == 403
        wrong = await post_form(client, "/console/link", {"token": "x" * 43}, csrf=None)
        assert wrong.status_code == 403
        # the refused foreign POST did not spend it
        assert (await post_form(client, "/console/link", {"token": token}, csrf=None)).is_redirect


async def test_an_oversized_link_form_is_refused_unread(
    gateway: Gateway, store: Store, clock: FakeClock
) -> None:
    """`POST /console/link` is public: its body is bounded like every other form's (413), not
    read whole into memory, and a refused one does not spend the link."""
    token = await link.issue(store, clock)
    async with browser(gateway) as client:
        huge = await post_form(
            client, "/console/link", {"token": token, "pad": "x" * 2**20}, csrf=None
        )
        assert huge.status_code == 413
        assert (await client.get("/console/")).status_code == 401
        assert (await post_form(client, "/console/link", {"token": token}, csrf=None)).is_redirect


async def test_a_link_session_opens_no_app_and_is_named_console_link_in_the_audit_log(
    gateway: Gateway, store: Store, clock: FakeClock
) -> None:
    url = link.link_url(TEAM, await link.issue(store, clock))
    async with browser(gateway) as client, admin_client(gateway) as api:
        await follow_link(client, url)
        # the team host's app and get-identity do not take it for a sign-in
        app = await client.get("/docs/page")
        assert app.status_code == 302
        assert "/cdn-cgi/access/login/" in app.headers["location"]
        assert (await client.get("/cdn-cgi/access/get-identity")).status_code == 401
        page = await client.get("/console/identity-providers/new")
        form = {
            "type": "okta",
            "name": "First Okta",
            "config.client_id": CLIENT_ID,
            "config.client_secret": CLIENT_SECRET,
            "config.okta_account": BASE,
        }
        added = await post_form(client, "/console/identity-providers/new", form, csrf=csrf_of(page))
        assert added.status_code == 303
        audit = (await api.get("/api/logs/audit")).json()["result"]
        assert (audit[0]["actor"], audit[0]["action"]) == ("console-link", "create")
        # signing out ends it
        await client.get("/cdn-cgi/access/logout")
        assert (await client.get("/console/")).status_code == 401


def test_the_command_prints_a_link_another_instance_honours(
    tmp_path: Path, redis_url: str, upstream: EchoUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = console_doc(upstream.url, policy=None)
    doc["gateway"]["store"] = redis_url
    config = tmp_path / "gateway.toml"
    config.write_text(_toml(doc), encoding="utf-8")
    assert main(["console-link", "--config", str(config)]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{TEAM}/console/link?token=")

    async def redeem_twice() -> tuple[int, int]:
        async with instance(redis_url, doc) as one, instance(redis_url, doc) as two:
            async with browser(one) as a, browser(two) as b:
                return (await follow_link(a, url)).status_code, (
                    await follow_link(b, url)
                ).status_code

    assert asyncio.run(redeem_twice()) == (303, 403)


def test_the_command_refuses_the_memory_store(
    tmp_path: Path, upstream: EchoUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(_toml(console_doc(upstream.url, policy=None)), encoding="utf-8")
    assert main(["console-link", "--config", str(config)]) == 1
    assert "memory" in capsys.readouterr().err


def _toml(doc: dict[str, object]) -> str:
    """The document's `[gateway]` table as a config file (all the command reads of it); its
    values are strings and booleans, which JSON and TOML write alike."""
    lines: list[str] = []
    gateway = doc["gateway"]
    assert isinstance(gateway, dict)
    lines.append("[gateway]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in gateway.items()]
    return "\n".join(lines) + "\n"


async def test_the_first_setup_starts_with_a_link_and_the_overview_says_what_is_next(
    store: Store, upstream: EchoUpstream, clock: FakeClock
) -> None:
    doc = console_doc(upstream.url, policy=None)
    doc["identity_providers"] = []
    async with (
        running(create_app(parse_settings(doc), store=store, clock=clock)) as app,
        browser(app) as client,
    ):
        first = await client.get("/console/")
        assert "No login method is set up yet" in first.text
        assert "gateway console-link" in first.text
        await follow_link(client, link.link_url(TEAM, await link.issue(store, clock)))
        overview = await client.get("/console/")
        assert (
            'href="/console/identity-providers/new">Add a login method (Okta)</a>' in overview.text
        )
        assert "[console.policy]" in overview.text
