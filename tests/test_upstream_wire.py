"""The upstream clients against a hand-scripted HTTP/1.1 peer: exact bytes out, every framing in.

Each test drives a real client (the builtin `UpstreamPool`, and httpx's behind the same
`UpstreamClient` boundary) against `Peer`, an asyncio server written here that records the
exact bytes of every request and the connection it came on, and answers with scripted bytes.
Where the two clients differ on purpose, the test says which and why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from gateway.proxy.upstream import UpstreamPool
from gateway.proxy.upstream_client import UpstreamBrokenError, UpstreamClient, UpstreamResponse
from gateway.proxy.upstream_httpx import HttpxUpstreamClient

TIMEOUT = 0.5  # seconds the clients here wait for the peer
HOST = [(b"Host", b"app.example")]
KINDS = ["builtin", "httpx"]

Writer = asyncio.StreamWriter
Answer = Callable[[Writer], Awaitable[bool]]  # writes the reply; whether to keep the connection


@dataclass
class Exchange:
    connection: int  # numbered from 1, in the order the peer accepted them
    head: bytes  # the request line and headers, up to and including the blank line
    body: bytes  # as framed on the wire (chunk sizes included)


@dataclass
class Peer:
    """An HTTP/1.1 server that reads each request whole and answers from `script[path]`."""

    url: str = ""
    script: dict[str, Answer] = field(default_factory=dict)
    early: set[str] = field(default_factory=set)  # answered before the body is read
    exchanges: list[Exchange] = field(default_factory=list)
    connections: int = 0
    ended: dict[int, asyncio.Event] = field(default_factory=dict)  # the client closed it
    _writers: list[Writer] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.connections += 1
        number = self.connections
        self.ended[number] = asyncio.Event()
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1].decode().split("?")[0]
                if path in self.early:
                    self.exchanges.append(Exchange(number, head, b""))
                    await self.script[path](writer)
                    await reader.read()  # what the client still sends, until it hangs up
                    return
                body = await _read_body(reader, head)
                self.exchanges.append(Exchange(number, head, body))
                if not await self.script[path](writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended[number].set()
        finally:
            writer.close()

    def on(self, path: str) -> list[int]:
        """The connections that carried the requests for `path`, in order."""
        return [
            e.connection for e in self.exchanges if e.head.split(b" ")[1].startswith(path.encode())
        ]

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if fields.get(b"transfer-encoding") == b"chunked":
        raw = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            raw += line
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                    raw += trailer
                return raw + b"\r\n"
            raw += await reader.readexactly(size + 2)
    return await reader.readexactly(int(fields.get(b"content-length", b"0")))


def reply(data: bytes, *, keep: bool = True) -> Answer:
    async def answer(writer: Writer) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return answer


def in_parts(*parts: bytes, keep: bool = True) -> Answer:
    """Each part on its own, so the client reads them separately."""

    async def answer(writer: Writer) -> bool:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        return keep

    return answer


async def silence(writer: Writer) -> bool:
    await asyncio.Event().wait()  # never set: never answers
    return False


OK = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    fake = Peer(script={"/ok": OK})
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield fake
    fake.close()
    server.close()


@pytest.fixture(params=KINDS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    new: UpstreamClient
    if request.param == "builtin":
        new = UpstreamPool(timeout=TIMEOUT, connect_timeout=1.0)
    else:
        new = HttpxUpstreamClient(timeout=TIMEOUT, connect_timeout=1.0)
    await new.start()
    yield new
    await new.close()


async def body_of(response: UpstreamResponse) -> bytes:
    """Read the whole body and give the connection back as the proxy does after a full relay."""
    data = b""
    while not response.complete:
        data += await response.read()
    await response.release(reuse=True)
    return data


async def get(client: UpstreamClient, peer: Peer, target: str = "/ok") -> tuple[int, bytes]:
    response = await client.request(peer.url, "GET", target, HOST, None)
    return response.status, await body_of(response)


def pieces(*parts: bytes) -> Callable[[], Awaitable[tuple[bytes, bool]]]:
    """A request body arriving in these pieces."""
    left = list(parts)

    async def read() -> tuple[bytes, bool]:
        return left.pop(0), bool(left)

    return read


# -- what goes out: the request line, the headers, the body framing


async def test_request_line_and_headers_go_out_exactly(client: UpstreamClient, peer: Peer) -> None:
    headers = [(b"Host", b"app.example"), (b"X-Mixed-Case", b"caf\xc3\xa9"), (b"accept", b"*/*")]
    peer.script["/base/ok"] = OK
    response = await client.request(peer.url + "/base", "GET", "/ok?q=a%2Fb&r=1", headers, None)
    assert await body_of(response) == b"ok"
    # Nothing added (no User-Agent, Accept-Encoding, Connection), nothing re-cased or reordered,
    # the target not re-encoded, the upstream URL's path in front of it.
    assert peer.exchanges[0].head == (
        b"GET /base/ok?q=a%2Fb&r=1 HTTP/1.1\r\n"
        b"Host: app.example\r\nX-Mixed-Case: caf\xc3\xa9\r\naccept: */*\r\n\r\n"
    )
    assert peer.exchanges[0].body == b""


async def test_content_length_body_goes_out_as_it_comes(client: UpstreamClient, peer: Peer) -> None:
    headers = [*HOST, (b"Content-Length", b"11")]
    response = await client.request(peer.url, "POST", "/ok", headers, pieces(b"hello ", b"world"))
    assert await body_of(response) == b"ok"
    assert peer.exchanges[0].head == (
        b"POST /ok HTTP/1.1\r\nHost: app.example\r\nContent-Length: 11\r\n\r\n"
    )
    assert peer.exchanges[0].body == b"hello world"


async def test_chunked_body_is_framed_and_empty_pieces_skipped(
    client: UpstreamClient, peer: Peer
) -> None:
    headers = [*HOST, (b"Transfer-Encoding", b"chunked")]
    body = pieces(b"hello ", b"", b"chunked world")
    response = await client.request(peer.url, "PUT", "/ok", headers, body, chunked=True)
    assert await body_of(response) == b"ok"
    # RFC 9112 7.1: an empty chunk would end the body, so the empty piece is not sent as one.
    assert peer.exchanges[0].body == b"6\r\nhello \r\nd\r\nchunked world\r\n0\r\n\r\n"


async def test_a_header_with_a_line_break_is_never_sent(client: UpstreamClient, peer: Peer) -> None:
    for name, value in ((b"X-Email", b"a@b\r\nX-Admin: 1"), (b"X-A\nX-Admin", b"1")):
        with pytest.raises(UpstreamBrokenError, match="line break"):
            await client.request(peer.url, "GET", "/ok", [*HOST, (name, value)], None)
    assert await get(client, peer) == (200, b"ok")
    assert len(peer.exchanges) == 1  # only the good one reached the peer


# -- keep-alive: one connection for many requests, unless the answer says otherwise


async def test_keep_alive_reuses_one_connection(client: UpstreamClient, peer: Peer) -> None:
    for _ in range(3):
        assert await get(client, peer) == (200, b"ok")
    headers = [*HOST, (b"Content-Length", b"2")]
    response = await client.request(peer.url, "POST", "/ok", headers, pieces(b"hi"))
    assert await body_of(response) == b"ok"
    assert peer.on("/ok") == [1, 1, 1, 1]


async def test_connection_close_is_honoured(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/last"] = reply(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast", keep=False
    )
    assert await get(client, peer, "/last") == (200, b"last")
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/last") + peer.on("/ok") == [1, 2]


async def test_a_connection_released_unread_is_closed(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/big"] = in_parts(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst", b"-rest")
    response = await client.request(peer.url, "GET", "/big", HOST, None)
    assert await response.read() == b"first"
    await response.release(reuse=False)  # the browser went away mid-body
    async with asyncio.timeout(2):
        await peer.ended[1].wait()
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


# -- what comes back: each framing of a response


async def test_head_reads_no_body_whatever_the_length(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/file"] = reply(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: "v1"\r\n\r\n')
    started = time.monotonic()
    response = await client.request(peer.url, "HEAD", "/file", HOST, None)
    assert response.status == 200
    assert (b"Content-Length", b"1000") in response.headers
    assert await body_of(response) == b""
    assert time.monotonic() - started < TIMEOUT  # not waiting for 1000 bytes
    # Never pooled: body bytes a sloppy upstream sent after the head would be read as the next
    # request's answer.
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/file") + peer.on("/ok") == [1, 2]


async def test_interim_responses_are_skipped(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/hints"] = in_parts(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
    )
    response = await client.request(peer.url, "GET", "/hints", HOST, None)
    assert response.status == 200
    assert response.headers == [(b"Content-Length", b"5"), (b"X-Final", b"yes")]
    assert await body_of(response) == b"final"
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [1]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_bodyless_statuses_end_at_the_head(
    client: UpstreamClient, peer: Peer, status: bytes
) -> None:
    # RFC 9110 8.6: no body, whatever length a 304 (the representation's) or a sloppy 204 states.
    peer.script["/none"] = reply(b"HTTP/1.1 " + status + b"\r\nContent-Length: 1000\r\n\r\n")
    response = await client.request(peer.url, "GET", "/none", HOST, None)
    assert response.status == int(status[:3])
    assert await body_of(response) == b""
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/none") + peer.on("/ok") == [1, 1]


async def test_chunked_response_with_trailers(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/chunks"] = in_parts(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
        b"7\r\n chunks\r\n",
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
    )
    response = await client.request(peer.url, "GET", "/chunks", HOST, None)
    assert response.headers == [(b"Transfer-Encoding", b"chunked")]  # trailers are not headers
    assert await body_of(response) == b"hello chunks"
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/chunks") + peer.on("/ok") == [1, 1]


async def test_close_delimited_response_ends_with_the_connection(
    client: UpstreamClient, peer: Peer
) -> None:
    # RFC 9112 6.3 item 8: no length, not chunked: the body ends when the connection does.
    peer.script["/stream"] = in_parts(b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end", keep=False)
    assert await get(client, peer, "/stream") == (200, b"until the end")
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


# -- an upstream that breaks off: a clean error, and the connection never used again


async def test_peer_closing_mid_head_is_broken(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/cut"] = reply(b"HTTP/1.1 200 OK\r\nContent-Le", keep=False)
    with pytest.raises(UpstreamBrokenError):
        await client.request(peer.url, "GET", "/cut", HOST, None)
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/cut") == [1]  # an answer had begun: not sent again
    assert peer.on("/ok") == [2]


@pytest.mark.parametrize(
    "head",
    [b"Content-Length: 10\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["length", "chunked"],
)
async def test_peer_closing_mid_body_is_broken(
    client: UpstreamClient, peer: Peer, head: bytes
) -> None:
    first = b"4\r\npart\r\n" if b"chunked" in head else b"part"
    peer.script["/cut"] = in_parts(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + first, keep=False)
    response = await client.request(peer.url, "GET", "/cut", HOST, None)
    assert await response.read() == b"part"
    with pytest.raises(UpstreamBrokenError):
        await response.read()
    await response.release(reuse=False)
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


async def test_slow_peer_times_out(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/slow"] = silence
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.request(peer.url, "GET", "/slow", HOST, None)
    assert TIMEOUT * 0.8 < time.monotonic() - started < TIMEOUT * 4


async def test_body_stalling_times_out(client: UpstreamClient, peer: Peer) -> None:
    async def stall(writer: Writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
        return await silence(writer)

    peer.script["/stall"] = stall
    response = await client.request(peer.url, "GET", "/stall", HOST, None)
    assert await response.read() == b"first"
    with pytest.raises(TimeoutError):
        await response.read()
    await response.release(reuse=False)
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


async def test_idle_connection_closed_by_the_peer_is_not_used(
    client: UpstreamClient, peer: Peer
) -> None:
    peer.script["/bye"] = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye", keep=False)
    assert await get(client, peer, "/bye") == (200, b"bye")
    await asyncio.sleep(0.05)  # the FIN arrives while the connection sits in the pool
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


async def test_stale_connection_is_retried_once_for_a_get(
    client: UpstreamClient, peer: Peer
) -> None:
    served: set[Writer] = set()

    async def once(writer: Writer) -> bool:
        # A reused connection closes on the request, as one closed while idle would when the
        # request crosses the FIN.
        if writer in served:
            return False
        served.add(writer)
        return await OK(writer)

    peer.script["/once"] = once
    assert await get(client, peer, "/once") == (200, b"ok")
    assert await get(client, peer, "/once") == (200, b"ok")
    assert peer.on("/once") == [1, 1, 2]  # sent again, once, on a new connection


async def test_stale_connection_is_not_retried_for_a_post(
    client: UpstreamClient, peer: Peer
) -> None:
    assert await get(client, peer) == (200, b"ok")
    peer.script["/effect"] = reply(b"", keep=False)
    for body in (pieces(b"x"), None):
        length = b"1" if body else b"0"
        headers = [*HOST, (b"Content-Length", length)]
        with pytest.raises(UpstreamBrokenError):
            await client.request(peer.url, "POST", "/effect", headers, body)
        assert await get(client, peer) == (200, b"ok")  # a connection to spoil next time
    # Not sent again: a POST may have had its effect before the connection broke.
    assert peer.on("/effect") == [1, 2]


async def test_response_head_too_large_is_broken(client: UpstreamClient, peer: Peer) -> None:
    peer.script["/huge"] = reply(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (2 * 1024 * 1024))
    with pytest.raises(UpstreamBrokenError):
        await client.request(peer.url, "GET", "/huge", HOST, None)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        # RFC 9112 6.3: both framings at once is how responses are split; refused outright.
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
        # Below 100 is no status at all (RFC 9110 15); it once passed for an interim response,
        # its body was skipped and the request waited for an answer until it timed out.
        b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["garbage", "unasked-upgrade", "length-and-chunked", "two-lengths", "status-099"],
)
async def test_answers_that_are_not_http_are_broken(
    client: UpstreamClient, peer: Peer, answer: bytes
) -> None:
    peer.script["/odd"] = reply(answer)
    with pytest.raises(UpstreamBrokenError):
        response = await client.request(peer.url, "GET", "/odd", HOST, None)
        await body_of(response)
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


@pytest.mark.parametrize(
    "client",
    [
        "builtin",
        pytest.param(
            "httpx",
            marks=pytest.mark.xfail(
                reason="httpcore keeps bytes that follow a response in h11's buffer and reads "
                "them as the next answer on that connection; the builtin client closes it",
                strict=True,
            ),
        ),
    ],
    indirect=True,
)
async def test_bytes_after_a_response_never_answer_the_next_request(
    client: UpstreamClient, peer: Peer
) -> None:
    peer.script["/extra"] = reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
    )
    assert await get(client, peer, "/extra") == (200, b"hi")
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]


async def test_nothing_listening_is_broken(client: UpstreamClient, peer: Peer) -> None:
    with pytest.raises(UpstreamBrokenError, match="cannot connect"):
        await client.request("http://127.0.0.1:1", "GET", "/ok", HOST, None)
    with pytest.raises(UpstreamBrokenError, match="not an http"):
        await client.request("ftp://127.0.0.1", "GET", "/ok", HOST, None)


async def test_an_answer_before_the_body_is_sent(peer: Peer, client: UpstreamClient) -> None:
    """An upstream answering 413 before it has read the body: the builtin client hears it at
    once (a task of its own sends the body); httpcore only once the body is all sent."""
    peer.script["/reject"] = reply(
        b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    peer.early.add("/reject")
    last_piece = asyncio.Event()

    async def body() -> tuple[bytes, bool]:
        if not last_piece.is_set():
            last_piece.set()
            return b"x" * 10, True
        await asyncio.sleep(TIMEOUT / 2)
        return b"y" * 10, False

    headers = [*HOST, (b"Content-Length", b"20")]
    started = time.monotonic()
    response = await client.request(peer.url, "POST", "/reject", headers, body)
    took = time.monotonic() - started
    assert response.status == 413
    assert await body_of(response) == b""
    if isinstance(client, UpstreamPool):
        assert took < TIMEOUT / 2
    else:
        assert took >= TIMEOUT / 2
    assert await get(client, peer) == (200, b"ok")
    assert peer.on("/ok") == [2]
