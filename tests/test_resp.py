"""The hot path's pipelined GET against a real Redis, and against a server that goes silent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import redis
from redis_server import free_port

from gateway.state.store.resp import Endpoint, PipelinedGet, RespError


def endpoint_of(url: str, db: int = 0) -> Endpoint:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    return Endpoint(port=port, db=db)


async def test_concurrent_gets_each_get_their_own_value(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.mset({f"k{i}": f"value-{i}".encode() * (i % 7 + 1) for i in range(300)})
    fast = PipelinedGet(endpoint_of(redis_url))
    try:
        keys = [f"k{i}" for i in range(300)] + ["missing"]
        values = await asyncio.gather(*(fast.get(k) for k in keys))
    finally:
        fast.close()
    assert values[-1] is None
    assert values[:-1] == [f"value-{i}".encode() * (i % 7 + 1) for i in range(300)]


async def test_a_large_value_arriving_in_pieces_is_whole(redis_url: str) -> None:
    big = os.urandom(3 * 1024 * 1024)
    with redis.Redis.from_url(redis_url) as client:
        client.set("big", big)
    fast = PipelinedGet(endpoint_of(redis_url))
    try:
        assert await fast.get("big") == big
    finally:
        fast.close()


async def test_the_database_in_the_url_is_selected(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3") as client:
        client.set("only-in-3", b"here")
    in_3, in_0 = PipelinedGet(endpoint_of(redis_url, db=3)), PipelinedGet(endpoint_of(redis_url))
    try:
        assert await in_3.get("only-in-3") == b"here"
        assert await in_0.get("only-in-3") is None
    finally:
        in_3.close()
        in_0.close()


async def test_an_error_reply_is_an_error_not_a_value(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.sadd("a-set", "m")
    fast = PipelinedGet(endpoint_of(redis_url))
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


async def test_a_silent_server_times_out_and_the_connection_is_dropped(silent_server: int) -> None:
    fast = PipelinedGet(Endpoint(port=silent_server), size=1, timeout=0.2)
    try:
        first, second = await asyncio.gather(fast.get("a"), fast.get("b"), return_exceptions=True)
        assert isinstance(first, RespError) and isinstance(second, RespError)
        # The timed-out connection is gone: a late reply can never be handed to a later request.
        with pytest.raises(RespError):
            await fast.get("c")
    finally:
        fast.close()


async def test_nothing_listening_is_an_error() -> None:
    fast = PipelinedGet(Endpoint(port=free_port()), timeout=0.5)
    with pytest.raises(RespError, match="cannot connect"):
        await fast.get("k")


async def test_the_suite_runs_on_uvloop_like_production(redis_url: str) -> None:
    # uvloop's transports are not asyncio.Transport subclasses; a check that assumed so passed
    # on the default loop and broke every request under `gateway serve`.
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    fast = PipelinedGet(endpoint_of(redis_url))
    try:
        assert await fast.get("nothing-here") is None
    finally:
        fast.close()
