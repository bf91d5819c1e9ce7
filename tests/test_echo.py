"""The demo upstream (gateway/echo.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.demo.echo import create_echo_app


def fake_jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'k1'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_echo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        yield c


async def test_json_answer(client: httpx.AsyncClient) -> None:
    token = fake_jwt({"email": "alice@example.com", "type": "app"})
    response = await client.get(
        "/some/path",
        params={"a": "1", "b": "x y"},
        headers={
            "Accept": "application/json",
            "Cf-Access-Authenticated-User-Email": "alice@example.com",
            "Cf-Access-Jwt-Assertion": token,
            "X-Custom": "Value",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert set(data) == {
        "method",
        "path",
        "query",
        "headers",
        "email",
        "body_bytes",
        "unverified_claims",
    }
    assert data["method"] == "GET"
    assert data["path"] == "/some/path"
    assert data["query"] == "a=1&b=x+y"
    assert data["email"] == "alice@example.com"
    assert data["body_bytes"] == 0
    assert data["headers"]["x-custom"] == "Value"
    assert data["headers"]["cf-access-jwt-assertion"] == token
    assert all(name == name.lower() for name in data["headers"])
    assert data["unverified_claims"] == {"email": "alice@example.com", "type": "app"}


async def test_json_without_identity(client: httpx.AsyncClient) -> None:
    data = (await client.get("/", headers={"Accept": "application/json"})).json()
    assert data["email"] is None and data["unverified_claims"] is None


async def test_repeated_headers_are_joined(client: httpx.AsyncClient) -> None:
    headers = [
        ("Accept", "application/json"),
        ("X-Forwarded-For", "192.0.2.1"),
        ("X-Forwarded-For", "198.51.100.2"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
    ]
    data = (await client.get("/", headers=headers)).json()
    assert data["headers"]["x-forwarded-for"] == "192.0.2.1, 198.51.100.2"
    assert data["headers"]["cookie"] == "a=1; b=2"


async def test_body_bytes_are_counted_across_chunks(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for size in (1000, 0, 24, 70_000):
            yield b"x" * size

    response = await client.post(
        "/upload", content=chunks(), headers={"Accept": "application/json"}
    )
    data = response.json()
    assert data["method"] == "POST" and data["body_bytes"] == 71_024


async def test_html_answer_escapes_everything(client: httpx.AsyncClient) -> None:
    token = fake_jwt({"email": "alice@example.com", "name": "<b>Alice</b>"})
    response = await client.get(
        "/wiki/<page>",
        headers={
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
            "Cf-Access-Authenticated-User-Email": "alice@example.com",
            "Cf-Access-Jwt-Assertion": token,
            "X-Evil": "<script>alert(1)</script>",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x-evil" in page
    assert "/wiki/&lt;page&gt;" in page
    assert "alice@example.com" in page
    assert "&lt;b&gt;Alice&lt;/b&gt;" in page  # the decoded claims
    assert "NOT verified" in page
    assert '<a href="/cdn-cgi/access/logout">Sign out</a>' in page


async def test_html_with_undecodable_assertion(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"Cf-Access-Jwt-Assertion": "not.a-jwt.at-all"})
    assert response.status_code == 200
    assert "not a decodable JWT" in response.text


async def test_head_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def run_asgi(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feed `incoming` messages to the app one by one and return everything it sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in incoming:
        inbox.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(create_echo_app()(scope, inbox.get, send), timeout=5)
    return sent


async def test_websocket_messages_are_echoed() -> None:
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    sent = await run_asgi(
        scope,
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hello"},
            {"type": "websocket.receive", "bytes": b"\x00\x01"},
            {"type": "websocket.disconnect", "code": 1000},
        ],
    )
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": "hello"},
        {"type": "websocket.send", "bytes": b"\x00\x01"},
    ]


async def test_lifespan_is_supported() -> None:
    sent = await run_asgi(
        {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
