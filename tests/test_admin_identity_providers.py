"""`/api/identity_providers`: create, read, replace, delete; secrets; validation; sign-in.

An IdP made through the API must be usable at once for a real sign-in (and for the test page)
with `FakeOkta`, on the instance that made it and, through the shared Redis, on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, admin_doc, assert_failure, eventually_ok, instance
from clock import FakeClock
from fake_okta import API_TOKEN, BASE, CLIENT_ID, CLIENT_SECRET, FakeOkta
from harness import TEAM, WIKI, EchoUpstream, browser, running

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.errors import ConflictError, GatewayError
from gateway.identity import user_uuid_for
from gateway.proxy.forwarding import open_upstreams
from gateway.runtime import Runtime
from gateway.services import apps, risk
from gateway.services import identity_providers as idps
from gateway.state.catalog import POLL_INTERVAL
from gateway.state.store import Store

# The seed body, exactly (with FakeOkta's client and org).
SEED = {
    "config": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "okta_account": BASE},
    "type": "okta",
    "name": "my example idp",
}
INTEGRATIONS = "/api/zt_risk_scoring/integrations"
TENANT = "https://example.okta.com"


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(admin_doc(upstream.url)), store=store)) as app:
        yield app


async def create(api: httpx.AsyncClient, body: dict[str, Any] = SEED) -> dict[str, Any]:
    response = await api.post("/api/identity_providers", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def sign_in_with(
    client: httpx.AsyncClient, okta: FakeOkta, idp_id: str, url: str = f"{WIKI}/page"
) -> httpx.Response:
    """Open `url` as a browser, pick `idp_id` on the login page, sign in as Alice; the app's
    answer at the end."""
    to_login = await client.get(url)
    assert to_login.status_code == 302, to_login.text
    to_okta = await client.get(f"{to_login.headers['location']}&idp={idp_id}")
    assert to_okta.status_code == 302, to_okta.text
    response = await client.get(okta.authorize(to_okta.headers["location"], "00ualice"))
    while response.status_code == 302:
        response = await client.get(str(response.url.join(response.headers["location"])))
    return response


# --- create and read ------------------------------------------------------------------------


async def test_the_seed_body_creates_an_okta_idp(api: httpx.AsyncClient) -> None:
    idp = await create(api)
    idp_id = idp["id"]
    assert uuid.UUID(idp_id)
    assert idp == {
        "id": idp_id,
        "name": "my example idp",
        "type": "okta",
        "config": {
            "client_id": CLIENT_ID,
            "okta_account": BASE,
            "authorization_server_id": "",
            "claims": [],
            "email_claim_name": "email",
            "pkce_enabled": False,
            "backchannel_logout": False,
            "universal_logout": False,
            "redirect_url": f"{TEAM}/cdn-cgi/access/callback",
        },
        "scim_config": {
            "enabled": False,
            "user_deprovision": False,
            "seat_deprovision": False,
            "identity_update_behavior": "automatic",
        },
        "read_only": False,
        "scim_base_url": f"{TEAM}/populations/{idp_id}/scim/v2",
    }
    assert (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"] == idp
    listed = (await api.get("/api/identity_providers")).json()["result"]
    assert [i["id"] for i in listed] == ["okta-test", idp_id]
    assert listed[1] == idp


async def test_the_seed_idp_signs_users_in(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    idp_id = (await create(api))["id"]
    page = await sign_in_with(client, okta, idp_id)
    assert page.status_code == 200, page.text
    assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
    identity = (await client.get(f"{WIKI}/cdn-cgi/access/get-identity")).json()
    assert identity["idp"] == {"id": idp_id, "type": "okta"}
    assert identity["user_uuid"] == user_uuid_for(idp_id, "00ualice")


async def test_the_seed_idp_passes_the_test_page(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    idp_id = (await create(api))["id"]
    start = await client.get(f"/test-idp?idp={idp_id}")
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(okta.authorization_endpoint)
    callback = await client.get(okta.authorize(start.headers["location"], "00ualice"))
    assert callback.status_code == 302  # to the outcome, kept at a URL of its own
    page = await client.get(callback.headers["location"])
    assert page.status_code == 200, page.text
    assert "Your connection works!" in page.text
    assert "my example idp" in page.text
    assert "alice@example.com" in page.text


async def test_secrets_are_never_returned(api: httpx.AsyncClient) -> None:
    body = {**SEED, "config": {**SEED["config"], "api_token": API_TOKEN}}
    created = await api.post("/api/identity_providers", json=body)
    idp_id = created.json()["result"]["id"]
    answers = [
        created,
        await api.get(f"/api/identity_providers/{idp_id}"),
        await api.get("/api/identity_providers"),
        await api.put(f"/api/identity_providers/{idp_id}", json=body),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert CLIENT_SECRET not in answer.text and API_TOKEN not in answer.text
        assert "client_secret" not in answer.text and "api_token" not in answer.text


async def test_an_oidc_idp_shows_its_endpoints(api: httpx.AsyncClient) -> None:
    endpoints = {
        "issuer": "https://id.example.org",
        "auth_url": "https://id.example.org/authorize",
        "token_url": "https://id.example.org/token",
        "certs_url": "https://id.example.org/jwks",
    }
    body = {
        "name": "Generic",
        "type": "oidc",
        "config": {"client_id": "c", "client_secret": "s", **endpoints, "scopes": ["openid"]},
        "scim_config": {"enabled": False, "identity_update_behavior": "no_action"},
    }
    idp = await create(api, body)
    assert idp["type"] == "oidc"
    assert idp["config"] == {
        "client_id": "c",
        **endpoints,
        "userinfo_url": "",
        "scopes": ["openid"],
        "claims": [],
        "email_claim_name": "email",
        "pkce_enabled": False,
        "backchannel_logout": False,
        "redirect_url": f"{TEAM}/cdn-cgi/access/callback",
    }
    assert idp["scim_config"]["identity_update_behavior"] == "no_action"


async def test_file_idps_are_read_only(api: httpx.AsyncClient) -> None:
    idp = (await api.get("/api/identity_providers/okta-test")).json()["result"]
    assert idp["read_only"] is True
    replaced = await api.put("/api/identity_providers/okta-test", json=SEED)
    assert "read-only" in assert_failure(replaced, 403, "read_only")[0]
    assert_failure(await api.delete("/api/identity_providers/okta-test"), 403, "read_only")
    assert (await api.get("/api/identity_providers/okta-test")).json()["result"] == idp


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    path = "/api/identity_providers/no-such-idp"
    for response in (
        await api.get(path),
        await api.put(path, json=SEED),
        await api.delete(path),
    ):
        assert assert_failure(response, 404, "not_found") == [
            "No identity provider with id 'no-such-idp'."
        ]


# --- replace and delete ---------------------------------------------------------------------


async def test_replace_keeps_the_secrets_it_leaves_out(
    gateway: Gateway, api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    body = {**SEED, "config": {**SEED["config"], "api_token": API_TOKEN}}
    idp_id = (await create(api, body))["id"]
    renamed = {"name": "renamed", "config": {"client_id": CLIENT_ID, "okta_account": BASE}}
    replaced = await api.put(f"/api/identity_providers/{idp_id}", json=renamed)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["result"]["name"] == "renamed"
    assert gateway.runtime is not None
    document = await gateway.runtime.catalog.document("identity_providers", idp_id)
    assert document["config"]["client_secret"] == CLIENT_SECRET
    assert document["config"]["api_token"] == API_TOKEN
    # The kept client secret still authenticates at Okta's token endpoint.
    assert (await sign_in_with(client, okta, idp_id)).status_code == 200

    cleared = {**renamed, "config": {**renamed["config"], "api_token": ""}}
    assert (await api.put(f"/api/identity_providers/{idp_id}", json=cleared)).status_code == 200
    document = await gateway.runtime.catalog.document("identity_providers", idp_id)
    assert document["config"]["api_token"] == ""


@pytest.mark.parametrize(
    "change",
    [
        {"okta_account": "https://attacker.example"},
        {"authorization_server_id": "ausattacker"},
    ],
)
async def test_secrets_are_not_kept_for_new_endpoints(
    gateway: Gateway, api: httpx.AsyncClient, change: dict[str, str]
) -> None:
    # Keeping them would send the client secret and API token to whoever runs the new ones.
    idp_id = (await create(api, {**SEED, "config": {**SEED["config"], "api_token": API_TOKEN}}))[
        "id"
    ]
    moved = {"name": "moved", "config": {"client_id": CLIENT_ID, "okta_account": BASE, **change}}
    refused = await api.put(f"/api/identity_providers/{idp_id}", json=moved)
    (message,) = assert_failure(refused, 422, "unprocessable")
    assert "config.client_secret: must be sent again" in message
    assert "config.api_token: must be sent again" in message
    assert gateway.runtime is not None
    document = await gateway.runtime.catalog.document("identity_providers", idp_id)
    assert document["config"]["okta_account"] == BASE  # nothing stored


async def test_a_replaced_idp_is_used_at_once(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    idp_id = (await create(api))["id"]
    wrong = {**SEED, "config": {**SEED["config"], "client_secret": "wrong"}}
    assert (await api.put(f"/api/identity_providers/{idp_id}", json=wrong)).status_code == 200
    failed = await sign_in_with(client, okta, idp_id)
    assert failed.status_code >= 400  # Okta refuses the client: no way in
    assert (await api.put(f"/api/identity_providers/{idp_id}", json=SEED)).status_code == 200
    assert (await sign_in_with(client, okta, idp_id)).status_code == 200


async def test_delete(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    idp_id = (await create(api))["id"]
    deleted = await api.delete(f"/api/identity_providers/{idp_id}")
    assert deleted.status_code == 200
    assert deleted.json()["result"] == {"id": idp_id}
    assert_failure(await api.get(f"/api/identity_providers/{idp_id}"), 404, "not_found")
    assert_failure(await api.delete(f"/api/identity_providers/{idp_id}"), 404, "not_found")
    assert [i["id"] for i in (await api.get("/api/identity_providers")).json()["result"]] == [
        "okta-test"
    ]
    # and it no longer signs anyone in
    to_login = await client.get(f"{WIKI}/page")
    refused = await client.get(f"{to_login.headers['location']}&idp={idp_id}")
    assert refused.status_code == 400


async def test_an_idp_an_app_allows_cannot_be_deleted(api: httpx.AsyncClient) -> None:
    idp_id = (await create(api))["id"]
    app = {"domain": "new.example.com", "upstream": "http://127.0.0.1:9", "allowed_idps": [idp_id]}
    made = await api.post("/api/apps", json=app)
    assert made.status_code == 201, made.text
    (message,) = assert_failure(
        await api.delete(f"/api/identity_providers/{idp_id}"), 409, "conflict"
    )
    assert made.json()["result"]["id"] in message and "allowed_idps" in message
    assert (await api.delete(f"/api/apps/{made.json()['result']['id']}")).status_code == 200
    assert (await api.delete(f"/api/identity_providers/{idp_id}")).status_code == 200


async def test_an_idp_a_policy_rule_names_cannot_be_deleted(api: httpx.AsyncClient) -> None:
    idp_id = (await create(api))["id"]
    policy = {"name": "P", "decision": "allow", "include": [{"login_method": {"id": idp_id}}]}
    app = {"domain": "new.example.com", "upstream": "http://127.0.0.1:9", "policies": [policy]}
    made = await api.post("/api/apps", json=app)
    assert made.status_code == 201, made.text
    app_id = made.json()["result"]["id"]
    assert assert_failure(
        await api.delete(f"/api/identity_providers/{idp_id}"), 409, "conflict"
    ) == [
        f"Identity provider {idp_id!r} is named by policy rules of app(s) {app_id!r}; "
        "change those rules first."
    ]
    assert (await api.delete(f"/api/apps/{app_id}")).status_code == 200
    assert (await api.delete(f"/api/identity_providers/{idp_id}")).status_code == 200


def integration_use(idp_id: str, integration_id: str) -> str:
    """The refusal's words for an IdP a risk sharing integration (to `TENANT`) names."""
    return (
        f"Identity provider {idp_id!r} is the reference_id of risk sharing integration(s) "
        f"{integration_id!r} ({TENANT}); delete them or point them at another identity "
        "provider first."
    )


async def test_an_idp_a_risk_sharing_integration_names_cannot_be_deleted(
    api: httpx.AsyncClient,
) -> None:
    idp_id = (await create(api))["id"]
    made = await api.post(INTEGRATIONS, json={"tenant_url": TENANT, "reference_id": idp_id})
    assert made.status_code == 201, made.text
    integration_id = made.json()["result"]["id"]
    refused = assert_failure(await api.delete(f"/api/identity_providers/{idp_id}"), 409, "conflict")
    assert refused == [integration_use(idp_id, integration_id)]
    # nothing deleted: the IdP and the integration naming it are both still there
    assert (await api.get(f"/api/identity_providers/{idp_id}")).status_code == 200
    kept = (await api.get(f"{INTEGRATIONS}/{integration_id}")).json()["result"]
    assert kept["reference_id"] == idp_id
    # pointed at another IdP, the integration no longer holds it
    elsewhere = {"tenant_url": TENANT, "reference_id": "okta-test"}
    assert (await api.put(f"{INTEGRATIONS}/{integration_id}", json=elsewhere)).status_code == 200
    assert (await api.delete(f"/api/identity_providers/{idp_id}")).status_code == 200


async def test_the_refusal_names_every_use(api: httpx.AsyncClient) -> None:
    idp_id = (await create(api))["id"]
    app = {"domain": "new.example.com", "upstream": "http://127.0.0.1:9", "allowed_idps": [idp_id]}
    app_id = (await api.post("/api/apps", json=app)).json()["result"]["id"]
    made = await api.post(INTEGRATIONS, json={"tenant_url": TENANT, "reference_id": idp_id})
    integration_id = made.json()["result"]["id"]
    (message,) = assert_failure(
        await api.delete(f"/api/identity_providers/{idp_id}"), 409, "conflict"
    )
    assert f"allowed_idps of app(s) {app_id!r}" in message
    assert message.endswith(integration_use(idp_id, integration_id))


# --- in use, across instances: another instance's view may be a poll behind -----------------


@contextlib.asynccontextmanager
async def idle_instances(store: Store, clock: FakeClock) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two gateway instances on one store that never poll the catalog: each serves what it
    last loaded (`apply`), as an instance does between two polls."""
    settings = parse_settings(admin_doc("http://127.0.0.1:9"))
    upstreams = open_upstreams(settings.gateway)
    await upstreams.start()
    try:
        async with httpx.AsyncClient() as http:
            yield (
                Runtime(settings, store, http, upstreams, clock),
                Runtime(settings, store, http, upstreams, clock),
            )
    finally:
        await upstreams.close()


async def test_an_integration_cannot_name_an_idp_another_instance_deleted(
    store: Store, clock: FakeClock
) -> None:
    async with idle_instances(store, clock) as (one, two):
        idp_id = (await idps.create(one, SEED, "test")).result["id"]
        kept = await risk.create_integration(
            one, {"tenant_url": TENANT, "reference_id": "okta-test"}, "test"
        )
        two.apply(await two.catalog.load())
        await idps.delete(one, idp_id, "test")
        assert two.settings.idp(idp_id) is not None  # `two` has not caught up yet
        body = {"tenant_url": TENANT, "reference_id": idp_id}
        missing = f"reference_id: no identity provider {idp_id!r}"
        with pytest.raises(GatewayError) as refused:
            await risk.create_integration(two, body, "test")
        assert (refused.value.status, refused.value.description) == (422, missing)
        with pytest.raises(GatewayError) as refused:
            await risk.replace_integration(two, kept.id, body, "test")
        assert (refused.value.status, refused.value.description) == (422, missing)
        assert [i.reference_id for i in await two.risk_integrations.all()] == ["okta-test"]


@pytest.mark.parametrize("naming", ["allowed_idps", "policy rule"])
async def test_an_app_cannot_name_an_idp_another_instance_deleted(
    store: Store, clock: FakeClock, naming: str
) -> None:
    async with idle_instances(store, clock) as (one, two):
        idp_id = (await idps.create(one, SEED, "test")).result["id"]
        two.apply(await two.catalog.load())
        await idps.delete(one, idp_id, "test")
        body: dict[str, Any] = {"domain": "new.example.com", "upstream": "http://127.0.0.1:9"}
        if naming == "allowed_idps":
            body["allowed_idps"] = [idp_id]
            missing = f"allowed_idps[0]: no identity provider {idp_id!r}"
        else:
            rule = {"login_method": {"id": idp_id}}
            body["policies"] = [{"name": "P", "decision": "allow", "include": [rule]}]
            missing = (
                f"policies[0].include[0].login_method.id: no identity provider {idp_id!r}: "
                "the rule would never match"
            )
        with pytest.raises(GatewayError) as refused:
            await apps.create(two, body, "test")
        assert (refused.value.status, refused.value.description) == (422, missing)
        assert "new.example.com" not in [a.domain for a in (await one.catalog.load()).apps]


async def test_an_idp_and_an_integration_naming_it_made_at_once_never_dangle(
    store: Store, clock: FakeClock
) -> None:
    """A delete on one instance and a new integration on the other, interleaved: one of them
    is refused, whichever order the store saw them in."""
    async with idle_instances(store, clock) as (one, two):
        idp_id = (await idps.create(one, SEED, "test")).result["id"]
        two.apply(await two.catalog.load())
        body = {"tenant_url": TENANT, "reference_id": idp_id}
        deleted, created = await asyncio.gather(
            idps.delete(one, idp_id, "test"),
            risk.create_integration(two, body, "test"),
            return_exceptions=True,
        )
        named = [i.reference_id for i in await one.risk_integrations.all()]
        still_there = (await one.catalog.load()).idp(idp_id) is not None
        if isinstance(deleted, BaseException):
            assert isinstance(deleted, ConflictError), deleted
            assert still_there and named == [idp_id]
        else:
            assert isinstance(created, GatewayError) and created.status == 422, created
            assert not still_there and named == []


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({**SEED, "bogus": 1}, ["bogus: unknown key"]),
        (
            {**SEED, "config": {**SEED["config"], "client_secrett": "x"}},
            ["config.client_secrett: unknown key"],
        ),
        ({**SEED, "name": 5}, ["name: must be a string"]),
        ({**SEED, "type": "ws-fed"}, ["type: must be one of 'okta', 'oidc', 'saml', not 'ws-fed'"]),
        (
            {**SEED, "config": "x"},
            [
                "config: must be a table",
                "config.client_id: is required",
                "config.client_secret: is required",
                "config.okta_account: is required",
            ],
        ),
        (
            {"name": "", "config": {"client_id": "a", "client_secret": "b"}},
            ["name: is required", "config.okta_account: is required"],
        ),
        (
            {**SEED, "config": {**SEED["config"], "okta_account": "ftp://x"}},
            ["config.okta_account: must be an absolute https or http URL"],
        ),
        (
            {**SEED, "config": {**SEED["config"], "okta_account": "http://[::1"}},
            ["config.okta_account: must be an absolute https or http URL"],
        ),
        (
            {**SEED, "config": {**SEED["config"], "client_secret": "${HOME}"}},
            ["config.client_secret: environment variable HOME is not set"],
        ),
        (
            {**SEED, "scim_config": {"seat_deprovision": True}},
            ["scim_config.seat_deprovision: needs user_deprovision = true"],
        ),
        (
            {**SEED, "id": "mine", "read_only": False, "scim_base_url": "x"},
            [
                "id: is set by the gateway; leave it out",
                "read_only: is set by the gateway; leave it out",
                "scim_base_url: is set by the gateway; leave it out",
            ],
        ),
        (
            {**SEED, "config": {**SEED["config"], "redirect_url": "x"}},
            ["config.redirect_url: is set by the gateway; leave it out"],
        ),
        (
            {**SEED, "config": {**SEED["config"], "universal_logout": "yes"}},
            ["config.universal_logout: must be true or false"],
        ),
        (
            {
                "name": "Generic",
                "type": "oidc",
                "config": {
                    "client_id": "c",
                    "client_secret": "s",
                    "issuer": "https://sso.example.com",
                    "auth_url": "https://sso.example.com/a",
                    "token_url": "https://sso.example.com/t",
                    "certs_url": "https://sso.example.com/k",
                    "universal_logout": True,
                },
            },
            [
                "config.universal_logout: only Okta sends Universal Logout; for this type use "
                "backchannel_logout"
            ],
        ),
        (
            {**SEED, "scim_config": {"enabled": True, "secret": "x"}},
            [
                "scim_config.secret: is generated by the gateway "
                "(POST .../refresh_scim_secret); leave it out"
            ],
        ),
    ],
)
async def test_invalid_bodies_list_every_problem_with_its_key_path(
    api: httpx.AsyncClient, body: dict[str, Any], problems: list[str]
) -> None:
    response = await api.post("/api/identity_providers", json=body)
    assert assert_failure(response, 400, "invalid_config") == problems
    assert len((await api.get("/api/identity_providers")).json()["result"]) == 1  # nothing stored


async def test_an_okta_admin_url_is_unprocessable(api: httpx.AsyncClient) -> None:
    admin_url = {
        **SEED,
        "config": {**SEED["config"], "okta_account": "https://dev-123-admin.okta.com"},
    }
    response = await api.post("/api/identity_providers", json=admin_url)
    assert assert_failure(response, 422, "unprocessable") == [
        "config.okta_account: is the Okta Admin Console's URL; use the org URL "
        "'https://dev-123.okta.com': sign-in is not served on the -admin host"
    ]
    made = await create(api)
    replaced = await api.put(f"/api/identity_providers/{made['id']}", json=admin_url)
    assert assert_failure(replaced, 422, "unprocessable")
    assert (await api.get(f"/api/identity_providers/{made['id']}")).json()["result"]["config"][
        "okta_account"
    ] == BASE


async def test_the_docs_recipe_turns_scim_on_and_shows_the_secret_once(
    api: httpx.AsyncClient,
) -> None:
    """docs/admin-api.md: a PUT that leaves the client secret out turns SCIM on; its answer
    carries the first secret, which SCIM then accepts; a later GET never shows it."""
    made = await create(api)
    scim_on = {
        "name": SEED["name"],
        "type": "okta",
        "config": {"client_id": CLIENT_ID, "okta_account": BASE},
        "scim_config": {"enabled": True, "user_deprovision": True},
    }
    response = await api.put(f"/api/identity_providers/{made['id']}", json=scim_on)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    secret = result["scim_config"]["secret"]
    scim_users = result["scim_base_url"].removeprefix(TEAM) + "/Users"
    listed = await api.get(scim_users, headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200, listed.text
    again = await api.get(f"/api/identity_providers/{made['id']}")
    assert "secret" not in again.json()["result"]["scim_config"]


async def test_replace_validates_too(api: httpx.AsyncClient) -> None:
    idp_id = (await create(api))["id"]
    response = await api.put(f"/api/identity_providers/{idp_id}", json={**SEED, "bogus": 1})
    assert assert_failure(response, 400, "invalid_config") == ["bogus: unknown key"]
    assert (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"]["name"] == (
        "my example idp"
    )


# --- several instances ----------------------------------------------------------------------


async def test_an_idp_made_on_one_instance_signs_in_on_another(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with (
        instance(redis_url, admin_doc(upstream.url)) as one,
        instance(redis_url, admin_doc(upstream.url)) as two,
        admin_client(one) as api_one,
        admin_client(two) as api_two,
        browser(two) as browser_two,
    ):
        idp_id = (await create(api_one))["id"]
        # The other instance polls the catalog every POLL_INTERVAL; the bound leaves room for a
        # loaded machine (all instances share this event loop) and costs nothing when it passes.
        await eventually_ok(api_two, f"/api/identity_providers/{idp_id}", within=10 * POLL_INTERVAL)
        page = await sign_in_with(browser_two, okta, idp_id)
        assert page.status_code == 200, page.text
        assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"


# --- which sessions an IdP's sign-in still opens -------------------------------------------


async def add_app(
    api: httpx.AsyncClient, upstream: EchoUpstream, domain: str, allowed_idps: list[str]
) -> None:
    engineering = {"okta": {"name": "Engineering"}}
    made = await api.post(
        "/api/apps",
        json={
            "name": "Partners",
            "domain": domain,
            "upstream": upstream.url,
            "allowed_idps": allowed_idps,
            "policies": [{"name": "Eng", "decision": "allow", "include": [engineering]}],
        },
    )
    assert made.status_code == 201, made.text


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    while response.status_code == 302:
        response = await client.get(str(response.url.join(response.headers["location"])))
    return response


def sent_to_sign_in(response: httpx.Response) -> bool:
    return response.status_code == 302 and "/cdn-cgi/access/login/" in response.headers["location"]


async def test_a_sign_in_through_an_idp_the_app_does_not_allow_is_not_reused_there(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    partners = (await create(api))["id"]
    await add_app(api, upstream, "partners.example.com", [partners])
    assert (await sign_in_with(client, okta, "okta-test")).status_code == 200  # the wiki
    calls = okta.routes["token"].call_count

    to_login = await client.get("https://partners.example.com/report")
    assert sent_to_sign_in(to_login)
    to_okta = await client.get(to_login.headers["location"])
    # Not the silent pass a global session gives: Okta is asked again, through the allowed IdP.
    assert to_okta.headers["location"].startswith(okta.authorization_endpoint)
    page = await follow(
        client, await client.get(okta.authorize(to_okta.headers["location"], "00ualice"))
    )
    assert page.status_code == 200, page.text
    assert okta.routes["token"].call_count == calls + 1
    identity = await client.get("https://partners.example.com/cdn-cgi/access/get-identity")
    assert identity.json()["idp"]["id"] == partners


async def test_a_session_on_a_host_does_not_open_a_path_app_there_that_allows_another_idp(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    partners = (await create(api))["id"]
    await add_app(api, upstream, "wiki.example.com/partners", [partners])
    assert (await sign_in_with(client, okta, "okta-test")).status_code == 200
    hits = len(upstream.requests)

    assert sent_to_sign_in(await client.get(f"{WIKI}/partners/report"))
    assert len(upstream.requests) == hits
    assert (await client.get(f"{WIKI}/page")).status_code == 200  # the wiki itself still opens


async def test_deleting_an_idp_ends_the_sessions_it_gave(
    api: httpx.AsyncClient, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    idp_id = (await create(api))["id"]
    assert (await sign_in_with(client, okta, idp_id)).status_code == 200
    assert (await client.get(f"{WIKI}/cdn-cgi/access/get-identity")).status_code == 200
    assert (await api.delete(f"/api/identity_providers/{idp_id}")).status_code == 200
    hits = len(upstream.requests)

    assert sent_to_sign_in(await client.get(f"{WIKI}/page"))  # the app session
    assert sent_to_sign_in(await client.get(f"{TEAM}/docs"))  # the global one
    assert (await client.get(f"{WIKI}/cdn-cgi/access/get-identity")).status_code == 401
    assert len(upstream.requests) == hits
    # and the next sign-in is a real one, through the IdP that is left
    to_login = await client.get(f"{WIKI}/page")
    to_okta = await client.get(to_login.headers["location"])
    assert to_okta.headers["location"].startswith(okta.authorization_endpoint)
