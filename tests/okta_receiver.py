"""A test Okta org receiving Security Event Tokens: a real HTTP server on a loopback port.

It serves `POST /security/api/v1/security-events` as Okta does (SPEC 8, OKTA.md) and checks
every SET it gets the way Okta would: the keys come from the transmitter's
`/.well-known/ssf-configuration` -> `jwks_uri` (fetched from the gateway each time), then the
signature, `typ`, `iss`, `aud`, the event type and its members. Its answers are scripted
(`answers`: status, headers, JSON body; 202 once they run out). A SET that fails a check is
answered 400 and listed in `problems`, so a test sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

EVENT_TYPE = "https://schemas.okta.com/secevent/okta/event-type/user-risk-change"
LEVELS = ("low", "medium", "high")


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Received:
    """One POST: the SET's jti, header, claims and event, or the problem found with it."""

    jti: str
    header: dict[str, Any]
    claims: dict[str, Any]
    event: dict[str, Any]
    token: str
    answered: int


class OktaReceiver:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer  # what `iss` and the metadata's `issuer` must be
        self.answers: list[Answer] = []
        self.received: list[Received] = []
        self.problems: list[str] = []
        self.delay = 0.0  # seconds before answering: widens the window for a double send
        # How the receiver reaches the gateway (an in-process client; replaced on a restart).
        self.gateway: Callable[[], httpx.AsyncClient] | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.answered == 202]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/security/api/v1/security-events", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def until(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` SETs have been received (any answer)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.01)

    async def _receive(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        token = (await request.read()).decode()
        try:
            header, claims, event = await self._verify(request, token)
        except (AssertionError, JoseError, ValueError, KeyError) as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
            body = {"err": "invalid_request", "description": "test receiver: bad SET"}
            return web.json_response(body, status=400)
        answer = self.answers.pop(0) if self.answers else Answer(202)
        self.received.append(Received(claims["jti"], header, claims, event, token, answer.status))
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    async def _verify(
        self, request: web.Request, token: str
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        assert request.content_type == "application/secevent+jwt", request.content_type
        assert request.headers.get("Accept") == "application/json"
        assert self.gateway is not None
        async with self.gateway() as gateway:
            config = (await gateway.get("/.well-known/ssf-configuration")).json()
            assert config["issuer"] == self.issuer
            assert "urn:ietf:rfc:8935" in config["delivery_methods_supported"]
            assert EVENT_TYPE in config["events_supported"]
            jwks_uri = urlsplit(config["jwks_uri"])
            assert f"{jwks_uri.scheme}://{jwks_uri.netloc}" == self.issuer
            keys = KeySet.import_key_set((await gateway.get(jwks_uri.path)).json())
        decoded = jwt.decode(token, keys, algorithms=["RS256"])
        header, claims = dict(decoded.header), dict(decoded.claims)
        assert header["typ"] == "secevent+jwt", header
        assert header["alg"] == "RS256" and header["kid"], header
        assert claims["iss"] == self.issuer, claims
        assert claims["aud"] == self.url, claims
        assert isinstance(claims["iat"], int) and isinstance(claims["jti"], str)
        assert list(claims["events"]) == [EVENT_TYPE], claims
        event = claims["events"][EVENT_TYPE]
        assert set(event) == {
            "subject",
            "current_level",
            "previous_level",
            "event_timestamp",
            "initiating_entity",
            "reason_admin",
        }, event
        user = event["subject"]["user"]
        assert user["format"] == "email" and "@" in user["email"], event
        assert event["current_level"] in LEVELS and event["previous_level"] in LEVELS
        assert isinstance(event["event_timestamp"], int)
        assert event["initiating_entity"] in ("policy", "admin")
        assert isinstance(event["reason_admin"]["en"], str), event
        return header, claims, event
