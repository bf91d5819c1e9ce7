"""Writes held to the end of the event loop's round, then sent together: one per connection.

A proxied request costs two writes to the client (uvicorn writes the response head as soon as
it is started, then the body) and one to the upstream, and each write is a packet that wakes
the reader on the other end. On a machine shared with the client and the upstream (the
benchmark's two cores), waking them once per write is what cost the most: the upstream woke for
every request and the client for every half response. Held to the end of the round, a
response goes out as one packet, and the requests the round produced reach the upstream in a
burst it reads with one wake-up. `bench/proxy_throughput.py --peer modauth` went from 0.95x to
1.2x Apache + mod_auth_openidc (shm) with this, and its p99 from above the peer's to below.

`CoalescingTransport` wraps a connection's transport: `write` and `writelines` add to the
connection's pending bytes, and the first pending write of a round asks the loop to send them
(one `call_soon` per round for all connections of that loop). The wait is the rest of the
current round of callbacks, not a timer. Everything else goes to the transport, in order:
`close` and `write_eof` send what is pending first, `abort` drops it as the transport drops its
own buffer, and `get_write_buffer_size` counts it. Past `HOLD_LIMIT` bytes pending, they are sent
at once: the transport's buffer limits, which pause a fast writer, then work as without holding.
Bytes written to a transport that is closing by the time the round ends are dropped, as the
transport would drop them. A write after `write_eof` is refused when it is made, as the transport
refuses it; should a transport still refuse held bytes at the round's end, that connection is
aborted (its stream would have a hole) and the other connections of the round are sent.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

# Past this many bytes held, a connection's writes go out at once: large bodies gain nothing from
# waiting, and the transport's own buffer limits (what makes a fast writer wait) see them.
HOLD_LIMIT = 64 * 1024

log = logging.getLogger(__name__)

_rounds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Round] = weakref.WeakKeyDictionary()


class _Round:
    """The connections of one loop with bytes pending, sent at the end of the current round.
    It holds no reference to its loop, which would keep the loop alive as a key of `_rounds`."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list[CoalescingTransport] = []

    def hold(self, transport: CoalescingTransport, loop: asyncio.AbstractEventLoop) -> None:
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append(transport)

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        for transport in waiting:
            try:
                transport.flush()
            except Exception:  # that connection's bytes are lost: end it, and send the others
                log.exception("held bytes not sent; the connection is aborted")
                transport.abort()


def _round_of(loop: asyncio.AbstractEventLoop) -> _Round:
    found = _rounds.get(loop)
    if found is None:
        found = _rounds[loop] = _Round()
    return found


class CoalescingTransport(asyncio.Transport):
    """`transport`, with its writes held to the end of the loop's round (module docstring).
    Made on the loop that runs the connection, in the protocol's `connection_made`."""

    __slots__ = ("_eof", "_held", "_loop", "_pending", "_round", "_transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        super().__init__()
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._pending: list[bytes] | None = None
        self._held = 0  # bytes in _pending
        self._eof = False  # write_eof was called: the transport refuses writes from then on
        self._loop = asyncio.get_running_loop()
        self._round = _round_of(self._loop)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:  # refused here, as the transport would: at the round's end, nobody sees it
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        # A caller may reuse a mutable buffer once write returns, as transports copy it.
        chunk = data if type(data) is bytes else bytes(data)
        if self._pending is None:
            self._pending = [chunk]
            self._held = len(chunk)
            self._round.hold(self, self._loop)
        else:
            self._pending.append(chunk)
            self._held += len(chunk)
        if self._held > HOLD_LIMIT:
            self.flush()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def flush(self) -> None:
        """Send what is pending now, unless the transport is closing."""
        pending, self._pending, self._held = self._pending, None, 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._eof = True
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending, self._held = None, 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._held + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()
