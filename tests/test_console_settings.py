"""The console's Settings page (SPEC 9): session durations, key rotation, service tokens whose
secret is shown once, each change through the admin API's code path and in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from console_harness import console_doc, console_sign_in, csrf_of, post_form
from fake_okta import FakeOkta
from harness import EchoUpstream, running

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.store import Store

TOKENS = "/console/settings/service-tokens"


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def alice(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.AsyncClient:
    assert (await console_sign_in(client, okta, "00ualice")).status_code == 200
    return client


async def test_settings_show_the_session_durations(alice: httpx.AsyncClient) -> None:
    page = await alice.get("/console/settings")
    assert page.status_code == 200
    assert "<td>Team domain (global)</td><td>24h</td>" in page.text
    assert ">Wiki</a></td><td>1h</td>" in page.text


async def test_a_service_token_is_created_with_its_secret_shown_once(
    alice: httpx.AsyncClient, api: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    page = await alice.get("/console/settings")
    created = await post_form(
        alice, TOKENS, {"name": "ci <bot>", "duration": "720h"}, csrf=csrf_of(page)
    )
    assert created.status_code == 200
    assert "shown this once" in created.text
    client_id = created.text.split('id="client-id" value="')[1].split('"')[0]
    secret = created.text.split('id="client-secret" value="')[1].split('"')[0]
    listed = (await api.get("/api/service_tokens")).json()["result"]
    assert [(t["name"], t["client_id"], t["duration"]) for t in listed] == [
        ("ci <bot>", client_id, "720h")
    ]
    again = await alice.get("/console/settings")
    assert secret not in again.text
    assert "ci &lt;bot&gt;" in again.text
    audit = (await api.get("/api/logs/audit")).json()["result"]
    assert (audit[0]["actor"], audit[0]["action"], audit[0]["object_type"]) == (
        "alice@example.com",
        "create",
        "service_token",
    )


async def test_a_bad_service_token_is_refused_next_to_its_field(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/settings")
    refused = await post_form(alice, TOKENS, {"name": " ", "duration": "soon"}, csrf=csrf_of(page))
    assert refused.status_code == 400
    assert 'id="name-error">must be a non-empty string<' in refused.text
    assert 'id="duration-error">' in refused.text
    assert 'value="soon"' in refused.text
    assert (await api.get("/api/service_tokens")).json()["result"] == []


async def test_a_service_token_is_deleted_after_confirmation(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/settings")
    await post_form(alice, TOKENS, {"name": "ci", "duration": ""}, csrf=csrf_of(page))
    token_id = (await api.get("/api/service_tokens")).json()["result"][0]["id"]
    url = f"{TOKENS}/{token_id}/delete"
    asked = await post_form(alice, url, {}, csrf=csrf_of(page))
    assert "Delete this service token?" in asked.text
    assert len((await api.get("/api/service_tokens")).json()["result"]) == 1
    done = await post_form(alice, url, {"confirm": "yes"}, csrf=csrf_of(page))
    assert done.status_code == 303
    assert (await api.get("/api/service_tokens")).json()["result"] == []


async def test_rotating_the_keys_publishes_a_new_one(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    before = {k["kid"] for k in (await api.get("/api/keys")).json()["result"]}
    page = await alice.get("/console/settings")
    rotated = await post_form(alice, "/console/settings/keys/rotate", {}, csrf=csrf_of(page))
    assert rotated.status_code == 200
    assert "Rotated" in rotated.text
    keys = (await api.get("/api/keys")).json()["result"]
    current = next(k["kid"] for k in keys if k["current"])
    assert current not in before
    assert current in rotated.text
    certs = (await alice.get("/cdn-cgi/access/certs")).json()
    assert current in {k["kid"] for k in certs["keys"]}
    audit = (await api.get("/api/logs/audit")).json()["result"]
    assert (audit[0]["action"], audit[0]["object_id"]) == ("rotate", current)


async def test_a_rotation_without_the_token_changes_nothing(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    before = (await api.get("/api/keys")).json()["result"]
    assert (
        await post_form(alice, "/console/settings/keys/rotate", {}, csrf=None)
    ).status_code == 403
    assert (await api.get("/api/keys")).json()["result"] == before
