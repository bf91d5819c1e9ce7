"""The store contract, run on `MemoryStore` and on `RedisStore` against a real Redis.

Expiry is observed without sleeping on a guess: the fake clock jumps for the memory store, and
for Redis a short TTL is polled until it lapses (bounded by EXPIRY_BOUND). To check that
something did *not* expire, a timer key set afterwards with the same TTL is waited out first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from clock import FakeClock
from redis import exceptions as redis_errors
from redis_server import RedisServer, free_port

from gateway.config import SessionReads
from gateway.errors import StoreUnavailableError
from gateway.state.store import Store, open_store
from gateway.state.store.memory import MemoryStore
from gateway.state.store.redis import RedisStore
from gateway.state.store.resp import RespError

# seconds: a TTL that lapses quickly on real Redis, yet long enough that the read or write
# right after the one that set it always lands before it lapses (a GC pause or a descheduled
# process on a loaded machine can take 50 ms, which would fail those assertions).
SHORT = 0.5
EXPIRY_BOUND = SHORT + 2.0  # seconds: how long a lapsed TTL may take to show


@pytest.fixture(params=["memory", "redis", "tracked-reads", "redis-py-reads"])
def store(request: pytest.FixtureRequest, open_store_of: Callable[[str], Store]) -> Store:
    """conftest's stores, and Redis read each other way: the contract holds for every GET."""
    return open_store_of(request.param)


@pytest.fixture(params=["tracked", "pipelined", "redis-py"])
def reads(request: pytest.FixtureRequest) -> SessionReads:
    """`[gateway] session_reads` for the tests that open a RedisStore themselves: each."""
    return request.param  # type: ignore[no-any-return]


async def _eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Poll `check` until it is true or EXPIRY_BOUND passes; whether it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EXPIRY_BOUND
    while not await check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _absent(store: Store, key: str) -> bool:
    async def check() -> bool:
        return await store.get(key) is None

    return await _eventually(check)


async def _let_short_ttls_lapse(store: Store, clock: FakeClock) -> None:
    """Return once everything stored so far with a SHORT TTL has expired."""
    # The timer is set last, so it expires last; it is polled, the other keys need not be.
    await store.set("test:timer", b"", ttl=SHORT)
    clock.advance(SHORT)
    assert await _absent(store, "test:timer")


async def test_get_returns_what_set_stored(store: Store) -> None:
    await store.set("k", b"\x00value\xff")

    assert await store.get("k") == b"\x00value\xff"


async def test_missing_key_is_none(store: Store) -> None:
    assert await store.get("missing") is None


async def test_value_expires_after_ttl(store: Store, clock: FakeClock) -> None:
    await store.set("k", b"v", ttl=SHORT)
    assert await store.get("k") == b"v"

    clock.advance(SHORT)

    assert await _absent(store, "k")


async def test_set_replaces_value_and_drops_old_ttl(store: Store, clock: FakeClock) -> None:
    await store.set("k", b"old", ttl=SHORT)
    await store.set("k", b"new")

    await _let_short_ttls_lapse(store, clock)

    assert await store.get("k") == b"new"


async def test_set_replaces_value_and_sets_new_ttl(store: Store, clock: FakeClock) -> None:
    await store.set("k", b"old")
    await store.set("k", b"new", ttl=SHORT)
    assert await store.get("k") == b"new"

    clock.advance(SHORT)

    assert await _absent(store, "k")


async def test_set_if_absent_stores_only_once(store: Store) -> None:
    assert await store.set_if_absent("k", b"first", ttl=60) is True
    assert await store.set_if_absent("k", b"second", ttl=60) is False

    assert await store.get("k") == b"first"


async def test_set_if_absent_stores_again_after_expiry(store: Store, clock: FakeClock) -> None:
    assert await store.set_if_absent("k", b"first", ttl=SHORT) is True

    clock.advance(SHORT)
    assert await _absent(store, "k")

    assert await store.set_if_absent("k", b"second") is True
    assert await store.get("k") == b"second"


async def test_take_is_single_use(store: Store) -> None:
    await store.set("k", b"v", ttl=60)

    assert await store.take("k") == b"v"
    assert await store.take("k") is None
    assert await store.get("k") is None


async def test_take_missing_key_is_none(store: Store) -> None:
    assert await store.take("missing") is None


async def test_take_under_concurrency_has_one_winner(store: Store) -> None:
    await store.set("k", b"v", ttl=60)

    results = await asyncio.gather(*(store.take("k") for _ in range(20)))

    assert results.count(b"v") == 1
    assert results.count(None) == 19


async def test_delete_counts_keys_that_existed(store: Store) -> None:
    await store.set("a", b"1")
    await store.set("b", b"2", ttl=60)
    await store.add_to_set("s", "m", ttl=60)

    assert await store.delete("a", "b", "s", "missing") == 3
    assert await store.get("a") is None
    assert await store.set_members("s") == set()
    assert await store.delete("a") == 0
    assert await store.delete() == 0


async def test_set_members_add_and_remove(store: Store) -> None:
    assert await store.set_members("s") == set()

    await store.add_to_set("s", "a", ttl=60)
    await store.add_to_set("s", "b", ttl=60)
    await store.add_to_set("s", "a", ttl=60)
    await store.add_to_set("s", "ünïcode", ttl=60)
    assert await store.set_members("s") == {"a", "b", "ünïcode"}

    await store.remove_from_set("s", "a", "not-a-member")
    assert await store.set_members("s") == {"b", "ünïcode"}

    await store.remove_from_set("s")
    await store.remove_from_set("missing", "a")
    await store.remove_from_set("s", "b", "ünïcode")
    assert await store.set_members("s") == set()


async def test_set_expires_after_ttl(store: Store, clock: FakeClock) -> None:
    await store.add_to_set("s", "a", ttl=SHORT)

    clock.advance(SHORT)

    async def emptied() -> bool:
        return await store.set_members("s") == set()

    assert await _eventually(emptied)


async def test_add_to_set_never_shortens_ttl(store: Store, clock: FakeClock) -> None:
    await store.add_to_set("s", "a", ttl=60)
    await store.add_to_set("s", "b", ttl=SHORT)

    await _let_short_ttls_lapse(store, clock)

    assert await store.set_members("s") == {"a", "b"}


async def test_add_to_set_lengthens_ttl(store: Store, clock: FakeClock) -> None:
    await store.add_to_set("s", "a", ttl=SHORT)
    await store.add_to_set("s", "b", ttl=60)

    await _let_short_ttls_lapse(store, clock)

    assert await store.set_members("s") == {"a", "b"}


async def test_compare_and_set_creates_only_an_absent_key(store: Store) -> None:
    assert await store.compare_and_set("k", None, b"first") is True
    assert await store.compare_and_set("k", None, b"second") is False

    assert await store.get("k") == b"first"


async def test_compare_and_set_replaces_only_the_expected_value(
    store: Store, clock: FakeClock
) -> None:
    await store.set("k", b"v1")

    assert await store.compare_and_set("k", b"stale", b"lost") is False
    assert await store.compare_and_set("k", b"v1", b"v2", ttl=SHORT) is True
    assert await store.get("k") == b"v2"

    clock.advance(SHORT)
    assert await _absent(store, "k")  # with the new expiry


async def test_compare_and_set_deletes_only_the_expected_value(store: Store) -> None:
    await store.set("k", b"v1")

    assert await store.compare_and_set("k", b"other", None) is False
    assert await store.compare_and_set("k", b"v1", None) is True
    assert await store.get("k") is None
    assert await store.compare_and_set("k", b"v1", None) is False


async def test_compare_and_set_under_concurrency_has_one_winner(store: Store) -> None:
    await store.set("k", b"0")

    results = await asyncio.gather(
        *(store.compare_and_set("k", b"0", str(i).encode()) for i in range(1, 21))
    )

    assert results.count(True) == 1
    assert await store.get("k") == str(results.index(True) + 1).encode()


async def test_capped_list_keeps_the_newest_items_newest_first(store: Store) -> None:
    assert await store.list_items("log", 10) == []

    for i in range(5):
        await store.push_capped("log", str(i).encode(), limit=3)

    assert await store.list_items("log", 10) == [b"4", b"3", b"2"]
    assert await store.list_items("log", 2) == [b"4", b"3"]
    assert await store.list_items("log", 0) == []
    assert await store.delete("log") == 1
    with pytest.raises(ValueError, match="at least one"):
        await store.push_capped("log", b"x", limit=0)


async def test_a_counter_counts_and_expires_a_ttl_after_its_first_count(
    store: Store, clock: FakeClock
) -> None:
    assert await store.count("hits", ttl=SHORT) == 1
    assert [await store.count("hits", ttl=60) for _ in range(2)] == [2, 3]  # life not lengthened
    assert await store.count("other", ttl=60) == 1

    await _let_short_ttls_lapse(store, clock)

    assert await store.count("hits", ttl=60) == 1
    assert await store.count("other", ttl=60) == 2


async def test_concurrent_counts_are_never_lost(store: Store) -> None:
    totals = await asyncio.gather(*(store.count("hits", ttl=60) for _ in range(50)))

    assert sorted(totals) == list(range(1, 51))


async def test_ping_answers_and_close_can_repeat(store: Store) -> None:
    await store.ping()
    await store.close()
    await store.close()


async def test_memory_store_sweeps_expired_keys_nobody_reads(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(5000):
        await store.set(f"old:{i}", b"v", ttl=1)
    clock.advance(1)

    for i in range(5000):
        await store.set(f"new:{i}", b"v", ttl=60)

    assert len(store._entries) <= 5000 + 1024
    assert await store.get("new:0") == b"v"


async def test_open_store_picks_the_store(redis_url: str) -> None:
    memory = open_store("memory")
    shared = open_store(redis_url)
    try:
        assert isinstance(memory, MemoryStore)
        assert isinstance(shared, RedisStore)
        await shared.ping()
    finally:
        await memory.close()
        await shared.close()


async def test_redis_store_over_unix_socket(
    redis_server: RedisServer, redis_url: str, reads: SessionReads
) -> None:
    async with _redis_store(redis_server.unix_url, reads) as store:
        await store.set("k", b"v", ttl=60)
        assert await store.get("k") == b"v"
        assert await store.take("k") == b"v"


def _every_call(store: Store) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "get": lambda: store.get("k"),
        "set": lambda: store.set("k", b"v"),
        "set with ttl": lambda: store.set("k", b"v", ttl=60),
        "set_if_absent": lambda: store.set_if_absent("k", b"v", ttl=60),
        "take": lambda: store.take("k"),
        "delete": lambda: store.delete("k"),
        "add_to_set": lambda: store.add_to_set("s", "m", ttl=60),
        "set_members": lambda: store.set_members("s"),
        "remove_from_set": lambda: store.remove_from_set("s", "m"),
        "compare_and_set": lambda: store.compare_and_set("k", None, b"v"),
        "push_capped": lambda: store.push_capped("l", b"v", limit=3),
        "list_items": lambda: store.list_items("l", 3),
        "count": lambda: store.count("c", ttl=60),
        "ping": store.ping,
    }


async def _assert_every_call_unavailable(store: Store) -> None:
    async with asyncio.timeout(5):
        for name, call in _every_call(store).items():
            with pytest.raises(StoreUnavailableError) as caught:
                await call()
            cause = caught.value.__cause__
            assert isinstance(cause, redis_errors.RedisError | OSError | RespError), name


@asynccontextmanager
async def _redis_store(url: str, reads: SessionReads) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(url, session_reads=reads)
    try:
        yield store
    finally:
        await store.close()


async def test_redis_store_unreachable_raises_store_unavailable(reads: SessionReads) -> None:
    async with _redis_store(f"redis://127.0.0.1:{free_port()}/0", reads) as store:
        await _assert_every_call_unavailable(store)


async def test_redis_store_recovers_after_redis_restarts(
    redis_server: RedisServer, redis_url: str, reads: SessionReads
) -> None:
    async with _redis_store(redis_url, reads) as store:
        await store.set("k", b"v")
        redis_server.stop()
        try:
            await _assert_every_call_unavailable(store)
        finally:
            redis_server.start()

        await store.set("k", b"after")
        assert await store.get("k") == b"after"
        await store.ping()


async def test_redis_store_restart_while_idle_costs_no_failed_call(
    redis_server: RedisServer, redis_url: str, reads: SessionReads
) -> None:
    async with _redis_store(redis_url, reads) as store:
        await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(5)))  # pool 5 connections
        redis_server.stop()
        redis_server.start()
        # Between requests the event loop sees the server close the pooled connections (the
        # helper blocked the loop while Redis restarted; one turn with I/O polling is enough).
        await asyncio.sleep(0.01)

        assert await asyncio.gather(*(store.get(f"k{i}") for i in range(5))) == [None] * 5
