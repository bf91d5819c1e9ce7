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
from fake_okta import FakeOkta
from starlette.types import Message

from gateway.app import Gateway

TEAM = "https://access.example.com"
WIKI = "https://wiki.example.com"
# The keys of the SPEC 4 identity document (get-identity, the test page).
IDENTITY_KEYS = {
    "id", "user_uuid", "name", "email", "groups", "idp", "oidc_fields", "amr", "iat", "ip",
    "service_token_id", "service_token_status", "version",
}  # fmt: skip


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


def browser(app: Gateway, base_url: str = TEAM, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A browser at `address`: sends Accept text/html, keeps cookies, does not follow
    redirects itself."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 50000)),
        base_url=base_url,
        headers={"Accept": "text/html,application/xhtml+xml"},
        follow_redirects=False,
    )


class EchoUpstream:
    """The protected app: answers JSON of the method, path and headers it got; counts hits."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # Known once start() has bound port 0: a port picked here and bound later could be
        # taken in between (another job's server, an outgoing connection's ephemeral port).
        self.port = 0
        self.url = ""
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
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


COOKIE_SECRET = "test-cookie-secret-0123456789abcdef"
IDP_ID = "okta-test"


def settings_doc(upstream: str, **idp_config: Any) -> dict[str, Any]:
    engineering = {
        "name": "Engineering",
        "decision": "allow",
        "include": [{"okta": {"name": "Engineering"}}],
    }
    return {
        "gateway": {"public_url": TEAM, "cookie_secret": COOKIE_SECRET, "session_duration": "24h"},
        "identity_providers": [
            {
                "id": IDP_ID,
                "name": "Okta",
                "type": "okta",
                "config": {
                    "client_id": "0oaclient",
                    "client_secret": "s3cret",
                    "okta_account": "https://dev-123.okta.com",
                    **idp_config,
                },
            }
        ],
        "apps": [
            {
                "id": "team-app",
                "name": "Team Docs",
                "domain": "access.example.com",
                "upstream": upstream,
                "custom_deny_message": "Ask #it-help for access.",
                "policies": [engineering],
            },
            {
                "id": "wiki",
                "name": "Wiki",
                "domain": "wiki.example.com",
                "upstream": upstream,
                "session_duration": "1h",
                "policies": [engineering],
            },
        ],
    }


async def start_sign_in(client: httpx.AsyncClient, url: str) -> str:
    """GET a protected URL as a browser; return the Okta authorize URL it is sent to."""
    to_login = await client.get(url)
    assert to_login.status_code == 302, to_login.text
    login = to_login.headers["location"]
    assert login.startswith(f"{TEAM}/cdn-cgi/access/login/")
    to_okta = await client.get(login)
    assert to_okta.status_code == 302, to_okta.text
    return to_okta.headers["location"]


async def sign_in(
    client: httpx.AsyncClient, okta: FakeOkta, sub: str, url: str = "/docs/page?x=1"
) -> httpx.Response:
    """The whole browser dance up to the callback's answer; when that is access denied, the
    denied page it sends the browser to (kept for a reload at a URL of its own)."""
    authorize = await start_sign_in(client, url)
    answer = await client.get(okta.authorize(authorize, sub))
    if answer.status_code == 302 and answer.headers["location"].startswith(
        "/cdn-cgi/access/denied/"
    ):
        return await client.get(answer.headers["location"])
    return answer


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == "CF_Authorization" and not rest.startswith(('""', ";")):
            return rest.split(";")[0]
    return None


async def assert_rejected(response: httpx.Response, upstream: EchoUpstream, status: int) -> None:
    assert response.status_code == status, response.text
    assert "text/html" in response.headers["content-type"]
    assert "reference" in response.text
    assert "Traceback" not in response.text
    assert session_cookie(response) is None
    assert upstream.requests == []


# --- a person on two apps (the wiki on its own host, the docs on the team host) ---------------


async def visit(
    client: httpx.AsyncClient, okta: FakeOkta | None, url: str, sub: str = "00ualice"
) -> httpx.Response:
    """Open `url` and follow the sign-in dance (through Okta, as `sub`, only if `okta` is
    given)."""
    response = await client.get(url)
    for _ in range(10):
        if response.status_code != 302:
            return response
        location = response.headers["location"]
        if location.startswith("https://dev-123.okta.com"):
            if okta is None:
                return response
            location = okta.authorize(location, sub)
        response = await client.get(
            location if "://" in location else str(response.url.join(location))
        )
    raise AssertionError("redirect loop")


async def sign_in_everywhere(
    person: httpx.AsyncClient, okta: FakeOkta, sub: str = "00ualice"
) -> None:
    """Alice (or `sub`) signs in: the wiki (its own host) and the team-host app let her in."""
    assert (await visit(person, okta, f"{WIKI}/page", sub)).status_code == 200
    assert (await visit(person, None, f"{TEAM}/docs")).status_code == 200


async def assert_sent_to_sign_in(person: httpx.AsyncClient, upstream: EchoUpstream) -> None:
    hits = len(upstream.requests)
    for url in (f"{WIKI}/page", f"{TEAM}/docs"):
        again = await person.get(url)
        assert again.status_code == 302, url
        assert "/cdn-cgi/access/login/" in again.headers["location"]
    assert len(upstream.requests) == hits


async def assert_still_in(person: httpx.AsyncClient) -> None:
    for url in (f"{WIKI}/page", f"{TEAM}/docs"):
        assert (await person.get(url)).status_code == 200, url
