"""End to end, in process: protected URL -> sign-in at (fake) Okta -> callback -> upstream.

The gateway runs whole (lifespan, store, pools); Okta is `FakeOkta` on respx; the protected
application is a real aiohttp server on a loopback port, so "the upstream was never reached" is
a count of requests it really received.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from clock import FakeClock
from fake_okta import FakeOkta
from harness import (
    COOKIE_SECRET,
    IDENTITY_KEYS,
    IDP_ID,
    TEAM,
    WIKI,
    EchoUpstream,
    assert_rejected,
    browser,
    running,
    session_cookie,
    settings_doc,
    sign_in,
    start_sign_in,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.app import Gateway, create_app
from gateway.authz.app_tokens import KEEP_PREVIOUS
from gateway.config import app_aud, parse_settings
from gateway.state.sessions import CookieSigner
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore

# --- the happy path -------------------------------------------------------------------------


async def test_sign_in_reaches_the_upstream_with_the_identity(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    done = await sign_in(client, okta, "00ualice")
    assert done.status_code == 302
    assert done.headers["location"] == "/docs/page?x=1"
    set_cookie = next(
        h for h in done.headers.get_list("set-cookie") if h.startswith("CF_Authorization=")
    )
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "Path=/" in set_cookie
    assert "samesite=lax" in set_cookie.lower()

    page = await client.get(
        "/docs/page?x=1", headers={"Cf-Access-Authenticated-User-Email": "x@evil"}
    )
    assert page.status_code == 200
    seen = page.json()
    assert seen["path_qs"] == "/docs/page?x=1"
    assert seen["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
    assert "cf_authorization" not in seen["headers"].get("cookie", "").lower()
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-forwarded-for"] == "203.0.113.7"


async def test_get_identity_returns_the_identity_document(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    await sign_in(client, okta, "00ualice")
    identity = (await client.get("/cdn-cgi/access/get-identity")).json()
    assert identity["email"] == "alice@example.com"
    assert identity["name"] == "Alice Example"
    assert identity["groups"] == ["Engineering", "Everyone"]
    assert identity["idp"] == {"id": IDP_ID, "type": "okta"}
    assert identity["ip"] == "203.0.113.7"
    assert set(identity) == IDENTITY_KEYS
    assert abs(identity["iat"] - time.time()) < 60


async def test_get_identity_without_a_session_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/cdn-cgi/access/get-identity")).status_code == 401


async def test_with_two_session_cookies_the_proxy_and_get_identity_mean_the_same_user(
    gateway: Gateway, okta: FakeOkta
) -> None:
    """A cookie tossed in from a sibling domain makes a browser send two CF_Authorization
    cookies: the app, get-identity and logout must all act on the same one (the first)."""
    cookies = []
    for sub in ("00ualice", "00ubob"):
        async with browser(gateway) as someone:
            cookies.append(session_cookie(await sign_in(someone, okta, sub)))
    async with browser(gateway) as both:
        sent = {"Cookie": f"CF_Authorization={cookies[0]}; CF_Authorization={cookies[1]}"}
        page = await both.get("/docs", headers=sent)
        identity = await both.get("/cdn-cgi/access/get-identity", headers=sent)
    assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
    assert identity.json()["email"] == "alice@example.com"


async def test_logout_ends_the_session_and_the_old_cookie_stops_working(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream, gateway: Gateway
) -> None:
    done = await sign_in(client, okta, "00ualice")
    cookie = session_cookie(done)
    assert cookie
    out = await client.get("/cdn-cgi/access/logout")
    assert out.status_code == 200
    assert "signed out" in out.text
    assert session_cookie(out) is None  # cleared
    hits = len(upstream.requests)
    async with browser(gateway) as replay:
        replay.cookies.set("CF_Authorization", cookie, domain="access.example.com")
        again = await replay.get("/docs")
    assert again.status_code == 302
    assert "/cdn-cgi/access/login/" in again.headers["location"]
    assert len(upstream.requests) == hits


async def test_logout_follows_return_to_only_to_known_hosts(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    await sign_in(client, okta, "00ualice")
    ok = await client.get("/cdn-cgi/access/logout", params={"returnTo": f"{WIKI}/bye"})
    assert ok.status_code == 302 and ok.headers["location"] == f"{WIKI}/bye"
    evil = await client.get("/cdn-cgi/access/logout", params={"returnTo": "https://evil.example/"})
    assert evil.status_code == 200 and "location" not in evil.headers


async def test_a_user_outside_the_policy_gets_the_403_page(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    done = await sign_in(client, okta, "00ubob")
    assert done.status_code == 403
    assert "Team Docs" in done.text and "Ask #it-help for access." in done.text
    again = await client.get("/docs")
    assert again.status_code == 403
    assert upstream.requests == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"},
        {"Accept": "application/json"},
        {"Accept": "*/*"},
    ],
)
async def test_xhr_and_non_browsers_get_401_not_a_redirect(
    client: httpx.AsyncClient, headers: dict[str, str], upstream: EchoUpstream
) -> None:
    response = await client.get("/docs", headers=headers)
    assert response.status_code == 401
    assert upstream.requests == []


async def test_the_app_host_flow_issues_an_app_session_through_a_one_time_token(
    gateway: Gateway, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    async with browser(gateway, WIKI) as client:
        authorize = await start_sign_in(client, "/page")
        at_team = await client.get(okta.authorize(authorize, "00ualice"))
        assert at_team.status_code == 302
        authorized = at_team.headers["location"]
        assert authorized.startswith(f"{WIKI}/cdn-cgi/access/authorized?")
        done = await client.get(authorized)
        assert done.status_code == 302 and done.headers["location"] == "/page"
        page = await client.get("/page")
        assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
        # The one-time token is single-use.
        assert (await client.get(authorized)).status_code == 400

        # A second app visit with the global session answers silently (no Okta round trip).
        token_calls = okta.routes["token"].call_count
        client.cookies.delete("CF_Authorization", domain="wiki.example.com")
        to_login = await client.get("/other")
        silent = await client.get(to_login.headers["location"])
        assert silent.headers["location"].startswith(f"{WIKI}/cdn-cgi/access/authorized?")
        assert okta.routes["token"].call_count == token_calls


async def test_a_one_time_token_from_another_browser_is_refused(
    gateway: Gateway, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    async with browser(gateway, WIKI) as victim, browser(gateway, WIKI) as attacker:
        authorize = await start_sign_in(attacker, "/page")
        at_team = await attacker.get(okta.authorize(authorize, "00ualice"))
        authorized = at_team.headers["location"]
        await victim.get("/page")  # the victim has a CF_AppSession of their own
        stolen = await victim.get(authorized)
        assert stolen.status_code == 400
        assert session_cookie(stolen) is None


# --- rejections: error page, no session cookie, upstream never reached ----------------------


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("id_token_signer", "foreign_key"),
        ("id_token_signer", "none"),
        ("id_token_signer", "client_secret"),
        ("id_token_claims", {"iss": "https://evil.okta.com"}),
        ("id_token_claims", {"aud": "someone-else"}),
        ("id_token_claims", {"exp": 1_000_000_000}),
        ("id_token_claims", {"iat": 4_000_000_000}),
        ("id_token_claims", {"nonce": "replayed-nonce"}),
        ("id_token_claims", {"nonce": None}),
    ],
)
async def test_a_bad_id_token_is_refused(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream, knob: str, value: object
) -> None:
    setattr(okta, knob, value)
    await assert_rejected(await sign_in(client, okta, "00ualice"), upstream, 400)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (FakeOkta.oauth_error(400, "invalid_grant", "The authorization code is invalid."), 400),
        (FakeOkta.oauth_error(401, "invalid_client", "Client authentication failed."), 502),
        (FakeOkta.oauth_error(500, "server_error", "Internal error"), 502),
        (httpx.ReadTimeout, 504),
        (httpx.ConnectError, 503),
    ],
)
async def test_token_endpoint_failures_are_error_pages(
    client: httpx.AsyncClient,
    okta: FakeOkta,
    upstream: EchoUpstream,
    answer: httpx.Response | type[httpx.TransportError],
    status: int,
) -> None:
    okta.answer("token", answer)
    await assert_rejected(await sign_in(client, okta, "00ualice"), upstream, status)


async def test_access_denied_from_okta_is_a_403_page(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    authorize = await start_sign_in(client, "/docs")
    callback = okta.authorize_error(
        authorize, "access_denied", "User is not assigned to the client application."
    )
    response = await client.get(callback)
    await assert_rejected(response, upstream, 403)
    assert "not assigned" in response.text


async def test_a_replayed_state_is_refused(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream, gateway: Gateway
) -> None:
    authorize = await start_sign_in(client, "/docs")
    callback = okta.authorize(authorize, "00ualice")
    first = await client.get(callback)
    assert first.status_code == 302
    async with browser(gateway) as other:
        other.cookies = client.cookies  # even the same browser cookies cannot replay it
        other.cookies.delete("CF_Authorization")
        await assert_rejected(await other.get(callback), upstream, 400)


async def test_a_state_from_another_browser_is_refused(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream, gateway: Gateway
) -> None:
    authorize = await start_sign_in(client, "/docs")
    callback = okta.authorize(authorize, "00ualice")
    async with browser(gateway) as other:
        await assert_rejected(await other.get(callback), upstream, 400)


async def test_a_callback_without_state_is_refused(
    client: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    await assert_rejected(await client.get("/cdn-cgi/access/callback?code=abc"), upstream, 400)


async def test_the_authorize_request_carries_state_nonce_and_the_callback(
    client: httpx.AsyncClient,
) -> None:
    authorize = await start_sign_in(client, "/docs")
    query = parse_qs(urlsplit(authorize).query)
    assert query["redirect_uri"] == [f"{TEAM}/cdn-cgi/access/callback"]
    assert query["response_type"] == ["code"]
    assert len(query["state"][0]) >= 22 and len(query["nonce"][0]) >= 22
    assert "groups" in query["scope"][0].split()
    set_cookies = client.cookies
    assert set_cookies.get("CF_Session")


async def test_open_redirects_are_refused(client: httpx.AsyncClient, okta: FakeOkta) -> None:
    authorize = await start_sign_in(client, "/docs")
    await client.get(okta.authorize(authorize, "00ualice"))
    app_aud = parse_qs(urlsplit(await browser_login_url(client)).query)["kid"][0]
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        r = await client.get(
            f"/cdn-cgi/access/login/access.example.com?kid={app_aud}&redirect_url={evil}"
        )
        assert r.status_code == 302 and r.headers["location"] == "/"


async def browser_login_url(client: httpx.AsyncClient) -> str:
    async with httpx.AsyncClient(
        transport=client._transport, base_url=TEAM, headers={"Accept": "text/html"}
    ) as fresh:
        return (await fresh.get("/x")).headers["location"]


async def test_azp_naming_another_client_is_refused(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    okta.id_token_claims = {"aud": ["0oaclient", "0oaother"], "azp": "0oaother"}
    await assert_rejected(await sign_in(client, okta, "00ualice"), upstream, 400)


async def test_okta_rotating_its_key_is_followed_with_one_refetch(
    client: httpx.AsyncClient, okta: FakeOkta, gateway: Gateway
) -> None:
    assert (await sign_in(client, okta, "00ualice")).status_code == 302
    fetches = okta.routes["jwks"].call_count
    okta.rotate_keys(keep_old=False)
    async with browser(gateway) as later:
        assert (await sign_in(later, okta, "00ualice")).status_code == 302
    assert okta.routes["jwks"].call_count == fetches + 1


async def test_a_discovery_issuer_mismatch_is_an_error_page(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    okta.answer(
        "discovery", httpx.Response(200, json={**okta.discovery_document(), "issuer": "https://x"})
    )
    to_login = await client.get("/docs")
    response = await client.get(to_login.headers["location"])
    assert response.status_code == 502
    assert "Okta domain" in response.text or "authorization server" in response.text
    await assert_rejected(response, upstream, 502)


async def test_an_error_page_reference_matches_the_log_line(
    client: httpx.AsyncClient, okta: FakeOkta, caplog: pytest.LogCaptureFixture
) -> None:
    okta.id_token_signer = "foreign_key"
    with caplog.at_level("WARNING"):
        page = await sign_in(client, okta, "00ualice")
    reference = re.search(r'class="ref">([0-9a-f]+)<', page.text)
    assert reference
    assert any(f"ref={reference.group(1)}" in r.getMessage() for r in caplog.records)


async def test_with_the_store_down_nobody_gets_in_and_sees_a_503_page(
    upstream: EchoUpstream, okta: FakeOkta
) -> None:
    from harness import free_port

    from gateway.state.store.redis import RedisStore

    port = free_port()  # nothing listens here: the store is down
    dead = RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    settings = parse_settings(settings_doc(upstream.url))
    async with running(create_app(settings, store=dead)) as app, browser(app) as client:
        signed = CookieSigner((COOKIE_SECRET,), "gateway.session").sign("some-session-id")
        client.cookies.set("CF_Authorization", signed, domain="access.example.com")
        response = await client.get("/docs")
        assert response.status_code == 503
        assert "text/html" in response.headers["content-type"]
        # The answer fits the asker: JSON for get-identity, plain text for a script.
        identity = await client.get("/cdn-cgi/access/get-identity")
        assert identity.status_code == 503
        assert identity.json() == {
            "err": "The gateway's store is not answering. Try again in a moment."
        }
        script = await client.get("/docs", headers={"Accept": "*/*"})
        assert script.status_code == 503
        assert script.headers["content-type"].startswith("text/plain")
        assert re.fullmatch(r"The gateway's store .* \(reference [0-9a-f]{12}\)", script.text)
        for answer in (response, identity, script):  # what failed is for the log only
            assert "Redis" not in answer.text and str(port) not in answer.text
        client.cookies.clear()
        to_login = await client.get("/docs")
        assert (await client.get(to_login.headers["location"])).status_code == 503
        callback = await client.get(f"{TEAM}/cdn-cgi/access/callback?state=abc&code=x")
        assert callback.status_code == 503
    await dead.close()
    assert upstream.requests == []


@pytest.mark.parametrize("pkce", [True, False])
async def test_pkce_verifier_is_sent_if_and_only_if_enabled(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, pkce: bool
) -> None:
    settings = parse_settings(settings_doc(upstream.url, pkce_enabled=pkce))
    async with running(create_app(settings, store=store)) as app, browser(app) as client:
        authorize = await start_sign_in(client, "/docs")
        query = parse_qs(urlsplit(authorize).query)
        assert ("code_challenge" in query) is pkce
        if pkce:
            assert query["code_challenge_method"] == ["S256"]
        assert (await client.get(okta.authorize(authorize, "00ualice"))).status_code == 302
    token_request = okta.routes["token"].calls.last.request
    assert ("code_verifier" in parse_qs(token_request.content.decode())) is pkce


# --- request-shape attacks (from the security review) ---------------------------------------


@pytest.mark.parametrize(
    # (httpx itself resolves a literal "/../", so these are the encoded spellings a raw client
    # can send; the decoded path is what the gateway judges.)
    "path",
    [
        "/docs/%2E%2E/admin",
        "/docs/%2e%2e/admin",
        "/docs/..%2Fadmin",
        "/a/%2e/b",
        "/a\\..\\b",
        "/secret/..;/public/x",  # ".." to Tomcat, a directory name to Go, Express or nginx
        "/secret/%2e%2e;jsessionid=1/public/x",
    ],
)
async def test_ambiguous_paths_are_refused_before_any_policy(
    client: httpx.AsyncClient, upstream: EchoUpstream, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert upstream.requests == []


@pytest.mark.parametrize("host", ["wiki.example.com:@evil.com", "evil%2ecom?.example.com"])
async def test_malformed_host_headers_are_refused(
    client: httpx.AsyncClient, upstream: EchoUpstream, host: str
) -> None:
    response = await client.get("/", headers={"Host": host})
    assert response.status_code == 400
    assert upstream.requests == []


async def test_a_login_link_with_a_forged_app_host_or_binding_is_refused(
    client: httpx.AsyncClient,
) -> None:
    to_login = await client.get("/docs")
    kid = parse_qs(urlsplit(to_login.headers["location"]).query)["kid"][0]
    forged_host = await client.get(
        f"/cdn-cgi/access/login/evil%252ecom%3F.access.example.com?kid={kid}&redirect_url=/"
    )
    assert forged_host.status_code in (400, 404)
    assert "location" not in forged_host.headers
    long_meta = await client.get(
        f"/cdn-cgi/access/login/access.example.com?kid={kid}&redirect_url=/&meta={'a' * 5000}"
    )
    assert long_meta.status_code == 400


async def test_an_overlong_redirect_url_falls_back_to_the_root(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    to_login = await client.get("/docs")
    kid = parse_qs(urlsplit(to_login.headers["location"]).query)["kid"][0]
    login = f"/cdn-cgi/access/login/access.example.com?kid={kid}&redirect_url=/{'x' * 5000}"
    authorize = (await client.get(login)).headers["location"]
    done = await client.get(okta.authorize(authorize, "00ualice"))
    assert done.headers["location"] == "/"


async def test_the_team_session_cookie_is_always_httponly_and_lax(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    doc = settings_doc(upstream.url)
    doc["apps"][0].update(http_only_cookie_attribute=False, same_site_cookie_attribute="none")
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        done = await sign_in(c, okta, "00ualice")
    cookie = next(h for h in done.headers.get_list("set-cookie") if "CF_Authorization=" in h)
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()


async def test_the_origin_verifies_the_app_token_with_only_the_certs_endpoint(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    await sign_in(client, okta, "00ualice")
    first = (await client.get("/a")).json()["headers"]["cf-access-jwt-assertion"]
    second = (await client.get("/b")).json()["headers"]["cf-access-jwt-assertion"]
    assert first == second  # minted once per session, not per request
    certs = (await client.get("/cdn-cgi/access/certs")).json()
    claims = jwt.decode(first, KeySet.import_key_set(certs), algorithms=["RS256"]).claims
    identity = (await client.get("/cdn-cgi/access/get-identity")).json()
    assert claims["aud"] == [app_aud("team-app")]
    assert claims["iss"] == TEAM
    assert claims["email"] == "alice@example.com"
    assert claims["sub"] == identity["user_uuid"]
    assert claims["identity_nonce"] == identity["id"]


async def test_a_spoofed_app_token_never_reaches_the_upstream(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    await sign_in(client, okta, "00ualice")
    seen = (await client.get("/a", headers={"Cf-Access-Jwt-Assertion": "forged"})).json()
    assert seen["headers"]["cf-access-jwt-assertion"] != "forged"


async def test_old_app_tokens_verify_from_certs_while_the_previous_key_is_served(
    upstream: EchoUpstream, okta: FakeOkta, clock: FakeClock
) -> None:
    # The origin's view: only GET /cdn-cgi/access/certs and a standard JWT library.
    okta.clock = clock
    settings = parse_settings(settings_doc(upstream.url))
    app = create_app(settings, store=MemoryStore(clock=clock), clock=clock)
    async with running(app), browser(app) as client:
        await sign_in(client, okta, "00ualice")
        token = (await client.get("/a")).json()["headers"]["cf-access-jwt-assertion"]

        async def verifies() -> bool:
            certs = (await client.get("/cdn-cgi/access/certs")).json()
            try:
                jwt.decode(token, KeySet.import_key_set(certs), algorithms=["RS256"])
            except JoseError:
                return False
            return True

        assert await verifies()
        assert app.runtime is not None
        await app.runtime.signing_keys.rotate()
        assert await verifies()  # the previous key is still served
        clock.advance(KEEP_PREVIOUS + 1)
        assert not await verifies()  # dropped after seven days
