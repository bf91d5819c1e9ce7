"""Shared fixtures: a real Redis for the session, and each store flavour on a clean slate."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis
import respx
import uvicorn
import uvloop
from admin_harness import admin_client
from clock import FakeClock
from fake_okta import API_TOKEN, CLIENT_SECRET, FakeOkta
from harness import COOKIE_SECRET, EchoUpstream, browser, running, settings_doc
from log_check import LogCheck, Secrets, watch_httpx
from redis_server import RedisServer
from saml_idp import SP_ENTITY_ID, SamlIdP, saml_settings_doc

from gateway.app import Gateway, create_app
from gateway.config import SessionReads, parse_settings
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore
from gateway.state.store.redis import RedisStore
from gateway.web.serverprotocol import GatewayHttpToolsProtocol


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, the loop `gateway serve` runs on (its transports differ)."""
    return {"uvloop": uvloop.new_event_loop}


# --- logs: no secret, token, code or cookie value in any log line of the run (log_check.py) -


@pytest.fixture(scope="session", autouse=True)
def log_check() -> Iterator[tuple[LogCheck, Secrets]]:
    """Every log record of the run, at INFO and up, kept for `no_secret_in_logs`."""
    secrets = Secrets([COOKIE_SECRET, CLIENT_SECRET, API_TOKEN])
    handler = LogCheck()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    patch = pytest.MonkeyPatch()
    for owner, name, wrapper in watch_httpx(secrets):
        patch.setattr(owner, name, wrapper)
    try:
        yield handler, secrets
    finally:
        patch.undo()
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(autouse=True)
def no_secret_in_logs(log_check: tuple[LogCheck, Secrets]) -> Iterator[None]:
    """Fails the test in whose time (its fixtures included) a secret reached the log."""
    yield
    handler, secrets = log_check
    leaks = handler.leaks(secrets)
    if leaks:
        pytest.fail("secret values in the log:\n" + "\n".join(leaks[:10]), pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run; tests may `stop()` it but must `start()` it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with every database flushed first."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_store_of(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[Callable[[str], Store]]:
    """Opens a fresh store of a kind, closed after the test: "memory" (on `clock`), "redis"
    (real time, `[gateway] session_reads = "pipelined"`), "tracked-reads" and
    "redis-py-reads" (Redis with `session_reads = "tracked"`, `"redis-py"`)."""
    opened: list[Store] = []

    def open_kind(kind: str) -> Store:
        if kind == "memory":
            opened.append(MemoryStore(clock=clock))
        else:
            kinds: dict[str, SessionReads] = {
                "redis-py-reads": "redis-py",
                "tracked-reads": "tracked",
            }
            reads = kinds.get(kind, "pipelined")
            url = request.getfixturevalue("redis_url")
            opened.append(RedisStore.from_url(url, session_reads=reads))
        return opened[-1]

    yield open_kind
    for store in opened:
        await store.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, open_store_of: Callable[[str], Store]) -> Store:
    """A fresh store of each kind; the memory one runs on `clock`, Redis on real time."""
    return open_store_of(request.param)


# --- Okta over HTTP, for tests of the providers on their own ---------------------------------


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """respx's router for a test's own FakeOkta; an unmocked URL fails the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The IdP client a provider under test sends through (the router answers it)."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


# --- end to end: Okta, the protected app, the gateway, a browser ---------------------------


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    echo = EchoUpstream()
    await echo.start()
    yield echo
    await echo.stop()


@pytest.fixture
def okta() -> AsyncIterator[FakeOkta]:
    with respx.mock(assert_all_called=False) as router:
        fake = FakeOkta(router)
        fake.add_user("00ualice", "alice@example.com", "Alice Example", ["Engineering", "Everyone"])
        fake.add_user("00ubob", "bob@example.com", "Bob Example", ["Sales", "Everyone"])
        yield fake


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    settings = parse_settings(settings_doc(upstream.url))
    async with running(create_app(settings, store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(gateway) as c:
        yield c


@pytest_asyncio.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The admin API of the test's `gateway` (a module's own override when it has one)."""
    async with admin_client(gateway) as client:
        yield client


# --- SAML: a real IdP (pysaml2) and a gateway whose one IdP is it (saml_idp.py) -------------


@pytest_asyncio.fixture
async def saml_idp(tmp_path: Path) -> AsyncIterator[SamlIdP]:
    if shutil.which("xmlsec1") is None:  # as test_browser does without chromium: skip, say why
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1): SAML signatures need it")
    idp = SamlIdP(tmp_path, sp_entity_id=SP_ENTITY_ID, acs_url=SP_ENTITY_ID)
    await idp.start()
    yield idp
    await idp.stop()


@pytest_asyncio.fixture
async def saml_gateway(
    open_store_of: Callable[[str], Store], upstream: EchoUpstream, saml_idp: SamlIdP
) -> AsyncIterator[Gateway]:
    """The gateway with `saml_idp` as its one IdP, on a real Redis only: what SAML adds is
    the same on every store kind, and each test signs (and checks) with xmlsec1 processes."""
    settings = parse_settings(saml_settings_doc(upstream.url, saml_idp))
    async with running(create_app(settings, store=open_store_of("redis"))) as app:
        yield app


@pytest_asyncio.fixture
async def saml_client(saml_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(saml_gateway) as c:
        yield c


ServeProtocol = Callable[..., Awaitable[int]]


@pytest_asyncio.fixture
async def serve_protocol() -> AsyncIterator[ServeProtocol]:
    """Starts uvicorn with `http` (the gateway's server protocol unless told) in front of an ASGI
    app on a free loopback port, on the test's loop; `await serve_protocol(app)` is the port."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: Any, http: type[asyncio.Protocol] = GatewayHttpToolsProtocol) -> int:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            lifespan="off",
            http=http,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        servers.append((server, task))
        return int(server.servers[0].sockets[0].getsockname()[1])

    yield start
    for server, task in servers:
        server.should_exit = True
        await task
