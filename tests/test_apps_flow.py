"""Apps on their own hosts: the team-host / app-host dance, service tokens, bypass, redirects.

The gateway runs whole in process with `FakeOkta`; the protected apps are one real upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import pytest_asyncio
from clock import FakeClock
from fake_okta import FakeOkta
from harness import (
    TEAM,
    WIKI,
    EchoUpstream,
    browser,
    running,
    session_cookie,
    settings_doc,
    start_sign_in,
)
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.app import Gateway, create_app
from gateway.authz.service_tokens import ServiceTokens
from gateway.config import app_aud, parse_settings
from gateway.identity import Identity
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore
from gateway.web.views import safe_path

GRAFANA = "https://grafana.example.com"
PAYROLL = "https://payroll.example.com"
STATUS = "https://status.example.com"


def apps_doc(upstream: str) -> dict[str, Any]:
    doc = settings_doc(upstream)
    engineering = [{"okta": {"name": "Engineering"}}]
    doc["apps"] += [
        {
            "id": "grafana",
            "name": "Grafana",
            "domain": "grafana.example.com",
            "upstream": upstream,
            "policies": [{"name": "Eng", "decision": "allow", "include": engineering}],
        },
        {
            "id": "payroll",
            "name": "Payroll",
            "domain": "payroll.example.com",
            "upstream": upstream,
            "custom_deny_message": "Payroll is for the Finance team.",
            "policies": [
                {
                    "name": "CI",
                    "decision": "non_identity",
                    "include": [{"service_token": {"token_id": "set-later"}}],
                },
                {
                    "name": "Finance",
                    "decision": "allow",
                    "include": [{"okta": {"name": "Finance"}}],
                },
            ],
        },
        {
            "id": "status",
            "name": "Status",
            "domain": "status.example.com",
            "upstream": upstream,
            "policies": [
                {"name": "Public", "decision": "bypass", "include": [{"everyone": {}}]},
            ],
        },
    ]
    return doc


async def visit(client: httpx.AsyncClient, okta: FakeOkta | None, url: str) -> httpx.Response:
    """Open `url` as a browser and follow the whole dance (Okta only if `okta` is given and
    the gateway asks for it); returns the final answer."""
    response = await client.get(url)
    for _ in range(10):
        if response.status_code != 302:
            return response
        location = response.headers["location"]
        if okta is not None and location.startswith(okta.authorization_endpoint):
            location = okta.authorize(location, "00ualice")
        response = await client.get(
            location if "://" in location else str(response.url.join(location))
        )
    raise AssertionError("redirect loop")


@pytest_asyncio.fixture
async def apps(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(apps_doc(upstream.url)), store=store)) as app:
        yield app


async def test_one_sign_in_gives_silent_access_to_a_second_app(
    apps: Gateway, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    async with browser(apps, WIKI) as client:
        wiki = await visit(client, okta, f"{WIKI}/page")
        assert wiki.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
        token_calls = okta.routes["token"].call_count
        grafana = await visit(client, None, f"{GRAFANA}/dash")  # None: Okta must not be needed
        assert grafana.status_code == 200
        assert (
            grafana.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
        )
        assert okta.routes["token"].call_count == token_calls


async def test_denied_on_one_app_allowed_on_the_other(apps: Gateway, okta: FakeOkta) -> None:
    async with browser(apps, WIKI) as client:
        assert (await visit(client, okta, f"{WIKI}/")).status_code == 200
        payroll = await visit(client, okta, f"{PAYROLL}/")
        assert payroll.status_code == 403
        assert "Payroll is for the Finance team." in payroll.text
        assert (await client.get(f"{WIKI}/again")).status_code == 200


async def test_logout_on_one_host_ends_every_session(
    apps: Gateway, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    async with browser(apps, WIKI) as client:
        await visit(client, okta, f"{WIKI}/")
        await visit(client, None, f"{GRAFANA}/")
        out = await client.get(f"{WIKI}/cdn-cgi/access/logout")
        assert out.status_code == 200
        hits = len(upstream.requests)
        for url in (f"{WIKI}/", f"{GRAFANA}/", f"{TEAM}/docs"):
            again = await client.get(url)
            assert again.status_code == 302, url
            assert "/cdn-cgi/access/login/" in again.headers["location"]
        assert len(upstream.requests) == hits


async def test_an_app_session_that_ends_is_reissued_silently_from_the_global_one(
    apps: Gateway, okta: FakeOkta
) -> None:
    async with browser(apps, WIKI) as client:
        await visit(client, okta, f"{WIKI}/")
        client.cookies.delete("CF_Authorization", domain="wiki.example.com")  # app session gone
        calls = okta.routes["token"].call_count
        assert (await visit(client, None, f"{WIKI}/x")).status_code == 200
        assert okta.routes["token"].call_count == calls


# --- the one-time token ---------------------------------------------------------------------


async def authorized_url(client: httpx.AsyncClient, okta: FakeOkta, url: str) -> str:
    authorize = await start_sign_in(client, url)
    at_team = await client.get(okta.authorize(authorize, "00ualice"))
    assert at_team.status_code == 302
    return at_team.headers["location"]


async def test_an_expired_one_time_token_is_refused(
    upstream: EchoUpstream, okta: FakeOkta, clock: FakeClock
) -> None:
    okta.clock = clock
    store = MemoryStore(clock=clock)
    app = create_app(parse_settings(apps_doc(upstream.url)), store=store, clock=clock)
    async with running(app), browser(app, WIKI) as client:
        url = await authorized_url(client, okta, "/page")
        clock.advance(61)
        refused = await client.get(url)
        assert refused.status_code == 400
        assert session_cookie(refused) is None


async def test_a_one_time_token_without_the_app_binding_cookie_is_refused(
    apps: Gateway, okta: FakeOkta
) -> None:
    async with browser(apps, WIKI) as client:
        url = await authorized_url(client, okta, "/page")
        client.cookies.delete("CF_AppSession")
        refused = await client.get(url)
        assert refused.status_code == 400
        assert session_cookie(refused) is None


@pytest.mark.parametrize("revoked", ["before the app session is made", "while it is made"])
async def test_a_sign_out_racing_the_one_time_token_leaves_no_app_session(
    apps: Gateway, okta: FakeOkta, upstream: EchoUpstream, revoked: str
) -> None:
    """The user signs out (or Okta deprovisions them) after /authorized has read the global
    session: the app session it goes on to make must not survive the revocation."""
    rt = apps.runtime
    assert rt is not None
    create = rt.sessions.create

    async def create_racing_a_revocation(identity: Identity, **kwargs: Any) -> Any:
        if revoked == "before the app session is made":
            await rt.sessions.revoke_user(identity.user_uuid)
            return await create(identity, **kwargs)
        made = await create(identity, **kwargs)
        # as if the revocation read the index before the new id was added
        await rt.sessions.end(made[0])
        await rt.sessions.revoke_user(identity.user_uuid)
        await rt.store.set("session:" + made[0].id, made[0].to_bytes(), ttl=3600)
        return made

    async with browser(apps, WIKI) as client:
        url = await authorized_url(client, okta, "/page")
        rt.sessions.create = create_racing_a_revocation  # type: ignore[method-assign]
        refused = await client.get(url)
        assert refused.status_code == 400
        assert "ended before it reached the application" in refused.text
        assert session_cookie(refused) is None
        hits = len(upstream.requests)
        assert (await client.get(f"{WIKI}/page")).status_code == 302
        assert len(upstream.requests) == hits


async def test_a_one_time_token_redeemed_on_another_host_is_refused(
    apps: Gateway, okta: FakeOkta
) -> None:
    async with browser(apps, WIKI) as client:
        url = await authorized_url(client, okta, "/page")
        moved = url.replace(WIKI, GRAFANA)
        refused = await client.get(moved)
        assert refused.status_code == 400
        assert session_cookie(refused) is None


# --- open redirects -------------------------------------------------------------------------

EVIL_REDIRECTS = [
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "%2F%2Fevil.example",
    "javascript:alert(1)",
    "/\r\nLocation: https://evil.example",
    "/%0d%0aLocation:%20https://evil.example",
    "https://evil.example/",
    "http://wiki.example.com.evil.example/",
    "\t//evil.example",
]


@pytest.mark.parametrize("evil", EVIL_REDIRECTS)
def test_safe_path_keeps_only_paths_on_this_host(evil: str) -> None:
    target = safe_path(evil)
    assert target.startswith("/") and not target.startswith("//")
    assert urlsplit(target).netloc == "" and "\n" not in target and "\\" not in target


@pytest.mark.parametrize("evil", EVIL_REDIRECTS)
async def test_no_redirect_url_leads_off_the_app_host(
    apps: Gateway, okta: FakeOkta, evil: str
) -> None:
    async with browser(apps, WIKI) as client:
        url = await authorized_url(client, okta, "/page")
        # The attacker controls the redirect_url of both the login link and the token link.
        query = parse_qs(urlsplit(url).query)
        token, target = query["token"][0], quote(evil, safe="")
        forged = f"{WIKI}/cdn-cgi/access/authorized?token={token}&redirect_url={target}"
        done = await client.get(forged)
        assert done.status_code == 302
        location = done.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), location
        assert urlsplit(location).netloc == ""


# --- service tokens and bypass --------------------------------------------------------------


async def service_app(store: Store, upstream: EchoUpstream) -> tuple[Gateway, str, str]:
    """The apps with payroll's non_identity policy naming a real token; returns the app and
    that token's client id and secret."""
    tokens = ServiceTokens(store)
    ci, ci_secret = await tokens.create("ci")
    doc = apps_doc(upstream.url)
    doc["apps"][3]["policies"][0]["include"] = [{"service_token": {"token_id": ci.id}}]
    return create_app(parse_settings(doc), store=store), ci.client_id, ci_secret


async def test_a_valid_service_token_in_the_policy_reaches_the_app_without_identity(
    store: Store, upstream: EchoUpstream
) -> None:
    app, client_id, secret = await service_app(store, upstream)
    async with running(app), browser(app, PAYROLL) as client:
        response = await client.get(
            "/api/run",
            headers={"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret},
        )
        again = await client.get(
            "/api/run",
            headers={"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret},
        )
        first = response.json()["headers"]["cf-access-jwt-assertion"]
        assert again.json()["headers"]["cf-access-jwt-assertion"] == first  # minted once
        certs = (await client.get(f"{TEAM}/cdn-cgi/access/certs")).json()
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert "cf-access-client-secret" not in seen and "cf-access-client-id" not in seen
    assert "cf-access-authenticated-user-email" not in seen  # no user behind a service token
    # The origin can tell which service token it was, from a token it verifies with /certs.
    claims = jwt.decode(
        seen["cf-access-jwt-assertion"], KeySet.import_key_set(certs), algorithms=["RS256"]
    ).claims
    assert claims["common_name"] == client_id and claims["sub"] == ""
    assert claims["aud"] == [app_aud("payroll")] and claims["type"] == "app"


async def test_an_app_token_never_outlives_its_service_token(
    store: Store, upstream: EchoUpstream
) -> None:
    tokens = ServiceTokens(store)
    short, secret = await tokens.create("short-lived", duration=120)
    doc = apps_doc(upstream.url)
    doc["apps"][3]["policies"][0]["include"] = [{"service_token": {"token_id": short.id}}]
    app = create_app(parse_settings(doc), store=store)
    async with running(app), browser(app, PAYROLL) as client:
        response = await client.get(
            "/api/run",
            headers={"CF-Access-Client-Id": short.client_id, "CF-Access-Client-Secret": secret},
        )
        certs = KeySet.import_key_set((await client.get(f"{TEAM}/cdn-cgi/access/certs")).json())
    assert response.status_code == 200
    token = response.json()["headers"]["cf-access-jwt-assertion"]
    claims = jwt.decode(token, certs, algorithms=["RS256"]).claims
    assert short.expires_at is not None and claims["exp"] <= short.expires_at


async def test_a_wrong_service_token_secret_is_401(store: Store, upstream: EchoUpstream) -> None:
    app, client_id, _ = await service_app(store, upstream)
    async with running(app), browser(app, PAYROLL) as client:
        response = await client.get(
            "/api/run",
            headers={"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": "0" * 64},
        )
    assert response.status_code == 401
    assert upstream.requests == []


async def test_a_valid_service_token_not_in_the_policy_is_403(
    store: Store, upstream: EchoUpstream
) -> None:
    app, _, _ = await service_app(store, upstream)
    other, other_secret = await ServiceTokens(store).create("other")
    async with running(app), browser(app, PAYROLL) as client:
        response = await client.get(
            "/api/run",
            headers={
                "CF-Access-Client-Id": other.client_id,
                "CF-Access-Client-Secret": other_secret,
            },
        )
    assert response.status_code == 403
    assert upstream.requests == []


async def test_a_bypass_route_is_reachable_with_no_identity_and_no_identity_headers(
    apps: Gateway, upstream: EchoUpstream
) -> None:
    async with browser(apps, STATUS) as client:
        response = await client.get(
            "/health", headers={"Cf-Access-Authenticated-User-Email": "spoofed@example.com"}
        )
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert "cf-access-authenticated-user-email" not in seen
    assert "cf-access-jwt-assertion" not in seen


async def test_a_host_no_app_covers_is_404_never_another_apps_upstream(
    apps: Gateway, upstream: EchoUpstream
) -> None:
    async with browser(apps, "https://unknown.example.com") as client:
        assert (await client.get("/")).status_code == 404
    assert upstream.requests == []


@pytest.mark.parametrize(
    "path", ["/api/apps", "/api/openapi.json", "/populations/okta-test/scim/v2/Users"]
)
async def test_the_admin_api_and_scim_answer_on_the_team_host_only(
    apps: Gateway, path: str
) -> None:
    # Any name that points at the gateway is not a second door to them.
    async with browser(apps, "https://unknown.example.com") as client:
        assert (await client.get(path)).status_code == 404
    async with browser(apps, "https://203.0.113.9") as client:
        assert (await client.get(path)).status_code == 404
        assert (await client.get("/healthz")).status_code == 200  # probes still answer
