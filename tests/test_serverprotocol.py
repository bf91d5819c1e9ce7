"""The server protocol `gateway serve` runs (`web/serverprotocol.py`): a response's writes of one
loop step go out as one, a head is never held back while the app waits for its body, and an app
that asked is told when the client hangs up before its response is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from gateway.web.serverprotocol import (
    COALESCE_LIMIT,
    DISCONNECT,
    DisconnectListener,
    GatewayHttpToolsProtocol,
)

App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    """What the protocol wrote, one entry per write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(app: App, request: bytes) -> tuple[GatewayHttpToolsProtocol, RecordingTransport]:
    """Feed `request` to a protocol serving `app` and let the app run to its end."""
    config = uvicorn.Config(app, log_config=None, lifespan="off")
    config.load()
    protocol = GatewayHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await asyncio.wait_for(asyncio.gather(*protocol.tasks), timeout=5)
    await asyncio.sleep(0)  # a flush scheduled for the end of the step
    return protocol, transport


def small_app(body: bytes, *headers: tuple[bytes, bytes]) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    return app


GET = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"


async def test_a_small_response_is_one_write() -> None:
    _, transport = await exchange(small_app(b"hello", (b"content-length", b"5")), GET)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nhello")
    assert not transport.closed


async def test_a_chunked_response_is_one_write_with_its_last_chunk() -> None:
    _, transport = await exchange(small_app(b"hello"), GET)
    assert len(transport.writes) == 1
    assert b"transfer-encoding: chunked\r\n" in transport.writes[0]
    assert transport.writes[0].endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


async def test_connection_close_sends_everything_before_closing() -> None:
    _, transport = await exchange(
        small_app(b"bye", (b"content-length", b"3"), (b"connection", b"close")), GET
    )
    assert transport.closed
    assert b"".join(transport.writes).endswith(b"\r\n\r\nbye")


async def test_pipelined_responses_keep_their_order() -> None:
    count = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal count
        count += 1
        body = b"answer %d" % count
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    protocol, transport = await exchange(app, GET * 3)
    for _ in range(10):  # each pipelined request starts when the one before is complete
        await asyncio.sleep(0)
        if protocol.tasks:
            await asyncio.gather(*protocol.tasks)
    written = b"".join(transport.writes)
    assert [written.index(b"answer %d" % n) for n in (1, 2, 3)] == sorted(
        written.index(b"answer %d" % n) for n in (1, 2, 3)
    )
    assert len(transport.writes) == 3


async def test_a_large_body_is_not_held() -> None:
    big = b"x" * (COALESCE_LIMIT * 2)
    _, transport = await exchange(small_app(big, (b"content-length", b"%d" % len(big))), GET)
    assert b"".join(transport.writes).endswith(big)


# -- on a real socket


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Callable[[App], Awaitable[int]]]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: App) -> int:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            lifespan="off",
            http=GatewayHttpToolsProtocol,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        servers.append((server, task))
        return int(server.servers[0].sockets[0].getsockname()[1])

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


async def test_a_head_goes_out_while_the_app_waits_for_its_body(
    serve: Callable[[App], Awaitable[int]],
) -> None:
    body_ready = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await body_ready.wait()
        await send({"type": "http.response.body", "body": b"later"})

    port = await serve(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(GET)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")  # before the body exists
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            body_ready.set()
            assert await reader.readuntil(b"0\r\n\r\n") == b"5\r\nlater\r\n0\r\n\r\n"
    finally:
        writer.close()


@pytest.mark.parametrize("unset_before_the_end", [False, True])
async def test_a_hang_up_is_told_to_the_listener(
    serve: Callable[[App], Awaitable[int]], unset_before_the_end: bool
) -> None:
    listening = asyncio.Event()
    told = asyncio.Event()
    calls = 0

    def hung_up() -> None:
        nonlocal calls
        calls += 1
        told.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        listener: DisconnectListener = scope["extensions"][DISCONNECT]
        listener.callback = hung_up
        if unset_before_the_end:
            listener.callback = None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        listening.set()
        await asyncio.sleep(3)  # an endless stream, as far as the client can tell

    port = await serve(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    async with asyncio.timeout(5):
        await listening.wait()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()
        if not unset_before_the_end:
            await told.wait()
    await asyncio.sleep(0.1)
    assert calls == (0 if unset_before_the_end else 1)


async def test_no_hang_up_is_told_after_a_complete_response(
    serve: Callable[[App], Awaitable[int]],
) -> None:
    calls = 0

    def hung_up() -> None:
        nonlocal calls
        calls += 1

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT].callback = hung_up
        await small_app(b"done", (b"content-length", b"4"))(scope, receive, send)

    port = await serve(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"done")).endswith(b"\r\n\r\ndone")
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.1)
    assert calls == 0
