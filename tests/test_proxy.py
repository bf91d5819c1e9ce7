"""gateway.proxy and its upstream clients over real sockets: browser -> uvicorn running `forward`
-> an aiohttp upstream, or a hand-written one for answers aiohttp will not give.

Proxying is about sockets (STYLE.md), so nothing here is in-process: the upstream is an
aiohttp.web server on a free loopback port, the gateway is a tiny ASGI app served by uvicorn in
the same loop, and the browser is httpx, or a raw socket when the test needs exact bytes.
Backpressure, the connection limit and TLS are tested on an upstream client directly. Every
test that goes through a client runs with each `[gateway] upstream_client` (`kind`); the few
that pin what only the builtin client does say why.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import hashlib
import json
import logging
import socket
import ssl
import time
import tracemalloc
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.types import Receive, Scope, Send

from gateway.errors import UpstreamError
from gateway.proxy import upstream as upstream_module
from gateway.proxy.forwarding import Upstreams, _request_target, forward
from gateway.proxy.limits import UpstreamLimits
from gateway.proxy.upstream import READ_HIGH_WATER, UpstreamPool
from gateway.proxy.upstream_client import UpstreamBrokenError, UpstreamClient
from gateway.proxy.upstream_httpx import HttpxUpstreamClient
from gateway.web.serverprotocol import GatewayHttpToolsProtocol

MB = 1024 * 1024
CHUNK = bytes(range(256)) * 256  # 64 KiB
BIG = 50 * MB
IDENTITY = [
    (b"cf-access-authenticated-user-email", b"alice@example.com"),
    (b"cf-access-jwt-assertion", b"app.token.sig"),
]
FORWARDED_FOR = "203.0.113.7, 127.0.0.1"
# The two `[gateway] upstream_client` settings; both take the same arguments.
CLIENTS: dict[str, type[UpstreamPool] | type[HttpxUpstreamClient]] = {
    "builtin": UpstreamPool,
    "httpx": HttpxUpstreamClient,
}


@dataclass
class FakeUpstream:
    """The protected application. `ended[tag]` is set when a tagged handler stops, however."""

    url: str = ""
    ended: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    receiving: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    proceed: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    sent: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo/{tail:.*}", self.echo)
        app.router.add_post("/upload", self.upload)
        app.router.add_post("/slow-upload", self.upload)
        app.router.add_post("/reject", self.reject)
        app.router.add_get("/download", self.download)
        app.router.add_get("/created", self.created)
        app.router.add_get("/forever", self.forever)
        app.router.add_get("/truncated", self.truncated)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/slow-body", self.slow_body)
        app.router.add_get("/firehose", self.firehose)
        app.router.add_post("/sink", self.sink)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        return web.json_response(
            {
                "method": request.method,
                "target": request.raw_path,
                "headers": [[k.decode().lower(), v.decode()] for k, v in request.raw_headers],
                "body": (await request.read()).decode(),
                "peer_port": request.transport.get_extra_info("peername")[1],
            }
        )

    async def upload(self, request: web.Request) -> web.Response:
        tag = request.query.get("tag", "")
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in request.content.iter_any():
                self.receiving[tag].set()
                digest.update(chunk)
                size += len(chunk)
        finally:
            self.ended[tag].set()
        return web.json_response(
            {
                "size": size,
                "sha256": digest.hexdigest(),
                "content_length": request.headers.get("Content-Length"),
                "transfer_encoding": request.headers.get("Transfer-Encoding"),
            }
        )

    async def reject(self, request: web.Request) -> web.Response:
        return web.Response(status=413, text="too big")  # without reading the body

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // len(CHUNK)):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def created(self, request: web.Request) -> web.Response:
        response = web.Response(
            status=201,
            body=gzip.compress(b"made it " * 100),
            headers={
                "Content-Type": "text/plain",
                "Content-Encoding": "gzip",
                "Location": "/things/1",
                "X-Custom": "kept",
                "Connection": "X-Hop-Response",
                "X-Hop-Response": "dropped",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": 'Basic realm="upstream"',
            },
        )
        response.headers.add("Set-Cookie", "app_session=abc; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "theme=dark; Path=/")
        return response

    async def forever(self, request: web.Request) -> web.StreamResponse:
        tag = request.query["tag"]
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"tick\n")
                await asyncio.sleep(0.01)
        finally:
            self.ended[tag].set()

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"x" * 100)
        assert request.transport is not None
        request.transport.close()
        return response

    async def slow(self, request: web.Request) -> web.Response:
        # Cancelled (handler_cancellation) as soon as the gateway gives up and hangs up.
        await asyncio.sleep(10)
        return web.Response(text="too late")

    async def slow_body(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first part")
        await asyncio.sleep(10)
        return response

    async def firehose(self, request: web.Request) -> web.StreamResponse:
        """`size` bytes as fast as the gateway takes them; `sent[tag]` counts what it took."""
        tag, size = request.query["tag"], int(request.query["size"])
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // len(CHUNK)):
            await response.write(CHUNK)  # waits while the socket buffer is full
            self.sent[tag] += len(CHUNK)
        await response.write_eof()
        return response

    async def sink(self, request: web.Request) -> web.Response:
        """Reads nothing until `proceed[tag]` is set, then counts the body."""
        tag = request.query["tag"]
        await self.proceed[tag].wait()
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size})


Writer = asyncio.StreamWriter
Answer = Callable[[int, int, bytes, Writer], Awaitable[bool]]


@dataclass
class RawUpstream:
    """A hand-written HTTP/1.1 server, for answers aiohttp.web will not give.

    Connections are numbered from 1; `requests` logs (connection, method, target) in order.
    Each `answer_*` method gets (connection, requests served on it so far, method, writer) and
    returns whether to keep the connection open for the next request.
    """

    url: str = ""
    connections: int = 0
    requests: list[tuple[int, str, str]] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, served = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append((number, method, target))
                name = target.split("?")[0].removeprefix("/raw/").replace("-", "_")
                answer: Answer = getattr(self, f"answer_{name}")
                if not await answer(number, served, method.encode(), writer):
                    break
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def last(self, target: str) -> int:
        """The connection that carried the latest request to `target`."""
        return [number for number, _, seen in self.requests if seen == target][-1]

    async def answer_whoami(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        body = str(number).encode()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    async def answer_interim(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await w.drain()
        w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await w.drain()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal")
        return True

    async def answer_length_only(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        # A HEAD answer: the length the GET body would have, and no body.
        w.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: "v1"\r\n\r\n')
        return True

    async def answer_not_modified(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: "v1"\r\n\r\n')
        return True

    async def answer_no_content(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        # RFC 9110 8.6 forbids the length on a 204; sloppy servers send it anyway.
        w.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 1000\r\n\r\n")
        return True

    async def answer_chunked(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n")
        await w.drain()
        await asyncio.sleep(0.01)  # two separate reads on the gateway's side
        w.write(b"7\r\n chunks\r\n0\r\nX-Trailer: dropped\r\n\r\n")
        return True

    async def answer_until_close(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        # RFC 9112 6.3 item 8: no length, not chunked: the body ends when the connection does.
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"the end")
        return False

    async def answer_stale(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        # A reused connection closes on the request, as one closed while idle would.
        if served:
            return False
        body = b"fresh %d" % number
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    async def answer_extra(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n")
        return True

    async def answer_switch(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        return True

    async def answer_huge_head(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (2 * MB))  # and never an end
        return True

    async def answer_garbage(self, number: int, served: int, method: bytes, w: Writer) -> bool:
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        return True


@dataclass
class Gateway:
    upstream: FakeUpstream
    kind: str  # the upstream client `forward` uses
    port: int = 0  # served with the gateway's server protocol
    plain_port: int = 0  # served with uvicorn's httptools protocol
    outcomes: dict[str, asyncio.Future[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outcome(self, target: str) -> asyncio.Future[str]:
        """How `forward` ended for the one request to `target`: "returned", "UpstreamError 502"."""
        if target not in self.outcomes:
            self.outcomes[target] = asyncio.get_running_loop().create_future()
        return self.outcomes[target]


@pytest.fixture(scope="module", params=list(CLIENTS))
def kind(request: pytest.FixtureRequest) -> str:
    """Which upstream client: every test that takes it runs with each."""
    return str(request.param)


def client_of(kind: str, **options: Any) -> UpstreamClient:
    return CLIENTS[kind](**options)


@pytest_asyncio.fixture(scope="module")
async def upstream(kind: str) -> AsyncIterator[FakeUpstream]:
    """Fresh for each client: what one run of the module recorded is not seen by the next."""
    fake = FakeUpstream()
    runner = web.AppRunner(
        fake.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def raw(kind: str) -> AsyncIterator[RawUpstream]:
    fake = RawUpstream()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield fake
    server.close()


@pytest_asyncio.fixture(scope="module")
async def gateway(upstream: FakeUpstream, raw: RawUpstream, kind: str) -> AsyncIterator[Gateway]:
    pool = client_of(kind, timeout=10.0, connect_timeout=2.0)
    short_pool = client_of(kind, timeout=0.5, connect_timeout=0.5)
    await pool.start()
    await short_pool.start()
    # Every test's requests come from 127.0.0.1: no per-client limit here (test_transport_hardening
    # tests the limits through `gateway serve`). "/slow" requests also get a short body timeout.
    limits = UpstreamLimits(per_origin=1000, per_client=1000)
    leg = Upstreams(pool, limits, body_timeout=10.0)
    short_leg = Upstreams(short_pool, limits, body_timeout=0.5)
    # Bound but never listening: every connect to it is refused, and no one else can take it.
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    refused_url = f"http://127.0.0.1:{refusing.getsockname()[1]}"
    gw = Gateway(upstream=upstream, kind=kind)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        target = upstream.url
        if path.startswith("/refused"):
            target = refused_url
        elif path.startswith("/raw/"):
            target = raw.url
        result = "returned"
        try:
            await forward(
                short_leg if path.startswith("/slow") else leg,
                scope,
                receive,
                send,
                upstream=target,
                client_ip=scope["client"][0],
                client_network=scope["client"][0],
                forwarded_for=FORWARDED_FOR,
                proto="https",
                host=dict(scope["headers"]).get(b"host", b"").decode(),
                identity_headers=IDENTITY,
            )
        except UpstreamError as exc:
            result = f"UpstreamError {exc.status}"
            body = exc.error.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except BaseException as exc:
            result = repr(exc)
            raise
        finally:
            query = scope["query_string"].decode()
            future = gw.outcome(f"{path}?{query}" if query else path)
            if not future.done():
                future.set_result(result)

    # The server protocol `gateway serve` runs; and uvicorn's own, under which `forward` learns
    # of a hang-up from `receive` (the protocol's listener is not there).
    servers = []
    for protocol in (GatewayHttpToolsProtocol, "httptools"):
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            log_config=None,
            lifespan="off",
            http=protocol,
            # A request stuck in `forward` fails its test; it must not also hang the teardown.
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        servers.append((server, serving))
    gw.port, gw.plain_port = (s.servers[0].sockets[0].getsockname()[1] for s, _ in servers)
    yield gw
    for server, serving in servers:
        server.should_exit = True
        await serving
    await pool.close()
    await short_pool.close()
    refusing.close()


@pytest_asyncio.fixture
async def browser(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
        yield client


async def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send exact request bytes (with Connection: close) and return (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_raw_path_and_query_reach_the_upstream_unchanged(gateway: Gateway) -> None:
    target = b"/echo/a%2Fb/c%20d;p=1/%7Euser?x=1&y=%2F&z=a+b&empty="
    head, body = await raw_exchange(
        gateway.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200 ")
    seen = json.loads(body)
    assert seen["method"] == "GET"
    assert seen["target"] == target.decode()


def test_request_target_without_raw_path_is_reencoded() -> None:
    scope = {"path": "/docs/a b/ü", "query_string": b"q=1"}
    assert _request_target(scope) == "/docs/a%20b/%C3%BC?q=1"


def test_request_target_cannot_change_the_upstream_host() -> None:
    scope = {"path": "@evil.example/x", "raw_path": b"@evil.example/x", "query_string": b""}
    assert _request_target(scope) == "/@evil.example/x"


async def test_header_hygiene(gateway: Gateway) -> None:
    request = (
        b"GET /echo/hygiene HTTP/1.1\r\n"
        b"Host: app.example.com\r\n"
        b"Connection: close, X-Hop\r\n"
        b"X-Hop: listed-in-connection\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: h2c\r\n"
        b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        b"Cf-Access-Authenticated-User-Email: mallory@evil.example\r\n"
        b"Cf-Access-Jwt-Assertion: forged.jwt.token\r\n"
        b"CF-ACCESS-CLIENT-ID: forged\r\n"
        b"X-Forwarded-For: 198.51.100.66\r\n"
        b"X-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: evil.example\r\n"
        b"X-Forwarded-Port: 1\r\n"
        b"Forwarded: for=198.51.100.66\r\n"
        b"X-Real-IP: 198.51.100.66\r\n"
        b"True-Client-IP: 198.51.100.66\r\n"
        b"CF-Connecting-IP: 198.51.100.66\r\n"
        b"X-Original-URL: /admin/users\r\n"
        b"X-Rewrite-URL: /admin/users\r\n"
        b"X-Original-URI: /admin/users\r\n"
        b"Cf_Access_Authenticated_User_Email: mallory@evil.example\r\n"
        b"Cookie: CF_Authorization=session-id; other=1; CF_AppSession=binding\r\n"
        b"Cookie: CF_Session=team\r\n"
        b"Accept-Language: en\r\n"
        b"\r\n"
    )
    head, body = await raw_exchange(gateway.port, request)
    assert head.startswith(b"HTTP/1.1 200 ")
    # Exactly these, in any order: nothing the client must not pass, nothing our client made up
    # (no User-Agent, Accept or Accept-Encoding of its own).
    assert sorted(map(tuple, json.loads(body)["headers"])) == sorted(
        [
            ("host", "app.example.com"),
            ("accept-language", "en"),
            ("cookie", "other=1"),
            ("x-forwarded-for", FORWARDED_FOR),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("cf-access-authenticated-user-email", "alice@example.com"),
            ("cf-access-jwt-assertion", "app.token.sig"),
        ]
    )


async def test_cookie_header_dropped_when_only_gateway_cookies(
    browser: httpx.AsyncClient,
) -> None:
    response = await browser.get(
        "/echo/cookies", headers={"Cookie": "CF_Authorization=s; CF_AppSession=b; CF_Session=t"}
    )
    names = [name for name, _ in response.json()["headers"]]
    assert "cookie" not in names


async def test_upstream_connections_are_kept_alive(browser: httpx.AsyncClient) -> None:
    first = (await browser.get("/echo/one")).json()
    second = (await browser.get("/echo/two")).json()
    assert first["peer_port"] == second["peer_port"]


async def test_chunked_request_body_is_rechunked(browser: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"hello ", b"", b"chunked ", b"world"):
            yield part

    response = await browser.post("/upload", content=body())
    seen = response.json()
    assert seen["size"] == len(b"hello chunked world")
    assert seen["sha256"] == hashlib.sha256(b"hello chunked world").hexdigest()
    assert seen["transfer_encoding"] == "chunked"
    assert seen["content_length"] is None


async def test_response_status_and_headers_pass_through(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as browser:
        async with browser.stream("GET", "/created") as response:
            raw = b"".join([part async for part in response.aiter_raw()])
    assert response.status_code == 201
    assert response.headers["x-custom"] == "kept"
    assert response.headers["location"] == "/things/1"  # a redirect target, not followed
    assert response.headers.get_list("set-cookie") == [
        "app_session=abc; Path=/; HttpOnly",
        "theme=dark; Path=/",
    ]
    # Not decompressed on the way: the browser gets the upstream's gzip bytes.
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == b"made it " * 100
    for hop in ("connection", "x-hop-response", "keep-alive", "proxy-authenticate"):
        assert hop not in response.headers


async def test_50mb_upload_streams_without_buffering(browser: httpx.AsyncClient) -> None:
    digest = hashlib.sha256()
    for _ in range(BIG // len(CHUNK)):
        digest.update(CHUNK)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(BIG // len(CHUNK)):
            yield CHUNK

    tracemalloc.start()
    try:
        response = await browser.post(
            "/upload", content=body(), headers={"Content-Length": str(BIG)}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seen = response.json()
    assert seen["size"] == BIG
    assert seen["sha256"] == digest.hexdigest()
    assert seen["content_length"] == str(BIG)  # preserved, not turned into chunked
    assert seen["transfer_encoding"] is None
    assert peak < 20 * MB, f"peak traced memory {peak / MB:.1f} MB"


async def test_50mb_download_streams_without_buffering(browser: httpx.AsyncClient) -> None:
    digest = hashlib.sha256()
    for _ in range(BIG // len(CHUNK)):
        digest.update(CHUNK)
    received = hashlib.sha256()
    size = 0

    tracemalloc.start()
    try:
        async with browser.stream("GET", f"/download?size={BIG}") as response:
            assert response.headers["content-length"] == str(BIG)
            async for part in response.aiter_raw():
                received.update(part)
                size += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == BIG
    assert received.hexdigest() == digest.hexdigest()
    assert peak < 20 * MB, f"peak traced memory {peak / MB:.1f} MB"


async def test_refused_connection_is_502(browser: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await browser.get("/refused")
    assert response.status_code == 502
    assert response.text == "upstream_error"
    assert await gateway.outcome("/refused") == "UpstreamError 502"


async def test_slow_upstream_is_504(browser: httpx.AsyncClient, gateway: Gateway) -> None:
    started = time.monotonic()
    response = await browser.get("/slow")
    assert response.status_code == 504
    assert response.text == "upstream_timeout"
    assert time.monotonic() - started < 5
    assert await gateway.outcome("/slow") == "UpstreamError 504"


@pytest.mark.parametrize("path", ["/truncated", "/slow-body"])
async def test_failure_after_start_truncates_and_logs(
    browser: httpx.AsyncClient, gateway: Gateway, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.proxy")
    with pytest.raises(httpx.RemoteProtocolError):
        await browser.get(path, headers={"Cookie": "other=secret-cookie"})
    assert await gateway.outcome(path) == "returned"
    warnings = [r for r in caplog.records if r.name == "gateway.proxy"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert path in warnings[0].getMessage()
    assert "secret-cookie" not in warnings[0].getMessage()


@pytest.mark.parametrize("server", ["gateway", "plain"])
async def test_client_hanging_up_mid_download_closes_upstream(
    gateway: Gateway, server: str
) -> None:
    port = gateway.port if server == "gateway" else gateway.plain_port
    tag = f"download-{server}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        writer.write(
            b"GET /forever?tag=%s HTTP/1.1\r\nHost: app.example.com\r\n\r\n" % tag.encode()
        )
        await reader.readuntil(b"tick\n")
        writer.close()
        await writer.wait_closed()
        # The endless upstream stream stops only if the gateway closed its connection.
        await gateway.upstream.ended[tag].wait()
        assert await gateway.outcome(f"/forever?tag={tag}") == "returned"


@pytest.mark.parametrize("server", ["gateway", "plain"])
async def test_client_hanging_up_mid_upload_closes_upstream(gateway: Gateway, server: str) -> None:
    port = gateway.port if server == "gateway" else gateway.plain_port
    tag = f"upload-{server}"
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        writer.write(
            b"POST /upload?tag=%s HTTP/1.1\r\nHost: app.example.com\r\n" % tag.encode()
            + b"Content-Length: 10485760\r\n\r\n"
            + CHUNK * 4
        )
        await writer.drain()
        await gateway.upstream.receiving[tag].wait()
        writer.close()
        await writer.wait_closed()
        # The upstream stops waiting for the other 10 MB only if the gateway hung up on it.
        await gateway.upstream.ended[tag].wait()
        assert await gateway.outcome(f"/upload?tag={tag}") == "returned"


async def test_a_stalled_upload_is_408_and_the_upstream_closed(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            b"POST /slow-upload?tag=stalled HTTP/1.1\r\nHost: app.example.com\r\n"
            b"Content-Length: 1000\r\n\r\nfirst piece"
        )
        async with asyncio.timeout(5):
            await gateway.upstream.receiving["stalled"].wait()
            started = time.monotonic()
            head = await reader.readuntil(b"\r\n\r\n")
            # The upstream stops waiting for the rest only if the gateway hung up on it.
            await gateway.upstream.ended["stalled"].wait()
        assert head.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < time.monotonic() - started < 3
        assert await gateway.outcome("/slow-upload?tag=stalled") == "UpstreamError 408"
    finally:
        writer.close()


async def test_a_slow_but_steady_upload_is_not_cut_off(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            b"POST /slow-upload?tag=steady HTTP/1.1\r\nHost: app.example.com\r\n"
            b"Content-Length: 8\r\nConnection: close\r\n\r\n"
        )
        for piece in (b"ab", b"cd", b"ef", b"gh"):  # 1.2 s in all, 0.3 s apart: under 0.5
            await asyncio.sleep(0.3)
            writer.write(piece)
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["size"] == 8
    finally:
        writer.close()


async def test_upstream_answering_before_reading_the_upload(
    gateway: Gateway, browser: httpx.AsyncClient
) -> None:
    if gateway.kind == "httpx":
        pytest.skip("httpcore reads the answer only once the body is sent (test_upstream_wire)")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        async with asyncio.timeout(5):
            writer.write(
                b"POST /reject HTTP/1.1\r\nHost: app.example.com\r\n"
                b"Content-Length: 5242880\r\n\r\n" + CHUNK
            )
            assert (await reader.readline()).startswith(b"HTTP/1.1 413 ")
            assert await gateway.outcome("/reject") == "returned"
    finally:
        writer.close()
        await writer.wait_closed()
    # The half-sent upload must not have left a poisoned connection in the pool.
    assert (await browser.get("/echo/after-reject")).json()["target"] == "/echo/after-reject"


# -- response framing: what httptools (llhttp) does with each kind of answer


async def test_head_response_ends_at_the_head_and_the_connection_is_not_reused(
    browser: httpx.AsyncClient, raw: RawUpstream
) -> None:
    response = await browser.head("/raw/length-only")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1000"
    assert response.content == b""
    # Never pooled: body bytes a sloppy upstream sent after the head would otherwise be read
    # as the next request's answer. The next request gets a connection of its own.
    whoami = await browser.get("/raw/whoami")
    assert whoami.text != str(raw.last("/raw/length-only"))
    assert whoami.status_code == 200


@pytest.mark.parametrize(("path", "status"), [("/raw/no-content", 204), ("/raw/not-modified", 304)])
async def test_bodyless_statuses_ignore_content_length(
    browser: httpx.AsyncClient, raw: RawUpstream, path: str, status: int
) -> None:
    response = await browser.get(path)
    assert response.status_code == status
    assert response.content == b""
    assert (await browser.get("/raw/whoami")).text == str(raw.last(path))


async def test_chunked_response_is_relayed_and_the_connection_reused(
    browser: httpx.AsyncClient, raw: RawUpstream
) -> None:
    response = await browser.get("/raw/chunked")
    assert response.status_code == 200
    assert response.content == b"hello chunks"
    assert "x-trailer" not in response.headers
    assert (await browser.get("/raw/whoami")).text == str(raw.last("/raw/chunked"))


async def test_close_delimited_response_is_complete_and_not_reused(
    browser: httpx.AsyncClient, raw: RawUpstream, gateway: Gateway
) -> None:
    response = await browser.get("/raw/until-close")  # no RemoteProtocolError: not truncated
    assert response.content == b"until the end"
    assert await gateway.outcome("/raw/until-close") == "returned"
    assert (await browser.get("/raw/whoami")).text != str(raw.last("/raw/until-close"))


async def test_interim_responses_are_skipped(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/raw/interim")
    assert response.status_code == 200
    assert response.headers["x-final"] == "yes"
    assert "link" not in response.headers  # the 103's
    assert response.content == b"final"


async def test_expect_100_continue_is_not_forwarded(gateway: Gateway) -> None:
    head, body = await raw_exchange(
        gateway.port,
        b"POST /echo/expect HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n"
        b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    )
    if head.startswith(b"HTTP/1.1 100 "):  # uvicorn's own, to the client
        head, _, body = body.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    seen = json.loads(body)
    assert seen["body"] == "hello"
    assert "expect" not in dict(seen["headers"])


async def test_post_without_body_gets_a_zero_length(gateway: Gateway) -> None:
    _, body = await raw_exchange(
        gateway.port,
        b"POST /echo/empty HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    assert ["content-length", "0"] in json.loads(body)["headers"]


@pytest.mark.parametrize("path", ["/raw/extra", "/raw/switch", "/raw/garbage", "/raw/huge-head"])
async def test_answers_that_are_not_one_http_response(
    browser: httpx.AsyncClient, raw: RawUpstream, gateway: Gateway, path: str
) -> None:
    if path == "/raw/extra" and gateway.kind == "httpx":
        pytest.skip("httpcore reads bytes after a response as the next one (test_upstream_wire)")
    response = await browser.get(path)
    if path == "/raw/extra":  # the answer is fine, the bytes after it spoil the connection
        assert response.content == b"hi"
        assert (await browser.get("/raw/whoami")).text != str(raw.last(path))
    else:
        assert response.status_code == 502
        assert await gateway.outcome(path) == "UpstreamError 502"


# -- the pool: reuse, stale connections, expiry, the limit


async def test_stale_pooled_connection_is_retried_for_get(
    browser: httpx.AsyncClient, raw: RawUpstream
) -> None:
    first = await browser.get("/raw/stale?n=1")
    second = await browser.get("/raw/stale?n=2")  # the pooled connection closes on it
    assert second.status_code == 200
    assert second.text == f"fresh {raw.connections}"
    assert second.text != first.text
    assert [number for number, _, target in raw.requests if target == "/raw/stale?n=2"] == [
        raw.last("/raw/stale?n=1"),
        raw.connections,
    ]


async def test_stale_pooled_connection_is_502_for_post(
    browser: httpx.AsyncClient, raw: RawUpstream, gateway: Gateway
) -> None:
    await browser.get("/raw/stale?n=prime")
    pooled = raw.last("/raw/stale?n=prime")
    for target, content in (("/raw/stale?n=post", b"x"), ("/raw/stale?n=empty-post", b"")):
        response = await browser.post(target, content=content)
        assert response.status_code == 502
        assert await gateway.outcome(target) == "UpstreamError 502"
        # Not sent again: a POST may have had its effect before the connection broke.
        assert [number for number, _, seen in raw.requests if seen == target] == [pooled]
        await browser.get("/raw/stale?n=prime-again")
        pooled = raw.last("/raw/stale?n=prime-again")


async def test_idle_connections_expire(
    browser: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    if gateway.kind == "httpx":
        pytest.skip("httpcore's keep-alive expiry is fixed when its pool is made")
    first = (await browser.get("/echo/one")).json()
    monkeypatch.setattr(upstream_module, "KEEPALIVE_TIMEOUT", 0.0)
    second = (await browser.get("/echo/two")).json()
    assert first["peer_port"] != second["peer_port"]


async def test_connection_limit_wait_counts_toward_connect_timeout(
    upstream: FakeUpstream, kind: str
) -> None:
    # connect_timeout is also the waiter's budget below: long enough that a stalled event loop
    # (a loaded CI machine) cannot run it out during the 0.05 s the test looks away.
    pool = client_of(kind, timeout=5.0, connect_timeout=1.0, limit=1)
    await pool.start()
    try:
        busy = await pool.request(upstream.url, "GET", "/slow-body", [(b"Host", b"a")], None)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.request(upstream.url, "GET", "/echo/waits", [(b"Host", b"a")], None)
        assert 0.9 < time.monotonic() - started < 5
        # The slot passes to the next waiter as soon as it is given back.
        waiting = asyncio.create_task(
            pool.request(upstream.url, "GET", "/echo/next", [(b"Host", b"a")], None)
        )
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await busy.release(reuse=False)
        response = await waiting
        assert json.loads(await response.read())["target"] == "/echo/next"
        await response.release(reuse=True)
    finally:
        await pool.close()


async def test_header_with_line_break_is_not_sent(upstream: FakeUpstream, kind: str) -> None:
    pool = client_of(kind)
    await pool.start()
    try:
        with pytest.raises(UpstreamBrokenError, match="line break"):
            await pool.request(
                upstream.url, "GET", "/echo/x", [(b"X-Email", b"a@b\r\nX-Admin: 1")], None
            )
    finally:
        await pool.close()


# -- backpressure: neither direction is ever buffered whole


async def wait_until_still(count: Callable[[], int]) -> int:
    """Poll until `count()` has stopped growing for 0.2 s (a sender blocked on a full pipe)."""
    last, still = -1, 0
    async with asyncio.timeout(10):
        while still < 4:
            await asyncio.sleep(0.05)
            now = count()
            still = still + 1 if now == last else 0
            last = now
    return last


async def test_read_backpressure_pauses_the_upstream(upstream: FakeUpstream, kind: str) -> None:
    if kind == "httpx":
        pytest.skip("httpcore reads only when asked: there is no read-ahead to bound")
    size = 64 * MB
    pool = UpstreamPool()
    await pool.start()
    try:
        response = await pool.request(
            upstream.url, "GET", f"/firehose?tag=read&size={size}", [(b"Host", b"a")], None
        )
        # Nobody reads: the gateway holds READ_HIGH_WATER and stops reading; the rest waits in
        # socket buffers (a few MB on loopback) and in the upstream, which stops writing.
        sent = await wait_until_still(lambda: upstream.sent["read"])
        assert sent < size // 2
        first = await response.read()
        assert READ_HIGH_WATER <= len(first) < 2 * MB  # what was held: bounded
        received = len(first)
        while not response.complete:
            received += len(await response.read())
        assert received == size
        await response.release(reuse=True)
    finally:
        await pool.close()


async def test_write_backpressure_waits_for_the_upstream(upstream: FakeUpstream, kind: str) -> None:
    size = 64 * MB

    class Body:
        taken = 0

        async def read(self) -> tuple[bytes, bool]:
            self.taken += len(CHUNK)
            return CHUNK, self.taken < size

    body = Body()
    pool = client_of(kind)
    await pool.start()
    try:
        headers = [(b"Host", b"a"), (b"Content-Length", str(size).encode())]
        answer = asyncio.create_task(
            pool.request(upstream.url, "POST", "/sink?tag=write", headers, body.read)
        )
        # The upstream reads nothing yet: the body is taken from the client only as fast as
        # the socket drains, so it stalls after a few MB of buffers.
        taken = await wait_until_still(lambda: body.taken)
        assert taken < size // 2
        upstream.proceed["write"].set()
        response = await answer
        assert json.loads(await response.read()) == {"size": size}
        await response.release(reuse=True)
    finally:
        await pool.close()


# -- TLS upstreams


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for "localhost" (not 127.0.0.1) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_upstream(
    upstream: FakeUpstream, tls_files: tuple[Path, Path], kind: str
) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    port = runner.addresses[0][1]
    trusting = client_of(kind, ssl_context=ssl.create_default_context(cafile=cert_file))
    default = client_of(kind)
    await trusting.start()
    await default.start()
    try:
        headers = [(b"Host", b"app.example.com"), (b"Transfer-Encoding", b"chunked")]
        response = await trusting.request(
            f"https://localhost:{port}", "POST", "/upload", headers, Uploads().read, chunked=True
        )
        assert json.loads(await response.read())["size"] == 3 * len(CHUNK)
        await response.release(reuse=True)
        # Checked against the URL's host: right certificate, wrong name.
        with pytest.raises(UpstreamBrokenError, match="certificate"):
            await trusting.request(f"https://127.0.0.1:{port}", "GET", "/echo/x", [], None)
        # And against the system CAs by default.
        with pytest.raises(UpstreamBrokenError, match="certificate"):
            await default.request(f"https://localhost:{port}", "GET", "/echo/x", [], None)
    finally:
        await trusting.close()
        await default.close()
        await runner.cleanup()


class Uploads:
    """Three CHUNKs of request body."""

    left = 3

    async def read(self) -> tuple[bytes, bool]:
        self.left -= 1
        return CHUNK, self.left > 0
