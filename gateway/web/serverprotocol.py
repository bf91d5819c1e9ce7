"""The HTTP/1.1 server protocol `gateway serve` runs: uvicorn's httptools one, minus trailers.

uvicorn's `HttpToolsProtocol` hands the ASGI app the very list its `on_header` callback appends
to, and llhttp calls `on_header` for the trailer fields of a chunked body too (RFC 9112 7.1.2).
Trailers that arrive with the head (one write) are in `scope["headers"]` before the app runs;
later ones land there while it runs. A trailer `X-Forwarded-For` would then be the right-most
hop behind a trusted proxy, and any trailer would reach the upstream as a header. RFC 9110 6.5.1
lets a recipient discard trailer fields, and nothing here has a use for them, so they are
dropped: once the head is complete, later fields go to a list no one reads.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadOnlyHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a request's headers fixed at the end of its head."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The scope keeps the head's list; llhttp reports trailer fields to `on_header`, which
        # from here appends them to a list of their own, replaced at the next message's start.
        # A WebSocket upgrade is left alone: no body (and no trailer) follows its head, and
        # uvicorn reads `self.headers` again when the parser stops at the upgrade.
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self.headers = []
