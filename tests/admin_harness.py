"""What the admin API tests share: the token, a client that sends it, a settings document with
it, and the check of Cloudflare's failure envelope."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from harness import TEAM, running, settings_doc

from gateway.admin.envelope import CODES
from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.store.redis import RedisStore

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def with_admin_token(doc: dict[str, Any]) -> dict[str, Any]:
    """A settings document (harness.settings_doc or scim_harness.scim_doc) with the token."""
    doc["gateway"]["admin_token"] = TOKEN
    return doc


def admin_doc(upstream: str) -> dict[str, Any]:
    """The harness settings (the wiki and team-host apps, one Okta IdP) with the admin token."""
    return with_admin_token(settings_doc(upstream))


def admin_client(app: Gateway) -> httpx.AsyncClient:
    """An in-process client of the team host that sends the admin token."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEAM, headers=AUTH)


def assert_failure(response: httpx.Response, status: int, error: str) -> list[str]:
    """The envelope of a failure with this status and code; returns the messages."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    assert body["errors"], body
    assert {e["code"] for e in body["errors"]} == {CODES[error]}
    return [e["message"] for e in body["errors"]]


@contextlib.asynccontextmanager
async def instance(redis_url: str, doc: dict[str, Any]) -> AsyncIterator[Gateway]:
    """One running gateway with a Redis client of its own: several on one `redis_url` are the
    multi-instance setup."""
    store = RedisStore.from_url(redis_url)
    try:
        async with running(create_app(parse_settings(doc), store=store)) as app:
            yield app
    finally:
        await store.close()


async def eventually_ok(client: httpx.AsyncClient, path: str, within: float) -> None:
    """Poll `path` until it answers 200; fails after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (response := await client.get(path)).status_code != 200:
        assert loop.time() < deadline, response.text
        await asyncio.sleep(0.02)
