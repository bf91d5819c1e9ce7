"""SCIM writes racing each other: several gateway instances on one real Redis (and, on each
store, concurrent requests to one instance) never lose an update nor break userName uniqueness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from harness import EchoUpstream, running
from scim_harness import (
    create_group,
    create_user,
    new_secret,
    okta_client,
    okta_user,
    patch,
    scim_doc,
)

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.state.store import Store

RACERS = 12


@contextlib.asynccontextmanager
async def instances(
    redis_url: str, upstream: EchoUpstream, count: int = 2
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` gateway processes' worth of state (each its own Redis client), one Redis."""
    doc = scim_doc(upstream.url)
    doc["gateway"]["store"] = redis_url
    async with contextlib.AsyncExitStack() as stack:
        apps = [
            await stack.enter_async_context(running(create_app(parse_settings(doc))))
            for _ in range(count)
        ]
        secret = await new_secret(apps[0])  # stored once, seen by every instance
        yield [await stack.enter_async_context(okta_client(app, secret)) for app in apps]


@contextlib.asynccontextmanager
async def one_instance(
    store: Store, upstream: EchoUpstream
) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with running(create_app(parse_settings(scim_doc(upstream.url)), store=store)) as app:
        async with okta_client(app, await new_secret(app)) as client:
            yield [client, client]


async def _members_all_land(clients: list[httpx.AsyncClient]) -> None:
    users = [
        await create_user(clients[0], user_name=f"u{i}@example.com", external_id=f"00u{i}")
        for i in range(RACERS)
    ]
    group = await create_group(clients[0], "Engineering")

    async def add(i: int) -> httpx.Response:
        body = patch({"op": "add", "path": "members", "value": [{"value": users[i]["id"]}]})
        return await clients[i % len(clients)].patch(f"/Groups/{group['id']}", json=body)

    responses = await asyncio.gather(*(add(i) for i in range(RACERS)))

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    final = (await clients[1].get(f"/Groups/{group['id']}")).json()
    assert sorted(m["value"] for m in final["members"]) == sorted(u["id"] for u in users)
    assert final["meta"]["version"] == f'W/"{RACERS + 1}"'
    for user in users:
        listed = (await clients[0].get(f"/Users/{user['id']}")).json()["groups"]
        assert [g["value"] for g in listed] == [group["id"]]


async def test_concurrent_patches_on_one_group_all_land_across_instances(
    redis_url: str, upstream: EchoUpstream
) -> None:
    async with instances(redis_url, upstream) as clients:
        await _members_all_land(clients)


async def test_concurrent_patches_on_one_group_all_land(
    store: Store, upstream: EchoUpstream
) -> None:
    async with one_instance(store, upstream) as clients:
        await _members_all_land(clients)


async def test_concurrent_adds_and_removes_keep_memberships_right(
    redis_url: str, upstream: EchoUpstream
) -> None:
    async with instances(redis_url, upstream, count=3) as clients:
        users = [
            await create_user(clients[0], user_name=f"u{i}@example.com", external_id=f"00u{i}")
            for i in range(RACERS)
        ]
        group = await create_group(clients[0], "Engineering", tuple(u["id"] for u in users[::2]))

        async def flip(i: int) -> httpx.Response:
            user_id = users[i]["id"]
            operation = (
                {"op": "remove", "path": f'members[value eq "{user_id}"]'}
                if i % 2 == 0
                else {"op": "add", "path": "members", "value": [{"value": user_id}]}
            )
            return await clients[i % 3].patch(f"/Groups/{group['id']}", json=patch(operation))

        assert all(r.status_code == 200 for r in await asyncio.gather(*map(flip, range(RACERS))))

        final = (await clients[2].get(f"/Groups/{group['id']}")).json()
        assert sorted(m["value"] for m in final["members"]) == sorted(u["id"] for u in users[1::2])
        for i, user in enumerate(users):
            groups = (await clients[i % 3].get(f"/Users/{user['id']}")).json().get("groups", [])
            assert len(groups) == i % 2, (i, groups)


async def test_concurrent_creates_of_one_user_name_in_any_case_have_one_winner(
    redis_url: str, upstream: EchoUpstream
) -> None:
    spellings = ["alice@example.com", "ALICE@example.com", "Alice@Example.com", "alice@EXAMPLE.COM"]
    async with instances(redis_url, upstream, count=4) as clients:
        responses = await asyncio.gather(
            *(
                clients[i % 4].post("/Users", json=okta_user(user_name=name, external_id=f"x{i}"))
                for i, name in enumerate(spellings * 3)
            )
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (len(responses) - 1), [r.text for r in responses]
        assert all(r.json()["scimType"] == "uniqueness" for r in responses if r.status_code == 409)
        assert (await clients[0].get("/Users")).json()["totalResults"] == 1


async def test_concurrent_renames_to_one_user_name_have_one_winner(
    store: Store, upstream: EchoUpstream
) -> None:
    async with one_instance(store, upstream) as clients:
        client = clients[0]
        users = [
            await create_user(client, user_name=f"u{i}@example.com", external_id=f"00u{i}")
            for i in range(6)
        ]

        async def rename(i: int) -> httpx.Response:
            to = "Taken@Example.com" if i % 2 else "taken@example.com"
            body = patch({"op": "replace", "path": "userName", "value": to})
            return await client.patch(f"/Users/{users[i]['id']}", json=body)

        responses = await asyncio.gather(*map(rename, range(6)))

        assert sorted(r.status_code for r in responses) == [200] + [409] * 5
        found = await client.get("/Users", params={"filter": 'userName eq "TAKEN@example.com"'})
        assert found.json()["totalResults"] == 1
        losers = [u for u, r in zip(users, responses, strict=True) if r.status_code == 409]
        for loser in losers:  # their own names are still theirs
            again = await client.post("/Users", json=okta_user(user_name=loser["userName"]))
            assert again.status_code == 409


async def test_concurrent_changes_to_one_user_both_land(
    redis_url: str, upstream: EchoUpstream
) -> None:
    async with instances(redis_url, upstream) as clients:
        alice = await create_user(clients[0])
        url = f"/Users/{alice['id']}"
        responses = await asyncio.gather(
            clients[0].patch(url, json=patch({"op": "replace", "value": {"active": False}})),
            clients[1].patch(url, json=patch({"op": "replace", "path": "title", "value": "CTO"})),
            clients[0].patch(url, json=patch({"op": "add", "path": "nickName", "value": "Al"})),
        )
        assert all(r.status_code == 200 for r in responses)

        final = (await clients[1].get(url)).json()
        assert (final["active"], final["title"], final["nickName"]) == (False, "CTO", "Al")
        assert final["meta"]["version"] == 'W/"4"'
