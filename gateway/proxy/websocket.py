"""WebSocket upgrades to a protected app (SPEC 4: "WebSocket upgrades are proxied").

The guard decides a WebSocket handshake exactly as it decides any request (session, policy,
identity headers); a refusal closes the socket before it is accepted, which the server answers
with HTTP 403. The handshake's target was checked before routing (origin-form only,
`routing.is_origin_form`). An allowed one is opened to the upstream with the same header
hygiene as a proxied request plus the identity headers, and only then accepted towards the
client with the subprotocol the upstream chose. Messages are relayed both ways until either side
closes; the close code is passed on, as one that may be sent on the wire.

This module owns the upstream leg of the handshake: the request line and Host are the client's,
written from the parsed upstream URL and the checked target, never re-parsed from a URL; a
redirect is not followed (it would carry the identity headers elsewhere); the upstream must pick
a subprotocol the client offered, and no extension (none is offered).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

log = logging.getLogger("gateway.websocket")

MAX_MESSAGE = 16 * 1024 * 1024  # uvicorn's bound on the client's messages (ws_max_size)
# Not sent on as the client sent them: websockets writes the upstream handshake's own
# Sec-WebSocket-* (a new key, version 13, the subprotocols offered, no extension) and
# `_UpstreamHandshake` its Host; a handshake has no body.
_HANDSHAKE_PREFIX = b"sec-websocket-"
_HANDSHAKE = (b"host", b"content-length", b"transfer-encoding")


class _UpstreamHandshake(ClientProtocol):
    """The upstream leg's handshake request: the client's Host in place of the upstream's own
    address, which websockets writes from the URI."""

    def __init__(self, uri: WebSocketURI, host: str, subprotocols: list[Subprotocol]):
        super().__init__(uri, subprotocols=subprotocols or None, max_size=MAX_MESSAGE)
        self.client_host = host

    def connect(self) -> Request:
        request = super().connect()
        own = [(k, v) for k, v in request.headers.raw_items() if k.lower() != "host"]
        return Request(request.path, Headers([("Host", self.client_host), *own]))


def upstream_uri(upstream: str, scope: Scope) -> WebSocketURI:
    """The upstream's address from its configured URL's parts, and the target: the upstream
    URL's path, then the raw path and query as the client sent them (checked origin-form)."""
    parts = urlsplit(upstream)
    tls = parts.scheme == "https"
    raw_path: bytes = scope["raw_path"]
    query: bytes = scope.get("query_string", b"")
    return WebSocketURI(
        secure=tls,
        host=parts.hostname or "",
        port=parts.port or (443 if tls else 80),
        path=parts.path + raw_path.decode("ascii"),
        query=query.decode("ascii"),
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


async def open_upstream(
    uri: WebSocketURI,
    host: str,
    headers: list[tuple[str, str]],
    subprotocols: list[Subprotocol],
    timeout: float,
) -> ClientConnection:
    """Connect and complete the handshake within `timeout`. Raises OSError, TimeoutError or
    InvalidHandshake: any answer but 101 (a redirect included), or a 101 with a subprotocol
    the client did not offer, or with an extension."""
    loop = asyncio.get_running_loop()
    protocol = _UpstreamHandshake(uri, host, subprotocols)
    async with asyncio.timeout(timeout):
        _, connection = await loop.create_connection(
            lambda: ClientConnection(protocol),
            uri.host,
            uri.port,
            ssl=_tls() if uri.secure else None,
            server_hostname=uri.host if uri.secure else None,
        )
        try:
            await connection.handshake(headers, user_agent_header=None)
        except BaseException:
            connection.transport.abort()
            raise
    connection.start_keepalive()
    return connection


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
    host = ""
    forwarded: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            host = value.decode("latin-1")
        elif not (lower in _HANDSHAKE or lower.startswith(_HANDSHAKE_PREFIX)):
            forwarded.append((name.decode("latin-1"), value.decode("latin-1")))
    offered = [Subprotocol(s) for s in scope.get("subprotocols") or ()]
    try:
        upstream_socket = await open_upstream(
            upstream_uri(upstream, scope), host, forwarded, offered, open_timeout
        )
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        log.warning("websocket upstream refused path=%s: %s", scope["path"], type(exc).__name__)
        await send({"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR})
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


# RFC 6455 7.4.1: 1005, 1006 and 1015 report what happened to a connection and "MUST NOT be set
# as a status code in a Close control frame": the relay closes the other leg with a code that
# may. No code given (1005) closes normally. The other side gone without a close (1006, or TLS
# failing, 1015): towards the upstream the client went away (1001); towards the client the
# upstream failed (1011), as when it cannot be reached at all.
_NOT_ON_THE_WIRE = (CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE, CloseCode.TLS_HANDSHAKE)


def wire_code(code: int, vanished: CloseCode) -> int:
    """The close code to send on for one the other leg reported; `vanished` stands for 1006
    and 1015."""
    if code == CloseCode.NO_STATUS_RCVD:
        return CloseCode.NORMAL_CLOSURE
    return vanished if code in _NOT_ON_THE_WIRE else code


async def _client_to_upstream(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code = wire_code(message.get("code", 1000), CloseCode.GOING_AWAY)
            await upstream.close(code)
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
    code = upstream.close_code
    code = CloseCode.NORMAL_CLOSURE if code is None else wire_code(code, CloseCode.INTERNAL_ERROR)
    await send({"type": "websocket.close", "code": code})
