"""End-to-end test harness: the whole gateway in process, a real upstream on a socket.

`running(app)` drives the ASGI lifespan (httpx's ASGITransport does not), so the gateway builds
its store, clients and pools as in production. `EchoUpstream` is the protected application: an
aiohttp server on a free loopback port that answers every request with what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiohttp import web
from starlette.types import Message

from gateway.app import Gateway

TEAM = "https://access.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(app: Gateway) -> AsyncIterator[Gateway]:
    """Run the app's lifespan around the block; fail loudly if startup fails."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"gateway did not start: {started}")
    try:
        yield app
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task


def browser(app: Gateway, base_url: str = TEAM) -> httpx.AsyncClient:
    """A browser: sends Accept text/html, keeps cookies, does not follow redirects itself."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)),
        base_url=base_url,
        headers={"Accept": "text/html,application/xhtml+xml"},
        follow_redirects=False,
    )


class EchoUpstream:
    """The protected app: answers JSON of the method, path and headers it got; counts hits."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    async def _echo(self, request: web.Request) -> web.Response:
        seen = {
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        self.requests.append(seen)
        return web.Response(text=json.dumps(seen), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
