"""The exact local copy of `session_reads = "tracked"` (`tracking.py`) against a real Redis: two
gateway instances (two stores, each with its own copy) on one Redis, as in production.

A copy that serves a revoked session even once is a hole, so each test revokes or changes what
the other instance has just read and checks that the very next read sees it: a revocation
through one instance, a change by any client, FLUSHALL, a lost tracking connection, Redis
restarted empty or stopped. One test shows the copy is used at all (Redis paused, a repeated
read still answers); the rest could not tell a copy from none, which is the point.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from redis_server import RedisServer

from gateway.errors import StoreUnavailableError
from gateway.identity import Identity
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store.redis import RedisStore
from gateway.state.store.resp import Endpoint, RespError
from gateway.state.store.tracking import TrackedGet

KEY = "k" * 32


def identity(user: str) -> Identity:
    return Identity(
        id=f"nonce-{user}",
        user_uuid=f"uuid-{user}",
        sub=f"00u{user}",
        name=user.title(),
        email=f"{user}@example.com",
        groups=("Engineering",),
        idp_id="okta-1",
        idp_type="okta",
        iat=1_764_460_800,
    )


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[tuple[SessionManager, SessionManager]]:
    """Two instances' session managers, each on its own tracked store, one Redis."""
    stores = [RedisStore.from_url(redis_url, session_reads="tracked") for _ in range(2)]
    signer = CookieSigner((KEY,), "gateway.session")
    yield SessionManager(stores[0], signer, time.time), SessionManager(stores[1], signer, time.time)
    for store in stores:
        await store.close()


async def test_a_revocation_through_one_instance_bounces_the_next_read_on_the_other(
    instances: tuple[SessionManager, SessionManager],
) -> None:
    one, other = instances
    for round_ in range(200):  # the push must win every time, not most of the time
        _, cookie = await one.create(identity("alice"), kind="global", duration=60)
        assert await other.load(cookie) is not None  # read: the other instance keeps a copy
        assert await other.load(cookie) is not None
        assert await one.revoke_user("uuid-alice") == 1
        assert await other.load(cookie) is None, f"revoked session served in round {round_}"


async def test_concurrent_readers_never_see_a_revoked_session(
    instances: tuple[SessionManager, SessionManager],
) -> None:
    one, other = instances
    _, cookie = await one.create(identity("bob"), kind="global", duration=60)
    await other.load(cookie)
    readers = [asyncio.create_task(other.load(cookie)) for _ in range(50)]
    await one.revoke_user("uuid-bob")
    await asyncio.gather(*readers)
    assert [await other.load(cookie) for _ in range(20)] == [None] * 20


async def test_a_change_by_any_client_and_flushall_are_seen_at_once(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, session_reads="tracked")
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set("k", b"one")
            assert await store.get("k") == b"one"
            writer.set("k", b"two")
            assert await store.get("k") == b"two"
            assert await store.get("absent") is None
            writer.set("absent", b"now here")  # a kept "no such key" is dropped too
            assert await store.get("absent") == b"now here"
            writer.flushall()
            assert (await store.get("k"), await store.get("absent")) == (None, None)
    finally:
        await store.close()


async def test_a_repeated_read_is_answered_from_the_copy(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    reader = TrackedGet(Endpoint(port=port), timeout=0.5)
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set("k", b"kept")
            assert await reader.get("k") == b"kept"
            writer.client_pause(1000, all=True)  # Redis answers nobody for a second
            try:
                assert await reader.get("k") == b"kept"
                with pytest.raises(RespError):  # a key never read must go to Redis
                    await reader.get("other")
            finally:
                writer.client_unpause()
    finally:
        reader.close()


async def test_a_lost_tracking_connection_drops_the_copy(
    instances: tuple[SessionManager, SessionManager], redis_url: str
) -> None:
    one, other = instances
    cookies = [(await one.create(identity("carol"), kind="global", duration=60))[1] for _ in "ab"]
    assert None not in [await other.load(cookie) for cookie in cookies]
    with redis.Redis.from_url(redis_url) as admin:
        # Kill every tracking connection, then revoke: no push can reach the other instance.
        for client in admin.client_list():
            if "t" in client["flags"]:
                admin.client_kill_filter(_id=client["id"])
        await asyncio.sleep(0.05)  # the loop sees the close
        await one.revoke_user("uuid-carol")
    # The first read dials again; the second must not find the old copy on the new connection.
    assert [await other.load(cookie) for cookie in cookies] == [None, None]


async def test_redis_restarted_empty_never_serves_the_copy(
    instances: tuple[SessionManager, SessionManager], redis_server: RedisServer, redis_url: str
) -> None:
    one, other = instances
    cookies = [(await one.create(identity("dave"), kind="global", duration=60))[1] for _ in "ab"]
    assert None not in [await other.load(cookie) for cookie in cookies]
    redis_server.stop()  # no persistence: the sessions are gone with it
    try:
        for cookie in cookies:
            with pytest.raises(StoreUnavailableError):  # fail closed, not the copy
                await other.load(cookie)
    finally:
        redis_server.start()
    assert [await other.load(cookie) for cookie in cookies] == [None, None]


async def test_redis_restarted_while_idle_never_serves_the_copy(
    instances: tuple[SessionManager, SessionManager], redis_server: RedisServer, redis_url: str
) -> None:
    one, other = instances
    cookies = [(await one.create(identity("erin"), kind="global", duration=60))[1] for _ in "ab"]
    assert None not in [await other.load(cookie) for cookie in cookies]
    redis_server.stop()
    redis_server.start()
    for cookie in [*cookies, *cookies]:
        try:
            assert await other.load(cookie) is None
        except StoreUnavailableError:
            continue  # the one failed call a restart may cost; never the copy
