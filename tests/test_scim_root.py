"""SCIM queries at the server root (RFC 7644 3.4.2, 3.4.3): `GET {base}/` and
`POST {base}/.search` list users and groups together, users first, each in creation order, and
page through them as one list; `attributes` apply per type; an attribute a type lacks has no
value there; bad queries are SCIM 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from clock import FakeClock
from harness import EchoUpstream, running
from scim_harness import LIST, create_group, create_user, new_secret, okta_client, scim_doc
from test_scim import SEARCH, assert_scim_error

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.state.store import Store


@pytest_asyncio.fixture
async def client(
    store: Store, upstream: EchoUpstream, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """Okta's client, with two users (alice, bob) and two groups (Engineering with alice,
    Sales) provisioned in that order, a second apart."""
    app = create_app(parse_settings(scim_doc(upstream.url)), store=store, clock=clock)
    async with running(app), okta_client(app, await new_secret(app)) as client:
        alice = await create_user(client)
        clock.advance(1)
        await create_user(client, user_name="bob@example.com", given="Bob", external_id="00ubob")
        clock.advance(1)
        await create_group(client, "Engineering", (alice["id"],))
        clock.advance(1)
        await create_group(client, "Sales")
        yield client


def names(listing: dict[str, Any]) -> list[str]:
    return [r.get("userName") or r["displayName"] for r in listing["Resources"]]


async def root(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    listing: dict[str, Any] = response.json()
    assert listing["schemas"] == [LIST]
    return listing


async def search(client: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await client.post("/.search", json={"schemas": [SEARCH], **query})
    assert response.status_code == 200, response.text
    listing: dict[str, Any] = response.json()
    return listing


async def test_the_root_lists_users_then_groups(client: httpx.AsyncClient) -> None:
    for listing in (await root(client), await search(client)):
        assert names(listing) == ["alice@example.com", "bob@example.com", "Engineering", "Sales"]
        assert [r["meta"]["resourceType"] for r in listing["Resources"]] == [
            "User",
            "User",
            "Group",
            "Group",
        ]
        assert listing["totalResults"] == 4 and listing["itemsPerPage"] == 4
        assert listing["startIndex"] == 1
    # Each resource is as its own endpoint returns it (users with their groups).
    alice = (await root(client))["Resources"][0]
    assert alice == (await client.get(f"/Users/{alice['id']}")).json()
    assert alice["groups"][0]["display"] == "Engineering"


async def test_paging_crosses_from_users_to_groups(client: httpx.AsyncClient) -> None:
    pages = {
        (1, 2): ["alice@example.com", "bob@example.com"],
        (2, 2): ["bob@example.com", "Engineering"],
        (3, 5): ["Engineering", "Sales"],
        (4, 1): ["Sales"],
        (5, 10): [],
        (1, 0): [],
    }
    for (start, count), expected in pages.items():
        for listing in (
            await root(client, startIndex=start, count=count),
            await search(client, startIndex=start, count=count),
        ):
            assert names(listing) == expected, (start, count)
            assert listing["totalResults"] == 4
            assert listing["startIndex"] == start and listing["itemsPerPage"] == len(expected)
    # Paged with a filter: the total and the boundary are the matches'.
    matching = {"filter": 'userName pr or displayName eq "Sales"', "startIndex": 2, "count": 2}
    listing = await root(client, **matching)
    assert names(listing) == ["bob@example.com", "Sales"] and listing["totalResults"] == 3


async def test_a_filter_on_an_attribute_one_type_lacks(client: httpx.AsyncClient) -> None:
    """RFC 7644 3.4.2.1: for a type that does not define it, an attribute has no value."""
    found = {
        'userName sw "alice"': ["alice@example.com"],  # groups have no userName
        'name.givenName eq "Bob"': ["bob@example.com"],
        "emails pr": ["alice@example.com", "bob@example.com"],
        'emails[type eq "work"]': ["alice@example.com", "bob@example.com"],
        "members pr": ["Engineering"],  # users have no members
        'displayName eq "Sales"': ["Sales"],  # both types have displayName
        'meta.resourceType eq "Group"': ["Engineering", "Sales"],
        'userName eq "alice@example.com" or displayName eq "Sales"': ["alice@example.com", "Sales"],
        # absent, as on a resource of its own type without it
        "not (userName pr)": ["Engineering", "Sales"],
        'userName ne "alice@example.com"': ["bob@example.com", "Engineering", "Sales"],
    }
    for text, expected in found.items():
        assert names(await root(client, filter=text)) == expected, text
        assert names(await search(client, filter=text)) == expected, text


async def test_attributes_apply_per_type(client: httpx.AsyncClient) -> None:
    listing = await root(client, attributes="userName,members.value")
    users, groups = listing["Resources"][:2], listing["Resources"][2:]
    assert all(set(u) == {"schemas", "id", "userName"} for u in users)
    assert set(groups[0]) == {"schemas", "id", "members"}
    assert set(groups[0]["members"][0]) == {"value"}
    assert set(groups[1]) == {"schemas", "id"}  # Sales has no members

    listing = await search(client, excludedAttributes=["emails", "members", "meta"])
    assert not any({"emails", "members", "meta"} & set(r) for r in listing["Resources"])
    assert names(listing) == ["alice@example.com", "bob@example.com", "Engineering", "Sales"]


async def test_bad_root_queries_are_scim_errors(client: httpx.AsyncClient) -> None:
    for text in ('userName eq "x', 'nothing eq "x"', 'emails.nothing eq "x"', "active gt true"):
        assert_scim_error(await client.get("/", params={"filter": text}), 400, "invalidFilter")
        body = {"schemas": [SEARCH], "filter": text}
        assert_scim_error(await client.post("/.search", json=body), 400, "invalidFilter")
    assert_scim_error(await client.get("/", params={"count": "many"}), 400, "invalidValue")
    bad_schema = await client.post("/.search", json={"schemas": ["urn:nope"]})
    assert_scim_error(bad_schema, 400, "invalidSyntax")
    assert_scim_error(await client.post("/.search", content=b"{"), 400, "invalidSyntax")
    assert_scim_error(await client.put("/", json={}), 405)
    assert_scim_error(await client.get("/.search"), 405)
    wrong = await client.get("/", headers={"Authorization": "Bearer wrong"})
    body = assert_scim_error(wrong, 401)
    assert "Resources" not in body
