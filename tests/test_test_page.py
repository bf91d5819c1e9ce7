"""End to end: the identity provider "Test" button, `/test-idp?idp=<id>` (SPEC 4 "Test page").

The test runs a real sign-in with `FakeOkta` through the ordinary callback and renders what that
sign-in learned; on failure, the step and what to check in Okta. It must never create a session
or set `CF_Authorization`, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fake_okta import API_TOKEN, FakeOkta
from harness import (
    IDENTITY_KEYS,
    IDP_ID,
    TEAM,
    EchoUpstream,
    browser,
    running,
    session_cookie,
    settings_doc,
)

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.identity import user_uuid_for
from gateway.state.store import Store

REDIRECT_URI = f"{TEAM}/cdn-cgi/access/callback"
TEST_URL = f"/test-idp?idp={IDP_ID}"


@contextlib.asynccontextmanager
async def serve(
    store: Store, doc: dict[str, Any]
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """The gateway for `doc`, running, with a browser on the team host."""
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as client:
        yield app, client


async def run_test(
    client: httpx.AsyncClient, okta: FakeOkta, sub: str, *, error: tuple[str, str] | None = None
) -> list[httpx.Response]:
    """Press "Test" and sign in at Okta as `sub` (or have Okta answer `error` on the redirect),
    following the gateway's redirects back to Okta and on to the kept result; every gateway
    response, the page last."""
    responses = [await client.get(TEST_URL)]
    while responses[-1].status_code == 302:
        authorize = responses[-1].headers["location"]
        if authorize.startswith("/test-idp/result/"):  # the outcome, at a URL of its own
            responses.append(await client.get(authorize))
            break
        assert authorize.startswith(okta.authorization_endpoint)
        callback = (
            okta.authorize_error(authorize, *error) if error else okta.authorize(authorize, sub)
        )
        responses.append(await client.get(callback))
    return responses


def assert_no_session(responses: list[httpx.Response], client: httpx.AsyncClient) -> None:
    """No response set CF_Authorization, and the browser holds none."""
    for response in responses:
        assert session_cookie(response) is None
        assert not any(
            h.startswith("CF_Authorization=") for h in response.headers.get_list("set-cookie")
        )
    assert "CF_Authorization" not in client.cookies


def blocks(page: httpx.Response) -> list[Any]:
    """The JSON documents shown in the page's <pre> blocks, in order."""
    return [json.loads(html.unescape(b)) for b in re.findall(r"<pre>(.*?)</pre>", page.text, re.S)]


def text(page: httpx.Response) -> str:
    """The page's text with HTML escapes undone (quotes come out as Jinja escapes them)."""
    return html.unescape(page.text)


# --- success --------------------------------------------------------------------------------


async def test_the_test_page_shows_what_the_sign_in_learned(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    okta.add_user(
        "00udana", "dana@example.com", "Dana Example", ["Engineering", "Everyone"], department="R&D"
    )
    doc = settings_doc(upstream.url, claims=["department", "cost_center"])
    async with serve(store, doc) as (app, client):
        responses = await run_test(client, okta, "00udana")
        page = responses[-1]
        assert len(responses) == 3 and page.status_code == 200  # test, callback, result
        assert "text/html" in page.headers["content-type"]
        assert page.headers["cache-control"] == "no-store"
        assert "Your connection works!" in page.text
        assert "<strong>Okta</strong> (type <code>okta</code>)" in page.text
        assert "2 groups from the groups claim of the ID token." in page.text

        identity, kept, id_token_claims = blocks(page)
        assert identity["email"] == "dana@example.com"
        assert identity["name"] == "Dana Example"
        assert identity["groups"] == ["Engineering", "Everyone"]
        assert identity["idp"] == {"id": IDP_ID, "type": "okta"}
        assert identity["user_uuid"] == user_uuid_for(IDP_ID, "00udana")
        assert identity["oidc_fields"] == {"department": "R&D"}
        assert identity["ip"] == "203.0.113.7"
        assert set(identity) == IDENTITY_KEYS
        assert kept == {"department": "R&D"}
        assert "not sent by the identity provider:\ncost_center" in page.text
        assert id_token_claims["iss"] == okta.issuer
        assert id_token_claims["aud"] == okta.client_id
        assert id_token_claims["sub"] == "00udana"
        assert id_token_claims["groups"] == ["Engineering", "Everyone"]
        raw_id_token = okta.routes["token"].calls.last.response.json()["id_token"]
        assert raw_id_token not in page.text  # the claims, never the token
        assert raw_id_token.split(".")[2] not in page.text

        # A test, not a sign-in: no session, no cookie, the app still asks to sign in.
        assert_no_session(responses, client)
        assert (await client.get("/cdn-cgi/access/get-identity")).status_code == 401
        assert (await client.get("/docs")).status_code == 302
        rt = app.runtime
        assert rt is not None
        assert await rt.sessions.active_sessions(user_uuid_for(IDP_ID, "00udana")) == []
    assert upstream.requests == []


async def test_the_test_page_needs_no_admin_token_or_session_and_shows_the_tester(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    # The default fixtures: no Authorization header, no prior sign-in; bob is in no policy.
    responses = await run_test(client, okta, "00ubob")
    assert responses[-1].status_code == 200
    identity = blocks(responses[-1])[0]
    assert identity["email"] == "bob@example.com"
    assert "alice" not in responses[-1].text
    assert_no_session(responses, client)


async def test_the_test_page_counts_the_api_pages_after_the_too_many_groups_restart(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    groups = [f"group-{i:03d}" for i in range(150)]
    okta.add_user("00ucarol", "carol@example.com", "Carol Example", groups)
    okta.groups_page_size = 50
    async with serve(store, settings_doc(upstream.url, api_token=API_TOKEN)) as (_, client):
        responses = await run_test(client, okta, "00ucarol")
        assert_no_session(responses, client)
    page = responses[-1]
    assert len(responses) == 4  # start, the restart without the groups scope, callback, page
    assert page.status_code == 200
    assert "150 groups read from the Okta Groups API" in page.text
    assert "in 3 pages" in page.text
    assert "Okta refused the groups claim (more than 100 groups)" in page.text
    assert blocks(page)[0]["groups"] == groups


async def test_the_test_page_shows_groups_from_the_api_when_the_claim_is_absent(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    okta.groups_claim = "none"
    okta.groups_page_size = 1
    async with serve(store, settings_doc(upstream.url, api_token=API_TOKEN)) as (_, client):
        responses = await run_test(client, okta, "00ualice")
    page = responses[-1]
    assert "2 groups read from the Okta Groups API" in page.text and "in 2 pages" in page.text
    assert "no usable groups claim" in page.text
    assert "Why groups may be missing" not in page.text


async def test_the_test_page_says_why_groups_may_be_missing(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    okta.groups_claim = "none"
    responses = await run_test(client, okta, "00ualice")
    page = responses[-1]
    assert page.status_code == 200 and "Your connection works!" in page.text
    assert "No groups: the sign-in carried no groups claim." in page.text
    assert "Why groups may be missing" in page.text
    assert "Okta sent no groups claim" in page.text
    assert "Sign On tab" in page.text and "api_token" in page.text
    assert blocks(page)[0]["groups"] == []


# --- failures: the step and what to check --------------------------------------------------


@dataclass
class Failure:
    """One way the test can fail, and what the page must then say."""

    okta: Callable[[FakeOkta], None] = lambda _: None  # set up the fake Okta
    config: dict[str, Any] = field(default_factory=dict)  # IdP config overrides
    redirect_error: tuple[str, str] | None = None  # Okta's error on the redirect
    sub: str = "00ualice"
    status: int = 502
    step: str = ""
    shows: tuple[str, ...] = ()


def _add_carol(okta: FakeOkta) -> None:
    okta.add_user("00ucarol", "carol@example.com", "Carol", [f"g{i}" for i in range(150)])


def _no_groups_claim(okta: FakeOkta) -> None:
    okta.groups_claim = "none"


def _forbid_groups_api(okta: FakeOkta) -> None:
    okta.groups_claim = "none"
    okta.answer("groups", FakeOkta.api_error(403, "E0000006", "You do not have permission."))


FAILURES = {
    "discovery unreachable": Failure(
        okta=lambda okta: okta.answer("discovery", httpx.ConnectError),
        status=503,
        step="Discovery (reading Okta's OpenID configuration)",
        shows=("The Okta domain (okta_account = https://dev-123.okta.com)", "authorization server"),
    ),
    "discovery issuer mismatch": Failure(
        okta=lambda okta: okta.answer(
            "discovery",
            httpx.Response(200, json={**okta.discovery_document(), "issuer": "https://x.test"}),
        ),
        step="Discovery (reading Okta's OpenID configuration)",
        shows=(
            "not the expected 'https://dev-123.okta.com'",
            "The Okta domain",
            "The authorization server ID",
            "expects the issuer https://dev-123.okta.com.",
        ),
    ),
    "redirect uri mismatch on the redirect": Failure(
        redirect_error=(
            "invalid_request",
            "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings",
        ),
        status=400,
        step="Okta's answer on the redirect (authorize)",
        shows=(
            "The 'redirect_uri' parameter must be a Login redirect URI",
            f"The app's sign-in redirect URIs in Okta must include exactly {REDIRECT_URI}.",
        ),
    ),
    "invalid client": Failure(
        config={"client_secret": "not-the-secret"},
        step="Code exchange at the token endpoint",
        shows=(
            "Client authentication failed.",
            "check the client ID and secret",
            "The client ID (0oaclient) and client secret must be the app's",
        ),
    ),
    "token validation": Failure(
        okta=lambda okta: setattr(okta, "id_token_signer", "foreign_key"),
        status=400,
        step="ID token validation",
        shows=("The ID token's signature is invalid", "This host's clock (NTP)"),
    ),
    "groups api token invalid": Failure(
        okta=_no_groups_claim,
        config={"api_token": "wrong-token"},
        step="Reading groups from the Okta Groups API",
        shows=(
            "Reading groups from Okta failed: the Okta API token is invalid",
            "api_token must be an active Okta API token",
        ),
    ),
    "groups api token lacks permission": Failure(
        okta=_forbid_groups_api,
        config={"api_token": API_TOKEN},
        step="Reading groups from the Okta Groups API",
        shows=(
            "the Okta API token lacks permission to read groups",
            "at least the Read-only Administrator role",
        ),
    ),
    "more than 100 groups without an api token": Failure(
        okta=_add_carol,
        sub="00ucarol",
        step="Groups: more than 100 groups for the groups claim",
        shows=(
            "more than 100 groups",
            "Okta puts at most 100 groups in a claim",
            "set api_token on this identity provider",
            "narrow the groups claim filter in Okta",
        ),
    ),
}


@pytest.mark.parametrize("cause", list(FAILURES))
async def test_a_failed_test_names_the_step_and_what_to_check(
    store: Store,
    upstream: EchoUpstream,
    okta: FakeOkta,
    caplog: pytest.LogCaptureFixture,
    cause: str,
) -> None:
    failure = FAILURES[cause]
    failure.okta(okta)
    async with serve(store, settings_doc(upstream.url, **failure.config)) as (_, client):
        with caplog.at_level("WARNING"):
            responses = await run_test(client, okta, failure.sub, error=failure.redirect_error)
        assert_no_session(responses, client)
        assert (await client.get("/cdn-cgi/access/get-identity")).status_code == 401
    page = responses[-1]
    assert page.status_code == failure.status, page.text
    assert "text/html" in page.headers["content-type"]
    shown = text(page)
    assert "The connection failed" in shown
    assert "Your connection works!" not in shown
    assert "<strong>Okta</strong> (type <code>okta</code>)" in page.text
    assert f"Step that failed: <strong>{failure.step}</strong>" in shown
    for hint in failure.shows:
        assert hint in shown
    assert REDIRECT_URI in shown  # always: the URI to register in Okta
    assert f'href="{TEST_URL}"' in page.text  # "Test again"
    assert "Traceback" not in shown
    reference = re.search(r'reference <span class="ref">([0-9a-f]+)<', page.text)
    assert reference
    assert any(f"ref={reference.group(1)}" in r.getMessage() for r in caplog.records)
    assert upstream.requests == []


# --- the route ------------------------------------------------------------------------------


async def test_an_unknown_identity_provider_is_a_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/test-idp?idp=no-such-idp")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no identity provider with that id" in response.text
    assert "location" not in response.headers


async def test_a_test_without_an_idp_is_a_400_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/test-idp")
    assert response.status_code == 400
    assert "/test-idp?idp=" in html.unescape(response.text)


async def test_the_test_page_lives_on_the_team_host_only(gateway: Gateway) -> None:
    async with browser(gateway, "https://elsewhere.example.com") as other:
        response = await other.get(TEST_URL)
    assert response.status_code == 404
    assert "location" not in response.headers
