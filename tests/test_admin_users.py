"""The registry and SCIM through the admin API: users, their identity and sessions,
`revoke_user`, SCIM secrets, provisioned users and groups, the provisioning log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, assert_failure, instance, with_admin_token
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, WIKI, EchoUpstream, browser, running
from scim_harness import (
    create_group,
    create_user,
    new_secret,
    okta_client,
    okta_user,
    scim_doc,
)

from gateway.app import Gateway, create_app
from gateway.config import app_aud, parse_settings
from gateway.identity import user_uuid_for
from gateway.state.store import Store

ALICE = user_uuid_for(IDP_ID, "00ualice")
XHR = {"X-Requested-With": "XMLHttpRequest"}


def admin_doc(upstream: str, **scim_config: Any) -> dict[str, Any]:
    return with_admin_token(scim_doc(upstream, **scim_config))


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(admin_doc(upstream.url)), store=store)) as app:
        yield app


async def sign_in(client: httpx.AsyncClient, okta: FakeOkta, url: str = f"{WIKI}/") -> None:
    response = await client.get(url)
    while response.status_code == 302:
        location = response.headers["location"]
        if location.startswith(okta.authorization_endpoint):
            location = okta.authorize(location, "00ualice")
        response = await client.get(str(response.url.join(location)))
    assert response.status_code == 200, response.text


async def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


# --- users ----------------------------------------------------------------------------------


async def test_a_signed_in_user_is_in_the_registry(
    gateway: Gateway, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    assert await result(await api.get("/api/users")) == []
    async with browser(gateway, WIKI) as client:
        await sign_in(client, okta)
        identity = (await client.get(f"{WIKI}/cdn-cgi/access/get-identity")).json()
    listed = await api.get("/api/users")
    (user,) = await result(listed)
    assert listed.json()["result_info"] == {"page": 1, "per_page": 50, "count": 1, "total_count": 1}
    assert user["id"] == ALICE and user["uid"] == ALICE
    assert user["email"] == "alice@example.com" and user["name"] == "Alice Example"
    assert user["access_seat"] is True and user["identity_provider_id"] == IDP_ID
    assert user["last_successful_login"] is not None
    assert await result(await api.get(f"/api/users/{ALICE}/last_seen_identity")) == identity

    second_page = await api.get("/api/users?page=2&per_page=1")
    assert await result(second_page) == []
    assert second_page.json()["result_info"] == {
        "page": 2,
        "per_page": 1,
        "count": 0,
        "total_count": 1,
    }


@pytest.mark.parametrize("query", ["page=0", "per_page=0", "per_page=1001", "page=x", "page=²"])
async def test_bad_paging_is_a_400(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/api/users?{query}")
    (message,) = assert_failure(response, 400, "invalid_query")
    assert message.startswith(query.split("=")[0] + ": must be an integer from 1 to ")


async def test_active_sessions(gateway: Gateway, api: httpx.AsyncClient, okta: FakeOkta) -> None:
    async with browser(gateway, WIKI) as client:
        await sign_in(client, okta)
    sessions = await result(await api.get(f"/api/users/{ALICE}/active_sessions"))
    by_kind = {s["kind"]: s for s in sessions}
    assert set(by_kind) == {"global", "app"}
    assert by_kind["global"]["name"] == "Team domain"
    assert by_kind["global"]["metadata"]["apps"] == {}
    app = by_kind["app"]
    assert app["name"] == "Wiki"
    assert app["metadata"]["apps"] == {
        app_aud("wiki"): {
            "hostname": "wiki.example.com",
            "name": "Wiki",
            "type": "self_hosted",
            "uid": "wiki",
        }
    }
    assert app["metadata"]["ttl"] == 3600
    assert app["expiration"] == app["metadata"]["expires"]


async def test_unknown_users_are_404(api: httpx.AsyncClient) -> None:
    for path in ("/api/users/nope/last_seen_identity", "/api/users/nope/active_sessions"):
        assert assert_failure(await api.get(path), 404, "not_found") == ["No user with id 'nope'."]


# --- revoke_user ----------------------------------------------------------------------------


async def test_revoke_user_ends_every_session_on_every_instance(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with (
        instance(redis_url, admin_doc(upstream.url)) as one,
        instance(redis_url, admin_doc(upstream.url)) as two,
        admin_client(one) as api_one,
        browser(one, WIKI) as on_one,
        browser(two, WIKI) as on_two,
    ):
        await sign_in(on_one, okta)
        on_two.cookies = on_one.cookies  # the same browser, reaching the other instance
        assert (await on_two.get(f"{WIKI}/a", headers=XHR)).status_code == 200
        revoked = await api_one.post("/api/revoke_user", json={"email": "ALICE@example.com"})
        assert await result(revoked) == {
            "email": "ALICE@example.com",
            "user_ids": [ALICE],
            "revoked_sessions": 2,
        }
        assert (await on_two.get(f"{WIKI}/a", headers=XHR)).status_code == 401
        # and the team-domain session is gone too: the browser must see Okta again
        again = await on_two.get(f"{WIKI}/a")
        at_team = await on_two.get(again.headers["location"])
        assert at_team.headers["location"].startswith(okta.authorization_endpoint)
        assert await result(await api_one.get(f"/api/users/{ALICE}/active_sessions")) == []


@pytest.mark.parametrize(
    ("body", "status", "problems"),
    [
        ({"email": "nobody@example.com"}, 404, ["No user with email 'nobody@example.com'."]),
        ({}, 400, ["email: is required"]),
        ({"email": " "}, 400, ["email: must be a non-empty string"]),
        ({"email": ["a@x"]}, 400, ["email: must be a non-empty string"]),
        ({"email": "a@x", "user_id": "u"}, 400, ["user_id: unknown key"]),
    ],
)
async def test_revoke_user_refusals(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, problems: list[str]
) -> None:
    response = await api.post("/api/revoke_user", json=body)
    error = "not_found" if status == 404 else "invalid_config"
    assert assert_failure(response, status, error) == problems


async def test_revoke_user_finds_the_signed_in_email_after_scim_changed_it(
    gateway: Gateway, api: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    """Under `automatic`, SCIM's primary email reaches the last-seen identity; the email the
    user signs in with (the one the origin sees) still names them for revoke_user."""
    secret = await new_secret(gateway)
    async with browser(gateway, WIKI) as person, okta_client(gateway, secret) as scim:
        await sign_in(person, okta)
        body = okta_user(user_name="alice@example.com")
        body["emails"] = [{"primary": True, "value": "alice@mail.example.net"}]
        assert (await scim.post("/Users", json=body)).status_code == 201
        seen = upstream.requests[-1]["headers"]["cf-access-authenticated-user-email"]

        revoked = await result(await api.post("/api/revoke_user", json={"email": seen}))

        assert (revoked["user_ids"], revoked["revoked_sessions"]) == ([ALICE], 2)
        assert (await person.get(f"{WIKI}/")).status_code == 302
        listed = await result(await api.get("/api/users"))
        assert [(u["id"], u["email"]) for u in listed] == [(ALICE, "alice@example.com")]


# --- SCIM -----------------------------------------------------------------------------------


async def scim_status(app: Gateway, secret: str, idp_id: str = IDP_ID) -> int:
    base = f"{TEAM}/populations/{idp_id}/scim/v2"
    async with okta_client(app, secret, base) as client:
        return (await client.get("/Users")).status_code


async def test_refresh_scim_secret_on_a_file_idp(gateway: Gateway, api: httpx.AsyncClient) -> None:
    first = await result(await api.post(f"/api/identity_providers/{IDP_ID}/refresh_scim_secret"))
    assert first["read_only"] is True and first["id"] == IDP_ID
    secret = first["scim_config"]["secret"]
    assert await scim_status(gateway, secret) == 200
    second = await result(await api.post(f"/api/identity_providers/{IDP_ID}/refresh_scim_secret"))
    assert second["scim_config"]["secret"] != secret
    assert await scim_status(gateway, secret) == 401  # the old one stops working at once
    assert await scim_status(gateway, second["scim_config"]["secret"]) == 200
    shown = await api.get(f"/api/identity_providers/{IDP_ID}")
    assert "secret" not in (await result(shown))["scim_config"]
    assert second["scim_config"]["secret"] not in (await api.get("/api/identity_providers")).text


async def test_a_pinned_scim_secret_cannot_be_refreshed(
    store: Store, upstream: EchoUpstream
) -> None:
    doc = admin_doc(upstream.url, secret="${SCIM_SECRET}")
    settings = parse_settings(doc, env={"SCIM_SECRET": "pinned-0123456789"})
    async with running(create_app(settings, store=store)) as app, admin_client(app) as api:
        response = await api.post(f"/api/identity_providers/{IDP_ID}/refresh_scim_secret")
        assert "pinned" in assert_failure(response, 409, "scim_secret_pinned")[0]
        assert await scim_status(app, "pinned-0123456789") == 200


async def test_refresh_scim_secret_of_an_unknown_idp(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/identity_providers/nope/refresh_scim_secret")
    assert_failure(response, 404, "not_found")


async def test_an_idp_made_with_scim_on_shows_its_first_secret_once(
    gateway: Gateway, api: httpx.AsyncClient
) -> None:
    body = {
        "name": "Provisioned",
        "config": {
            "client_id": "c",
            "client_secret": "s3cret-value",
            "okta_account": "https://dev-9.okta.com",
        },
        "scim_config": {"enabled": True, "user_deprovision": True},
    }
    created = await api.post("/api/identity_providers", json=body)
    assert created.status_code == 201, created.text
    idp = created.json()["result"]
    secret = idp["scim_config"]["secret"]
    assert await scim_status(gateway, secret, idp["id"]) == 200
    again = await result(await api.put(f"/api/identity_providers/{idp['id']}", json=body))
    assert "secret" not in again["scim_config"]
    assert (
        "secret"
        not in (await result(await api.get(f"/api/identity_providers/{idp['id']}")))["scim_config"]
    )

    # SCIM switched on later: the answer that switches it on has the first secret.
    off = {**body, "name": "Later", "scim_config": {"enabled": False}}
    made = await api.post("/api/identity_providers", json=off)
    later = made.json()["result"]
    assert made.status_code == 201 and "secret" not in later["scim_config"]
    on = await result(await api.put(f"/api/identity_providers/{later['id']}", json=body))
    assert await scim_status(gateway, on["scim_config"]["secret"], later["id"]) == 200


async def test_turning_scim_off_retires_its_secret(
    gateway: Gateway, api: httpx.AsyncClient
) -> None:
    """An operator whose SCIM secret leaked turns SCIM off; turning it on again must not bring
    the leaked secret back: the answer that turns it on has a new one."""
    body = {
        "name": "Provisioned",
        "config": {
            "client_id": "c",
            "client_secret": "s",
            "okta_account": "https://dev-9.okta.com",
        },
        "scim_config": {"enabled": True},
    }
    created = await api.post("/api/identity_providers", json=body)
    assert created.status_code == 201, created.text
    idp = created.json()["result"]
    leaked = idp["scim_config"]["secret"]
    path = f"/api/identity_providers/{idp['id']}"
    await result(await api.put(path, json={**body, "scim_config": {"enabled": False}}))

    again = await result(await api.put(path, json=body))

    assert again["scim_config"]["secret"] != leaked
    assert await scim_status(gateway, leaked, idp["id"]) == 401
    assert await scim_status(gateway, again["scim_config"]["secret"], idp["id"]) == 200


async def test_provisioned_users_and_groups(gateway: Gateway, api: httpx.AsyncClient) -> None:
    secret = (
        await result(await api.post(f"/api/identity_providers/{IDP_ID}/refresh_scim_secret"))
    )["scim_config"]["secret"]
    async with okta_client(gateway, secret) as scim:
        alice = await create_user(scim)
        bob = await create_user(scim, user_name="bob@example.com", external_id="00ubob")
        group = await create_group(scim, "Engineering", (alice["id"],))
    users = await api.get(f"/api/identity_providers/{IDP_ID}/scim/users")
    assert [u["userName"] for u in await result(users)] == ["alice@example.com", "bob@example.com"]
    assert "password" not in users.text
    assert users.json()["result_info"]["total_count"] == 2
    page = await api.get(f"/api/identity_providers/{IDP_ID}/scim/users?page=2&per_page=1")
    assert [u["id"] for u in await result(page)] == [bob["id"]]
    assert page.json()["result_info"] == {"page": 2, "per_page": 1, "count": 1, "total_count": 2}
    groups = await result(await api.get(f"/api/identity_providers/{IDP_ID}/scim/groups"))
    assert [(g["id"], g["displayName"]) for g in groups] == [(group["id"], "Engineering")]
    assert [m["value"] for m in groups[0]["members"]] == [alice["id"]]
    for path in ("scim/users", "scim/groups"):
        assert_failure(await api.get(f"/api/identity_providers/nope/{path}"), 404, "not_found")
        too_many = await api.get(f"/api/identity_providers/{IDP_ID}/{path}?per_page=201")
        assert_failure(too_many, 400, "invalid_query")


async def test_the_provisioning_log(gateway: Gateway, api: httpx.AsyncClient) -> None:
    secret = (
        await result(await api.post(f"/api/identity_providers/{IDP_ID}/refresh_scim_secret"))
    )["scim_config"]["secret"]
    async with okta_client(gateway, secret) as scim:
        await create_user(scim)
        await scim.get("/Users/nope")
    entries = await result(await api.get("/api/logs/scim"))
    assert [(e["method"], e["status"], e["outcome"]) for e in entries] == [
        ("GET", 404, "failure"),
        ("POST", 201, "success"),
    ]
    assert entries[1]["resource_name"] == "alice@example.com"
    assert entries[1]["identity_provider_id"] == IDP_ID
    assert len(await result(await api.get("/api/logs/scim?limit=1"))) == 1
    assert len(await result(await api.get(f"/api/logs/scim?identity_provider_id={IDP_ID}"))) == 2
    assert await result(await api.get("/api/logs/scim?identity_provider_id=other")) == []
    assert_failure(await api.get("/api/logs/scim?limit=0"), 400, "invalid_query")
    assert_failure(await api.get("/api/logs/scim?limit=1001"), 400, "invalid_query")
