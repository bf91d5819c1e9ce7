"""The exact local copy of `session_reads = "tracked"` (`tracking.py`) against a real Redis: two
gateway instances (two stores, each with its own copy) on one Redis, as in production.

A copy that serves a revoked session even once is a hole, so each test revokes or changes what
the other instance has just read and checks that the very next read sees it: a revocation
through one instance, a change by any client, FLUSHALL, a lost tracking connection, Redis
restarted empty or stopped. A proxy that stops passing Redis's bytes on (a half-open
connection: a partition, a dead host, a hung Redis) shows a copy is served only within `_FRESH`
of Redis's last word, and that other keys than session records are never served from it. One
test shows the copy is used at all (Redis silent, a repeated read within `_FRESH` still answers);
the rest could not tell a copy from none, which is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from gateway.state.store.tracking import _FRESH, TrackedGet

KEY = "k" * 32
SESSION = "session:s"


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Proxy:
    """A TCP proxy in front of Redis that can stop passing on what Redis sends (`replies`) or
    what the client sends (`requests`), without closing anything: a half-open connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.replies = True
        self.requests = True
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, client: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
        redis_in, redis_out = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [out, redis_out]
        self._tasks += [
            asyncio.create_task(self._pipe(client, redis_out, up=True)),
            asyncio.create_task(self._pipe(redis_in, out, up=False)),
        ]

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, up: bool
    ) -> None:
        while data := await source.read(65536):
            if self.requests if up else self.replies:
                sink.write(data)
        sink.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(redis_server: RedisServer, redis_url: str) -> AsyncIterator[Proxy]:
    in_front = Proxy(redis_server.port)
    yield in_front
    await in_front.close()


async def proxied_reader(proxy: Proxy, clock: Clock | None = None) -> TrackedGet:
    port = await proxy.start()
    return TrackedGet(Endpoint(port=port), kept="session:", timeout=0.5, clock=clock or Clock())


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


async def test_a_repeated_read_within_fresh_is_answered_from_the_copy(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    clock = Clock()
    reader = TrackedGet(Endpoint(port=port), kept="session:", timeout=0.5, clock=clock)
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set(SESSION, b"kept")
            assert await reader.get(SESSION) == b"kept"
            writer.client_pause(1000, all=True)  # Redis answers nobody for a second
            try:
                clock.now += _FRESH / 2
                assert await reader.get(SESSION) == b"kept"
                with pytest.raises(RespError):  # a key never read must go to Redis
                    await reader.get("session:other")
            finally:
                writer.client_unpause()
    finally:
        reader.close()


async def test_a_silent_redis_is_asked_again_once_fresh_has_passed(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    clock = Clock()
    reader = TrackedGet(Endpoint(port=port), kept="session:", timeout=0.5, clock=clock)
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set(SESSION, b"kept")
            assert await reader.get(SESSION) == b"kept"
            writer.client_pause(1000, all=True)
            try:
                clock.now += _FRESH
                with pytest.raises(RespError):  # fails closed, and the copy goes with it
                    await reader.get(SESSION)
            finally:
                writer.client_unpause()
            writer.delete(SESSION)
            assert await reader.get(SESSION) is None
    finally:
        reader.close()


async def test_a_revocation_whose_push_is_lost_is_not_served_past_fresh(
    proxy: Proxy, redis_url: str
) -> None:
    clock = Clock()
    reader = await proxied_reader(proxy, clock)
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set(SESSION, b"alive")
            assert await reader.get(SESSION) == b"alive"
            proxy.replies = False  # a partition: Redis's push never arrives
            writer.delete(SESSION)
            clock.now += _FRESH
            started = time.monotonic()
            with pytest.raises(RespError):
                await reader.get(SESSION)
            assert time.monotonic() - started < 1.5  # within the store timeout (0.5 s)
            clock.now += 10
            with pytest.raises(RespError):  # the copy is gone, not served again
                await reader.get(SESSION)
    finally:
        reader.close()


async def test_a_hung_redis_fails_closed_after_fresh(proxy: Proxy, redis_url: str) -> None:
    port = await proxy.start()
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", session_reads="tracked", timeout=0.5)
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set(SESSION, b"alive")
        assert await store.get(SESSION) == b"alive"
        proxy.replies = proxy.requests = False  # both ways: a host gone without a close
        await asyncio.sleep(_FRESH * 1.5)
        with pytest.raises(StoreUnavailableError):
            await store.get(SESSION)
    finally:
        await store.close()


async def test_a_key_other_than_a_session_record_is_always_read_from_redis(
    proxy: Proxy, redis_url: str
) -> None:
    reader = await proxied_reader(proxy)  # the clock stands still: a session copy would serve
    try:
        with redis.Redis.from_url(redis_url) as writer:
            writer.set("result_page:x", b"page", px=60_000)
            writer.set(SESSION, b"alive")
            assert await reader.get("result_page:x") == b"page"
            assert await reader.get(SESSION) == b"alive"
            proxy.replies = False
            writer.delete("result_page:x")  # expired, deleted: its push never arrives
            assert await reader.get(SESSION) == b"alive"  # the session copy is used meanwhile
            with pytest.raises(RespError):
                await reader.get("result_page:x")
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
    for cookie in cookies:
        with contextlib.suppress(StoreUnavailableError):  # the one failed call a restart may cost
            assert await other.load(cookie) is None
    assert [await other.load(cookie) for cookie in cookies] == [None, None]


async def test_a_user_that_may_not_track_reads_every_session_from_redis(
    redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL user without CLIENT: tracked reads fall back to plain GETs, so a revocation on
    another instance is seen by the next read here too, and the log says why."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.acl_setuser(
            "no-tracking",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            commands=["+@all", "-client"],
        )
    try:
        limited = redis_url.replace("redis://", "redis://no-tracking:pw@", 1)
        stores = [
            RedisStore.from_url(limited, session_reads="tracked"),
            RedisStore.from_url(redis_url, session_reads="tracked"),
        ]
        signer = CookieSigner((KEY,), "gateway.session")
        here, other = (SessionManager(store, signer, time.time) for store in stores)
        try:
            _, cookie = await other.create(identity("alice"), kind="global", duration=60)
            assert await here.load(cookie) is not None
            assert await here.load(cookie) is not None
            assert await other.revoke_user("uuid-alice") == 1
            assert await here.load(cookie) is None
        finally:
            for store in stores:
                await store.close()
    finally:
        with redis.Redis.from_url(redis_url) as admin:
            admin.acl_deluser("no-tracking")
    refusals = [r.getMessage() for r in caplog.records if r.name == "gateway.store"]
    assert len(refusals) == 1
    assert "NOPERM" in refusals[0]
