"""Shared fixtures: a real Redis for the session, and each store flavour on a clean slate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import pytest_asyncio
import redis
import respx
import uvloop
from clock import FakeClock
from fake_okta import FakeOkta
from harness import EchoUpstream, browser, running, settings_doc
from redis_server import RedisServer

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, the loop `gateway serve` runs on (its transports differ)."""
    return {"uvloop": uvloop.new_event_loop}


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


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """A fresh store of each kind; the memory one runs on `clock`, Redis on real time."""
    new: Store
    if request.param == "memory":
        new = MemoryStore(clock=clock)
    else:
        new = RedisStore.from_url(request.getfixturevalue("redis_url"))
    try:
        yield new
    finally:
        await new.close()


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
