"""Risk levels through the gateway: a `user_risk_score` rule judged on every request, the
behaviours counted where the proxy and the sign-in already refuse, and `/api/zt_risk_scoring`
with its bad inputs."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest_asyncio
from admin_harness import admin_client, assert_failure, with_admin_token
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, EchoUpstream, browser, running, settings_doc, sign_in

from gateway.app import Gateway, create_app
from gateway.config import app_aud, parse_settings
from gateway.identity import user_uuid_for
from gateway.state.store import Store

ALICE = user_uuid_for(IDP_ID, "00ualice")
RISK = "/api/zt_risk_scoring"


def risk_doc(upstream: str) -> dict[str, Any]:
    """The team app lets in engineers only while their risk level is low; `/admin` on the same
    host is Bob's alone, so Alice is refused there by policy."""
    doc = with_admin_token(settings_doc(upstream))
    team = doc["apps"][0]
    team["policies"][0]["require"] = [{"user_risk_score": {"user_risk_score": ["low"]}}]
    doc["apps"].append(
        {
            "id": "admin-pages",
            "name": "Admin pages",
            "domain": "access.example.com/admin",
            "upstream": upstream,
            "policies": [
                {"name": "Bob", "decision": "allow", "include": [{"email": {"email": "bob@x"}}]}
            ],
        }
    )
    return doc


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(risk_doc(upstream.url)), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(gateway) as client:
        yield client


async def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_a_user_who_trips_a_behaviour_is_refused_until_a_reset(
    client: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    done = await sign_in(client, okta, "00ualice", "/docs")
    assert done.status_code == 302
    assert (await client.get("/docs")).status_code == 200
    for _ in range(9):
        assert (await client.get("/admin/x")).status_code == 403
    assert (await client.get("/docs")).status_code == 200  # nine: not yet
    assert (await client.get("/admin/x")).status_code == 403
    refused = await client.get("/docs")
    assert refused.status_code == 403
    assert "Access denied" in refused.text

    user = await result(await api.get(f"{RISK}/{ALICE}"))
    assert user["email"] == "alice@example.com" and user["name"] == "Alice Example"
    assert user["risk_level"] == "medium"
    assert user["last_reset_time"] is None
    (event,) = user["events"]
    assert event["name"] == "repeated_denials" and event["risk_level"] == "medium"
    assert event["event_details"] == {"app": "admin-pages"}
    summary = await result(await api.get(f"{RISK}/summary"))
    assert [(u["user_id"], u["max_risk_level"], u["event_count"]) for u in summary["users"]] == [
        (ALICE, "medium", 1)
    ]

    (why,) = await result(await api.get("/api/apps/team-app/explain?email=alice@example.com"))
    assert why["allowed"] is False
    assert "user risk level is one of low" in why["rule"]

    reset = await result(await api.post(f"{RISK}/{ALICE}/reset"))
    assert reset["risk_level"] == "low" and reset["events"] == []
    assert reset["last_reset_time"] is not None
    assert (await client.get("/docs")).status_code == 200
    assert (await result(await api.get(f"{RISK}/summary"))) == {"users": []}


async def test_refusals_at_sign_in_count_as_denials(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert gateway.runtime is not None
    bob = user_uuid_for(IDP_ID, "00ubob")  # not in Engineering: the team app refuses him
    denied = await sign_in(client, okta, "00ubob", "/docs")
    assert denied.status_code == 403
    # With his global session, each visit of the sign-in link is judged again, and refused.
    login = f"/cdn-cgi/access/login/access.example.com?kid={app_aud('team-app')}&redirect_url=/"
    for _ in range(8):
        assert (await client.get(login)).headers["location"].startswith("/cdn-cgi/access/denied/")
    assert await gateway.runtime.risk.level(bob) == "low"
    await client.get(login)
    assert await gateway.runtime.risk.level(bob) == "medium"


async def test_failed_sign_ins_after_the_idp_named_the_user_count(
    gateway: Gateway, client: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert gateway.runtime is not None
    risk = gateway.runtime.risk
    okta.id_token_claims = {"email": None}  # the IdP proves who it is, but sends no address
    okta.userinfo_claims = {"email": None}
    for _ in range(4):
        assert (await sign_in(client, okta, "00ualice", "/docs")).status_code == 400
    assert await risk.level(ALICE) == "low"
    assert (await sign_in(client, okta, "00ualice", "/docs")).status_code == 400
    assert await risk.level(ALICE) == "medium"
    okta.id_token_claims = {}
    okta.userinfo_claims = {}
    refused = await sign_in(client, okta, "00ualice", "/docs")
    assert refused.status_code == 403  # signed in now, but the rule wants a low level
    user = await result(await api.get(f"{RISK}/{ALICE}"))
    assert user["risk_level"] == "medium"
    assert [e["name"] for e in user["events"]] == ["failed_sign_ins"]


async def test_a_failure_before_the_idp_named_anyone_counts_for_nobody(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert gateway.runtime is not None
    okta.id_token_signer = "foreign_key"  # a bad signature: nobody is proven
    for _ in range(6):
        assert (await sign_in(client, okta, "00ualice", "/docs")).status_code >= 400
    assert await gateway.runtime.risk.summary() == []


async def test_a_user_whom_scim_deactivated_is_refused_and_turns_high(
    gateway: Gateway, client: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert (await sign_in(client, okta, "00ualice", "/docs")).status_code == 302
    assert gateway.runtime is not None
    facts = {"id": "scim-1", "userName": "alice@example.com", "active": False}
    await gateway.runtime.registry.provisioned(IDP_ID, facts)
    client.cookies.clear()
    refused = await sign_in(client, okta, "00ualice", "/docs")
    assert refused.status_code == 403
    assert "deactivated" in refused.text
    user = await result(await api.get(f"{RISK}/{ALICE}"))
    assert user["risk_level"] == "high"
    assert {e["name"] for e in user["events"]} == {"scim_deprovisioned_sign_in"}


async def test_a_deactivated_user_who_never_signed_in_is_known_by_their_events(
    gateway: Gateway, client: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert gateway.runtime is not None
    facts = {"id": "scim-2", "userName": "bob@example.com", "externalId": "00ubob"}
    await gateway.runtime.registry.provisioned(IDP_ID, {**facts, "active": False})
    assert (await sign_in(client, okta, "00ubob", "/docs")).status_code == 403
    bob = user_uuid_for(IDP_ID, "00ubob")
    user = await result(await api.get(f"{RISK}/{bob}"))
    assert (user["email"], user["risk_level"]) == ("bob@example.com", "high")
    assert (await result(await api.post(f"{RISK}/{bob}/reset")))["risk_level"] == "low"
    assert (await api.get("/api/users")).json()["result"] == []  # no sign-in, no seat


# --- the behaviours through the API --------------------------------------------------------


async def test_behaviours_are_read_and_changed(api: httpx.AsyncClient) -> None:
    behaviors = (await result(await api.get(f"{RISK}/behaviors")))["behaviors"]
    assert {n: (b["enabled"], b["risk_level"]) for n, b in behaviors.items()} == {
        "repeated_denials": (True, "medium"),
        "failed_sign_ins": (True, "medium"),
        "new_network": (False, "low"),
        "scim_deprovisioned_sign_in": (True, "high"),
    }
    assert behaviors["new_network"]["name"] == "new_network"
    assert "30 days" in behaviors["new_network"]["description"]
    body = {"behaviors": {"new_network": {"enabled": True, "risk_level": "high"}}}
    changed = (await result(await api.put(f"{RISK}/behaviors", json=body)))["behaviors"]
    assert changed["new_network"] == {"enabled": True, "risk_level": "high"}
    assert changed["repeated_denials"] == {"enabled": True, "risk_level": "medium"}
    again = (await result(await api.get(f"{RISK}/behaviors")))["behaviors"]
    assert (again["new_network"]["enabled"], again["new_network"]["risk_level"]) == (True, "high")


async def test_bad_behaviour_changes_are_refused_and_change_nothing(
    api: httpx.AsyncClient,
) -> None:
    before = await result(await api.get(f"{RISK}/behaviors"))
    good = {"enabled": True, "risk_level": "high"}
    cases: list[tuple[Any, list[str]]] = [
        ({}, ["behaviors: is required"]),
        ({"behaviors": [], "extra": 1}, ["extra: unknown key", "behaviors: must be an object"]),
        (
            {"behaviors": {"new_network": good, "typo": good}},
            [
                "behaviors.typo: unknown behavior (known: repeated_denials, failed_sign_ins, "
                "new_network, scim_deprovisioned_sign_in)"
            ],
        ),
        (
            {"behaviors": {"new_network": {"enabled": "yes", "risk_level": "severe"}}},
            [
                "behaviors.new_network.enabled: must be true or false",
                "behaviors.new_network.risk_level: must be one of low, medium, high",
            ],
        ),
        (
            {"behaviors": {"new_network": {"risk_level": "low", "x": 1}}},
            [
                "behaviors.new_network.x: unknown key",
                "behaviors.new_network.enabled: must be true or false",
            ],
        ),
        ({"behaviors": {"new_network": 5}}, ["behaviors.new_network: must be an object"]),
    ]
    for body, problems in cases:
        answer = await api.put(f"{RISK}/behaviors", json=body)
        assert assert_failure(answer, 400, "invalid_config") == problems, body
    not_json = await api.put(
        f"{RISK}/behaviors", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert_failure(not_json, 415, "unsupported_media_type")
    assert await result(await api.get(f"{RISK}/behaviors")) == before


async def test_unknown_users_and_missing_tokens(gateway: Gateway, api: httpx.AsyncClient) -> None:
    unknown = user_uuid_for(IDP_ID, "00unobody")
    assert_failure(await api.get(f"{RISK}/{unknown}"), 404, "not_found")
    assert_failure(await api.post(f"{RISK}/{unknown}/reset"), 404, "not_found")
    assert_failure(await api.delete(f"{RISK}/summary"), 405, "method_not_allowed")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url=TEAM
    ) as anonymous:
        for path in ("/behaviors", "/summary", f"/{ALICE}"):
            assert_failure(await anonymous.get(RISK + path), 401, "unauthorized")


async def test_a_user_who_signed_in_has_a_low_level_and_no_events(
    client: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    await sign_in(client, okta, "00ualice", "/docs")
    user = await result(await api.get(f"{RISK}/{ALICE}"))
    assert (user["risk_level"], user["events"], user["last_reset_time"]) == ("low", [], None)
    assert (await result(await api.post(f"{RISK}/{ALICE}/reset")))["risk_level"] == "low"


class _Counting:
    """The store, counting the calls made to it (each is one round trip to Redis)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attribute(*args, **kwargs)

        return counted


async def test_an_allowed_request_judged_on_risk_costs_one_store_call(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    """The hot path's budget: the level comes with the session record, and nothing is counted
    for an allowed request (brief: at most one Redis round trip per request)."""
    counting = _Counting(store)
    settings = parse_settings(risk_doc(upstream.url))
    async with running(create_app(settings, store=cast(Store, counting))) as app:
        async with browser(app) as client:
            assert (await sign_in(client, okta, "00ualice", "/docs")).status_code == 302
            assert (await client.get("/docs")).status_code == 200  # mints the app token
            counting.calls.clear()
            for _ in range(3):
                assert (await client.get("/docs")).status_code == 200
            assert counting.calls == ["get"] * 3
