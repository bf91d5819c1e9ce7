"""The builtin HTTP/1.1 client of the upstream leg: keep-alive connections on asyncio Protocols.

Every proxied request crosses this module twice, so it does that one job and nothing more:
aiohttp's general-purpose client (sessions, request objects, writers, timeout managers, auto
headers) cost about as much CPU per request as the rest of the gateway together. Requests go
out as one pre-serialized head plus the body as it arrives; `httptools` (llhttp, the C parser
uvicorn uses) frames the answer: Content-Length, chunked and close-delimited bodies, 1xx interim
responses, 204/304. The body is handed out as whatever bytes have arrived, with backpressure
both ways, so neither a 50 MB upload nor a 50 MB download is ever held whole. It implements the
`UpstreamClient` boundary (`upstream_client.py`); `upstream_httpx.py` is the library fallback.

    UpstreamPool          connections per (scheme, host, port); at most `limit` in use
    UpstreamConnection    one connection and the exchange currently on it
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from gateway.proxy.upstream_client import (
    IDEMPOTENT_METHODS,
    KEEPALIVE_TIMEOUT,
    BodyReader,
    UpstreamBrokenError,
    framing_problem,
)
from gateway.web.coalescing import CoalescingTransport

# Response bytes held for a slow client before the upstream socket stops being read.
READ_HIGH_WATER = 256 * 1024
# Bytes read before the final response head is complete: llhttp sets no limit of its own, and
# httptools joins a header's pieces in memory. aiohttp allowed 8 KiB per line, 128 lines.
MAX_HEAD_BYTES = 1024 * 1024

# The states of a connection's exchange: pooled (or not yet used), waiting for the response
# head, reading the body, response complete, failed (error set), closed for good.
_IDLE, _HEAD, _BODY, _DONE, _FAILED, _CLOSED = range(6)


@dataclass(frozen=True, slots=True)
class _Origin:
    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    prefix: str  # the upstream URL's path, put before every request target


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to the upstreams, created in the app's lifespan.

    `timeout` bounds each wait for the upstream: for the response head or the next body chunk,
    or for it to take the next piece of the request body; not the whole exchange, so long
    downloads and event streams are not cut off. `connect_timeout` bounds getting a connection:
    waiting for one of the `limit` connections in use to be given back, then a pooled one or a
    new TCP (and TLS) connect. `ssl_context` is for https:// upstreams; the default is
    `ssl.create_default_context()`: system CAs, the certificate checked against the URL's host,
    which is also sent as SNI.
    """

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        limit: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._limit = limit
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[str, _Origin] = {}
        # Per origin, oldest first: reuse takes the newest, the sweeper closes the oldest.
        self._idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Bind the pool to the running loop (its timers and connections live there)."""
        if self._loop is not None:
            raise RuntimeError("UpstreamPool is already started")
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Close the idle connections; one still in use is closed when its exchange ends."""
        if self._loop is None:
            return
        self._loop = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()

    async def request(
        self,
        upstream: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: BodyReader | None,
        *,
        chunked: bool = False,
    ) -> UpstreamConnection:
        """Send a request to `upstream` (an http(s) URL) and wait for the response head.

        The body, if any, is copied by a task of its own while the answer is awaited: an
        upstream may answer (413, 401) before it has read the whole body. The caller reads the
        body from the returned connection and must `release()` it. A request without a body
        and with an idempotent method is sent again, once, on a new connection when a pooled
        one turns out closed before any answer (RFC 9112 9.3.1.1).
        """
        if self._loop is None:
            raise RuntimeError("UpstreamPool.start() has not been awaited")
        origin = self._origins.get(upstream) or self._parse_origin(upstream)
        head = _serialize_head(method, origin.prefix + target, headers)
        retry = body is None and method in IDEMPOTENT_METHODS
        fresh = False
        while True:
            connection = await self._acquire(origin, fresh=fresh)
            connection.begin(head, body, chunked=chunked, head_only=method == "HEAD")
            try:
                await connection.wait_head()
            except UpstreamBrokenError as exc:
                connection._finish(reuse=False)
                if retry and connection.reused and exc.before_response:
                    retry, fresh = False, True
                    continue
                raise
            except BaseException:
                connection._finish(reuse=False)
                raise
            return connection

    def _parse_origin(self, upstream: str) -> _Origin:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamBrokenError(f"not an http(s) URL: {upstream!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        origin = _Origin(
            (parts.scheme, parts.hostname, port), parts.hostname, port, tls, parts.path
        )
        self._origins[upstream] = origin  # one per configured app: bounded
        return origin

    async def _acquire(self, origin: _Origin, *, fresh: bool) -> UpstreamConnection:
        """A connection (pooled unless `fresh`) in one of the `limit` slots. Waiting for a
        slot counts toward the connect timeout, as it did with aiohttp."""
        deadline = self._running_loop().time() + self._connect_timeout
        if self._in_use < self._limit and not self._waiters:
            self._in_use += 1
        else:
            async with asyncio.timeout_at(deadline):
                await self._wait_for_slot()
        try:
            if not fresh and (connection := self._pop_idle(origin.key)) is not None:
                return connection
            async with asyncio.timeout_at(deadline):
                return await self._connect(origin)
        except BaseException:
            self._release_slot()
            raise

    def _pop_idle(self, key: tuple[str, str, int]) -> UpstreamConnection | None:
        connections = self._idle.get(key)
        if not connections:
            return None
        now = self._running_loop().time()
        while connections:
            connection = connections.pop()
            if now - connection.idle_since < KEEPALIVE_TIMEOUT and connection.usable():
                connection.reused = True
                return connection
            connection.abort()  # the newest is too old: so are the rest
        return None

    async def _connect(self, origin: _Origin) -> UpstreamConnection:
        loop = self._running_loop()
        connection = UpstreamConnection(self, origin.key, loop, self._timeout)
        if origin.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        context = self._ssl if origin.tls else None
        try:
            await loop.create_connection(
                lambda: connection,
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        except TimeoutError:
            raise
        except OSError as exc:  # refused, unreachable, no such host, TLS handshake or cert
            raise UpstreamBrokenError(
                f"cannot connect to {origin.host}:{origin.port}: {exc}", before_response=True
            ) from exc
        return connection

    async def _wait_for_slot(self) -> None:
        waiter = self._running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot just as we gave up: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        """Give a slot back, straight to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1

    def _put(self, connection: UpstreamConnection) -> None:
        """Take back a connection whose exchange ended cleanly."""
        self._release_slot()
        loop = self._loop
        if loop is None:  # closed while the exchange ran
            connection.abort()
            return
        connection.idle_since = loop.time()
        connections = self._idle.get(connection.key)
        if connections is None:
            connections = self._idle[connection.key] = []
        connections.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(1.0, self._sweep)

    def _forget(self, connection: UpstreamConnection) -> None:
        """An idle connection was closed by the upstream."""
        connections = self._idle.get(connection.key)
        if connections and connection in connections:
            connections.remove(connection)

    def _sweep(self) -> None:
        """Close connections idle for too long, so the upstream never closes them first."""
        self._sweeper = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        for connections in self._idle.values():
            while connections and now - connections[0].idle_since >= KEEPALIVE_TIMEOUT:
                connections.pop(0).abort()
        if any(self._idle.values()):
            self._sweeper = loop.call_later(1.0, self._sweep)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("UpstreamPool is closed")
        return self._loop


def _serialize_head(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    lines.extend([name + b": " + value for name, value in headers])
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    # A CR or LF inside a value (an identity claim, say) would start a header of its own:
    # request smuggling. Exactly one CRLF per line, or nothing is sent.
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines):
        raise UpstreamBrokenError("a request header contains a line break; not sent")
    return head


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream, and the exchange currently on it.

    The transport calls the Protocol methods, the parser calls the `on_*` ones, and the task
    running `forward` waits in `wait_head` and `read` on one future at a time. Response body
    bytes are queued as they arrive and handed out all at once; past `READ_HIGH_WATER` queued
    bytes the socket stops being read, so a slow client slows the upstream down instead of
    filling memory.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        key: tuple[str, str, int],
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        self._pool = pool
        self.key = key
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._state = _IDLE
        self.reused = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self._received = 0  # bytes, in this exchange
        self._keep_alive = False
        self._head_only = False
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._body_sent = True
        self._pump: asyncio.Task[None] | None = None
        self._lost = False

    # -- the exchange, for the pool and for `forward`

    @property
    def complete(self) -> bool:
        """The whole response body has been read (by `read`)."""
        return self._state == _DONE and not self._chunks

    def usable(self) -> bool:
        """Still open, as far as we know: a pooled connection may be reused."""
        return not self._lost and self._transport is not None and not self._transport.is_closing()

    def begin(
        self, head: bytes, body: BodyReader | None, *, chunked: bool, head_only: bool
    ) -> None:
        self._state = _HEAD
        self.status = 0
        self.headers = []
        self._received = 0
        self._keep_alive = False
        self._head_only = head_only
        self._body_sent = body is None
        if self._lost:  # closed between connect (or the idle check) and now
            self._fail(
                UpstreamBrokenError("the upstream closed the connection", before_response=True)
            )
            return
        cast(asyncio.Transport, self._transport).write(head)
        if body is not None:
            self._pump = self._loop.create_task(self._send_body(body, chunked))

    async def wait_head(self) -> None:
        """Wait for the final response head (1xx interim ones are skipped)."""
        while self._state == _HEAD:
            # The clock starts once the body is sent: a slow client uploading is not the
            # upstream being slow. `_send_body` starts it if the body ends during this wait.
            await self._wait(timed=self._body_sent)
        if self._state == _FAILED:
            raise cast(BaseException, self._error)

    async def read(self) -> bytes:
        """The body bytes that arrived since the last call; b"" once `complete`."""
        while not self._chunks:
            if self._state == _DONE:
                return b""
            if self._state != _BODY:
                raise self._error or UpstreamBrokenError("the connection was closed")
            await self._wait(timed=True)
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._read_paused:
            self._read_paused = False
            cast(asyncio.Transport, self._transport).resume_reading()
        return data

    async def _wait(self, *, timed: bool) -> None:
        """Until the parser or the transport has news; if `timed`, `timeout` s at most."""
        waiter = self._waiter = self._loop.create_future()
        if timed:
            self._timer = self._loop.call_later(self._timeout, self._time_out)
        try:
            await waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def release(self, *, reuse: bool) -> None:
        """End the exchange (`_finish`); a coroutine, as the `UpstreamResponse` boundary has it."""
        self._finish(reuse=reuse)

    def _finish(self, *, reuse: bool) -> None:
        """End the exchange: back to the pool only if it ended cleanly, else close.

        Clean means the caller relayed the whole response (`reuse`), the response was read to
        its end with nothing after it, the request body was all sent, and the upstream allows
        keep-alive. Anything else may leave bytes of this exchange on the wire.
        """
        pump = self._pump
        if pump is not None:
            self._pump = None
            if not pump.done():
                pump.cancel()
                reuse = False
        if (
            reuse
            and self._state == _DONE
            and self._keep_alive
            and self._body_sent
            and not self._chunks
            and not self._lost
        ):
            self._state = _IDLE
            self._pool._put(self)
        else:
            self.abort()
            self._pool._release_slot()

    def abort(self) -> None:
        """Close the connection at once, dropping anything unsent or unread."""
        self._state = _CLOSED
        if not self._lost and self._transport is not None:
            self._lost = True
            self._transport.abort()

    async def _send_body(self, body: BodyReader, chunked: bool) -> None:
        """Copy the request body to the upstream, waiting whenever its socket buffer is full."""
        transport = cast(asyncio.Transport, self._transport)
        try:
            more = True
            while more:
                data, more = await body()
                if self._lost:
                    raise UpstreamBrokenError("the upstream hung up during the request body")
                if data:
                    if chunked:  # RFC 9112 7.1; an empty chunk would end the body
                        transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
                    else:
                        transport.write(data)
                    if self._write_paused:
                        await self._drain()
            if chunked:
                transport.write(b"0\r\n\r\n")
            self._body_sent = True
            if self._state == _HEAD and self._waiter is not None and self._timer is None:
                self._timer = self._loop.call_later(self._timeout, self._time_out)
        except (UpstreamBrokenError, TimeoutError) as exc:
            self._fail(exc)
        except Exception as exc:  # the client went away (the task waiting is cancelled)
            self._fail(UpstreamBrokenError(f"request body not relayed: {exc!r}"))

    async def _drain(self) -> None:
        waiter = self._drain_waiter = self._loop.create_future()
        timer = self._loop.call_later(
            self._timeout, self._fail, TimeoutError(f"no body bytes taken in {self._timeout} s")
        )
        try:
            await waiter
        finally:
            timer.cancel()
            self._drain_waiter = None
        if self._lost:
            raise UpstreamBrokenError("the upstream hung up during the request body")

    def _time_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError(f"the upstream sent nothing for {self._timeout} s"))

    def _fail(self, exc: BaseException) -> None:
        """Give up on the exchange: close the connection, wake whoever waits with `exc`."""
        if self._state in (_HEAD, _BODY):
            self._state = _FAILED
            self._error = exc
            self._wake()
        self._keep_alive = False
        if not self._lost and self._transport is not None:
            self._lost = True
            self._transport.abort()
        self._wake_drain()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _close_delimited(self) -> bool:
        """RFC 9112 6.3: the body has no length and ends when the connection closes."""
        framing = {name.lower(): value.rstrip().lower() for name, value in self.headers}
        if (coding := framing.get(b"transfer-encoding")) is not None:
            return not coding.endswith(b"chunked")
        return b"content-length" not in framing

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = CoalescingTransport(transport)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _HEAD or state == _BODY:
            self._received += len(data)
            try:
                self._parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                self._fail(UpstreamBrokenError(f"invalid HTTP/1.1 response: {exc!r}"))
            if self._state == _HEAD and self._received > MAX_HEAD_BYTES:
                self._fail(UpstreamBrokenError("response head too large"))
        elif state == _DONE:
            self._keep_alive = False  # bytes after the response: this connection is spoilt
        elif state == _IDLE:
            self._pool._forget(self)
            self.abort()  # an answer to nothing, on a pooled connection: never reuse it

    def eof_received(self) -> bool | None:
        return None  # the upstream is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        state = self._state
        if state == _IDLE:
            self._pool._forget(self)
        elif state == _BODY and exc is None and self._close_delimited():
            self._state = _DONE
            self._keep_alive = False
            self._wake()
        elif state == _HEAD or state == _BODY:
            reason = f": {exc}" if exc is not None else ""
            self._fail(
                UpstreamBrokenError(
                    f"the upstream closed the connection{reason}",
                    before_response=self._received == 0,
                )
            )
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._state == _HEAD:
            self.headers = []  # after a 1xx, the next head starts afresh
        else:
            self._keep_alive = False  # a second response to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _HEAD:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._state != _HEAD:
            return
        status = self._parser.get_status_code()
        if status < 200:
            # RFC 9110 15.2: interim responses are skipped (llhttp gives them no body). We
            # never ask for an upgrade, so a 101 is the upstream talking another protocol.
            if status == 101:
                self._fail(UpstreamBrokenError("the upstream switched protocols unasked"))
            elif status < 100:  # RFC 9110 15: not a status; llhttp reads its body as a body
                self._fail(UpstreamBrokenError(f"invalid status code {status:03d}"))
            return
        if problem := framing_problem(self._parser.get_http_version(), status, self.headers):
            self._fail(UpstreamBrokenError(problem))
            return
        self.status = status
        # RFC 9110 9.3.2: no body follows a HEAD response's head, whatever Content-Length says.
        # llhttp cannot be told so, and an upstream that sends body bytes anyway would have
        # them read as the next user's response: a connection that answered a HEAD is closed,
        # never pooled (HEAD is rare; a new connection is cheap).
        self._keep_alive = self._parser.should_keep_alive() and not self._head_only
        self._state = _DONE if self._head_only else _BODY
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._state != _BODY:
            self._keep_alive = False
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            cast(asyncio.Transport, self._transport).pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # In _HEAD this ends a 1xx; in _DONE, a HEAD response whose length llhttp counted.
        if self._state == _BODY:
            self._state = _DONE
            self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
            self._wake()
