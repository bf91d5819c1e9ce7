"""The hot path's GET against a real Redis, and against a server that goes silent: each
`KeyReader`, the tracked one (`tracking.py`), the pipelined one (`resp.py`) and redis-py's
(`RedisPyGet`). The wire-level
conformance (exact bytes, late replies, lost connections) is `test_resp_wire.py`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis_server import free_port

from gateway.state.store.redis import KeyReader, RedisPyGet
from gateway.state.store.resp import Endpoint, PipelinedGet, RespError
from gateway.state.store.tracking import TrackedGet

Open = Callable[..., KeyReader]  # (url, *, db=0, timeout=2.0, size=2) -> a reader of that Redis


def endpoint_of(url: str, db: int = 0) -> Endpoint:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    return Endpoint(port=port, db=db)


@pytest.fixture(params=["tracked", "pipelined", "redis-py"])
async def open_reader(request: pytest.FixtureRequest) -> AsyncIterator[Open]:
    """Readers of the `[gateway] session_reads` kind in turn; redis-py's clients closed after."""
    clients: list[Redis] = []

    def make(url: str, *, db: int = 0, timeout: float = 2.0, size: int = 2) -> KeyReader:
        if request.param == "tracked":
            return TrackedGet(endpoint_of(url, db), kept="", timeout=timeout)  # keep every key
        if request.param == "pipelined":
            return PipelinedGet(endpoint_of(url, db), size=size, timeout=timeout)
        # A bounded pool that makes callers wait for a connection, as the store's does.
        pool = BlockingConnectionPool.from_url(
            f"{url.rsplit('/', 1)[0]}/{db}",
            max_connections=50,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            protocol=2,
        )
        clients.append(Redis.from_pool(pool))
        return RedisPyGet(clients[-1])

    yield make
    for client in clients:
        await client.aclose()


async def test_concurrent_gets_each_get_their_own_value(redis_url: str, open_reader: Open) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.mset({f"k{i}": f"value-{i}".encode() * (i % 7 + 1) for i in range(300)})
    fast = open_reader(redis_url)
    try:
        keys = [f"k{i}" for i in range(300)] + ["missing"]
        values = await asyncio.gather(*(fast.get(k) for k in keys))
    finally:
        fast.close()
    assert values[-1] is None
    assert values[:-1] == [f"value-{i}".encode() * (i % 7 + 1) for i in range(300)]


async def test_a_large_value_arriving_in_pieces_is_whole(redis_url: str, open_reader: Open) -> None:
    big = os.urandom(3 * 1024 * 1024)
    with redis.Redis.from_url(redis_url) as client:
        client.set("big", big)
    fast = open_reader(redis_url)
    try:
        assert await fast.get("big") == big
    finally:
        fast.close()


async def test_the_database_in_the_url_is_selected(redis_url: str, open_reader: Open) -> None:
    with redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3") as client:
        client.set("only-in-3", b"here")
    in_3, in_0 = open_reader(redis_url, db=3), open_reader(redis_url)
    try:
        assert await in_3.get("only-in-3") == b"here"
        assert await in_0.get("only-in-3") is None
    finally:
        in_3.close()
        in_0.close()


async def test_an_error_reply_is_an_error_not_a_value(redis_url: str, open_reader: Open) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.sadd("a-set", "m")
    fast = open_reader(redis_url)
    try:
        with pytest.raises(RespError, match="WRONGTYPE"):
            await fast.get("a-set")
    finally:
        fast.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_silent_server_times_out_and_the_connection_is_dropped(
    silent_server: int, open_reader: Open
) -> None:
    fast = open_reader(f"redis://127.0.0.1:{silent_server}/0", size=1, timeout=0.2)
    try:
        first, second = await asyncio.gather(fast.get("a"), fast.get("b"), return_exceptions=True)
        assert isinstance(first, RespError) and isinstance(second, RespError)
        # The timed-out connection is gone: a late reply can never be handed to a later request.
        with pytest.raises(RespError):
            await fast.get("c")
    finally:
        fast.close()


async def test_nothing_listening_is_an_error(open_reader: Open) -> None:
    fast = open_reader(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises(RespError, match=r"(?i)connect"):
        await fast.get("k")


async def test_the_suite_runs_on_uvloop_like_production(redis_url: str, open_reader: Open) -> None:
    # uvloop's transports are not asyncio.Transport subclasses; a check that assumed so passed
    # on the default loop and broke every request under `gateway serve`.
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    fast = open_reader(redis_url)
    try:
        assert await fast.get("nothing-here") is None
    finally:
        fast.close()
