"""Upstream forwarding: the last step of the hot path (cookie -> session -> policy -> upstream).

`forward` relays one plain-ASGI HTTP exchange to a protected application through the shared,
keep-alive `UpstreamClient` (`upstream_client.py`): our own HTTP/1.1 client (`upstream.py`) or
httpx's (`upstream_httpx.py`), as `open_upstream_client` picks by setting. It owns header hygiene
(SPEC section 4: hop-by-hop headers, client-sent `Cf-Access-*`, `X-Forwarded-*` and our session
cookies never reach the upstream), streams bodies both ways without buffering them, and turns a
refused or slow upstream into `UpstreamError` (502 / 504) while nothing has been sent to the
client yet. Each exchange is admitted by the worker's `UpstreamLimits` (`limits.py`: per origin,
per client), and a request body that stops arriving for `body_timeout` ends it with 408. It
renders no pages and knows nothing of sessions or policy: the caller decides who gets through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from gateway.config import GatewaySettings, UpstreamClientKind
from gateway.errors import UpstreamError
from gateway.proxy.limits import UpstreamLimits
from gateway.proxy.upstream import UpstreamPool
from gateway.proxy.upstream_client import UpstreamBrokenError, UpstreamClient, UpstreamResponse
from gateway.proxy.upstream_httpx import HttpxUpstreamClient
from gateway.web.cookies import GATEWAY_COOKIES
from gateway.web.serverprotocol import DISCONNECT, DisconnectListener

__all__ = ["UpstreamClient", "Upstreams", "forward", "open_upstream_client", "open_upstreams"]

logger = logging.getLogger("gateway.proxy")

# RFC 9110 7.6.1 plus the legacy names RFC 2616 13.5.1 listed; ASGI names are lowercase.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# RFC 9110 8.6: methods that define no meaning for a request body; others get a length.
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Characters left as they are when a server gives no raw_path and the decoded path is re-encoded.
_PATH_SAFE = "/:@!$&'()*+,;="


def open_upstream_client(kind: UpstreamClientKind, *, timeout: float) -> UpstreamClient:
    """The client of the upstream leg for `[gateway] upstream_client`; `start()` it."""
    if kind == "httpx":
        return HttpxUpstreamClient(timeout=timeout)
    return UpstreamPool(timeout=timeout)


@dataclass(frozen=True, slots=True)
class Upstreams:
    """The upstream leg of one worker: its client, who may use it, and how long a request body
    may pause (seconds between two pieces) before the exchange ends with 408."""

    client: UpstreamClient
    limits: UpstreamLimits
    body_timeout: float

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()


def open_upstreams(settings: GatewaySettings) -> Upstreams:
    """The upstream leg the `[gateway]` settings describe; `start()` it."""
    return Upstreams(
        open_upstream_client(settings.upstream_client, timeout=settings.upstream_timeout),
        UpstreamLimits(
            per_origin=settings.upstream_requests_per_origin,
            per_client=settings.upstream_requests_per_client,
        ),
        body_timeout=settings.request_body_timeout,
    )


async def forward(
    upstreams: Upstreams,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    upstream: str,
    client_ip: str,
    client_network: str,
    forwarded_for: str,
    proto: str,
    host: str,
    identity_headers: list[tuple[bytes, bytes]],
    reserved_headers: frozenset[bytes] = frozenset(),
) -> None:
    """Relay the HTTP exchange in `scope` to `upstream` and stream the answer back.

    Raises `UpstreamError` (502; 504 with error "upstream_timeout"; 408 "request_timeout" for a
    request body that stalls; 429 or 503 from the limits) only while no response has started;
    a failure after that ends the response early, so the server closes the client connection
    and the client sees a truncated body rather than a complete-looking one. Returns quietly
    when the client goes away.
    """
    method: str = scope["method"]
    headers, has_body, chunked = request_headers(
        scope["headers"],
        method=method,
        forwarded_for=forwarded_for,
        proto=proto,
        host=host,
        identity_headers=identity_headers,
        reserved_headers=reserved_headers,
    )
    downstream = _Downstream(scope, receive, upstreams.body_timeout)
    if not has_body:
        downstream.watch()
    response: UpstreamResponse | None = None
    admitted = started = finished = False
    try:
        await upstreams.limits.admit(upstream, client_network)
        admitted = True
        response = await upstreams.client.request(
            upstream,
            method,
            _request_target(scope),
            headers,
            downstream.read if has_body else None,
            chunked=chunked,
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _response_headers(response.headers, response.status),
            }
        )
        started = True
        chunk = await response.read()
        while not response.complete:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await response.read()
        downstream.close()
        await send({"type": "http.response.body", "body": chunk, "more_body": False})
        finished = True
    except asyncio.CancelledError:
        # Only swallow the cancellation _Downstream asked for, never a server shutdown's.
        if downstream.gone and downstream.task.uncancel() == 0:
            return
        raise
    except (TimeoutError, UpstreamBrokenError) as exc:
        if started:
            _log_broken_response(scope, upstream, client_ip, exc)
            return
        if downstream.stalled:  # the client's body stopped, whatever the client made of it
            raise UpstreamError(
                "The request body stopped arriving.", status=408, error="request_timeout"
            ) from exc
        if isinstance(exc, TimeoutError):
            raise UpstreamError(
                "The application took too long to answer.", status=504, error="upstream_timeout"
            ) from exc
        raise UpstreamError("The application could not be reached.", status=502) from exc
    finally:
        downstream.close()
        if response is not None:
            # Pooled only after a complete relay: a client gone mid-stream leaves it unread.
            await response.release(reuse=finished)
        if admitted:
            upstreams.limits.leave(upstream, client_network)


class _ClientGoneError(Exception):
    """The client disconnected while its request body was being relayed."""


class _BodyStalledError(Exception):
    """The client sent no piece of its request body for the body timeout."""


class _Downstream:
    """The client side of one exchange: its request body, and noticing when it hangs up.

    Uvicorn drops `send` calls after a disconnect instead of raising, so without listening for
    `http.disconnect` an endless upstream stream would be relayed into the void forever. On a
    disconnect the forwarding task is cancelled, and `forward` closes (does not pool) the
    upstream connection. Watching starts once the request body is over (ASGI allows one
    `receive` caller at a time, and the upstream client reads the body first). The gateway's
    own server protocol calls a `DisconnectListener` (`web/serverprotocol.py`) when the client
    hangs up, which costs nothing per request; under any other server a task waits in
    `receive` for `http.disconnect`. A body that pauses for longer than `body_timeout` ends the
    exchange (`stalled`): a client that never finishes an upload would otherwise hold an
    upstream connection for as long as it likes.
    """

    __slots__ = (
        "_body_timeout",
        "_closed",
        "_listener",
        "_receive",
        "_watcher",
        "gone",
        "stalled",
        "task",
    )

    def __init__(self, scope: Scope, receive: Receive, body_timeout: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("forward() must run inside an asyncio task")
        self.task = task
        self.gone = False
        self.stalled = False
        self._receive = receive
        self._body_timeout = body_timeout
        extensions = scope.get("extensions")
        self._listener: DisconnectListener | None = (
            extensions.get(DISCONNECT) if extensions is not None else None
        )
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    async def read(self) -> tuple[bytes, bool]:
        """The next piece of the request body and whether more follows."""
        try:
            async with asyncio.timeout(self._body_timeout):
                message = await self._receive()
        except TimeoutError:
            self.stalled = True
            # Not a TimeoutError: the upstream clients read that as the upstream being slow.
            raise _BodyStalledError(f"no request body for {self._body_timeout} s") from None
        if message["type"] == "http.disconnect":
            self._hang_up()
            # Raised, not returned: a short body must not look complete, or the connection
            # could go back to the pool mid-body.
            raise _ClientGoneError
        more: bool = message.get("more_body", False)
        if not more:
            self.watch()
        return message.get("body", b""), more

    def watch(self) -> None:
        if self._closed or self.gone:
            return
        if self._listener is not None:
            self._listener.callback = self._hang_up
        elif self._watcher is None:
            self._watcher = asyncio.create_task(self._wait_for_disconnect())

    def close(self) -> None:
        """Stop watching; after this a late disconnect no longer cancels anything."""
        self._closed = True
        if self._listener is not None:
            self._listener.callback = None
        if self._watcher is not None:
            self._watcher.cancel()

    async def _wait_for_disconnect(self) -> None:
        # A body the upstream answered without reading is still arriving: skip it.
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._hang_up()

    def _hang_up(self) -> None:
        if not self._closed and not self.gone:
            self.gone = True
            self.task.cancel()


# Headers in which a client could claim an address or identity that origins may trust (Cloudflare
# origins trust CF-Connecting-IP), or a path other than the one the policy was decided on (IIS
# URL Rewrite, Symfony and Zend serve X-Original-URL / X-Rewrite-URL instead of the request
# line). The gateway's own X-Forwarded-* replace the first kind.
_CLIENT_CLAIMS = frozenset(
    {
        b"host",
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"x-client-ip",
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
    }
)


def request_headers(
    client_headers: Iterable[tuple[bytes, bytes]],
    *,
    method: str,
    forwarded_for: str,
    proto: str,
    host: str,
    identity_headers: list[tuple[bytes, bytes]],
    reserved_headers: frozenset[bytes] = frozenset(),
) -> tuple[list[tuple[bytes, bytes]], bool, bool]:
    """The headers for the upstream, whether the request has a body, and if it is chunked.
    `reserved_headers` (lowercase): more names only the gateway sets (SAML attribute headers),
    dropped from the client's."""
    # Lowercased again although ASGI lowercases names: a mixed-case "Cf-Access-..." slipped in
    # by some middleware must not dodge the stripping below.
    pairs = [(name.lower(), value) for name, value in client_headers]
    listed = _connection_options(pairs)
    headers = [(b"Host", host.encode("latin-1"))]
    cookies: list[bytes] = []
    content_length: bytes | None = None
    chunked = False
    for name, value in pairs:
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            content_length = value
        elif name == b"cookie":
            cookies.append(value)
        elif not (
            name in _HOP_BY_HOP
            or name in listed
            or name in _CLIENT_CLAIMS
            or name in reserved_headers
            or name.startswith((b"cf-access-", b"x-forwarded-"))
            # CGI/WSGI servers read "_" as "-": Cf_Access_Authenticated_User_Email would arrive
            # as the identity header. No legitimate client header needs an underscore.
            or b"_" in name
            # Uvicorn already said 100 Continue to the client when the body was first read;
            # the upstream gets the body right away, which RFC 9110 10.1.1 allows.
            or (name == b"expect" and value.lower() == b"100-continue")
        ):
            headers.append((name, value))
    # RFC 9112 6.3: with Transfer-Encoding present, Content-Length is removed before forwarding
    # and the body is re-chunked on the way (the client's chunk sizes are hop-by-hop too).
    if chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
    elif content_length is not None:
        headers.append((b"Content-Length", content_length))
    elif method not in _BODYLESS_METHODS:
        headers.append((b"Content-Length", b"0"))
    if cookies:
        kept = _strip_gateway_cookies(cookies)
        if kept:
            headers.append((b"Cookie", kept))
    headers.append((b"X-Forwarded-For", forwarded_for.encode("latin-1")))
    headers.append((b"X-Forwarded-Proto", proto.encode("latin-1")))
    headers.append((b"X-Forwarded-Host", host.encode("latin-1")))
    headers.extend(identity_headers)
    has_body = chunked or content_length not in (None, b"0")
    return headers, has_body, chunked


def _connection_options(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names listed in Connection: hop-by-hop for this message (RFC 9110 7.6.1)."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    )


def _strip_gateway_cookies(values: list[bytes]) -> bytes:
    """One Cookie value without the gateway's cookies (RFC 6265 5.4: a single Cookie header)."""
    kept = [
        pair.strip()
        for value in values
        for pair in value.split(b";")
        if pair.strip() and pair.split(b"=", 1)[0].strip() not in GATEWAY_COOKIES
    ]
    return b"; ".join(kept)


def _request_target(scope: Scope) -> str:
    """Path and query as the client sent them, so the upstream sees exactly the same bytes."""
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"], safe=_PATH_SAFE)
    # Appended to the upstream origin: without a leading "/", a target like "@evil.example"
    # would become part of the authority and send the request to another host.
    if not path.startswith("/"):
        path = "/" + path
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _response_headers(raw: Iterable[tuple[bytes, bytes]], status: int) -> list[tuple[bytes, bytes]]:
    pairs = [(name.lower(), value) for name, value in raw]
    listed = _connection_options(pairs)
    if status == 204 or status == 304:
        # RFC 9110 8.6: no body follows, whatever length a 304 (the representation's) or a
        # sloppy 204 states; uvicorn would count the missing body as a short response.
        listed |= {b"content-length"}
    return [
        (name, value) for name, value in pairs if name not in _HOP_BY_HOP and name not in listed
    ]


def _log_broken_response(scope: Scope, upstream: str, client_ip: str, exc: Exception) -> None:
    # No headers, cookies or query string: they carry credentials.
    logger.warning(
        "upstream %s broke off the response to %s %s for %s: %s",
        upstream,
        scope["method"],
        scope["path"],
        client_ip,
        exc,
    )
