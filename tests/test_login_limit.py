"""Sign-in starts per client network are capped: a flood of login URLs cannot fill the store."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from clock import FakeClock
from fake_okta import FakeOkta
from harness import TEAM, WIKI, EchoUpstream, browser, running, settings_doc, sign_in

from gateway.app import Gateway, create_app
from gateway.authn.login_limit import STARTS_PER_MINUTE, client_network
from gateway.config import parse_settings
from gateway.state.store import Store


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same host's other addresses
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        # a local proxy not in trusted_proxies, local tooling: not counted
        ("127.0.0.1", None),
        ("::1", None),
        (None, None),  # a Unix socket peer
    ],
)
def test_starts_are_counted_per_address_and_per_ipv6_64(
    address: str | None, counted_as: str | None
) -> None:
    assert client_network(ipaddress.ip_address(address) if address else None) == counted_as


@pytest.fixture
def clock() -> FakeClock:
    """Now, at the start of a minute (so the window's arithmetic is exact)."""
    return FakeClock(time.time() // 60 * 60)


@pytest.fixture
def okta(okta: FakeOkta, clock: FakeClock) -> FakeOkta:
    """The shared FakeOkta, signing on the gateway's fake clock. On real time its ID tokens'
    iat runs up to 60 s ahead of this clock, and a sign-in that lands more than 60 s past the
    start of the minute (the fixture made late in a minute, a slow machine) was refused as an
    iat in the future."""
    okta.clock = clock
    return okta


@pytest_asyncio.fixture
async def gateway(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, clock: FakeClock
) -> AsyncIterator[Gateway]:
    settings = parse_settings(settings_doc(upstream.url))
    async with running(create_app(settings, store=store, clock=clock)) as app:
        yield app


async def login_url(client: httpx.AsyncClient) -> str:
    to_login = await client.get(f"{WIKI}/page")
    assert to_login.status_code == 302
    return str(to_login.headers["location"])


async def use_up_the_minute(
    client: httpx.AsyncClient, okta: FakeOkta, starts: int = STARTS_PER_MINUTE
) -> str:
    url = await login_url(client)
    for _ in range(starts):
        started = await client.get(url)
        assert started.headers["location"].startswith(okta.authorization_endpoint)
    return url


async def test_past_the_cap_a_start_is_refused_with_a_page_and_retry_after(
    gateway: Gateway, okta: FakeOkta, clock: FakeClock
) -> None:
    async with browser(gateway, WIKI, "198.51.100.4") as client:
        url = await use_up_the_minute(client, okta)
        clock.advance(20)

        refused = await client.get(url)

        assert refused.status_code == 429
        assert "text/html" in refused.headers["content-type"]
        assert "Too many sign-ins" in refused.text
        assert refused.headers["retry-after"] == "40"
        assert "location" not in refused.headers
        assert "cf_session" not in refused.headers.get("set-cookie", "").lower()


async def test_the_cap_is_per_network_and_per_minute(
    gateway: Gateway, okta: FakeOkta, clock: FakeClock
) -> None:
    async with (
        browser(gateway, WIKI, "198.51.100.4") as flooding,
        browser(gateway, WIKI, "198.51.100.5") as neighbour,
    ):
        url = await use_up_the_minute(flooding, okta)
        assert (await flooding.get(url)).status_code == 429

        assert (await neighbour.get(await login_url(neighbour))).status_code == 302
        clock.advance(60)
        assert (await flooding.get(url)).status_code == 302


async def test_a_loopback_peer_is_never_capped(gateway: Gateway, okta: FakeOkta) -> None:
    async with browser(gateway, WIKI, "127.0.0.1") as local:
        url = await use_up_the_minute(local, okta)

        assert (await local.get(url)).status_code == 302


async def test_an_untrusted_x_forwarded_for_does_not_get_around_the_cap(
    gateway: Gateway, okta: FakeOkta
) -> None:
    async with browser(gateway, WIKI, "198.51.100.4") as client:
        url = await use_up_the_minute(client, okta)

        spoofed = await client.get(url, headers={"X-Forwarded-For": "192.0.2.99"})

        assert spoofed.status_code == 429


async def test_the_test_page_counts_too(gateway: Gateway, okta: FakeOkta) -> None:
    async with browser(gateway, WIKI, "198.51.100.4") as client:
        await use_up_the_minute(client, okta)

        assert (await client.get(f"{TEAM}/test-idp?idp=okta-test")).status_code == 429


async def test_a_signed_in_user_still_gets_back_in_silently(
    gateway: Gateway, okta: FakeOkta
) -> None:
    async with (
        browser(gateway, WIKI, "198.51.100.4") as alice,
        browser(gateway, WIKI, "198.51.100.4") as flooding,
    ):
        assert (await sign_in(alice, okta, "00ualice")).status_code == 302
        await use_up_the_minute(flooding, okta, STARTS_PER_MINUTE - 1)  # alice's was one
        assert (await flooding.get(await login_url(flooding))).status_code == 429
        alice.cookies.delete("CF_Authorization", domain="wiki.example.com")  # app session gone

        to_login = await alice.get(f"{WIKI}/more")
        carried = await alice.get(to_login.headers["location"])

        assert carried.status_code == 302
        assert carried.headers["location"].startswith(f"{WIKI}/cdn-cgi/access/authorized")
