"""Writes held to the end of the loop's round (`web/coalescing.py`): a response leaves the server
in one write, and holding writes never reorders, loses or alters a byte.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import uvloop
from starlette.types import Receive, Scope, Send

from gateway.web.coalescing import HOLD_LIMIT, CoalescingTransport
from gateway.web.serverprotocol import GatewayHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    """What a wrapped transport was asked to do, in order; optionally a real one underneath."""

    def __init__(self, real: asyncio.Transport | None = None) -> None:
        super().__init__()
        self.real = real
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("write", bytes(data)))
        if self.real is not None:
            self.real.write(data)

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True
        if self.real is not None:
            self.real.close()

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True
        if self.real is not None:
            self.real.abort()

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def is_closing(self) -> bool:
        return self.real.is_closing() if self.real is not None else self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default) if self.real is not None else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert self.real is not None
        self.real.set_protocol(protocol)

    def pause_reading(self) -> None:
        if self.real is not None:
            self.real.pause_reading()

    def resume_reading(self) -> None:
        if self.real is not None:
            self.real.resume_reading()


async def a_round_later() -> None:
    """Past the end of the current round of callbacks (the held writes are sent by then)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_writes_of_one_round_leave_as_one_in_order() -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.writelines([b"hel", b"lo"])
    transport.write(b"")
    assert recorded.calls == []  # nothing before the round ends
    await a_round_later()
    assert recorded.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\nhello")]


async def test_each_round_sends_its_own_writes() -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"first")
    await a_round_later()
    transport.write(b"second")
    await a_round_later()
    assert recorded.calls == [("write", b"first"), ("write", b"second")]


async def test_connections_of_one_loop_are_sent_in_the_same_round() -> None:
    recorded = [RecordingTransport() for _ in range(3)]
    for each in recorded:
        CoalescingTransport(each).write(b"request")
    await a_round_later()
    assert [each.calls for each in recorded] == [[("write", b"request")]] * 3


async def test_a_buffer_reused_after_write_does_not_change_what_is_sent() -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    buffer = bytearray(b"original")
    transport.write(buffer)
    buffer[:] = b"replaced"
    await a_round_later()
    assert recorded.calls == [("write", b"original")]


@pytest.mark.parametrize("ending", ["close", "write_eof"])
async def test_close_and_eof_send_what_is_held_first(ending: str) -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"last words")
    getattr(transport, ending)()
    await a_round_later()
    assert recorded.calls == [("write", b"last words"), (ending, b"")]


async def test_abort_drops_what_is_held() -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"never sent")
    transport.abort()
    await a_round_later()
    assert recorded.calls == [("abort", b"")]


async def test_nothing_is_written_to_a_transport_closed_before_the_round_ends() -> None:
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"too late")
    recorded.closing = True  # the peer went away in the meantime
    await a_round_later()
    assert recorded.calls == []


async def test_past_the_hold_limit_writes_go_out_at_once() -> None:
    """So the transport's buffer limits pause a fast writer (test_proxy's backpressure tests)."""
    recorded = RecordingTransport()
    transport = CoalescingTransport(recorded)
    transport.write(b"head")
    transport.write(b"x" * HOLD_LIMIT)
    assert recorded.calls == [("write", b"head" + b"x" * HOLD_LIMIT)]
    transport.write(b"tail")
    await a_round_later()
    assert recorded.calls[1:] == [("write", b"tail")]


async def test_the_write_buffer_size_counts_what_is_held() -> None:
    transport = CoalescingTransport(RecordingTransport())
    transport.write(b"12345")
    assert transport.get_write_buffer_size() == 5 + 7
    await a_round_later()
    assert transport.get_write_buffer_size() == 7


App = Callable[[Scope, Receive, Send], Awaitable[None]]
ServeProtocol = Callable[..., Awaitable[int]]  # conftest.serve_protocol
GET = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


def recording(written: list[RecordingTransport]) -> type[asyncio.Protocol]:
    """The gateway's server protocol over a transport that records, in `written`, the writes
    the protocol's own transport makes to the socket."""

    class Recorded(GatewayHttpToolsProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            recorder = RecordingTransport(transport)  # type: ignore[arg-type]
            written.append(recorder)
            super().connection_made(recorder)

    return Recorded


async def test_a_response_leaves_the_server_in_one_write(serve_protocol: ServeProtocol) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    recorded: list[RecordingTransport] = []
    port = await serve_protocol(app, recording(recorded))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        for _ in range(2):  # two requests on one keep-alive connection: one write each
            writer.write(GET)
            head = await reader.readuntil(b"\r\n\r\n")
            assert await reader.readexactly(5) == b"hello"
    writer.close()
    await writer.wait_closed()
    writes = [data for call, data in recorded[0].calls if call == "write"]
    assert len(writes) == 2
    assert all(data == head + b"hello" for data in writes)


async def test_a_streamed_response_still_leaves_as_it_is_sent(
    serve_protocol: ServeProtocol,
) -> None:
    """Holding lasts one round, not until the response ends: a client sees each piece of a
    stream while the app still waits for the next."""
    next_piece = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await next_piece.wait()
        await send({"type": "http.response.body", "body": b"second"})

    port = await serve_protocol(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    async with asyncio.timeout(5):
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readuntil(b"first\r\n") == b"5\r\nfirst\r\n"
        next_piece.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"
    writer.close()
    await writer.wait_closed()


class Sink:
    """A loopback server that keeps what each connection sent, and wrapped connections to it."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.ended: list[asyncio.Event] = []
        self.port = 0
        self.opened: list[asyncio.Transport] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received, ended = bytearray(), asyncio.Event()
        self.received.append(received)
        self.ended.append(ended)
        while data := await reader.read(65536):
            received += data
        ended.set()
        writer.close()

    async def connect(self) -> CoalescingTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", self.port)
        self.opened.append(transport)
        return CoalescingTransport(transport)

    async def all_ended(self) -> None:
        async with asyncio.timeout(5):
            for ended in self.ended:
                await ended.wait()


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[Sink]:
    found = Sink()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    yield found
    for transport in found.opened:
        transport.abort()
    server.close()


async def test_a_write_after_eof_fails_in_the_writer_as_on_the_transport(sink: Sink) -> None:
    """The transport refuses a write after `write_eof` when it is made; held, the refusal
    would come at the end of the round instead, where the writer cannot see it."""
    transport = await sink.connect()
    transport.write(b"request")
    transport.write_eof()
    with pytest.raises(RuntimeError):
        transport.write(b"after the end")
    await sink.all_ended()
    assert sink.received == [b"request"]


async def test_a_failing_write_spares_the_other_connections_of_the_round(sink: Sink) -> None:
    """A connection whose transport raises when its held bytes are sent is aborted; the
    connections held after it in the same round are still sent, not stranded."""

    class Failing(RecordingTransport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            raise RuntimeError("refused")

    failing = Failing()
    CoalescingTransport(failing).write(b"lost")
    others = [await sink.connect() for _ in range(2)]
    for n, other in enumerate(others):
        other.write(b"request %d" % n)
    await a_round_later()
    assert failing.calls == [("abort", b"")]
    for other in others:
        other.close()
    await sink.all_ended()
    assert sorted(sink.received) == [b"request 0", b"request 1"]


def test_a_loop_that_ran_connections_is_not_kept_alive() -> None:
    async def a_connection() -> None:
        CoalescingTransport(RecordingTransport()).write(b"request")
        await a_round_later()

    loop = uvloop.new_event_loop()
    loop.run_until_complete(a_connection())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
