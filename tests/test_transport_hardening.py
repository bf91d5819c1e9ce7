"""The HTTP/1.1 edges of `gateway serve`, as a real process on real sockets: trailer fields are
never headers, a transfer coding other than `chunked` is refused, and one app's stalled uploads
(or one client's) cannot take the upstream connections every other app needs.

The browser is a raw socket that sends exact bytes; the upstreams are raw-socket servers that
record the exact bytes they receive. The gateway is `python -m gateway serve`, the command
operators run, so a change of server (or of its settings) is tested as it ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from harness import free_port

from gateway.config import UpstreamClientKind
from gateway.errors import UpstreamError
from gateway.proxy.forwarding import open_upstream_client
from gateway.proxy.limits import UpstreamLimits
from gateway.proxy.upstream_client import UpstreamBrokenError
from gateway.web.clientinfo import client_info, client_network

TRUSTED_IP = "198.51.100.7"  # the one address the `ip` app lets through
# The defaults docs/configuration.md gives for the upstream limits.
PER_ORIGIN = 128
PER_CLIENT = 64


@dataclass
class RecordingUpstream:
    """An HTTP/1.1 origin on a raw socket: `requests` holds the exact bytes of every request it
    was sent, in order, each added as its head arrives and filled in as its body does.

    Each request is read to its end (Content-Length or chunked, trailers included) and answered
    `200 ok`; `reading` counts the requests whose head arrived and whose body has not ended.
    """

    port: int = 0
    requests: list[bytearray] = field(default_factory=list)
    reading: int = 0
    server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                record = bytearray(head)
                self.requests.append(record)
                self.reading += 1
                try:
                    await self._read_body(head, reader, record)
                finally:
                    self.reading -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_body(head: bytes, reader: asyncio.StreamReader, record: bytearray) -> None:
        fields = [line.partition(b":") for line in head.lower().split(b"\r\n")[1:]]
        framing = {name.strip(): value.strip() for name, _, value in fields}
        if framing.get(b"transfer-encoding") == b"chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                record += size_line
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                record += await reader.readexactly(size + 2)
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer section
                record += line
            record += line
        else:
            record += await reader.readexactly(int(framing.get(b"content-length", b"0")))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


# Response heads a lenient parser reads and a relay would get wrong (RFC 9110 / 9112).
UNRELAYABLE = {
    "gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "two-codings": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "chunked-in-1.0": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "status-600": b"HTTP/1.1 600 Beyond\r\nContent-Length: 5\r\n\r\nhello",
    "version-2": b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "control-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 5\r\n\r\nhello",
}
# RFC 9112 5.2: a gateway answers 502 (the builtin client) or unfolds to SP (httpx's h11).
FOLDED = b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"
RELAYABLE = {
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "http-1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
}


@dataclass
class AnsweringUpstream:
    """Answers `GET /<name>` with UNRELAYABLE[name] or RELAYABLE[name] (else FOLDED); closes."""

    port: int = 0
    server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            name = head.split(b" ", 2)[1].decode().lstrip("/")
            writer.write(UNRELAYABLE.get(name) or RELAYABLE.get(name) or FOLDED)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@dataclass
class Upstreams:
    open: RecordingUpstream  # the `ip` app and the `open` app
    stall: RecordingUpstream  # where the stalled uploads go
    other: RecordingUpstream  # another app, another origin
    answering: AnsweringUpstream  # the `odd` app

    def all(self) -> tuple[RecordingUpstream | AnsweringUpstream, ...]:
        return (self.open, self.stall, self.other, self.answering)


@pytest_asyncio.fixture(scope="module")
async def upstreams() -> AsyncIterator[Upstreams]:
    servers = Upstreams(
        RecordingUpstream(), RecordingUpstream(), RecordingUpstream(), AnsweringUpstream()
    )
    for server in servers.all():
        await server.start()
    yield servers
    for server in servers.all():
        await server.stop()


def write_config(path: Path, port: int, upstreams: Upstreams, extra: str = "") -> Path:
    def app(app_id: str, upstream: RecordingUpstream | AnsweringUpstream, rule: str) -> str:
        return f"""
            [[apps]]
            id = "{app_id}"
            name = "{app_id}"
            domain = "{app_id}.test"
            upstream = "http://127.0.0.1:{upstream.port}"
            [[apps.policies]]
            name = "Let through"
            decision = "bypass"
            include = [ {rule} ]
        """

    everyone = "{ everyone = {} }"
    path.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "http://127.0.0.1:{port}"
            cookie_secret = "transport-test-cookie-secret-0123456789"
            store = "memory"
            cookie_secure = false
            trusted_proxies = ["127.0.0.1"]
            {extra}

            [[identity_providers]]
            id = "okta"
            name = "Okta"
            type = "okta"
            [identity_providers.config]
            client_id = "0oaclient"
            client_secret = "transport-test-client-secret"
            okta_account = "https://dev-123.okta.com"
        """)
        + textwrap.dedent(app("ip", upstreams.open, f'{{ ip = {{ ip = "{TRUSTED_IP}/32" }} }}'))
        + textwrap.dedent(app("open", upstreams.open, everyone))
        + textwrap.dedent(app("stall", upstreams.stall, everyone))
        + textwrap.dedent(app("other", upstreams.other, everyone))
        + textwrap.dedent(app("odd", upstreams.answering, everyone))
    )
    return path


@contextlib.asynccontextmanager
async def gateway_serve(config: Path, port: int) -> AsyncIterator[int]:
    """`gateway serve` on `port` with `config`, one worker, until the block ends."""
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    command += ["--workers", "1", "--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(config.with_suffix(".log"), "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, f"gateway serve exited {process.returncode}"
                assert time.monotonic() < deadline, "gateway serve did not start"
                try:
                    async with httpx.AsyncClient(timeout=1) as probe:
                        if (await probe.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest_asyncio.fixture(scope="module")
async def gateway(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[int]:
    """The port of a `gateway serve` with every transport setting at its default."""
    port = free_port()
    config = write_config(tmp_path_factory.mktemp("serve") / "gateway.toml", port, upstreams)
    async with gateway_serve(config, port) as serving:
        yield serving


async def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send `request` in one write; everything the gateway answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def chunked_post(host: str, head: bytes, trailer: bytes) -> bytes:
    return (
        b"POST /upload HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n" + head + b"\r\n"
        b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n"
    )


# --- trailer fields are not headers -----------------------------------------------------------


async def test_a_trailer_x_forwarded_for_is_not_a_hop(gateway: int, upstreams: Upstreams) -> None:
    before = len(upstreams.open.requests)
    forged = b"X-Forwarded-For: " + TRUSTED_IP.encode() + b"\r\n"
    answer = await exchange(gateway, chunked_post("ip.test", b"", forged))
    # The client is the proxy's peer (127.0.0.1), which the `ip` rule does not let through.
    assert status_of(answer) == 401
    assert len(upstreams.open.requests) == before
    # With the proxy's own head saying so, the same request is let through: the rule works.
    answer = await exchange(gateway, chunked_post("ip.test", forged, b""))
    assert status_of(answer) == 200


async def test_a_trailer_x_forwarded_for_does_not_end_a_chain(
    gateway: int, upstreams: Upstreams
) -> None:
    head = b"X-Forwarded-For: 203.0.113.9\r\n"
    trailer = b"X-Forwarded-For: " + TRUSTED_IP.encode() + b"\r\n"
    answer = await exchange(gateway, chunked_post("ip.test", head, trailer))
    assert status_of(answer) == 401


async def test_trailer_fields_never_reach_the_upstream(gateway: int, upstreams: Upstreams) -> None:
    before = len(upstreams.open.requests)
    trailer = b"X-Smuggled: yes\r\nCf-Access-Authenticated-User-Email: eve@example.com\r\n"
    answer = await exchange(gateway, chunked_post("open.test", b"", trailer))
    assert status_of(answer) == 200
    [sent] = upstreams.open.requests[before:]
    assert b"hello" in sent
    assert b"smuggled" not in sent.lower()
    assert b"eve@example.com" not in sent


# --- transfer codings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codings",
    [
        [b"gzip, chunked"],
        [b"deflate,chunked"],
        [b"gzip", b"chunked"],  # two fields are one list (RFC 9110 5.3)
    ],
)
async def test_transfer_codings_other_than_chunked_are_501(
    gateway: int, upstreams: Upstreams, codings: list[bytes]
) -> None:
    before = len(upstreams.open.requests)
    head = b"".join(b"Transfer-Encoding: " + c + b"\r\n" for c in codings)
    request = (
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\n" + head + b"\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    answer = await exchange(gateway, request)
    assert status_of(answer) == 501
    assert b"connection: close" in answer.lower()
    assert len(upstreams.open.requests) == before


async def test_chunked_alone_is_relayed_rechunked(gateway: int, upstreams: Upstreams) -> None:
    before = len(upstreams.open.requests)
    request = (
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n"
        b"Transfer-Encoding: Chunked\r\n\r\n2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
    )
    # One write: the server hands the app both chunks as one piece, which goes out as one chunk.
    assert status_of(await exchange(gateway, request)) == 200
    [sent] = upstreams.open.requests[before:]
    assert b"\r\nTransfer-Encoding: chunked\r\n" in sent
    assert sent.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        b"POST /upload HTTP/1.0\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_BODY,
        # RFC 9112 6.1: chunked is never applied twice (the server refuses it before the app).
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked, chunked\r\n"
        b"\r\n" + CHUNKED_BODY,
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        # RFC 9112 6.3: both framings at once is a smuggling attempt.
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n" + CHUNKED_BODY,
        # Transfer-Encoding without chunked last: the body's end cannot be known.
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        # RFC 9112 3.2: one Host, never two (which one a proxy in front routed by is unknown).
        b"GET / HTTP/1.1\r\nHost: open.test\r\nHost: ip.test\r\nConnection: close\r\n\r\n",
        # RFC 9112 5.1: no whitespace between a field name and its colon.
        b"GET / HTTP/1.1\r\nHost: open.test\r\nX-Spaced : 1\r\nConnection: close\r\n\r\n",
        # RFC 9112 6.3: differing Content-Length values.
        b"POST /upload HTTP/1.1\r\nHost: open.test\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
    ],
)
async def test_faulty_framing_is_400_and_never_forwarded(
    gateway: int, upstreams: Upstreams, request_bytes: bytes
) -> None:
    before = len(upstreams.open.requests)
    answer = await exchange(gateway, request_bytes)
    assert status_of(answer) == 400
    assert answer.count(b"HTTP/1.1 ") == 1
    assert len(upstreams.open.requests) == before


# --- one app, or one client, cannot starve the others -----------------------------------------


@contextlib.asynccontextmanager
async def stalled_uploads(
    port: int, clients: list[str]
) -> AsyncIterator[list[asyncio.Task[bytes]]]:
    """One upload per entry of `clients` (its X-Forwarded-For), each stopping after 5 bytes of
    1 MB; the tasks end with the head of the gateway's answer. Hung up when the block ends."""
    writers: list[asyncio.StreamWriter] = []

    async def upload(client: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: stall.test\r\nContent-Length: 1000000\r\n"
            b"X-Forwarded-For: " + client.encode() + b"\r\n\r\nhello"
        )
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    tasks = [asyncio.create_task(upload(client)) for client in clients]
    try:
        yield tasks
    finally:
        for writer in writers:
            writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_256_stalled_uploads_to_one_app_do_not_starve_another(
    gateway: int, upstreams: Upstreams
) -> None:
    clients = [f"10.1.{n // 250}.{n % 250 + 1}" for n in range(256)]
    async with stalled_uploads(gateway, clients):
        # As many reach the app as its origin may have; the rest wait for one of them.
        await until(lambda: upstreams.stall.reading >= PER_ORIGIN)
        await asyncio.sleep(0.5)  # the other uploads reach the gateway meanwhile
        started = time.monotonic()
        request = b"GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n"
        answer = await exchange(gateway, request)
        assert status_of(answer) == 200
        assert time.monotonic() - started < 1.0
        assert upstreams.stall.reading == PER_ORIGIN


async def test_one_client_cannot_hold_more_than_its_share(
    gateway: int, upstreams: Upstreams
) -> None:
    async with stalled_uploads(gateway, ["10.2.0.1"] * (PER_CLIENT + 1)) as tasks:
        await until(lambda: upstreams.stall.reading >= PER_CLIENT)
        refused = await asyncio.wait_for(next(asyncio.as_completed(tasks)), 5)
        assert status_of(refused) == 429
        # Another client still gets to the same app.
        request = (
            b"POST /upload HTTP/1.1\r\nHost: stall.test\r\nConnection: close\r\n"
            b"X-Forwarded-For: 10.2.0.2\r\nContent-Length: 2\r\n\r\nhi"
        )
        assert status_of(await exchange(gateway, request)) == 200


# --- the limits themselves --------------------------------------------------------------------


async def test_an_origin_over_its_limit_waits_in_turn_then_is_503() -> None:
    limits = UpstreamLimits(per_origin=1, per_client=10, wait=0.2)
    # Two apps on one origin share its place; the default port is the explicit one.
    await limits.admit("http://app.internal/", "10.0.0.1")
    waiting = asyncio.create_task(limits.admit("http://app.internal:80/b", "10.0.0.2"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    limits.leave("http://app.internal/", "10.0.0.1")
    await waiting  # handed the place the first one left
    with pytest.raises(UpstreamError) as busy:
        await limits.admit("http://app.internal/", "10.0.0.3")
    assert (busy.value.status, busy.value.error) == (503, "upstream_busy")
    await limits.admit("http://other.internal/", "10.0.0.3")  # another origin: room
    limits.leave("http://app.internal:80/b", "10.0.0.2")
    await limits.admit("http://app.internal/", "10.0.0.3")  # nothing leaked


async def test_a_waiter_that_gives_up_leaves_no_place_taken() -> None:
    limits = UpstreamLimits(per_origin=1, per_client=10, wait=5)
    await limits.admit("http://app.internal/", "10.0.0.1")
    gone = asyncio.create_task(limits.admit("http://app.internal/", "10.0.0.2"))
    await asyncio.sleep(0.05)
    gone.cancel()  # the client hung up while waiting
    with pytest.raises(asyncio.CancelledError):
        await gone
    limits.leave("http://app.internal/", "10.0.0.1")
    await asyncio.wait_for(limits.admit("http://app.internal/", "10.0.0.2"), 1)


async def test_a_client_over_its_limit_is_429_at_once_and_counted_while_waiting() -> None:
    limits = UpstreamLimits(per_origin=1, per_client=2, wait=5)
    await limits.admit("http://a.internal/", "10.0.0.1")
    waiting = asyncio.create_task(limits.admit("http://a.internal/", "10.0.0.1"))
    await asyncio.sleep(0.05)
    with pytest.raises(UpstreamError) as refused:
        await limits.admit("http://b.internal/", "10.0.0.1")
    assert (refused.value.status, refused.value.error) == (429, "too_many_requests")
    await limits.admit("http://b.internal/", "10.0.0.2")  # another client is not held back
    limits.leave("http://a.internal/", "10.0.0.1")
    await waiting
    limits.leave("http://a.internal/", "10.0.0.1")
    limits.leave("http://b.internal/", "10.0.0.2")
    await asyncio.wait_for(limits.admit("http://b.internal/", "10.0.0.1"), 1)


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("127.0.0.1", None),  # a proxy on this machine: every user behind it shares it
        ("::1", None),
        ("::ffff:127.0.0.1", None),  # the same on a dual-stack listener
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),  # one host holds a whole /64
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ],
)
def test_clients_are_limited_by_network_and_a_local_peer_not_at_all(
    peer: str, key: str | None
) -> None:
    info = client_info({"client": (peer, 50000), "headers": []}, ())
    assert client_network(info.address) == key


async def test_an_uncounted_client_is_not_limited_and_a_counted_one_is() -> None:
    limits = UpstreamLimits(per_origin=100, per_client=2, wait=5)
    for _ in range(5):
        await limits.admit("http://a.internal/", "")
    for _ in range(5):
        limits.leave("http://a.internal/", "")
    await limits.admit("http://a.internal/", "2001:db8:1:2::/64")
    await limits.admit("http://a.internal/", "2001:db8:1:2::/64")
    with pytest.raises(UpstreamError):
        await limits.admit("http://a.internal/", "2001:db8:1:2::/64")


# --- answers the upstream clients refuse ------------------------------------------------------


@pytest.mark.parametrize("name", list(UNRELAYABLE))
async def test_an_unrelayable_answer_is_502(gateway: int, name: str) -> None:
    request = f"GET /{name} HTTP/1.1\r\nHost: odd.test\r\nConnection: close\r\n\r\n"
    answer = await exchange(gateway, request.encode())
    assert status_of(answer) == 502
    assert b"hello" not in answer


@pytest.mark.parametrize("name", list(RELAYABLE))
async def test_a_plain_answer_is_relayed(gateway: int, name: str) -> None:
    request = f"GET /{name} HTTP/1.1\r\nHost: odd.test\r\nConnection: close\r\n\r\n"
    answer = await exchange(gateway, request.encode())
    assert status_of(answer) == 200
    assert answer.endswith(b"hello") or answer.endswith(b"5\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize("kind", ["builtin", "httpx"])
@pytest.mark.parametrize("name", list(UNRELAYABLE))
async def test_both_upstream_clients_refuse_it(
    upstreams: Upstreams, kind: UpstreamClientKind, name: str
) -> None:
    client = open_upstream_client(kind, timeout=5)
    await client.start()
    try:
        url = f"http://127.0.0.1:{upstreams.answering.port}"
        with pytest.raises(UpstreamBrokenError):
            response = await client.request(url, "GET", f"/{name}", [(b"Host", b"odd")], None)
            await response.release(reuse=False)
    finally:
        await client.close()


@pytest.mark.parametrize("kind", ["builtin", "httpx"])
async def test_a_folded_header_is_refused_or_unfolded(
    upstreams: Upstreams, kind: UpstreamClientKind
) -> None:
    client = open_upstream_client(kind, timeout=5)
    await client.start()
    try:
        url = f"http://127.0.0.1:{upstreams.answering.port}"
        try:
            response = await client.request(url, "GET", "/folded", [(b"Host", b"odd")], None)
        except UpstreamBrokenError:
            return
        await response.release(reuse=False)
        assert (b"X-Folded", b"a b") in response.headers
    finally:
        await client.close()
