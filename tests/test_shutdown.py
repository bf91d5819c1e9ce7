"""Graceful shutdown of `gateway serve` (a real process on a real socket): on SIGTERM it stops
accepting, lets the request in flight finish, closes its store and clients, and exits 0 within
the bound; everything it logged on the way is JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from harness import free_port

from gateway.cli import SHUTDOWN_TIMEOUT

COOKIE_SECRET = "shutdown-test-cookie-secret-0123456789"
APP_HOST = "slow.test"
SLOW = 1.5  # seconds the upstream takes to answer


class SlowUpstream:
    """An upstream that takes `SLOW` seconds to answer, and says when a request arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _slow(self, request: web.Request) -> web.Response:
        self.arrived.set()
        await asyncio.sleep(SLOW)
        return web.Response(text="finally done")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._slow)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def slow_upstream() -> AsyncIterator[SlowUpstream]:
    upstream = SlowUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture(params=["builtin", "httpx"])
def upstream_client(request: pytest.FixtureRequest) -> str:
    """The `[gateway] upstream_client` the gateway runs with: each, in turn."""
    return str(request.param)


def write_config(path: Path, port: int, upstream_port: int, upstream_client: str) -> Path:
    path.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "http://127.0.0.1:{port}"
            cookie_secret = "{COOKIE_SECRET}"
            store = "memory"
            cookie_secure = false
            upstream_client = "{upstream_client}"

            [[identity_providers]]
            id = "okta"
            name = "Okta"
            type = "okta"
            [identity_providers.config]
            client_id = "0oaclient"
            client_secret = "shutdown-test-client-secret"
            okta_account = "https://dev-123.okta.com"

            [[apps]]
            id = "slow"
            name = "Slow"
            domain = "{APP_HOST}"
            upstream = "http://127.0.0.1:{upstream_port}"
            [[apps.policies]]
            name = "Everyone"
            decision = "bypass"
            include = [ {{ everyone = {{}} }} ]
        """)
    )
    return path


async def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gateway serve exited {process.returncode}"
        try:
            async with httpx.AsyncClient(timeout=1) as probe:
                if (await probe.get(f"{url}/healthz")).status_code == 200:
                    return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("gateway serve did not start")


async def refuses_connections(url: str, timeout: float = 3) -> bool:
    """Whether new connections are refused within `timeout` (each probe on a new one).

    A probe that lands while the server closes its listening socket may be accepted and then
    dropped (reset, or closed as idle before its request was read): that proves nothing either
    way, so probe again; only a refused connect counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with httpx.AsyncClient(timeout=1) as probe:
                await probe.get(f"{url}/healthz")
        except httpx.ConnectError:
            return True
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout):
            pass  # accepted during the handover, then dropped
        await asyncio.sleep(0.05)
    return False


async def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    tmp_path: Path, slow_upstream: SlowUpstream, upstream_client: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "gateway.toml", port, slow_upstream.port, upstream_client)
    stdout, stderr = (tmp_path / "stdout").open("wb"), (tmp_path / "stderr").open("wb")
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "1"]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=stdout, stderr=stderr)
    try:
        await wait_ready(process, url)
        async with httpx.AsyncClient(timeout=30) as client:
            in_flight = asyncio.create_task(client.get(url, headers={"Host": APP_HOST}))
            await asyncio.wait_for(slow_upstream.arrived.wait(), 10)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            assert await refuses_connections(url)  # stopped accepting...
            response = await in_flight  # ...but the request in flight got its whole answer
        assert (response.status_code, response.text) == (200, "finally done")
        returncode = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 10)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stdout.close()
        stderr.close()
    errors = (tmp_path / "stderr").read_text()
    assert returncode == 0, errors
    assert SLOW - 0.5 < took < SHUTDOWN_TIMEOUT

    lines = [json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()]
    request = [e for e in lines if e["logger"] == "gateway.access" and e["host"] == APP_HOST]
    assert [(e["app"], e["decision"], e["status"]) for e in request] == [("slow", "bypass", 200)]
    assert request[0]["duration_ms"] > SLOW * 1000
    # the lifespan ran to its end: pools, client and store closed, after the request was done
    stopped = [e for e in lines if e["message"].startswith("stopped:")]
    assert len(stopped) == 1 and lines.index(stopped[0]) > lines.index(request[0])
    assert any(e["logger"].startswith("uvicorn") for e in lines)  # uvicorn's lines are JSON too
    assert COOKIE_SECRET not in json.dumps(lines) + errors
    assert "Traceback" not in errors
