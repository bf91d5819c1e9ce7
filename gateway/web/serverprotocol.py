"""The HTTP/1.1 server protocol `gateway serve` runs: uvicorn's httptools one, with three changes.

Trailers are never headers. uvicorn's `HttpToolsProtocol` hands the ASGI app the very list its
`on_header` callback appends to, and llhttp calls `on_header` for the trailer fields of a chunked
body too (RFC 9112 7.1.2). Trailers that arrive with the head (one write) are in
`scope["headers"]` before the app runs; later ones land there while it runs. A trailer
`X-Forwarded-For` would then be the right-most hop behind a trusted proxy, and any trailer would
reach the upstream as a header. RFC 9110 6.5.1 lets a recipient discard trailer fields, and
nothing here has a use for them, so they are dropped: once the head is complete, later fields go
to a list no one reads.

One write per response step. uvicorn writes a response's head and each body piece to the socket
as they are sent: two system calls and two packets for the smallest answer. Here the writes a
request's task makes in one step of the event loop are joined and go out together at the end of
that step (or at once, when the response is complete, the connection closes, or they pass
`COALESCE_LIMIT`), so a head is never held back while the app waits for its body.

The client hanging up is told, not polled. An app that must stop work when the client goes away
(the proxy relaying an endless stream) would otherwise keep a task blocked in `receive()` for
each request. Every HTTP scope carries a `DisconnectListener` under
`scope["extensions"][DISCONNECT]`; its `callback`, if set, is called once when the connection is
lost before the response is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# The key of the `DisconnectListener` in `scope["extensions"]`.
DISCONNECT = "gateway.disconnect"
# Bytes held for one write at most: past this, what is held goes out at once.
COALESCE_LIMIT = 64 * 1024


class DisconnectListener:
    """Set `callback` to be called (once, from the server) if the client's connection is lost
    before the response is complete; set it back to None when that no longer matters."""

    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None


class _CoalescingWriter:
    """The connection's transport as the request cycles see it: the writes of one loop step go
    out as one. Closing (the response asked for `Connection: close`) sends what is held first;
    bytes held when the connection is already closing are dropped, as the transport would."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= COALESCE_LIMIT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)

    def flush(self) -> None:
        held = self._held
        if not held:
            return
        self._held = []
        self._held_bytes = 0
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self.flush()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class GatewayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: headers fixed at the end of a request's head, a response's
    writes joined per loop step, and a disconnect told to the app that asked."""

    _writer: _CoalescingWriter

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writer = _CoalescingWriter(transport, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:  # lost before the response was complete
            listener = cast(DisconnectListener, cycle.scope["extensions"][DISCONNECT])
            callback, listener.callback = listener.callback, None
            if callback is not None:
                callback()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # uvicorn types each extension as a dict; ASGI lets a server put any value there.
        self.scope["extensions"] = {DISCONNECT: cast(dict[object, object], DisconnectListener())}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The scope keeps the head's list; llhttp reports trailer fields to `on_header`, which
        # from here appends them to a list of their own, replaced at the next message's start.
        # A WebSocket upgrade is left alone: no body (and no trailer) follows its head, and
        # uvicorn reads `self.headers` again when the parser stops at the upgrade.
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self.headers = []

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.transport = cast(asyncio.Transport, self._writer)
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        self._writer.flush()  # the last piece goes out now, not after this loop step
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._writer.flush()  # what a response in progress wrote comes before the 400
        super().send_400_response(msg)
