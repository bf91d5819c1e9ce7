"""gateway.proxy over real sockets: a browser -> uvicorn running `forward` -> an aiohttp upstream.

Proxying is about sockets (STYLE.md), so nothing here is in-process: the upstream is an
aiohttp.web server on a free loopback port, the gateway is a tiny ASGI app served by uvicorn in
the same loop, and the browser is httpx, or a raw socket when the test needs exact bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import socket
import time
import tracemalloc
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
import uvicorn
from aiohttp import web
from starlette.types import Receive, Scope, Send

from gateway.errors import UpstreamError
from gateway.proxy import UpstreamPool, _request_target, forward

MB = 1024 * 1024
CHUNK = bytes(range(256)) * 256  # 64 KiB
BIG = 50 * MB
IDENTITY = [
    (b"cf-access-authenticated-user-email", b"alice@example.com"),
    (b"cf-access-jwt-assertion", b"app.token.sig"),
]
FORWARDED_FOR = "203.0.113.7, 127.0.0.1"


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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo/{tail:.*}", self.echo)
        app.router.add_post("/upload", self.upload)
        app.router.add_post("/reject", self.reject)
        app.router.add_get("/download", self.download)
        app.router.add_get("/created", self.created)
        app.router.add_get("/forever", self.forever)
        app.router.add_get("/truncated", self.truncated)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/slow-body", self.slow_body)
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


@dataclass
class Gateway:
    upstream: FakeUpstream
    port: int = 0
    outcomes: dict[str, asyncio.Future[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outcome(self, target: str) -> asyncio.Future[str]:
        """How `forward` ended for the one request to `target`: "returned", "UpstreamError 502"."""
        if target not in self.outcomes:
            self.outcomes[target] = asyncio.get_running_loop().create_future()
        return self.outcomes[target]


@pytest_asyncio.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeUpstream]:
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
async def gateway(upstream: FakeUpstream) -> AsyncIterator[Gateway]:
    pool = UpstreamPool(timeout=10.0, connect_timeout=2.0)
    short_pool = UpstreamPool(timeout=0.5, connect_timeout=0.5)
    await pool.start()
    await short_pool.start()
    # Bound but never listening: every connect to it is refused, and no one else can take it.
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    refused_url = f"http://127.0.0.1:{refusing.getsockname()[1]}"
    gw = Gateway(upstream=upstream)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        target = refused_url if path.startswith("/refused") else upstream.url
        result = "returned"
        try:
            await forward(
                short_pool if path.startswith("/slow") else pool,
                scope,
                receive,
                send,
                upstream=target,
                client_ip=scope["client"][0],
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

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        log_config=None,
        lifespan="off",
        # A request stuck in `forward` fails its test; it must not also hang the teardown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    gw.port = server.servers[0].sockets[0].getsockname()[1]
    yield gw
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
        b"Cf_Access_Authenticated_User_Email: mallory@evil.example\r\n"
        b"Cookie: CF_Authorization=session-id; other=1; CF_AppSession=binding\r\n"
        b"Cookie: CF_Session=team\r\n"
        b"Accept-Language: en\r\n"
        b"\r\n"
    )
    head, body = await raw_exchange(gateway.port, request)
    assert head.startswith(b"HTTP/1.1 200 ")
    # Exactly these, in any order: nothing the client must not pass, nothing aiohttp made up
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


async def test_client_hanging_up_mid_download_closes_upstream(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    async with asyncio.timeout(5):
        writer.write(b"GET /forever?tag=download HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        await reader.readuntil(b"tick\n")
        writer.close()
        await writer.wait_closed()
        # The endless upstream stream stops only if the gateway closed its connection.
        await gateway.upstream.ended["download"].wait()
        assert await gateway.outcome("/forever?tag=download") == "returned"


async def test_client_hanging_up_mid_upload_closes_upstream(gateway: Gateway) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    async with asyncio.timeout(5):
        writer.write(
            b"POST /upload?tag=upload HTTP/1.1\r\nHost: app.example.com\r\n"
            b"Content-Length: 10485760\r\n\r\n" + CHUNK * 4
        )
        await writer.drain()
        await gateway.upstream.receiving["upload"].wait()
        writer.close()
        await writer.wait_closed()
        # The upstream stops waiting for the other 10 MB only if the gateway hung up on it.
        await gateway.upstream.ended["upload"].wait()
        assert await gateway.outcome("/upload?tag=upload") == "returned"


async def test_upstream_answering_before_reading_the_upload(
    gateway: Gateway, browser: httpx.AsyncClient
) -> None:
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
