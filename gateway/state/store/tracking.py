"""A local copy of the values the store GETs, kept exact by Redis client-side caching.

Every request to a protected app reads its session record; most read one that has not changed
since the last request. `TrackedGet` keeps each value it read, on one RESP3 connection with
`CLIENT TRACKING ON` (https://redis.io/docs/latest/develop/reference/client-side-caching/): Redis
then remembers that this connection read the key and, when anyone changes or deletes it (a
revocation, a sign-out, a SCIM deprovision on any instance, an expiry, an eviction, FLUSHALL),
pushes an `invalidate` message down the same connection.

Why a value served from here is never stale:
- The push travels in-band, on the connection the value was read on, so it comes after the
  reply that filled the entry. Entries are filled and dropped in `data_received`, in the order
  the bytes arrive; no await sits between a reply and its entry.
- A hit is served only while nothing is waiting to be read: no partial message in our buffer and
  no byte in the socket's receive queue (a non-blocking `MSG_PEEK`, one system call), so a push
  that has reached this host is applied first, even when the event loop would have read the
  request before it. Redis puts the push in our output buffer while it executes the write and
  sends it in the same pass of its event loop that answers the writer, before it reads another
  command. On one host that makes it exact: a request that follows a revocation's answer (the
  writer read it, acted, and a client sent the request) finds the push queued or applied. Across
  hosts it rests on the push, one hop from Redis, arriving no later than that chain of at least
  two more hops.
- The entries belong to the connection. A lost, timed-out or out-of-step connection takes them
  with it (pushes may have been lost with it); until a new connection has turned tracking on
  again every GET goes to Redis, and fails closed (`RespError`) while Redis does not answer.
  Redis restarted or failed over is a lost connection.
A miss costs what the pipelined GET of `resp.py` does: one round trip on this connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import cast

from gateway.state.store.resp import Endpoint, RespError, command, dial

_MAX_ENTRIES = 8192  # then the copy starts over: a bound on memory, not on correctness
_MISSING = object()

Value = bytes | int | str | float | bool | None | RespError | list["Value"]


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

    def __init__(self) -> None:
        # The key each written command reads (None: not a GET to keep), and its future.
        self.waiters: deque[tuple[bytes | None, asyncio.Future[Value]]] = deque()
        self.entries: dict[bytes, bytes | None] = {}
        self.tracking = False  # set once CLIENT TRACKING ON was answered +OK
        self.lost = False
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._socket: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        # Our own descriptor for the same socket, to peek at its queue (uvloop's transport
        # socket offers no recv).
        given = transport.get_extra_info("socket")
        self._socket = socket.socket(fileno=os.dup(given.fileno()))

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
        """Nothing from Redis waits to be read: no partial message, no byte in the socket."""
        if self._buffer or self._socket is None:
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
    """GET with an exact local copy (module docstring); a `KeyReader` of `redis.py`."""

    def __init__(self, endpoint: Endpoint, *, timeout: float = 2.0):
        self._endpoint = endpoint
        self._timeout = timeout
        self._connection: _TrackedConnection | None = None
        self._dialling = asyncio.Lock()

    async def get(self, key: str) -> bytes | None:
        """The value at `key`; raises RespError on any failure (never a stale or wrong value)."""
        encoded = key.encode()
        connection = self._connection
        if connection is not None and connection.tracking and not connection.lost:
            kept = connection.entries.get(encoded, _MISSING)
            if kept is not _MISSING and connection.quiet():
                return cast("bytes | None", kept)
        if connection is None or connection.lost:
            connection = await self._dial()
        waiter = connection.send(
            b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(encoded), encoded), encoded
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

    async def _dial(self) -> _TrackedConnection:
        async with self._dialling:
            current = self._connection
            if current is not None and not current.lost:
                return current
            connection = await dial(
                self._endpoint, _TrackedConnection, self._timeout, self._handshake
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
        for waiter in [connection.send(c) for c in commands]:
            reply = await waiter
            if isinstance(reply, RespError):
                raise reply
        connection.tracking = True

    def close(self) -> None:
        if self._connection is not None:
            self._connection.abort()
        self._connection = None
