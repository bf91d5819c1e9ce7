"""SCIM requests refused for their secret or their identity provider (SPEC 6): a flood of them
from anywhere must not push Okta's real entries out of the provisioning log. They go to a
bounded failure record, a metric, and a per-client-network cap answered with a SCIM 429; a
correct secret is never limited."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, assert_failure, with_admin_token
from clock import FakeClock
from harness import IDP_ID, TEAM, EchoUpstream, running
from scim_harness import BASE, create_user, new_secret, runtime, scim_doc
from test_scim import assert_scim_error

from gateway.admin.openapi import build
from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.scim.auth_limit import FAILURES_PER_MINUTE
from gateway.state.provisioning_log import FAILURE_LIMIT
from gateway.state.store import Store

ATTACKER = "203.0.113.9"
OKTA = "198.51.100.20"


@pytest.fixture
def clock() -> FakeClock:
    """Now, at the start of a minute (so the window's arithmetic is exact)."""
    return FakeClock(time.time() // 60 * 60)


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, clock: FakeClock) -> AsyncIterator[Gateway]:
    doc = with_admin_token(scim_doc(upstream.url))
    async with running(create_app(parse_settings(doc), store=store, clock=clock)) as app:
        yield app


def scim_from(
    app: Gateway, address: str, secret: str | None, base_url: str = BASE
) -> httpx.AsyncClient:
    headers = {"Accept": "application/scim+json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers)


def failures_counted(app: Gateway, reason: str) -> float:
    line = f'gateway_scim_auth_failures_total{{reason="{reason}"}} '
    for text in runtime(app).metrics.render().decode().splitlines():
        if text.startswith(line):
            return float(text.removeprefix(line))
    return 0.0


async def test_a_flood_of_refusals_keeps_okta_entries(gateway: Gateway, clock: FakeClock) -> None:
    secret = await new_secret(gateway)
    log = runtime(gateway).provisioning_log
    async with scim_from(gateway, OKTA, secret) as okta:
        await create_user(okta)
        assert (await okta.get("/Users", params={"filter": 'userName eq "x"'})).status_code == 200
    real = await log.entries(None, 1000)
    assert [(e["method"], e["status"]) for e in real] == [("GET", 200), ("POST", 201)]

    statuses = []
    async with scim_from(gateway, ATTACKER, "not-the-secret") as attacker:
        for i in range(1000):
            response = await attacker.get(f"/Users/{i}")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert_scim_error(response, 429)
                assert 1 <= int(response.headers["retry-after"]) <= 60
            else:
                assert_scim_error(response, 401)
    assert statuses == [401] * FAILURES_PER_MINUTE + [429] * (1000 - FAILURES_PER_MINUTE)
    elsewhere = f"{TEAM}/populations/nope/scim/v2"
    async with scim_from(gateway, ATTACKER, secret, elsewhere) as unknown:
        for _ in range(20):
            assert_scim_error(await unknown.post("/Users", json={}), 429)

    # Okta's entries are all still there, in both logs; nothing of the flood is.
    assert await log.entries(None, 1000) == real
    assert await log.entries(IDP_ID, 1000) == real
    assert await log.entries("nope", 1000) == []

    failures = await log.auth_failures(None, 1000)
    assert len(failures) == FAILURE_LIMIT
    assert failures[0]["identity_provider_id"] == "nope"
    assert failures[0]["reason"] == "unknown_idp" and failures[0]["status"] == 429
    assert failures[0]["method"] == "POST" and failures[0]["client_ip"] == ATTACKER
    assert failures[-1]["reason"] == "wrong_secret" and failures[-1]["resource_type"] == "User"
    assert "not-the-secret" not in json.dumps(failures) and secret not in json.dumps(failures)
    assert failures_counted(gateway, "wrong_secret") == 1000
    assert failures_counted(gateway, "unknown_idp") == 20

    # The right secret from the limited address still works, and is not counted.
    async with scim_from(gateway, ATTACKER, secret) as same_address:
        users = await same_address.get("/Users")
        assert users.status_code == 200 and users.json()["totalResults"] == 1
    assert len(await log.entries(IDP_ID, 1000)) == 3

    # A minute later the address starts afresh.
    clock.advance(60)
    async with scim_from(gateway, ATTACKER, "not-the-secret") as attacker:
        assert_scim_error(await attacker.get("/Users"), 401)


async def test_each_reason_is_recorded(
    gateway: Gateway, store: Store, upstream: EchoUpstream
) -> None:
    async with scim_from(gateway, ATTACKER, None) as anonymous:
        assert_scim_error(await anonymous.get("/Groups"), 401)
    async with scim_from(gateway, ATTACKER, "wrong") as wrong:
        assert_scim_error(await wrong.get("/ServiceProviderConfig"), 401)
    async with (
        running(
            create_app(
                parse_settings(with_admin_token(scim_doc(upstream.url, enabled=False))), store=store
            )
        ) as off,
        scim_from(off, OKTA, "whatever") as client,
    ):
        assert_scim_error(await client.get("/Users"), 404)
        assert failures_counted(off, "scim_off") == 1
    failures = await runtime(gateway).provisioning_log.auth_failures(None, 10)
    assert [(f["reason"], f["status"], f["resource_type"]) for f in failures] == [
        ("scim_off", 404, "User"),
        ("wrong_secret", 401, "ServiceProviderConfig"),
        ("missing_secret", 401, "Group"),
    ]
    assert failures_counted(gateway, "missing_secret") == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_loopback_peers_are_not_limited(gateway: Gateway, address: str) -> None:
    """A local proxy not in trusted_proxies: every client would share its address."""
    async with scim_from(gateway, address, "wrong") as local:
        for _ in range(FAILURES_PER_MINUTE + 5):
            assert_scim_error(await local.get("/Users"), 401)


async def test_an_ipv6_64_shares_one_cap(gateway: Gateway) -> None:
    for i in range(FAILURES_PER_MINUTE):
        async with scim_from(gateway, f"2001:db8:1:2::{i + 1:x}", "wrong") as host:
            assert_scim_error(await host.get("/Users"), 401)
    async with scim_from(gateway, "2001:db8:1:2:ffff::1", "wrong") as neighbour:
        assert_scim_error(await neighbour.get("/Users"), 429)
    async with scim_from(gateway, "2001:db8:1:3::1", "wrong") as other_network:
        assert_scim_error(await other_network.get("/Users"), 401)


async def test_the_admin_api_shows_the_failure_record(gateway: Gateway) -> None:
    secret = await new_secret(gateway)
    async with scim_from(gateway, OKTA, secret) as okta:
        await create_user(okta)
    async with scim_from(gateway, ATTACKER, "wrong") as attacker:
        await attacker.get("/Users")
    async with scim_from(gateway, ATTACKER, "wrong", f"{TEAM}/populations/nope/scim/v2") as lost:
        await lost.get("/Users")
    async with admin_client(gateway) as api:
        log = (await api.get("/api/logs/scim")).json()["result"]
        assert [(e["method"], e["status"]) for e in log] == [("POST", 201)]
        assert "client_ip" not in log[0] and "reason" not in log[0]

        response = await api.get("/api/logs/scim", params={"auth_failures": "true"})
        assert response.status_code == 200
        failures = response.json()["result"]
        assert [(f["identity_provider_id"], f["reason"]) for f in failures] == [
            ("nope", "unknown_idp"),
            (IDP_ID, "wrong_secret"),
        ]
        assert set(failures[0]) == set(log[0]) | {"client_ip", "reason"}
        # What the OpenAPI document says of a log entry holds of these too.
        entry = build(TEAM)["components"]["schemas"]["ProvisioningLogEntry"]
        for failure in failures:
            assert set(entry["required"]) <= set(failure) <= set(entry["properties"])
            assert failure["reason"] in entry["properties"]["reason"]["enum"]
        assert failures[1]["outcome"] == "failure" and failures[1]["client_ip"] == ATTACKER
        one = await api.get("/api/logs/scim?auth_failures=true&identity_provider_id=nope&limit=5")
        assert [f["reason"] for f in one.json()["result"]] == ["unknown_idp"]
        limited = await api.get("/api/logs/scim?auth_failures=true&limit=1")
        assert len(limited.json()["result"]) == 1
        same = await api.get("/api/logs/scim?auth_failures=false")
        assert same.json()["result"] == log
        assert_failure(await api.get("/api/logs/scim?auth_failures=yes"), 400, "invalid_query")
