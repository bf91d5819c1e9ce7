"""Connections spread evenly over the workers of `gateway serve`.

The workers share one listening socket, and whichever is awake when connections arrive accepts
all it finds: 32 keep-alive connections opened at once came out 21 on one worker and 11 on the
other. The busy worker then serves its connections late (the p99) while the other has CPU to
spare. So each worker accepts for itself (`BalancedListener` in place of the server uvicorn
would make for the shared socket) and says how many connections it holds in a small file the
parent makes (`balance_file`, named to the workers by BALANCE_ENV): a worker that holds more
than the least loaded other one leaves a waiting connection to the others for DEFER seconds,
and takes it itself if it is still waiting then (a worker that is stuck or gone never leaves
connections unanswered). Each worker owns one slot of the file, claimed with a lock the kernel
drops when the process ends, so a restarted worker takes the slot of the one it replaces.

Without the file (one worker, or a socket uvicorn did not get from its parent) the loop makes
servers as uvloop does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, cast

import uvloop

log = logging.getLogger(__name__)

# The path of the parent's file of connection counts, for the workers it spawns.
BALANCE_ENV = "GATEWAY_WORKER_BALANCE"
# How long a worker above its share leaves a waiting connection to the others. Short: both
# workers can be leaving connections to each other at once, and then nobody accepts until one
# deferral ends. With 20 ms, the 32 connections wrk opens at once took 130 ms to be accepted and
# its p99.9 was 40-100 ms (bench/proxy_throughput.py); with 2 ms, 6-7 ms, still 16 and 16.
DEFER = 0.002
_SLOT = 4  # bytes per worker: a signed 32-bit count, -1 for a slot no worker holds
_UNCLAIMED = -1


@contextlib.contextmanager
def balance_file(workers: int) -> Iterator[str | None]:
    """A file of unclaimed slots, named in BALANCE_ENV while the block runs: two per worker,
    as uvicorn's restart on SIGHUP starts each replacement before it stops the old worker.
    None if no temporary file can be made (a read-only file system): the workers then accept
    as uvloop does, unbalanced, rather than not serving at all."""
    try:
        fd, path = tempfile.mkstemp(prefix="gateway-balance-")
    except OSError as exc:
        log.warning("workers accept unbalanced: no file to share their counts in (%s)", exc)
        yield None
        return
    try:
        os.write(fd, _UNCLAIMED.to_bytes(_SLOT, "little", signed=True) * workers * 2)
        os.close(fd)
        os.environ[BALANCE_ENV] = path
        yield path
    finally:
        os.environ.pop(BALANCE_ENV, None)
        os.unlink(path)


class Counts:
    """This worker's slot in the balance file and the other workers' counts."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, size)
        self._counts = memoryview(self._map).cast("i")
        self.slot = self._claim()  # None: every slot is held (more workers than foreseen)

    def _claim(self) -> int | None:
        """The first slot no live worker holds; the others no live worker holds are cleared
        (a worker that was killed left its count there)."""
        claimed = None
        for slot in range(len(self._counts)):
            try:  # held until this process ends, however it ends
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT, slot * _SLOT)
            except OSError:
                continue
            self._counts[slot] = 0 if claimed is None else _UNCLAIMED
            if claimed is None:
                claimed = slot
            else:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT, slot * _SLOT)
        return claimed

    def publish(self, count: int) -> None:
        if self.slot is not None:
            self._counts[self.slot] = count

    def least_of_others(self) -> int | None:
        """The fewest connections another serving worker holds (None: no other worker, or
        this one has no slot and so does not balance)."""
        if self.slot is None:
            return None
        others = [c for i, c in enumerate(self._counts) if i != self.slot and c != _UNCLAIMED]
        return min(others, default=None)

    def release(self) -> None:
        self.publish(_UNCLAIMED)


class BalancedListener:
    """Accepts connections on the shared socket for this worker, leaving them to the others
    while it holds more than its share. What uvicorn needs of a server: close, wait_closed."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        counts: Counts,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._counts = counts
        self._transports: set[asyncio.BaseTransport] = set()
        self._connecting: set[asyncio.Task[None]] = set()  # referenced until done
        self._deferred: asyncio.TimerHandle | None = None
        self._closed = asyncio.Event()
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    def _held(self) -> int:
        """The connections this worker holds, those being set up included."""
        self._transports = {t for t in self._transports if not t.is_closing()}
        return len(self._transports) + len(self._connecting)

    def _readable(self) -> None:
        held = self._held()
        self._counts.publish(held)
        least = self._counts.least_of_others()
        if least is not None and held > least:
            self._pause()
            return
        self._accept()

    def _pause(self) -> None:
        """Leave waiting connections to the other workers for DEFER seconds."""
        self._loop.remove_reader(self._sock.fileno())
        self._deferred = self._loop.call_later(DEFER, self._resume)

    def _resume(self) -> None:
        """The deferral ran out: a connection still waiting is this worker's."""
        self._deferred = None
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._accept()

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):  # another worker took it
            return
        except OSError:  # out of file handles: try again later rather than spin
            self._pause()
            return
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._connect(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        self._counts.publish(self._held())

    async def _connect(self, conn: socket.socket) -> None:
        try:
            transport, _ = await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # the client left before its transport was made
            conn.close()
            return
        self._transports.add(transport)

    def close(self) -> None:
        if self._closed.is_set():
            return
        if self._deferred is not None:
            self._deferred.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._counts.release()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class GatewayLoop(uvloop.Loop):
    """uvloop, with a `BalancedListener` for a listening socket shared with other workers."""

    def __init__(self) -> None:
        super().__init__()
        path = os.environ.get(BALANCE_ENV)
        counts = Counts(path) if path else None
        self._counts = counts if counts is not None and counts.slot is not None else None

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        sock = kwargs.get("sock")
        if self._counts is None or sock is None or kwargs.get("ssl") is not None:
            return cast(asyncio.Server, await super().create_server(*args, **kwargs))
        sock.listen(kwargs.get("backlog", 100))  # what create_server would have done
        # uvicorn uses only close() and wait_closed() of the server it makes
        return cast(asyncio.Server, BalancedListener(self, sock, args[0], self._counts))


def new_loop() -> asyncio.AbstractEventLoop:
    """The loop factory `gateway serve` names to uvicorn."""
    return GatewayLoop()
