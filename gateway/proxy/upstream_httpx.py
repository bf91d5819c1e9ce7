"""The httpx client of the upstream leg: `upstream_client = "httpx"`, the library fallback.

The `UpstreamClient` boundary (`upstream_client.py`) on httpx's own transport (httpcore and
h11), for operators who want the library's HTTP/1.1 on the leg at some CPU per request. It
sits on `httpx.AsyncHTTPTransport`, not `AsyncClient`: a client would add headers of its own,
and keep every upstream's Set-Cookie for every user in its cookie jar. Requests go out with
exactly the headers `forward` built; bodies stream both ways, a piece at a time.

Where httpcore differs from the builtin client (docs/configuration.md says so too): it reads
the answer only once the request body is all sent, so an upstream that refuses an upload early
is heard when the body is over or the upstream closes; and bytes an upstream sends after a
complete response stay in h11's buffer and would be read as the next answer on that connection
(the builtin client closes such a connection; `tests/test_upstream_wire.py` pins both).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from gateway.proxy.upstream_client import (
    IDEMPOTENT_METHODS,
    KEEPALIVE_TIMEOUT,
    BodyReader,
    UpstreamBrokenError,
    framing_problem,
)

_NO_BODY = httpx.ByteStream(b"")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    prefix: str  # the upstream URL's path, put before every request target


class HttpxUpstreamClient:
    """`UpstreamClient` on one `httpx.AsyncHTTPTransport`; the arguments mean what they mean
    for `UpstreamPool`, and `ssl_context` defaults to `ssl.create_default_context()` here too
    (system CAs, not certifi's)."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        limit: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # httpcore reads these per request, from the request's "timeout" extension.
        self._timeouts = {
            "connect": connect_timeout,
            "read": timeout,
            "write": timeout,
            "pool": connect_timeout,
        }
        self._limit = limit
        self._ssl = ssl_context
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._origins: dict[str, _Origin] = {}

    async def start(self) -> None:
        if self._transport is not None:
            raise RuntimeError("HttpxUpstreamClient is already started")
        self._transport = httpx.AsyncHTTPTransport(
            verify=self._ssl or ssl.create_default_context(),
            limits=httpx.Limits(
                max_connections=self._limit,
                max_keepalive_connections=self._limit,
                keepalive_expiry=KEEPALIVE_TIMEOUT,
            ),
        )

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    async def request(
        self,
        upstream: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: BodyReader | None,
        *,
        chunked: bool = False,
    ) -> _Response:
        """`UpstreamClient.request`; h11 frames the body from the headers (`chunked` is what
        their Transfer-Encoding already says)."""
        transport = self._transport
        if transport is None:
            raise RuntimeError("HttpxUpstreamClient.start() has not been awaited")
        # h11 refuses these too, but only once the connection is made; same words as builtin.
        if any(b"\r" in n or b"\n" in n or b"\r" in v or b"\n" in v for n, v in headers):
            raise UpstreamBrokenError("a request header contains a line break; not sent")
        url = self._url(upstream, target)
        retry = body is None and method in IDEMPOTENT_METHODS
        while True:
            fresh: list[bool] = []

            async def trace(event: str, info: Mapping[str, Any], fresh: list[bool] = fresh) -> None:
                if event == "connection.connect_tcp.complete":
                    fresh.append(True)

            sender = _RequestBody(body) if body is not None else None
            request = httpx.Request(
                method,
                url,
                headers=headers,
                stream=sender or _NO_BODY,
                extensions={"timeout": self._timeouts, "trace": trace},
            )
            try:
                response = await transport.handle_async_request(request)
            except httpx.TimeoutException as exc:
                _stop(sender)
                raise TimeoutError(f"the upstream did not answer in time: {exc}") from exc
            except httpx.TransportError as exc:
                _stop(sender)
                # RFC 9112 9.3.1.1, as the builtin client: a pooled connection the upstream
                # closed as the request crossed the FIN; sent again once, on another one.
                if retry and not fresh and _closed_before_answer(exc):
                    retry = False
                    continue
                raise UpstreamBrokenError(_describe(exc, upstream)) from exc
            except BaseException:
                _stop(sender)
                raise
            answer = _Response(response, sender, close_after=method == "HEAD")
            if problem := _not_relayable(answer):
                await answer.release(reuse=False)
                raise UpstreamBrokenError(problem)
            return answer

    def _url(self, upstream: str, target: str) -> httpx.URL:
        origin = self._origins.get(upstream)
        if origin is None:
            parts = urlsplit(upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamBrokenError(f"not an http(s) URL: {upstream!r}")
            default = 443 if parts.scheme == "https" else 80
            origin = _Origin(parts.scheme, parts.hostname, parts.port or default, parts.path)
            self._origins[upstream] = origin  # one per configured app: bounded
        try:
            # raw_path: the target's bytes as they are, not normalised again by httpx.
            return httpx.URL(
                scheme=origin.scheme,
                host=origin.host,
                port=origin.port,
                raw_path=(origin.prefix + target).encode("latin-1"),
            )
        except (httpx.InvalidURL, UnicodeEncodeError) as exc:
            raise UpstreamBrokenError(f"request target not sendable: {exc}") from exc


class _RequestBody(httpx.AsyncByteStream):
    """The request body, read from the client by a task of its own, as the builtin client does:
    a client that hangs up cancels the task waiting on httpcore, never httpcore's own cleanup.
    One piece is held ahead at most."""

    def __init__(self, body: BodyReader) -> None:
        self._pieces: asyncio.Queue[tuple[bytes, bool] | Exception] = asyncio.Queue(maxsize=1)
        self._pump = asyncio.create_task(self._copy(body))

    async def _copy(self, body: BodyReader) -> None:
        try:
            more = True
            while more:
                data, more = await body()
                await self._pieces.put((data, more))
        except Exception as exc:  # the client went away (the task waiting is cancelled)
            await self._pieces.put(exc)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        more = True
        while more:
            piece = await self._pieces.get()
            if isinstance(piece, Exception):
                raise UpstreamBrokenError(f"request body not relayed: {piece!r}") from piece
            data, more = piece
            if data:  # an empty chunk would end a chunked body
                yield data

    def stop(self) -> None:
        self._pump.cancel()


def _stop(sender: _RequestBody | None) -> None:
    if sender is not None:
        sender.stop()


class _Response:
    """`UpstreamResponse` over an httpx response whose body is read as it arrives, undecoded."""

    __slots__ = (
        "_close_after",
        "_pieces",
        "_response",
        "_sender",
        "complete",
        "headers",
        "http_version",
        "status",
    )

    def __init__(
        self, response: httpx.Response, sender: _RequestBody | None, *, close_after: bool
    ) -> None:
        self.status = response.status_code
        self.headers: list[tuple[bytes, bytes]] = response.headers.raw
        self.http_version = response.http_version  # "HTTP/1.1"
        self.complete = False
        self._response = response
        self._pieces = cast(httpx.AsyncByteStream, response.stream).__aiter__()
        self._sender = sender
        # RFC 9110 9.3.2: no body follows a HEAD response's head, but a sloppy upstream may
        # send one anyway, to be read as the next request's answer: never pooled, as builtin.
        self._close_after = close_after

    async def read(self) -> bytes:
        if self.complete:
            return b""
        try:
            return await self._pieces.__anext__()
        except StopAsyncIteration:
            self.complete = True
            return b""
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the upstream sent nothing in time: {exc}") from exc
        except httpx.TransportError as exc:
            raise UpstreamBrokenError(f"the response broke off: {exc!r}") from exc

    async def release(self, *, reuse: bool) -> None:
        _stop(self._sender)
        if self._close_after or not reuse:
            # httpcore would pool a connection whose response was read to its end; closing the
            # socket first makes the pool drop it instead.
            await self._response.extensions["network_stream"].aclose()
        await self._response.aclose()


def _not_relayable(response: _Response) -> str:
    """What the builtin client's parser (llhttp) refuses and h11 lets through; "" if nothing."""
    if response.status == 101:
        # We never ask for an upgrade: a 101 is the upstream talking another protocol.
        return "the upstream switched protocols unasked"
    names = {name.lower() for name, _ in response.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        # RFC 9112 6.3: both at once is how responses are split; the length we would relay
        # could not be trusted.
        return "the response has both Content-Length and Transfer-Encoding"
    if any(_CONTROL.search(value) for _, value in response.headers):
        # RFC 9110 5.5: no control characters but HTAB in a field value (llhttp refuses them;
        # h11 lets all but NUL, CR and LF through, and uvicorn would fail the relay with 500).
        return "a response header value contains a control character"
    version = response.http_version.removeprefix("HTTP/")
    return framing_problem(version, response.status, response.headers)


def _closed_before_answer(exc: httpx.TransportError) -> bool:
    """The connection broke before a byte of the answer: reset, or closed with nothing sent."""
    return isinstance(exc, httpx.ReadError) or (
        isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
    )


def _describe(exc: httpx.TransportError, upstream: str) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {upstream}: {exc}"
    return f"the upstream broke off the exchange: {exc!r}"
