"""The server protocol `gateway serve` runs (`web/serverprotocol.py`): an app that asked is told
when the client hangs up before its response is complete, and only then. (Trailers: see
test_transport_hardening; the proxy's use of this: test_proxy's hang-up tests.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Receive, Scope, Send

from gateway.web.serverprotocol import DISCONNECT, DisconnectListener

App = Callable[[Scope, Receive, Send], Awaitable[None]]


@pytest.mark.parametrize("unset_before_the_end", [False, True])
async def test_a_hang_up_is_told_to_the_listener(
    serve_protocol: Callable[[App], Awaitable[int]], unset_before_the_end: bool
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

    port = await serve_protocol(app)
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


GET = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"


async def test_no_hang_up_is_told_after_a_complete_response(
    serve_protocol: Callable[[App], Awaitable[int]],
) -> None:
    calls = 0

    def hung_up() -> None:
        nonlocal calls
        calls += 1

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][DISCONNECT].callback = hung_up
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"done"})

    port = await serve_protocol(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"done")).endswith(b"\r\n\r\ndone")
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.1)
    assert calls == 0
