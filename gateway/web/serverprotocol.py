"""The HTTP/1.1 server protocol `gateway serve` runs: uvicorn's httptools one, with three changes.

Writes are coalesced: the response head and body go out as one packet (`coalescing.py`).

Trailers are never headers. uvicorn's `HttpToolsProtocol` hands the ASGI app the very list its
`on_header` callback appends to, and llhttp calls `on_header` for the trailer fields of a chunked
body too (RFC 9112 7.1.2). Trailers that arrive with the head (one write) are in
`scope["headers"]` before the app runs; later ones land there while it runs. A trailer
`X-Forwarded-For` would then be the right-most hop behind a trusted proxy, and any trailer would
reach the upstream as a header. RFC 9110 6.5.1 lets a recipient discard trailer fields, and
nothing here has a use for them, so they are dropped: once the head is complete, later fields go
to a list no one reads.

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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.web.coalescing import CoalescingTransport

# The key of the `DisconnectListener` in `scope["extensions"]`.
DISCONNECT = "gateway.disconnect"


class DisconnectListener:
    """Set `callback` to be called (once, from the server) if the client's connection is lost
    before the response is complete; set it back to None when that no longer matters."""

    __slots__ = ("callback",)

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None


class GatewayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: headers fixed at the end of a request's head, and a
    disconnect told to the app that asked."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescingTransport(transport))

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
