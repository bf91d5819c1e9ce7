"""The audit log (SPEC 7 `GET /api/logs/audit`): every change made through the admin API names
who made it, what and when; refused changes record nothing; it stays bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from admin_harness import admin_doc, assert_failure
from clock import FakeClock
from fake_okta import BASE, CLIENT_ID, CLIENT_SECRET, FakeOkta
from harness import EchoUpstream, running, sign_in

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.audit_log import AuditLog
from gateway.state.store import Store

IDP = {
    "name": "Okta <prod>",
    "type": "okta",
    "config": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "okta_account": BASE},
    "scim_config": {"enabled": True},
}


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(admin_doc(upstream.url)), store=store)) as app:
        yield app


async def audit(api: httpx.AsyncClient, query: str = "") -> list[dict[str, Any]]:
    answer = await api.get(f"/api/logs/audit{query}")
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["result"]
    return entries


async def test_every_api_change_is_recorded_newest_first(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/identity_providers", json=IDP)
    assert created.status_code == 201
    idp = created.json()["result"]
    secret = idp["scim_config"]["secret"]
    assert (await api.post(f"/api/identity_providers/{idp['id']}/refresh_scim_secret")).is_success
    token = await api.post("/api/service_tokens", json={"name": "ci"})
    assert (await api.delete(f"/api/service_tokens/{token.json()['result']['id']}")).is_success
    assert (await api.post("/api/keys/rotate")).is_success
    assert (await api.delete(f"/api/identity_providers/{idp['id']}")).is_success

    entries = await audit(api)
    assert [(e["action"], e["object_type"]) for e in entries] == [
        ("delete", "identity_provider"),
        ("rotate", "signing_key"),
        ("delete", "service_token"),
        ("create", "service_token"),
        ("regenerate_scim_secret", "identity_provider"),
        ("create", "identity_provider"),
    ]
    assert {e["actor"] for e in entries} == {"admin-api"}
    assert entries[-1]["object_id"] == idp["id"]
    assert entries[-1]["object_name"] == "Okta <prod>"
    assert entries[-1]["time"].endswith("Z")
    # names objects, never their secrets
    text = (await api.get("/api/logs/audit")).text
    assert secret not in text
    assert CLIENT_SECRET not in text
    assert token.json()["result"]["client_secret"] not in text
    assert len(await audit(api, "?limit=2")) == 2


async def test_a_refused_change_records_nothing(api: httpx.AsyncClient) -> None:
    bad = await api.post("/api/identity_providers", json={**IDP, "config": {}})
    assert_failure(bad, 400, "invalid_config")
    assert_failure(await api.delete("/api/identity_providers/okta-test"), 403, "read_only")
    assert_failure(await api.post("/api/service_tokens", json={"name": " "}), 400, "invalid_config")
    assert await audit(api) == []


async def test_the_limit_is_checked(api: httpx.AsyncClient) -> None:
    assert_failure(await api.get("/api/logs/audit?limit=0"), 400, "invalid_query")
    assert_failure(await api.get("/api/logs/audit?limit=x"), 400, "invalid_query")


async def test_the_log_keeps_its_newest_entries(store: Store) -> None:
    clock = FakeClock()
    log = AuditLog(store, clock, limit=3)
    for n in range(5):
        clock.advance(1)
        await log.record("alice@example.com", "update", "app", f"app-{n}", "Wiki")
    entries = await log.entries(10)
    assert [e["object_id"] for e in entries] == ["app-4", "app-3", "app-2"]
    assert entries[0] == {
        "time": "2025-11-30T00:00:05.000Z",
        "actor": "alice@example.com",
        "action": "update",
        "object_type": "app",
        "object_id": "app-4",
        "object_name": "Wiki",
    }


async def test_app_and_user_changes_are_recorded(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    body = {
        "name": "Grafana",
        "domain": "grafana.example.com",
        "upstream": upstream.url,
        "policies": [{"name": "All", "decision": "allow", "include": [{"everyone": {}}]}],
    }
    app = (await api.post("/api/apps", json=body)).json()["result"]
    assert (await api.put(f"/api/apps/{app['id']}", json={**body, "name": "Grafana 2"})).is_success
    assert (await api.post(f"/api/apps/{app['id']}/revoke_tokens")).is_success
    await sign_in(client, okta, "00ualice")
    revoked = await api.post("/api/revoke_user", json={"email": "alice@example.com"})
    assert revoked.is_success
    assert (await api.delete(f"/api/apps/{app['id']}")).is_success
    entries = await audit(api)
    assert [(e["action"], e["object_type"], e["object_name"]) for e in entries] == [
        ("delete", "app", "Grafana 2"),
        ("revoke_sessions", "user", "alice@example.com"),
        ("revoke_sessions", "app", "Grafana 2"),
        ("update", "app", "Grafana 2"),
        ("create", "app", "Grafana"),
    ]
