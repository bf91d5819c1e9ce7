"""A local copy of the session records the store GETs, kept fresh by Redis client-side caching.

Every request to a protected app reads its session record; most read one that has not changed
since the last request. `TrackedGet` keeps each session record it read (keys under the prefix
it is given; every other key is a plain GET, never kept), on one RESP3 connection with
`CLIENT TRACKING ON` (https://redis.io/docs/latest/develop/reference/client-side-caching/): Redis
then remembers that this connection read the key and, when anyone changes or deletes it (a
revocation, a sign-out, a SCIM deprovision on any instance, an expiry, an eviction, FLUSHALL),
pushes an `invalidate` message down the same connection.

How stale a value served from here can be:
- The push travels in-band, on the connection the value was read on, so it comes after the
  reply that filled the entry. Entries are filled and dropped in `data_received`, in the order
  the bytes arrive; no await sits between a reply and its entry.
- A hit is served only while nothing is waiting to be read: no partial message in our buffer and
  no byte in the socket's receive queue (a non-blocking `MSG_PEEK`, one system call), so a push
  that has reached this host is applied before the next read: a revocation on any instance is
  seen by the next request as soon as its push arrives.
- A hit is served only if a message (a reply or a push) arrived on the connection within the last
  `_FRESH` seconds. A push can be late or lost with no sign on our side (a half-open connection:
  the Redis host gone without a close, a partition, a hung Redis, a retransmitted packet), so
  otherwise the read is a real GET on that connection: Redis answers in order, after every push
  it sent before, so its reply proves those were applied; if it does not answer in time the
  copy is dropped and the read fails closed (`RespError`). A copy is therefore never older than
  `_FRESH` past the last word from Redis; under load this costs the GETs of one round trip (those
  sent before the first answer arrives) per `_FRESH`, per connection.
  Keepalive and, on Linux, `TCP_USER_TIMEOUT` make the kernel give up on a dead peer sooner.
- The entries belong to the connection. A lost, timed-out or out-of-step connection takes them
  with it (pushes may have been lost with it); until a new connection has turned tracking on
  again every GET goes to Redis, and fails closed while Redis does not answer. Redis restarted
  or failed over is a lost connection.
- A Redis that does not take `HELLO 3` or `CLIENT TRACKING` (older than 6, a proxy, a user
  not allowed CLIENT) answers the handshake with an error: from then on every read is the
  pipelined GET of `resp.py`, with one warning in the log. A refused password is not that: it
  fails closed like any other error.
- Only session records are kept: a key's Redis TTL is not seen here, and Redis may delete an
  expired key (and push) long after it expired. A session record carries its own expiry, which
  `sessions.py` checks on every read; other records rely on the TTL, so they always go to Redis.
A miss costs what the pipelined GET of `resp.py` does: one round trip on this connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from gateway.state.store.resp import Endpoint, PipelinedGet, RespError, command, dial

log = logging.getLogger("gateway.store")

_MAX_ENTRIES = 8192  # then the copy starts over: a bound on memory, not on correctness
# Seconds a copy may be served after the last message from Redis on its connection; past that a
# read is a real GET, which fails closed if Redis does not answer (module docstring).
_FRESH = 0.1
_USER_TIMEOUT_MS = 1000  # unacknowledged data older than this: the kernel drops the connection
_KEEPALIVE_IDLE = 1  # seconds of silence before the kernel probes the peer
_MISSING = object()

Value = bytes | int | str | float | bool | None | RespError | list["Value"]


# The error reply to `HELLO 3 AUTH` that means the credentials, not the protocol, were refused
# (a Redis 5 with a password answers the unknown HELLO with NOAUTH: that one falls back).
_AUTH_REFUSED = "WRONGPASS"


class _TrackingRefusedError(RespError):
    """Redis answered `HELLO 3` or `CLIENT TRACKING ON` with an error: it cannot track."""


class _Push(list[Value]):
    """A RESP3 push message (`>`): not a reply to any command."""


def _parse(buffer: bytearray, at: int) -> tuple[Value, int] | None:
    """One RESP3 value starting at `at`, and where the next begins; None if incomplete."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        return None
    kind, line = buffer[at], bytes(buffer[at + 1 : end])
    after = end + 2
    if kind in (0x24, 0x3D, 0x21):  # $ bulk string, = verbatim string, ! bulk error
        size = int(line)
        if size < 0:
            return None, after
        stop = after + size
        if len(buffer) < stop + 2:
            return None
        data = bytes(buffer[after:stop])
        return (RespError(data.decode(errors="replace")) if kind == 0x21 else data), stop + 2
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return RespError(line.decode(errors="replace")), after
    if kind in (0x3A, 0x28):  # : integer, ( big number
        return int(line), after
    if kind == 0x5F:  # _ null
        return None, after
    if kind == 0x2C:  # , double
        return float(line), after
    if kind == 0x23:  # # boolean
        return line == b"t", after
    if kind in (0x2A, 0x7E, 0x3E, 0x25, 0x7C):  # * array, ~ set, > push, % map, | attribute
        count = int(line) * (2 if kind in (0x25, 0x7C) else 1)
        items: list[Value] = _Push() if kind == 0x3E else []
        for _ in range(max(count, 0)):
            parsed = _parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        if kind == 0x7C:  # an attribute annotates the value that follows it
            return _parse(buffer, after)
        return (None if count < 0 else items), after
    raise RespError(f"unexpected Redis reply type {chr(kind)!r}")


class _TrackedConnection(asyncio.Protocol):
    """One RESP3 connection: GETs pipelined on it, and the entries its replies filled."""

    def __init__(self, clock: Callable[[], float]) -> None:
        # The key each written command reads (None: not a GET to keep), and its future.
        self.waiters: deque[tuple[bytes | None, asyncio.Future[Value]]] = deque()
        self.entries: dict[bytes, bytes | None] = {}
        self.tracking = False  # set once CLIENT TRACKING ON was answered +OK
        self.lost = False
        self.clock = clock
        self.heard = clock()  # when the last complete message (reply or push) was parsed
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._socket: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        # Our own descriptor for the same socket, to peek at its queue (uvloop's transport
        # socket offers no recv).
        given = transport.get_extra_info("socket")
        self._socket = socket.socket(fileno=os.dup(given.fileno()))
        if self._socket.family in (socket.AF_INET, socket.AF_INET6):
            # A dead peer that never closes: the kernel notices it (sooner than its defaults).
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if sys.platform == "linux":
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPALIVE_IDLE)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
                self._socket.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _USER_TIMEOUT_MS
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.tracking = False
        self.entries.clear()  # pushes may have been lost: nothing kept is trusted any longer
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        while self.waiters:
            _, waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RespError("connection to Redis lost"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            try:
                parsed = _parse(buffer, 0)
            except (RespError, ValueError):
                self.abort()
                return
            if parsed is None:
                return
            reply, consumed = parsed
            del buffer[:consumed]
            self.heard = self.clock()
            if isinstance(reply, _Push):
                self._pushed(reply)
                continue
            if not self.waiters:  # a reply nobody asked for: the stream is out of step
                self.abort()
                return
            key, waiter = self.waiters.popleft()
            if key is not None and self.tracking and (reply is None or isinstance(reply, bytes)):
                if len(self.entries) >= _MAX_ENTRIES:
                    self.entries.clear()
                self.entries[key] = reply
            if not waiter.done():
                waiter.set_result(reply)

    def _pushed(self, push: _Push) -> None:
        if not push or push[0] != b"invalidate":
            return  # no other push is asked for on this connection
        keys = push[1] if len(push) > 1 else None
        if not isinstance(keys, list):  # null: FLUSHALL / FLUSHDB, every key changed
            self.entries.clear()
            return
        for key in keys:
            if isinstance(key, bytes):
                self.entries.pop(key, None)
            else:
                self.entries.clear()
                return

    def quiet(self) -> bool:
        """Redis spoke within `_FRESH` and nothing from it waits to be read: no partial message,
        no byte in the socket."""
        if self._buffer or self._socket is None or self.clock() - self.heard >= _FRESH:
            return False
        try:
            self._socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # a byte waits, or Redis closed the connection

    def send(self, payload: bytes, key: bytes | None = None) -> asyncio.Future[Value]:
        if self.lost or self.transport is None:
            raise RespError("connection to Redis lost")
        waiter: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self.waiters.append((key, waiter))
        self.transport.write(payload)
        return waiter

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)


class TrackedGet:
    """GET with a local copy of the keys under `kept` (module docstring); a `KeyReader` of
    `redis.py`. `clock` is monotonic seconds."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        kept: str,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._endpoint = endpoint
        self._kept = kept.encode()
        self._timeout = timeout
        self._clock = clock
        self._connection: _TrackedConnection | None = None
        self._dialling = asyncio.Lock()
        self._untracked: PipelinedGet | None = None  # once Redis refused to track

    async def get(self, key: str) -> bytes | None:
        """The value at `key`; raises RespError on any failure. A kept value is at most `_FRESH`
        older than the last word from Redis (module docstring), never a wrong one."""
        if self._untracked is not None:
            return await self._untracked.get(key)
        encoded = key.encode()
        keep = encoded.startswith(self._kept)
        connection = self._connection
        if keep and connection is not None and connection.tracking and not connection.lost:
            kept = connection.entries.get(encoded, _MISSING)
            if kept is not _MISSING and connection.quiet():
                return cast("bytes | None", kept)
        if connection is None or connection.lost:
            try:
                connection = await self._dial()
            except _TrackingRefusedError as exc:
                return await self._untracked_reads(exc).get(key)
        waiter = connection.send(
            b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(encoded), encoded),
            encoded if keep else None,
        )
        reply = await self._answer(connection, waiter)
        if reply is not None and not isinstance(reply, bytes):
            raise RespError("unexpected reply to GET")
        return reply

    async def _answer(self, connection: _TrackedConnection, waiter: asyncio.Future[Value]) -> Value:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await waiter
        except TimeoutError as exc:
            connection.abort()  # Redis is stuck on it: what queued behind fails now, not later
            raise RespError("Redis did not answer in time") from exc
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _untracked_reads(self, refusal: RespError) -> PipelinedGet:
        if self._untracked is None:
            log.warning(
                "Redis does not track keys for this connection (%s): session reads are plain "
                'GETs, as with session_reads = "pipelined"',
                refusal,
            )
            self._untracked = PipelinedGet(self._endpoint, timeout=self._timeout)
        return self._untracked

    async def _dial(self) -> _TrackedConnection:
        async with self._dialling:
            if self._untracked is not None:  # refused while this read waited to dial
                raise _TrackingRefusedError("Redis does not track keys")
            current = self._connection
            if current is not None and not current.lost:
                return current
            connection = await dial(
                self._endpoint,
                lambda: _TrackedConnection(self._clock),
                self._timeout,
                self._handshake,
            )
            self._connection = connection
            return connection

    async def _handshake(self, connection: _TrackedConnection) -> None:
        endpoint = self._endpoint
        hello = [b"HELLO", b"3"]
        if endpoint.password:
            hello += [b"AUTH", (endpoint.username or "default").encode()]
            hello.append(endpoint.password.encode())
        commands = [command(*hello)]
        if endpoint.db:
            commands.append(command(b"SELECT", str(endpoint.db).encode()))
        commands.append(command(b"CLIENT", b"TRACKING", b"ON"))
        waiters = [connection.send(c) for c in commands]
        for index, waiter in enumerate(waiters):
            reply = await waiter
            if not isinstance(reply, RespError):
                continue
            # HELLO (first) or CLIENT TRACKING (last) refused, but not the credentials.
            if index in (0, len(waiters) - 1) and not str(reply).startswith(_AUTH_REFUSED):
                raise _TrackingRefusedError(str(reply))
            raise reply
        connection.tracking = True

    def close(self) -> None:
        if self._connection is not None:
            self._connection.abort()
        self._connection = None
        if self._untracked is not None:
            self._untracked.close()
