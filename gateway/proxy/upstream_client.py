"""The upstream client boundary: what `forward` asks of whichever HTTP/1.1 client carries the leg.

Two clients implement it, chosen by `[gateway] upstream_client`: the hand-written one
(`upstream.py`, "builtin", the default, fast) and one on httpx's transport (`upstream_httpx.py`,
"httpx", the known-good library path). Both pass the conformance suite in
`tests/test_upstream_wire.py`, and `tests/test_proxy.py` runs `forward` over each.

    UpstreamClient        start, close, request -> UpstreamResponse (its head has arrived)
    UpstreamResponse      status, headers, read() the body in pieces, release() when done
    UpstreamBrokenError   refused, hung up, or not HTTP/1.1 (forward: 502)
    TimeoutError          the builtin, for an upstream too slow (forward: 504)
    framing_problem       what makes a final response head unfit to relay, asked by both
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

# Below the 5 s idle timeout of uvicorn, Node and most app servers, so a client drops an idle
# connection before the upstream does: a POST on a half-closed connection is not retried.
KEEPALIVE_TIMEOUT = 4.0
# RFC 9110 9.2.2: requests with these methods may be sent again after a connection failure.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Where a request body comes from (the client): the next piece, and whether more follows.
BodyReader = Callable[[], Awaitable[tuple[bytes, bool]]]


class UpstreamBrokenError(Exception):
    """The upstream refused the connection, hung up, or answered with something not HTTP/1.1.

    `before_response` says that not one byte of an answer had arrived: on a pooled connection
    that is the upstream having closed it while it sat idle (the request crossed the FIN), so
    a request without a body can safely be sent again on a new connection.
    """

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response


def framing_problem(version: str, status: int, headers: list[tuple[bytes, bytes]]) -> str:
    """Why a final response head (`version` as "1.1") cannot be relayed as it is; "" if it can.

    What a lenient parser lets through and a relay would get wrong: an HTTP version other than
    1.x (RFC 9112 2.3), a status past 599 (RFC 9110 15: three digits, 1xx to 5xx), and any
    Transfer-Encoding but one `chunked` on HTTP/1.1 (RFC 9112 6.1: in HTTP/1.0 it is faulty
    framing; another coding would reach the client undone, as Transfer-Encoding is hop-by-hop
    and the body is re-framed on the way out).
    """
    if version not in ("1.1", "1.0"):
        return f"not an HTTP/1.x response (HTTP/{version})"
    if status > 599:
        return f"invalid status code {status}"
    # The length first: cheaper than lowercasing every name of every response.
    codings = [v for n, v in headers if len(n) == 17 and n.lower() == b"transfer-encoding"]
    if not codings:
        return ""
    if version != "1.1":
        return "Transfer-Encoding in an HTTP/1.0 response"
    if len(codings) > 1 or codings[0].strip().lower() != b"chunked":
        return "a transfer coding other than chunked"
    return ""


class UpstreamResponse(Protocol):
    """One exchange whose final response head has arrived (1xx interim ones are skipped)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """As received: names in the upstream's case, hop-by-hop ones included."""

    @property
    def complete(self) -> bool:
        """The whole response body has been read (by `read`)."""

    async def read(self) -> bytes:
        """The body bytes that arrived since the last call; b"" once `complete`. Raises
        `UpstreamBrokenError` or `TimeoutError` when the body breaks off or stalls."""

    async def release(self, *, reuse: bool) -> None:
        """End the exchange; the connection may be kept only if `reuse` (the caller relayed
        the whole response) and the exchange ended cleanly. Call it exactly once."""


class UpstreamClient(Protocol):
    """Keep-alive HTTP/1.1 connections to the upstreams, made once in the app's lifespan.

    `timeout` bounds each wait for the upstream (the response head, the next body piece, taking
    the next piece of the request body), not the whole exchange; `connect_timeout` bounds
    getting a connection (a free slot among `limit`, then the TCP and TLS connect).
    """

    async def start(self) -> None:
        """Bind to the running loop; before any `request`."""

    async def close(self) -> None:
        """Close the idle connections; one still in use is closed when it is released."""

    async def request(
        self,
        upstream: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: BodyReader | None,
        *,
        chunked: bool = False,
    ) -> UpstreamResponse:
        """Send `method target` with exactly `headers` (nothing added) to `upstream` (an
        http(s) URL whose path prefixes `target`) and wait for the final response head.

        `body` is read piece by piece and sent as it comes, chunked if `chunked` (else the
        headers carry its Content-Length). A request without a body and with an idempotent
        method is sent again, once, when a pooled connection turns out closed before any
        answer. A header containing CR or LF is never sent (`UpstreamBrokenError`).
        """
