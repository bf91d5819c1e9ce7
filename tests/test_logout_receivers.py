"""Logouts the identity provider pushes (SPEC 8), end to end on two gateways sharing one real
Redis: Okta Universal Logout (`POST /cdn-cgi/access/global-token-revocation/<idp>`) and OpenID
Connect Back-Channel Logout 1.0 (`POST /cdn-cgi/access/backchannel-logout/<idp>`).

A person signs in through the first gateway; the IdP's request reaches the second; the person's
next request, on either gateway, goes to sign in. Every refused request ends nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fake_okta import FakeOkta
from harness import (
    IDP_ID,
    TEAM,
    WIKI,
    EchoUpstream,
    assert_sent_to_sign_in,
    assert_still_in,
    browser,
    running,
    settings_doc,
    sign_in_everywhere,
)
from scim_harness import create_user, new_secret, okta_client, scim_doc

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.errors import StoreUnavailableError
from gateway.state.store import Store

GTR = f"/cdn-cgi/access/global-token-revocation/{IDP_ID}"
BCL = f"/cdn-cgi/access/backchannel-logout/{IDP_ID}"
AUDIENCE = f"{TEAM}{GTR}"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Pair:
    """Two gateways on one Redis, and Okta's HTTP client to the second one."""

    one: Gateway
    two: Gateway
    okta_http: httpx.AsyncClient


@pytest_asyncio.fixture
async def pair(
    open_store_of: Callable[[str], Store], upstream: EchoUpstream, okta: FakeOkta
) -> AsyncIterator[Pair]:
    okta.add_user("00ucarol", "carol@example.com", "Carol Example", ["Engineering"])
    doc = settings_doc(upstream.url, universal_logout=True, backchannel_logout=True)
    settings = parse_settings(doc)
    async with (
        running(create_app(settings, store=open_store_of("redis"))) as one,
        running(create_app(settings, store=open_store_of("redis"))) as two,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=two), base_url=TEAM) as okta_http,
    ):
        yield Pair(one, two, okta_http)


@pytest_asyncio.fixture
async def alice(pair: Pair, okta: FakeOkta) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Alice, signed in on both apps through the first gateway, and the same browser talking to
    the second gateway; Carol, signed in too (every logout here must leave her in)."""
    async with (
        browser(pair.one, WIKI) as on_one,
        browser(pair.two, WIKI) as on_two,
        browser(pair.one, WIKI) as carol,
    ):
        await sign_in_everywhere(on_one, okta)
        await sign_in_everywhere(carol, okta, "00ucarol")
        on_two.cookies = on_one.cookies
        await assert_still_in(on_two)
        yield on_one, on_two, carol


async def revoke(
    pair: Pair, token: str | None, body: Any, *, content_type: str = "application/json"
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return await pair.okta_http.post(GTR, content=content, headers=headers)


def by_email(email: str = "alice@example.com") -> dict[str, Any]:
    return {"sub_id": {"format": "email", "email": email}}


def by_sub(sub: str = "00ualice", iss: str = "https://dev-123.okta.com") -> dict[str, Any]:
    return {"sub_id": {"format": "iss_sub", "iss": iss, "sub": sub}}


# --- Okta Universal Logout ------------------------------------------------------------------


@pytest.mark.parametrize("subject", [by_email(), by_email("ALICE@Example.com"), by_sub()])
async def test_universal_logout_ends_every_session_on_every_instance(
    pair: Pair,
    alice: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    upstream: EchoUpstream,
    subject: dict[str, Any],
) -> None:
    on_one, on_two, carol = alice
    response = await revoke(pair, okta.universal_logout_token(AUDIENCE), subject)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    await assert_sent_to_sign_in(on_one, upstream)
    await assert_sent_to_sign_in(on_two, upstream)
    await assert_still_in(carol)


def _token(okta: FakeOkta, case: str) -> str | None:
    now = int(time.time())
    tokens: dict[str, Callable[[], str | None]] = {
        "missing bearer": lambda: None,
        "another aud": lambda: okta.universal_logout_token(f"{TEAM}/cdn-cgi/access/other"),
        "another app's aud": lambda: okta.universal_logout_token("https://wiki.example.com/gtr"),
        "another issuer": lambda: okta.universal_logout_token(
            AUDIENCE, iss="https://evil.okta.com"
        ),
        "expired": lambda: okta.universal_logout_token(AUDIENCE, iat=now - 900, exp=now - 600),
        "no exp": lambda: okta.universal_logout_token(AUDIENCE, exp=None),
        "no jti": lambda: okta.universal_logout_token(AUDIENCE, jti=None),
        "issued in the future": lambda: okta.universal_logout_token(AUDIENCE, iat=now + 900),
        "unknown key": lambda: okta.universal_logout_token(AUDIENCE, signer="foreign_key"),
        "alg none": lambda: okta.universal_logout_token(AUDIENCE, signer="none"),
        "HS256": lambda: okta.universal_logout_token(AUDIENCE, signer="client_secret"),
        "not a JWT": lambda: "not-a-jwt",
    }
    return tokens[case]()


@pytest.mark.parametrize(
    "case",
    [
        "missing bearer",
        "another aud",
        "another app's aud",
        "another issuer",
        "expired",
        "no exp",
        "no jti",
        "issued in the future",
        "unknown key",
        "alg none",
        "HS256",
        "not a JWT",
    ],
)
async def test_a_bad_token_is_401_and_ends_nothing(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta, case: str
) -> None:
    response = await revoke(pair, _token(okta, case), by_email())
    assert response.status_code == 401, response.text
    assert response.headers["cache-control"] == "no-store"
    challenge = response.headers["www-authenticate"]
    if case == "missing bearer":
        assert challenge == "Bearer"  # RFC 6750 3.1: no error code without credentials
        assert response.json()["error"] == "unauthorized"
    else:
        assert challenge == 'Bearer error="invalid_token"'
        assert response.json()["error"] == "invalid_token"
    for person in alice:
        await assert_still_in(person)


async def test_a_token_is_single_use_across_instances(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta
) -> None:
    token = okta.universal_logout_token(AUDIENCE)
    first = await revoke(pair, token, by_email("carol@example.com"))
    assert first.status_code == 204, first.text
    # The same token again, now at the first gateway and naming Alice: refused.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.one), base_url=TEAM
    ) as to_one:
        replayed = await to_one.post(
            GTR, json=by_email(), headers={"Authorization": f"Bearer {token}"}
        )
    assert replayed.status_code == 401, replayed.text
    assert "already used" in replayed.json()["error_description"]
    on_one, on_two, _ = alice
    await assert_still_in(on_one)
    await assert_still_in(on_two)


def _store_down(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """The store fails as `gateway`'s sessions `method` runs: after the token was checked."""

    async def down(*args: object, **kwargs: object) -> int:
        raise StoreUnavailableError("The session store is unavailable.")

    assert gateway.runtime is not None
    monkeypatch.setattr(gateway.runtime.sessions, method, down)


async def test_a_logout_the_store_failed_is_taken_when_okta_sends_the_token_again(
    pair: Pair,
    alice: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    upstream: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 503 says "try again": the token it could not act on is not spent."""
    token = okta.universal_logout_token(AUDIENCE)
    with monkeypatch.context() as patch:
        _store_down(pair.two, patch, "revoke_user")
        failed = await revoke(pair, token, by_email())
    assert failed.status_code == 503, failed.text
    retried = await revoke(pair, token, by_email())
    assert retried.status_code == 204, retried.text
    on_one, on_two, carol = alice
    await assert_sent_to_sign_in(on_one, upstream)
    await assert_sent_to_sign_in(on_two, upstream)
    await assert_still_in(carol)


async def test_a_token_sent_with_a_malformed_body_is_not_spent(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta, upstream: EchoUpstream
) -> None:
    token = okta.universal_logout_token(AUDIENCE)
    assert (await revoke(pair, token, {"sub_id": "alice"})).status_code == 400
    retried = await revoke(pair, token, by_email())
    assert retried.status_code == 204, retried.text
    await assert_sent_to_sign_in(alice[0], upstream)


async def test_an_unreachable_okta_key_set_is_503_and_ends_nothing(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta
) -> None:
    okta.answer("jwks", httpx.Response(503))  # the second gateway has not read the keys yet
    response = await revoke(pair, okta.universal_logout_token(AUDIENCE), by_email())
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    for person in alice:
        await assert_still_in(person)


async def test_the_token_never_reaches_the_answer(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta
) -> None:
    token = okta.universal_logout_token(AUDIENCE, iss="https://evil.okta.com")
    response = await revoke(pair, token, by_email())
    assert response.status_code == 401
    assert token not in response.text and token.split(".")[1] not in response.text


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "invalid_request"),
        ([], "application/json", 400, "invalid_request"),
        ({}, "application/json", 400, "invalid_request"),
        ({"sub_id": "alice@example.com"}, "application/json", 400, "invalid_request"),
        ({"sub_id": {"format": "phone_number", "phone_number": "+1"}}, None, 400, None),
        ({"sub_id": {"email": "alice@example.com"}}, None, 400, "unsupported_format"),
        ({"sub_id": {"format": "email", "email": 5}}, None, 400, "invalid_request"),
        ({"sub_id": {"format": "email", "email": "alice"}}, None, 400, "invalid_request"),
        ({"sub_id": {"format": "iss_sub", "sub": "00ualice"}}, None, 400, "invalid_request"),
        (by_email(), "text/plain", 415, "invalid_request"),
        (by_email() | {"padding": "x" * 5000}, None, 413, "invalid_request"),
    ],
)
async def test_a_malformed_request_gets_its_status_and_ends_nothing(
    pair: Pair,
    alice: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    body: Any,
    content_type: str | None,
    status: int,
    error: str | None,
) -> None:
    response = await revoke(
        pair,
        okta.universal_logout_token(AUDIENCE),
        body,
        content_type=content_type or "application/json",
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == (error or "unsupported_format")
    assert response.json()["error_description"]
    for person in alice:
        await assert_still_in(person)


@pytest.mark.parametrize(
    "subject",
    [
        by_email("nobody@example.com"),
        by_sub("00unobody"),
        by_sub("00ualice", iss="https://other-org.okta.com"),
    ],
)
async def test_an_unknown_user_is_404(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta, subject: dict[str, Any]
) -> None:
    response = await revoke(pair, okta.universal_logout_token(AUDIENCE), subject)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    for person in alice:
        await assert_still_in(person)


async def test_without_universal_logout_the_route_is_404(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    settings = parse_settings(settings_doc(upstream.url))  # the flag is off by default
    async with (
        running(create_app(settings, store=store)) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEAM) as client,
    ):
        token = okta.universal_logout_token(AUDIENCE)
        headers = {"Authorization": f"Bearer {token}"}
        off = await client.post(GTR, json=by_email(), headers=headers)
        assert off.status_code == 404, off.text
        unknown = await client.post(
            "/cdn-cgi/access/global-token-revocation/nope", json=by_email(), headers=headers
        )
        assert unknown.status_code == 404
        assert okta.routes["jwks"].call_count == 0  # nothing was even looked at


async def test_the_route_is_the_team_hosts_only(
    pair: Pair, alice: tuple[httpx.AsyncClient, ...], okta: FakeOkta
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.two), base_url=WIKI
    ) as on_app_host:
        response = await on_app_host.post(
            GTR,
            json=by_email(),
            headers={"Authorization": f"Bearer {okta.universal_logout_token(AUDIENCE)}"},
        )
    assert response.status_code == 404
    for person in alice:
        await assert_still_in(person)


async def test_a_person_scim_knows_but_who_never_signed_in_is_204(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    doc = scim_doc(upstream.url, user_deprovision=True)
    doc["identity_providers"][0]["config"]["universal_logout"] = True
    async with running(create_app(parse_settings(doc), store=store)) as app:
        async with okta_client(app, await new_secret(app)) as scim:
            await create_user(scim)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=TEAM
        ) as client:
            response = await client.post(
                GTR,
                json=by_email(),
                headers={"Authorization": f"Bearer {okta.universal_logout_token(AUDIENCE)}"},
            )
    assert response.status_code == 204, response.text


# --- OpenID Connect Back-Channel Logout -----------------------------------------------------


async def back_channel(pair: Pair, token: str, **form: str) -> httpx.Response:
    return await pair.okta_http.post(BCL, data={"logout_token": token, **form})


@pytest_asyncio.fixture
async def two_sessions(
    pair: Pair, okta: FakeOkta
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
    """Alice in two browsers, each its own Okta session (sid), and Carol."""
    async with (
        browser(pair.one, WIKI) as laptop,
        browser(pair.two, WIKI) as phone,
        browser(pair.one, WIKI) as carol,
    ):
        okta.id_token_claims["sid"] = "sid-laptop"
        await sign_in_everywhere(laptop, okta)
        okta.id_token_claims["sid"] = "sid-phone"
        await sign_in_everywhere(phone, okta)
        okta.id_token_claims["sid"] = "sid-carol"
        await sign_in_everywhere(carol, okta, "00ucarol")
        yield laptop, phone, carol


async def test_a_logout_token_ends_exactly_the_sessions_of_its_sid(
    pair: Pair,
    two_sessions: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    upstream: EchoUpstream,
) -> None:
    laptop, phone, carol = two_sessions
    response = await back_channel(pair, okta.logout_token(sub="00ualice", sid="sid-laptop"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    await assert_sent_to_sign_in(laptop, upstream)  # the wiki's app session and the global one
    await assert_still_in(phone)  # the same user's other Okta session
    await assert_still_in(carol)


async def test_a_logout_token_with_only_a_sub_ends_all_of_that_users_sessions(
    pair: Pair,
    two_sessions: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    upstream: EchoUpstream,
) -> None:
    laptop, phone, carol = two_sessions
    response = await back_channel(pair, okta.logout_token(sub="00ualice"))
    assert response.status_code == 200, response.text
    await assert_sent_to_sign_in(laptop, upstream)
    await assert_sent_to_sign_in(phone, upstream)
    await assert_still_in(carol)


@pytest.mark.parametrize(
    "claims",
    [{"sid": "sid-long-gone"}, {"sid": "sid-laptop", "sub": "00ucarol"}],
    ids=["unknown sid", "another user's sid"],
)
async def test_a_logout_token_that_matches_nothing_is_still_200(
    pair: Pair,
    two_sessions: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    claims: dict[str, str],
) -> None:
    response = await back_channel(pair, okta.logout_token(**claims))
    assert response.status_code == 200, response.text
    for person in two_sessions:
        await assert_still_in(person)


def _logout_token(okta: FakeOkta, case: str) -> str:
    now = int(time.time())
    made: dict[str, Callable[[], str]] = {
        "nonce": lambda: okta.logout_token(sid="sid-laptop", nonce="n-0S6_WzA2Mj"),
        "no event": lambda: okta.logout_token(sid="sid-laptop", events=None),
        "another event": lambda: okta.logout_token(
            sid="sid-laptop", events={"https://example.com/other": {}}
        ),
        "event not an object": lambda: okta.logout_token(sid="sid-laptop", events={EVENT: True}),
        "wrong aud": lambda: okta.logout_token(sid="sid-laptop", aud="another-client"),
        "wrong iss": lambda: okta.logout_token(sid="sid-laptop", iss="https://evil.example"),
        "too old": lambda: okta.logout_token(sid="sid-laptop", iat=now - 600, exp=now + 60),
        "expired": lambda: okta.logout_token(sid="sid-laptop", exp=now - 120),
        "no iat": lambda: okta.logout_token(sid="sid-laptop", iat=None),
        "no jti": lambda: okta.logout_token(sid="sid-laptop", jti=None),
        "neither sub nor sid": lambda: okta.logout_token(),
        "empty sid": lambda: okta.logout_token(sub="00ualice", sid=""),
        "typ JWT": lambda: okta.logout_token(sid="sid-laptop", typ="JWT"),
        "unknown key": lambda: okta.logout_token(sid="sid-laptop", signer="foreign_key"),
        "alg none": lambda: okta.logout_token(sid="sid-laptop", signer="none"),
        "HS256": lambda: okta.logout_token(sid="sid-laptop", signer="client_secret"),
    }
    return made[case]()


@pytest.mark.parametrize(
    "case",
    [
        "nonce",
        "no event",
        "another event",
        "event not an object",
        "wrong aud",
        "wrong iss",
        "too old",
        "expired",
        "no iat",
        "no jti",
        "neither sub nor sid",
        "empty sid",
        "typ JWT",
        "unknown key",
        "alg none",
        "HS256",
    ],
)
async def test_a_bad_logout_token_is_400_and_ends_nothing(
    pair: Pair, two_sessions: tuple[httpx.AsyncClient, ...], okta: FakeOkta, case: str
) -> None:
    response = await back_channel(pair, _logout_token(okta, case))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
    for person in two_sessions:
        await assert_still_in(person)


async def test_a_replayed_logout_token_is_400(
    pair: Pair, two_sessions: tuple[httpx.AsyncClient, ...], okta: FakeOkta
) -> None:
    laptop, phone, carol = two_sessions
    token = okta.logout_token(sid="sid-carol")
    assert (await back_channel(pair, token)).status_code == 200
    # Carol signs in again with the same Okta session; the same token, replayed, must not end it.
    await sign_in_everywhere(carol, okta, "00ucarol")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.one), base_url=TEAM
    ) as to_one:
        replayed = await to_one.post(BCL, data={"logout_token": token})
    assert replayed.status_code == 400, replayed.text
    assert "already used" in replayed.json()["error_description"]
    for person in (laptop, phone, carol):
        await assert_still_in(person)


async def test_a_back_channel_logout_the_store_failed_is_taken_when_sent_again(
    pair: Pair,
    two_sessions: tuple[httpx.AsyncClient, ...],
    okta: FakeOkta,
    upstream: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    laptop, phone, carol = two_sessions
    token = okta.logout_token(sub="00ualice", sid="sid-laptop")
    with monkeypatch.context() as patch:
        _store_down(pair.two, patch, "revoke_idp_session")
        failed = await back_channel(pair, token)
    assert failed.status_code == 400, failed.text
    assert failed.json()["error"] == "temporarily_unavailable"
    retried = await back_channel(pair, token)
    assert retried.status_code == 200, retried.text
    await assert_sent_to_sign_in(laptop, upstream)
    await assert_still_in(phone)
    await assert_still_in(carol)


@pytest.mark.parametrize(
    "send",
    [
        {"data": {}},
        {"data": {"logout_token": ""}},
        {"content": b"logout_token=a&logout_token=b"},
        {"json": {"logout_token": "x"}},
        {"data": {"logout_token": "x" * 20000}},
    ],
)
async def test_a_malformed_back_channel_request_is_400(
    pair: Pair, two_sessions: tuple[httpx.AsyncClient, ...], send: dict[str, Any]
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if "content" in send else {}
    response = await pair.okta_http.post(BCL, headers=headers, **send)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    for person in two_sessions:
        await assert_still_in(person)


async def test_without_backchannel_logout_the_route_is_404(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    settings = parse_settings(settings_doc(upstream.url))
    async with (
        running(create_app(settings, store=store)) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEAM) as client,
    ):
        response = await client.post(BCL, data={"logout_token": okta.logout_token(sub="x")})
    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"
