"""`/api/service_tokens` and `/api/keys`: machine credentials, and the app-token signing keys.

A service token made over the API opens an app whose policy (also made over the API) names it,
and its secret is shown once. A key rotation is visible on every instance at the next request.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, admin_doc, assert_failure, instance
from fake_okta import FakeOkta
from harness import WIKI, EchoUpstream, browser, running

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.store import Store

CI = "https://ci.example.com"
PRIVATE_JWK_FIELDS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(admin_doc(upstream.url)), store=store)) as app:
        yield app


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def at(timestamp: str) -> float:
    return datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


# --- service tokens -------------------------------------------------------------------------


async def test_a_service_token_made_over_the_api_opens_an_app_that_names_it(
    gateway: Gateway, api: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    created = await api.post("/api/service_tokens", json={"name": "CI deploys"})
    assert created.status_code == 201, created.text
    token = created.json()["result"]
    assert set(token) == {
        "id",
        "name",
        "client_id",
        "client_secret",
        "created_at",
        "expires_at",
        "duration",
    }
    assert token["name"] == "CI deploys" and token["duration"] == "8760h"
    assert at(token["expires_at"]) - at(token["created_at"]) == 8760 * 3600
    policy = {
        "name": "CI",
        "decision": "non_identity",
        "include": [{"service_token": {"token_id": token["id"]}}],
    }
    app = {"domain": "ci.example.com", "upstream": upstream.url, "policies": [policy]}
    assert (await api.post("/api/apps", json=app)).status_code == 201
    credentials = {"CF-Access-Client-Id": token["client_id"], "CF-Access-Client-Secret": ""}
    async with browser(gateway, CI) as machine:
        wrong = await machine.get(f"{CI}/deploy", headers=credentials)
        assert wrong.status_code == 401
        credentials["CF-Access-Client-Secret"] = token["client_secret"]
        assert (await machine.get(f"{CI}/deploy", headers=credentials)).status_code == 200

        listed = await api.get("/api/service_tokens")
        public = {k: v for k, v in token.items() if k != "client_secret"}
        assert listed.json()["result"] == [public]
        assert token["client_secret"] not in listed.text

        deleted = await api.delete(f"/api/service_tokens/{token['id']}")
        assert deleted.status_code == 200 and deleted.json()["result"] == {"id": token["id"]}
        assert (await machine.get(f"{CI}/deploy", headers=credentials)).status_code == 401
    assert (await api.get("/api/service_tokens")).json()["result"] == []
    again = await api.delete(f"/api/service_tokens/{token['id']}")
    assert assert_failure(again, 404, "not_found") == [f"No service token with id {token['id']!r}."]


async def test_service_token_durations(api: httpx.AsyncClient) -> None:
    forever = await api.post("/api/service_tokens", json={"name": "a", "duration": "forever"})
    assert forever.json()["result"]["expires_at"] is None
    assert forever.json()["result"]["duration"] == "forever"
    hour = await api.post("/api/service_tokens", json={"name": "b", "duration": "1h30m"})
    result = hour.json()["result"]
    assert result["duration"] == "1h30m"
    assert at(result["expires_at"]) - at(result["created_at"]) == 5400


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({}, ["name: is required"]),
        ({"name": "  "}, ["name: must be a non-empty string"]),
        ({"name": 5}, ["name: must be a non-empty string"]),
        ({"name": "x" * 201}, ["name: must be at most 200 characters"]),
        (
            {"name": "a", "duration": "soon"},
            ["duration: invalid duration 'soon' (use e.g. '24h', '30m', '1h30m')"],
        ),
        (
            {"name": "a", "duration": 3600},
            ["duration: must be a duration such as '8760h', or 'forever'"],
        ),
        ({"name": "a", "duration": "0s"}, ["duration: must be positive"]),
        ({"name": "a", "duration": "87601h"}, ["duration: must be at most 87600h"]),
        (
            {"name": "a", "client_secret": "mine", "id": "x"},
            [
                "client_secret: unknown key",
                "id: unknown key",
            ],
        ),
    ],
)
async def test_invalid_service_token_bodies(
    api: httpx.AsyncClient, body: dict[str, Any], problems: list[str]
) -> None:
    response = await api.post("/api/service_tokens", json=body)
    assert assert_failure(response, 400, "invalid_config") == problems
    assert (await api.get("/api/service_tokens")).json()["result"] == []


# --- signing keys ---------------------------------------------------------------------------


def assert_public(keys: list[dict[str, Any]]) -> None:
    for key in keys:
        assert not PRIVATE_JWK_FIELDS & set(key["jwk"]), key["jwk"]
        assert "PRIVATE" not in key["cert"]


async def test_keys_are_listed_by_their_public_halves(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    keys = (await api.get("/api/keys")).json()["result"]
    assert len(keys) == 1 and keys[0]["current"] is True and keys[0]["retired_at"] is None
    assert_public(keys)
    certs = (await client.get("/cdn-cgi/access/certs")).json()
    assert [k["jwk"] for k in keys] == certs["keys"]
    assert keys[0]["cert"] == certs["public_cert"]["cert"]


async def test_rotation_signs_new_tokens_with_the_new_key(
    api: httpx.AsyncClient, gateway: Gateway, okta: FakeOkta
) -> None:
    old = (await api.get("/api/keys")).json()["result"][0]
    rotated = await api.post("/api/keys/rotate")
    assert rotated.status_code == 200
    new, previous = rotated.json()["result"]
    assert_public([new, previous])
    assert new["current"] is True and new["kid"] != old["kid"]
    assert previous["kid"] == old["kid"] and previous["current"] is False
    assert previous["retired_at"] is not None
    assert (await api.get("/api/keys")).json()["result"] == [new, previous]
    async with browser(gateway, WIKI) as user:
        page = await _signed_in_page(user, okta)
        token = page.json()["headers"]["cf-access-jwt-assertion"]
        assert kid_of(token) == new["kid"]


async def _signed_in_page(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.Response:
    response = await client.get(f"{WIKI}/page")
    while response.status_code == 302:
        location = response.headers["location"]
        if location.startswith(okta.authorization_endpoint):
            location = okta.authorize(location, "00ualice")
        response = await client.get(str(response.url.join(location)))
    assert response.status_code == 200, response.text
    return response


async def test_a_rotation_is_published_by_every_instance_at_once(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with (
        instance(redis_url, admin_doc(upstream.url)) as one,
        instance(redis_url, admin_doc(upstream.url)) as two,
        admin_client(one) as api_one,
        browser(two) as on_two,
    ):
        before = (await on_two.get("/cdn-cgi/access/certs")).json()
        new = (await api_one.post("/api/keys/rotate")).json()["result"][0]
        after = (await on_two.get("/cdn-cgi/access/certs")).json()
        assert after["public_cert"]["kid"] == new["kid"] != before["public_cert"]["kid"]
        assert [k["kid"] for k in after["keys"]] == [new["kid"], before["public_cert"]["kid"]]
        async with browser(two, WIKI) as user:
            token = (await _signed_in_page(user, okta)).json()["headers"]["cf-access-jwt-assertion"]
            assert kid_of(token) == new["kid"]
