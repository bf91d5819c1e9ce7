"""A lean, pipelined Redis GET for the hot path (cookie -> session record).

Every authenticated request costs one Redis GET. Through redis-py's asyncio client that GET
took about 75 us of CPU here (pool checkout, command packing, the parser's generality) against
about 18 us for this: a few long-lived connections, requests written back to back and answered
in order (Redis answers each connection first-in first-out), one small parser for the replies a
GET, AUTH or SELECT can give. Everything else still goes through redis-py. It is the default
`KeyReader` of `redis.py` (`[gateway] session_reads = "pipelined"`); its conformance tests are
`tests/test_resp_wire.py`.

Failure is loud and closed: a lost connection fails every request waiting on it, and the caller
turns all of it into `StoreUnavailableError`. A caller that gives up (timed out, cancelled)
keeps its place in the connection's line, so a late reply is matched to it and dropped, never
handed to the next caller; after a timeout the connection is dropped as well, with everything
queued behind the stuck request. The next request dials again, so service resumes by itself
when Redis is back.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast


class RespError(Exception):
    """Redis answered with an error reply, or the connection failed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str = ""
    db: int = 0
    username: str = ""
    password: str = ""


Reply = bytes | int | None | RespError


def command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """One connection; `waiters` are the futures of the requests written, in order."""

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Future[Reply]] = deque()
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream socket's transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RespError("connection to Redis lost"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while self.waiters:
            try:
                parsed = self._parse(buffer)
            except (RespError, ValueError):
                self.abort()
                return
            if parsed is None:
                return
            reply, consumed = parsed
            del buffer[:consumed]
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)
        if buffer:  # a reply nobody asked for: the stream is out of step
            self.abort()

    @staticmethod
    def _parse(buffer: bytearray) -> tuple[Reply, int] | None:
        """One complete reply from the front of the buffer, or None if more bytes are needed."""
        end = buffer.find(b"\r\n")
        if end < 0:
            return None
        kind, line = buffer[0], bytes(buffer[1:end])
        if kind == 0x24:  # $ bulk string
            size = int(line)
            if size < 0:
                return None, end + 2
            stop = end + 2 + size
            if len(buffer) < stop + 2:
                return None
            return bytes(buffer[end + 2 : stop]), stop + 2
        if kind == 0x2B:  # + simple string
            return line, end + 2
        if kind == 0x2D:  # - error
            return RespError(line.decode(errors="replace")), end + 2
        if kind == 0x3A:  # : integer
            return int(line), end + 2
        raise RespError(f"unexpected Redis reply type {chr(kind)!r}")

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        if self.lost or self.transport is None:
            raise RespError("connection to Redis lost")
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(payload)
        return waiter

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)


_C = TypeVar("_C", bound=asyncio.Protocol)


async def dial(
    endpoint: Endpoint,
    factory: Callable[[], _C],
    timeout: float,
    handshake: Callable[[_C], Awaitable[None]],
) -> _C:
    """A connection to `endpoint` that has run `handshake` (AUTH, SELECT, ...), within
    `timeout`; `RespError` if it cannot be had. Never left half set up: a server that never
    answers the handshake would otherwise collect one connection per request until it closed
    them itself."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if endpoint.unix_path:
                transport, connection = await loop.create_unix_connection(
                    factory, endpoint.unix_path
                )
            else:
                transport, connection = await loop.create_connection(
                    factory, endpoint.host, endpoint.port
                )
            try:
                await handshake(connection)
            except BaseException:
                transport.abort()
                raise
    except (OSError, TimeoutError) as exc:
        raise RespError(f"cannot connect to Redis: {exc}") from exc
    return connection


class PipelinedGet:
    """GET over `size` pipelined connections, dialled lazily and redialled after a failure."""

    def __init__(self, endpoint: Endpoint, *, size: int = 2, timeout: float = 2.0):
        self._endpoint = endpoint
        self._timeout = timeout
        self._slots: list[_Connection | None] = [None] * size
        self._dialling: list[asyncio.Lock] = [asyncio.Lock() for _ in range(size)]
        self._next = itertools.cycle(range(size))

    async def get(self, key: str) -> bytes | None:
        """The value at `key`; raises RespError on any failure (never a stale or wrong value)."""
        slot = next(self._next)
        connection = self._slots[slot]
        if connection is None or connection.lost:
            connection = await self._dial(slot)
        encoded = key.encode()
        waiter = connection.send(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(encoded), encoded))
        try:
            async with asyncio.timeout(self._timeout):
                reply = await waiter
        except TimeoutError as exc:
            connection.abort()  # Redis is stuck on it: what queued behind fails now, not later
            raise RespError("Redis did not answer in time") from exc
        if isinstance(reply, RespError):
            raise reply
        if reply is not None and not isinstance(reply, bytes):
            raise RespError("unexpected reply to GET")
        return reply

    async def _dial(self, slot: int) -> _Connection:
        async with self._dialling[slot]:
            current = self._slots[slot]
            if current is not None and not current.lost:
                return current
            connection = await dial(self._endpoint, _Connection, self._timeout, self._handshake)
            self._slots[slot] = connection
            return connection

    async def _handshake(self, connection: _Connection) -> None:
        endpoint = self._endpoint
        commands = []
        if endpoint.password:
            user = [endpoint.username.encode()] if endpoint.username else []
            commands.append(command(b"AUTH", *user, endpoint.password.encode()))
        if endpoint.db:
            commands.append(command(b"SELECT", str(endpoint.db).encode()))
        for waiter in [connection.send(c) for c in commands]:
            reply = await waiter
            if isinstance(reply, RespError):
                raise reply

    def close(self) -> None:
        for connection in self._slots:
            if connection is not None:
                connection.abort()
        self._slots = [None] * len(self._slots)
