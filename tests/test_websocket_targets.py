"""WebSocket handshakes byte for byte, over real sockets: a raw-socket client sends exact
handshake bytes to uvicorn serving the gateway, and a raw-socket upstream records the request
head it receives and answers as the test needs (RFC 6455 and RFC 9112 3.2).

The host has a stricter app below `/admin` (only the Admins group) over the root app (the
Engineering group); the user is in Engineering.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
import uvicorn
from harness import free_port, settings_doc

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.proxy import websocket
from gateway.state.store.memory import MemoryStore

HOST = "access.example.com"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 4.1's sample nonce
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE, PING = 0x8, 0x9

Script = Callable[
    ["RawSocketUpstream", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]


def accept_for(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())  # noqa: S324 - RFC 6455


def frame(opcode: int, payload: bytes = b"", *, masked: bool = False) -> bytes:
    """One final frame; a client's is masked (RFC 6455 5.3)."""
    length = len(payload)
    size = bytes([length]) if length < 126 else bytes([126]) + length.to_bytes(2, "big")
    if not masked:
        return bytes([0x80 | opcode]) + size + payload
    mask = b"\x37\xfa\x21\x3d"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | size[0]]) + size[1:] + mask + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_close(reader: asyncio.StreamReader) -> bytes:
    """The payload of the next close frame (data frames before it are skipped)."""
    async with asyncio.timeout(5):
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == CLOSE:
                return payload


def code(n: int) -> bytes:
    return n.to_bytes(2, "big")


async def hold(
    upstream: RawSocketUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Record each frame the relay sends; answer its close frame with one."""
    while True:
        opcode, payload = await read_frame(reader)
        upstream.frames.append((opcode, payload))
        if opcode == CLOSE:
            writer.write(frame(CLOSE, payload))
            return


@dataclass
class RawSocketUpstream:
    """The upstream: records each handshake's request head, answers it with `answer` (by
    default a 101 that accepts the key, plus the `extra` header lines), then runs `script`
    and records every frame the relay sends it until it closes."""

    port: int = field(default_factory=free_port)
    heads: list[bytes] = field(default_factory=list)
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    answer: bytes = b""
    extra: bytes = b""
    script: Script = hold
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if self.answer:
                writer.write(self.answer)
                return
            key = self.header(head, b"sec-websocket-key").decode()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_for(key)
                + b"\r\n"
                + self.extra
                + b"\r\n"
            )
            await self.script(self, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.done.set()
            writer.close()

    @staticmethod
    def header(head: bytes, name: bytes) -> bytes:
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        raise KeyError(name)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[RawSocketUpstream]:
    raw = RawSocketUpstream()
    server = await asyncio.start_server(raw.serve, "127.0.0.1", raw.port)
    async with server:
        yield raw


@dataclass
class Client:
    status: int
    head: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class Served:
    """The gateway serving on `port`, a cookie for an Engineering user, the raw clients."""

    app: Gateway
    port: int
    cookie: str
    clients: list[asyncio.StreamWriter] = field(default_factory=list)

    async def open(self, request: bytes) -> Client:
        """Send exact handshake bytes; the answer's status and head."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.clients.append(writer)
        writer.write(request)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        return Client(int(head.split(b" ", 2)[1]), head, reader, writer)

    async def handshake(self, target: str, *, host: str = HOST, extra: str = "") -> Client:
        return await self.open(handshake_bytes(target, self.cookie, host=host, extra=extra))


def handshake_bytes(target: str, cookie: str, *, host: str = HOST, extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        f"Cookie: CF_Authorization={cookie}\r\n{extra}\r\n"
    ).encode("latin-1")


@pytest_asyncio.fixture
async def gateway(upstream: RawSocketUpstream) -> AsyncIterator[Served]:
    """The gateway served by uvicorn as `gateway serve` runs it (httptools, and the websockets
    implementation uvicorn picks)."""
    doc = settings_doc(f"http://127.0.0.1:{upstream.port}")
    doc["apps"].append(
        {
            "id": "admin",
            "name": "Admin",
            "domain": f"{HOST}/admin",
            "upstream": f"http://127.0.0.1:{upstream.port}",
            "policies": [
                {"name": "Admins", "decision": "allow", "include": [{"okta": {"name": "Admins"}}]}
            ],
        }
    )
    app = create_app(parse_settings(doc), store=MemoryStore())
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="httptools")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    assert app.runtime is not None
    identity = Identity(
        id="nonce", user_uuid="uuid-alice", sub="00u", name="alice", email="alice@example.com",
        groups=("Engineering",), idp_id="okta-test", idp_type="okta", iat=1,
    )  # fmt: skip
    _, cookie = await app.runtime.sessions.create(identity, kind="global", duration=600)
    served = Served(app, port, cookie)
    yield served
    for writer in served.clients:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    server.should_exit = True
    await task


@pytest.fixture
def no_server_error(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """No traceback: uvicorn logs an exception the app let out at ERROR."""
    with caplog.at_level(logging.ERROR):
        yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- the request target ---------------------------------------------------------------------


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    "target",
    [
        "/admin#",  # the segment "admin#" here, "/admin" to a client library: the stricter app
        "/admin#x",
        "/docs?room=1#admin",
        f"http://{HOST}/admin",  # absolute-form
        f"http://{HOST}/docs",
        f"ws://{HOST}/docs",
        "*",  # asterisk-form
        f"{HOST}:443",  # authority-form
        "docs",
    ],
)
async def test_a_target_that_is_not_origin_form_is_refused(
    gateway: Served, upstream: RawSocketUpstream, target: str
) -> None:
    answer = await gateway.handshake(target)
    assert answer.status == 400  # the gateway's refusal, or uvicorn's for what it cannot parse
    assert upstream.heads == []


@pytest.mark.usefixtures("no_server_error")
async def test_the_stricter_app_judges_its_own_path(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    """Its path in any spelling the routing reads as it (case, a path parameter) is judged by
    the stricter app: this user is not in Admins. Dot segments are refused outright."""
    for target, status in [
        ("/admin", 403),
        ("/admin/live?room=1", 403),
        ("/Admin/live", 403),
        ("/admin;x", 403),
        ("/docs/../admin", 400),
        ("/docs/%2e%2e/admin", 400),
    ]:
        answer = await gateway.handshake(target)
        assert answer.status == status, target
    assert upstream.heads == []


@pytest.mark.usefixtures("no_server_error")
async def test_the_upstream_gets_the_clients_target_and_host_exactly(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    target = "/docs/a%2Fb;p=1/%7Euser?room=1&next=%2Fadmin%23x&q=a+b"
    host = f"Access.Example.com:{gateway.port}"
    answer = await gateway.handshake(target, host=host)
    assert answer.status == 101
    head = upstream.heads[0]
    assert head.split(b"\r\n", 1)[0] == f"GET {target} HTTP/1.1".encode()
    assert RawSocketUpstream.header(head, b"host") == host.encode()
    assert head.lower().count(b"\r\nhost:") == 1
    assert RawSocketUpstream.header(head, b"x-forwarded-host") == host.encode()


@pytest.mark.usefixtures("no_server_error")
async def test_an_encoded_hash_is_a_name_under_the_root_app(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    """`%23` is a "#" inside the segment: "admin#" to the gateway and to the upstream alike."""
    answer = await gateway.handshake("/admin%23")
    assert answer.status == 101
    assert upstream.heads[0].startswith(b"GET /admin%23 HTTP/1.1\r\n")


# --- the handshake (RFC 6455 4.2.1) ---------------------------------------------------------


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    ("change", "status"),
    [
        (("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), 400),
        (("Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Key: c2hvcnQ="), 400),  # not 16 bytes
        (("Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Key: not base64!"), 400),
        (("Sec-WebSocket-Key: " + KEY + "\r\n", ""), 400),
        (("GET ", "POST "), 405),
    ],
)
async def test_a_malformed_handshake_is_refused_by_the_server(
    gateway: Served,
    upstream: RawSocketUpstream,
    change: tuple[str, str],
    status: int,
) -> None:
    request = handshake_bytes("/docs", gateway.cookie).decode().replace(*change, 1)
    answer = await gateway.open(request.encode())
    assert answer.status == status
    assert upstream.heads == []


@pytest.mark.usefixtures("no_server_error")
async def test_the_clients_own_handshake_headers_are_not_sent_on(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: chat\r\n"
    answer = await gateway.handshake("/docs", extra=extra)
    assert answer.status == 101
    head = upstream.heads[0].lower()
    assert b"sec-websocket-extensions" not in head  # the gateway offers no extension
    assert head.count(b"sec-websocket-key:") == 1
    assert RawSocketUpstream.header(head, b"sec-websocket-key") != KEY.lower().encode()
    assert RawSocketUpstream.header(head, b"sec-websocket-protocol") == b"chat"


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("chat", b"Sec-WebSocket-Protocol: admin\r\n"),  # not one the client offered
        ("", b"Sec-WebSocket-Protocol: chat\r\n"),  # the client offered none
        ("chat", b"Sec-WebSocket-Extensions: permessage-deflate\r\n"),  # none was offered
    ],
)
async def test_an_upstream_answer_the_client_did_not_ask_for_is_refused(
    gateway: Served,
    upstream: RawSocketUpstream,
    offered: str,
    answered: bytes,
) -> None:
    upstream.extra = answered
    extra = f"Sec-WebSocket-Protocol: {offered}\r\n" if offered else ""
    answer = await gateway.handshake("/docs", extra=extra)
    assert answer.status == 403
    assert len(upstream.heads) == 1


@pytest.mark.usefixtures("no_server_error")
async def test_an_upstream_redirect_is_not_followed(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    """Followed, it would carry the user's identity headers to wherever the upstream says."""
    elsewhere = RawSocketUpstream()
    server = await asyncio.start_server(elsewhere.serve, "127.0.0.1", elsewhere.port)
    async with server:
        for location in (f"ws://127.0.0.1:{elsewhere.port}/x", "/elsewhere"):
            upstream.answer = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n\r\n".encode()
            answer = await gateway.handshake("/docs")
            assert answer.status == 403
        assert len(upstream.heads) == 2
        assert elsewhere.heads == []


# --- close codes (RFC 6455 7.4.1) -----------------------------------------------------------


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    ("sent", "relayed"),
    [
        (b"", code(1000)),  # a close without a code: 1005 must not go on the wire
        (code(4001), code(4001)),
        (code(1001), code(1001)),
    ],
)
async def test_a_client_close_reaches_the_upstream_as_a_valid_code(
    gateway: Served, upstream: RawSocketUpstream, sent: bytes, relayed: bytes
) -> None:
    client = await gateway.handshake("/docs")
    assert client.status == 101
    client.writer.write(frame(CLOSE, sent, masked=True))
    assert await read_close(client.reader) == sent  # the server's answer to the client's close
    async with asyncio.timeout(5):
        await upstream.done.wait()
    assert upstream.frames == [(CLOSE, relayed)]


@pytest.mark.usefixtures("no_server_error")
async def test_a_client_gone_without_a_close_is_a_valid_code_upstream(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    client = await gateway.handshake("/docs")
    assert client.status == 101
    client.writer.transport.abort()
    async with asyncio.timeout(5):
        await upstream.done.wait()
    # Uvicorn reports a vanished client as 1005 (no code), like an empty close frame.
    assert upstream.frames == [(CLOSE, code(1000))]


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    ("script", "relayed"),
    [
        (frame(CLOSE), code(1000)),  # no code: 1005 must not go on the wire
        (frame(CLOSE, code(4001) + b"bye"), code(4001)),
        (b"", code(1011)),  # gone without a close: 1006 must not go on the wire
        (frame(PING, b"x" * 126), code(1011)),  # a control frame over 125 bytes
    ],
)
async def test_an_upstream_close_reaches_the_client_as_a_valid_code(
    gateway: Served, upstream: RawSocketUpstream, script: bytes, relayed: bytes
) -> None:

    async def send_then_go(
        _: RawSocketUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(script)
        if script[:1] == frame(CLOSE)[:1]:
            await read_frame(reader)  # the relay's answer to the close

    upstream.script = send_then_go
    client = await gateway.handshake("/docs")
    assert client.status == 101
    assert (await read_close(client.reader))[:2] == relayed


@pytest.mark.usefixtures("no_server_error")
async def test_an_upstream_message_over_the_bound_closes_both_legs(
    gateway: Served, upstream: RawSocketUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "MAX_MESSAGE", 1000)

    async def too_big(
        _: RawSocketUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(frame(0x2, b"x" * 1001))
        upstream.frames.append(await read_frame(reader))

    upstream.script = too_big
    client = await gateway.handshake("/docs")
    assert client.status == 101
    assert await read_close(client.reader) == code(1011)
    assert [(opcode, payload[:2]) for opcode, payload in upstream.frames] == [
        (CLOSE, code(1009))  # RFC 6455 7.4.1: message too big
    ]


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_for("AAAAAAAAAAAAAAAAAAAAAA==") + b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching",  # then gone
    ],
)
async def test_an_upstream_that_does_not_complete_the_handshake_is_refused(
    gateway: Served, upstream: RawSocketUpstream, answer: bytes
) -> None:
    upstream.answer = answer
    client = await gateway.handshake("/docs")
    assert client.status == 403
    assert len(upstream.heads) == 1


@pytest.mark.usefixtures("no_server_error")
@pytest.mark.parametrize(
    ("sent", "closed_with"),
    [
        # a header announcing one byte over the bound: refused before the payload is read
        (b"\x82\xff" + (websocket.MAX_MESSAGE + 1).to_bytes(8, "big") + b"mask", code(1009)),
        (frame(PING, b"x" * 126, masked=True), code(1002)),  # a control frame over 125 bytes
    ],
)
async def test_a_client_frame_over_the_bounds_closes_both_legs(
    gateway: Served, upstream: RawSocketUpstream, sent: bytes, closed_with: bytes
) -> None:
    client = await gateway.handshake("/docs")
    assert client.status == 101
    client.writer.write(sent)
    assert (await read_close(client.reader))[:2] == closed_with
    async with asyncio.timeout(5):
        await upstream.done.wait()
    assert [(opcode, payload[:2]) for opcode, payload in upstream.frames] == [(CLOSE, closed_with)]


@pytest.mark.usefixtures("no_server_error")
async def test_the_upstream_urls_path_comes_first(
    gateway: Served, upstream: RawSocketUpstream
) -> None:
    """As for proxied HTTP: an upstream `http://host:port/base` gets `/base` + the target."""
    assert gateway.app.runtime is not None
    doc = settings_doc(f"http://127.0.0.1:{upstream.port}/base")
    gateway.app.runtime.apply(parse_settings(doc))
    client = await gateway.handshake("/docs?room=1")
    assert client.status == 101
    assert upstream.heads[0].startswith(b"GET /base/docs?room=1 HTTP/1.1\r\n")
