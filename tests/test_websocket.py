"""WebSocket upgrades through the gateway, over real sockets: decided like any request, then
relayed both ways with the identity attached to the upstream handshake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
import uvicorn
from harness import TEAM, free_port, settings_doc
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.state.store.memory import MemoryStore

HOST = TEAM.removeprefix("https://")


@dataclass
class EchoSocket:
    """The upstream: echoes every message, and remembers each handshake's headers."""

    port: int = field(default_factory=free_port)
    handshakes: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, socket: ServerConnection) -> None:
        assert socket.request is not None
        self.handshakes.append({k.lower(): v for k, v in socket.request.headers.raw_items()})
        async for message in socket:
            await socket.send(message)


@pytest_asyncio.fixture
async def echo_socket() -> AsyncIterator[EchoSocket]:
    echo = EchoSocket()
    async with serve(echo.handle, "127.0.0.1", echo.port, subprotocols=["chat"]):
        yield echo


@pytest_asyncio.fixture
async def served(echo_socket: EchoSocket) -> AsyncIterator[tuple[Gateway, int]]:
    settings = parse_settings(settings_doc(f"http://127.0.0.1:{echo_socket.port}"))
    app = create_app(settings, store=MemoryStore())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield app, port
    server.should_exit = True
    await task


async def cookie_for(app: Gateway, email: str, groups: tuple[str, ...]) -> str:
    assert app.runtime is not None
    identity = Identity(
        id="nonce", user_uuid=f"uuid-{email}", sub="00u", name=email, email=email,
        groups=groups, idp_id="okta-test", idp_type="okta", iat=1,
    )  # fmt: skip
    _, cookie = await app.runtime.sessions.create(identity, kind="global", duration=600)
    return f"CF_Authorization={cookie}"


def dial(port: int, headers: dict[str, str], **options: object) -> connect:
    """A client for the app on the team host, dialled at the test server's loopback port."""
    return connect(
        f"ws://{HOST}:{port}/live?room=1",
        host="127.0.0.1",
        port=port,
        additional_headers=headers,
        **options,  # type: ignore[arg-type]
    )


async def test_an_allowed_socket_is_relayed_with_the_identity(
    served: tuple[Gateway, int], echo_socket: EchoSocket
) -> None:
    app, port = served
    headers = {
        "Cookie": await cookie_for(app, "alice@example.com", ("Engineering",)),
        "Cf-Access-Authenticated-User-Email": "mallory@evil.example",
    }
    async with dial(port, headers, subprotocols=["chat"]) as socket:
        assert socket.subprotocol == "chat"
        await socket.send("hello")
        assert await socket.recv() == "hello"
        await socket.send(b"\x00\x01")
        assert await socket.recv() == b"\x00\x01"
    seen = echo_socket.handshakes[0]
    assert seen["cf-access-authenticated-user-email"] == "alice@example.com"
    assert seen["cf-access-jwt-assertion"].count(".") == 2
    assert "cf_authorization" not in seen.get("cookie", "").lower()
    assert seen["x-forwarded-host"] == f"{HOST}:{port}"  # the Host the client sent


@pytest.mark.parametrize("who", [None, ("bob@example.com", ("Sales",))])
async def test_a_socket_without_access_is_refused_before_the_handshake(
    served: tuple[Gateway, int], echo_socket: EchoSocket, who: tuple[str, tuple[str, ...]] | None
) -> None:
    app, port = served
    headers: dict[str, str] = {}
    if who is not None:
        headers["Cookie"] = await cookie_for(app, *who)
    with pytest.raises(InvalidStatus) as refused:
        # the subprotocol the upstream wants: a refusal here can only be the gateway's
        async with dial(port, headers, subprotocols=["chat"]):
            pass
    assert refused.value.response.status_code == 403
    assert echo_socket.handshakes == []


@pytest.mark.parametrize(
    ("origin", "opens"),
    [
        ("https://evil.example", False),  # a page elsewhere, with the user's cookie
        ("null", False),  # a sandboxed or file: page
        (f"https://{HOST}", True),  # the app's own page
    ],
)
async def test_a_signed_in_socket_opens_only_from_the_apps_own_pages(
    served: tuple[Gateway, int], echo_socket: EchoSocket, origin: str, opens: bool
) -> None:
    """WebSocket has no CORS: a socket a page on another site opens with this browser's cookie
    (SameSite=None apps) would be read by that page, as the user."""
    app, port = served
    headers = {"Cookie": await cookie_for(app, "alice@example.com", ("Engineering",))}
    if opens:
        async with dial(port, headers, origin=origin, subprotocols=["chat"]) as socket:
            await socket.send("hello")
            assert await socket.recv() == "hello"
        return
    with pytest.raises(InvalidStatus) as refused:
        async with dial(port, headers, origin=origin, subprotocols=["chat"]):
            pass
    assert refused.value.response.status_code == 403
    assert echo_socket.handshakes == []


async def test_an_upstream_that_refuses_the_socket_closes_the_clients(
    served: tuple[Gateway, int], echo_socket: EchoSocket
) -> None:
    app, port = served
    assert app.runtime is not None
    headers = {"Cookie": await cookie_for(app, "alice@example.com", ("Engineering",))}
    # The same settings with the app's upstream moved to a port where nothing listens.
    app.runtime.apply(parse_settings(settings_doc(f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(InvalidStatus) as refused:
        async with dial(port, headers):
            pass
    assert refused.value.response.status_code == 403
    assert echo_socket.handshakes == []
