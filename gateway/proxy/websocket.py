"""WebSocket upgrades to a protected app (SPEC 4: "WebSocket upgrades are proxied").

The guard decides a WebSocket handshake exactly as it decides any request (session, policy,
identity headers); a refusal closes the socket before it is accepted, which the server answers
with HTTP 403. An allowed one is opened to the upstream with the same header hygiene as a
proxied request plus the identity headers, and only then accepted towards the client with the
subprotocol the upstream chose. Messages are relayed both ways until either side closes; the
close code is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

log = logging.getLogger("gateway.websocket")

MAX_MESSAGE = 16 * 1024 * 1024
_UPSTREAM_FAILED = 1011  # RFC 6455 7.4.1: the server met an unexpected condition
# The client library writes these itself for its own handshake with the upstream.
_HANDSHAKE = (b"host", b"sec-websocket-", b"content-length", b"transfer-encoding")


def upstream_url(upstream: str, scope: Scope) -> str:
    """ws(s):// URL of the upstream for this request's raw path and query."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return "ws" + upstream.removeprefix("http") + target


async def relay(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    upstream: str,
    headers: list[tuple[bytes, bytes]],
    open_timeout: float,
) -> None:
    """Open the upstream socket, accept the client's, and relay until one side closes."""
    if (await receive())["type"] != "websocket.connect":
        return
    forwarded = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if not name.lower().startswith(_HANDSHAKE)
    ]
    offered = [Subprotocol(s) for s in scope.get("subprotocols") or ()]
    try:
        upstream_socket = await connect(
            upstream_url(upstream, scope),
            additional_headers=forwarded,
            subprotocols=offered or None,
            open_timeout=open_timeout,
            max_size=MAX_MESSAGE,
            compression=None,
            user_agent_header=None,
            proxy=None,
        )
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        log.warning("websocket upstream refused path=%s: %s", scope["path"], type(exc).__name__)
        await send({"type": "websocket.close", "code": _UPSTREAM_FAILED})
        return
    async with upstream_socket:
        await send({"type": "websocket.accept", "subprotocol": upstream_socket.subprotocol})
        to_upstream = asyncio.create_task(_client_to_upstream(receive, upstream_socket))
        to_client = asyncio.create_task(_upstream_to_client(upstream_socket, send))
        done, pending = await asyncio.wait(
            (to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        for task in done:
            task.result()


async def _client_to_upstream(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(message.get("code", 1000))
            return
        if message.get("text") is not None:
            await upstream.send(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send(message["bytes"])


async def _upstream_to_client(upstream: ClientConnection, send: Send) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    await send({"type": "websocket.close", "code": upstream.close_code or 1000})
