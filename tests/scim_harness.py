"""SCIM test helpers: the gateway with SCIM on for the test IdP, and a client that speaks to it
as Okta does (headers, body shapes from OKTA.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from harness import IDP_ID, TEAM, running, settings_doc

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.runtime import Runtime
from gateway.state.store import Store

BASE = f"{TEAM}/populations/{IDP_ID}/scim/v2"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def scim_doc(upstream: str, **scim_config: Any) -> dict[str, Any]:
    """The end-to-end settings with SCIM enabled on the test IdP."""
    doc = settings_doc(upstream)
    doc["identity_providers"][0]["scim_config"] = {"enabled": True, **scim_config}
    return doc


def runtime(app: Gateway) -> Runtime:
    assert app.runtime is not None
    return app.runtime


async def new_secret(app: Gateway) -> str:
    rt = runtime(app)
    idp = rt.settings.idp(IDP_ID)
    assert idp is not None
    return await rt.scim_secrets.regenerate(idp)


def okta_client(app: Gateway, secret: str, base_url: str = BASE) -> httpx.AsyncClient:
    """A client that sends what Okta's SCIM 2.0 Test App (Header Auth) sends."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        headers={
            "Authorization": f"Bearer {secret}",
            "Accept": "application/scim+json",
            "Content-Type": "application/scim+json; charset=utf-8",
            "User-Agent": "Okta SCIM Client 1.0.0",
        },
    )


@contextlib.asynccontextmanager
async def scim_gateway(
    store: Store, upstream: str, **scim_config: Any
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """The gateway with SCIM on, a fresh secret, and Okta's client for it."""
    async with running(
        create_app(parse_settings(scim_doc(upstream, **scim_config)), store=store)
    ) as app:
        secret = await new_secret(app)
        async with okta_client(app, secret) as client:
            yield app, client


def okta_user(
    user_name: str = "alice@example.com",
    given: str = "Alice",
    family: str = "Example",
    external_id: str = "00ualice",
    active: bool = True,
) -> dict[str, Any]:
    """POST /Users as Okta sends it (OKTA.md): with a throw-away password and `groups: []`."""
    return {
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"{given} {family}",
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "tHr0w-Away-Pa55word!",
        "active": active,
    }


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def deactivate() -> dict[str, Any]:
    """Okta's path-less deactivation (catalog-template apps)."""
    return patch({"op": "replace", "value": {"active": False}})


async def create_user(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/Users", json=okta_user(**fields))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_group(
    client: httpx.AsyncClient, name: str, member_ids: tuple[str, ...] = ()
) -> dict[str, Any]:
    body = {
        "schemas": [GROUP],
        "displayName": name,
        "members": [{"value": i, "display": i} for i in member_ids],
    }
    response = await client.post("/Groups", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
