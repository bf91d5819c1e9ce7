"""`/cdn-cgi/access/authz` in process: the whole decision matrix, and agreement with proxy mode.

The gateway runs whole (lifespan, store); "the proxy" is an httpx client whose peer address is
in `trusted_proxies`, "a stranger" one whose address is not. Sessions are made straight in the
store, except in the test that completes a sign-in started by a forward-auth 401.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, WIKI, EchoUpstream, browser, running, settings_doc

from gateway.app import Gateway, create_app
from gateway.authz.service_tokens import ServiceTokens
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.state.store import Store
from gateway.web.cookies import binding_hash

PROXY_ADDRESS = "10.0.0.2"
CLIENT_ADDRESS = "203.0.113.7"
WIKI_HOST = "wiki.example.com"
HTML = "text/html,application/xhtml+xml"
ALICE = ("alice@example.com", ("Engineering", "Everyone"))
BOB = ("bob@example.com", ("Sales", "Everyone"))


def forward_auth_doc(upstream: str, service_token_id: str) -> dict[str, Any]:
    doc = settings_doc(upstream)
    doc["gateway"]["trusted_proxies"] = ["10.0.0.0/8"]

    def app(app_id: str, domain: str, *policies: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": app_id,
            "name": app_id.title(),
            "domain": domain,
            "upstream": upstream,
            "policies": list(policies),
            **extra,
        }

    doc["apps"] += [
        app(
            "wiki-admin",
            f"{WIKI_HOST}/admin",
            {"name": "Root", "decision": "allow", "include": [{"email": {"email": "root@x.io"}}]},
            custom_deny_message="Wiki admin is for root.",
        ),
        app(
            "status",
            "status.example.com",
            {"name": "Public", "decision": "bypass", "include": [{"everyone": {}}]},
        ),
        app(
            "office",
            "office.example.com",
            {"name": "LAN", "decision": "bypass", "include": [{"ip": {"ip": "192.0.2.0/24"}}]},
        ),
        app(
            "payroll",
            "payroll.example.com",
            {
                "name": "CI",
                "decision": "non_identity",
                "include": [{"service_token": {"token_id": service_token_id}}],
            },
            {"name": "Finance", "decision": "allow", "include": [{"okta": {"name": "Finance"}}]},
        ),
    ]
    return doc


@dataclass
class Setup:
    app: Gateway
    client_id: str
    client_secret: str

    async def session(self, who: tuple[str, tuple[str, ...]], app_id: str = "wiki") -> str:
        """An app session for `who` on `app_id`, straight in the store; its cookie value."""
        rt = self.app.runtime
        assert rt is not None
        email, groups = who
        identity = Identity(
            id="nonce",
            user_uuid="uuid-" + email,
            sub="00u-" + email,
            name=email,
            email=email,
            groups=groups,
            idp_id=IDP_ID,
            idp_type="okta",
            iat=int(time.time()),
        )
        _, cookie = await rt.sessions.create(identity, kind="app", duration=3600, app_id=app_id)
        return cookie


@pytest_asyncio.fixture
async def setup(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Setup]:
    token, secret = await ServiceTokens(store).create("ci")
    settings = parse_settings(forward_auth_doc(upstream.url, token.id))
    async with running(create_app(settings, store=store)) as app:
        yield Setup(app, token.client_id, secret)


def peer(app: Gateway, address: str) -> httpx.AsyncClient:
    """A caller of the check at `address` (the gateway's own host name as the proxy uses it)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 41000)),
        base_url="http://gateway.internal:8000",
    )


@pytest_asyncio.fixture
async def proxy(setup: Setup) -> AsyncIterator[httpx.AsyncClient]:
    async with peer(setup.app, PROXY_ADDRESS) as client:
        yield client


async def ask(
    client: httpx.AsyncClient,
    host: str | None,
    uri: str | None,
    *,
    cookie: str = "",
    accept: str = HTML,
    method: str = "GET",
    **extra: str,
) -> httpx.Response:
    """What a front proxy sends for a request to `host` + `uri` (None leaves a header out);
    `extra` are more headers, underscores for dashes."""
    headers = {"Accept": accept, "X-Forwarded-For": CLIENT_ADDRESS}
    if host is not None:
        headers["X-Forwarded-Host"] = host
    if uri is not None:
        headers["X-Forwarded-Uri"] = uri
    if cookie:
        headers["Cookie"] = f"CF_Authorization={cookie}"
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return await client.request(method, "/cdn-cgi/access/authz", headers=headers)


def identity_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("cf-access-")}


# --- trust ----------------------------------------------------------------------------------


async def test_an_untrusted_caller_gets_the_same_403_whatever_it_asks(setup: Setup) -> None:
    alice = await setup.session(ALICE)
    answers = []
    async with peer(setup.app, CLIENT_ADDRESS) as stranger:
        for host, uri in [(WIKI_HOST, "/docs"), ("nowhere.example.com", "/"), (None, None)]:
            answers.append(await ask(stranger, host, uri, cookie=alice))
        # A forwarded chain that names a trusted proxy changes nothing: the direct peer decides.
        answers.append(
            await ask(stranger, WIKI_HOST, "/docs", cookie=alice, X_Forwarded_For=PROXY_ADDRESS)
        )
    assert {(r.status_code, r.text) for r in answers} == {(403, answers[0].text)}
    assert not any(identity_headers(r) or "location" in r.headers for r in answers)


async def test_an_untrusted_browser_cannot_ask_through_the_gateway_either(setup: Setup) -> None:
    alice = await setup.session(ALICE)
    async with browser(setup.app, WIKI) as client:
        client.cookies.set("CF_Authorization", alice, domain=WIKI_HOST)
        response = await client.get(
            "/cdn-cgi/access/authz", headers={"X-Forwarded-Host": WIKI_HOST}
        )
    assert response.status_code == 403
    assert not identity_headers(response)


# --- the decisions --------------------------------------------------------------------------


async def test_allowed_is_200_with_the_identity_headers_and_no_body(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    alice = await setup.session(ALICE)
    response = await ask(proxy, WIKI_HOST, "/docs/page?x=1", cookie=alice)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cf-access-authenticated-user-email"] == "alice@example.com"
    assert response.headers["cf-access-jwt-assertion"].count(".") == 2
    assert response.headers["cache-control"] == "no-store"


async def test_nginx_x_original_uri_is_read_too(setup: Setup, proxy: httpx.AsyncClient) -> None:
    alice = await setup.session(ALICE)
    allowed = await ask(proxy, WIKI_HOST, None, cookie=alice, X_Original_URI="/docs")
    denied = await ask(proxy, WIKI_HOST, None, cookie=alice, X_Original_URI="/admin")
    assert (allowed.status_code, denied.status_code) == (200, 403)


async def test_a_browser_without_a_session_gets_401_with_the_login_url_and_binding_cookie(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    response = await ask(proxy, "WIKI.example.com:443", "/docs/page?x=1")
    assert response.status_code == 401
    location = response.headers["location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        f"{TEAM}/cdn-cgi/access/login/{WIKI_HOST}"
    )
    query = parse_qs(parts.query)
    assert query["redirect_url"] == ["/docs/page?x=1"]
    rt = setup.app.runtime
    assert rt is not None
    assert query["kid"] == [rt.directory.match(WIKI_HOST, "/").aud]  # type: ignore[union-attr]
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith("CF_AppSession=") and "HttpOnly" in set_cookie
    binding = rt.bindings.unsign(set_cookie.partition("=")[2].partition(";")[0])
    assert binding and query["meta"] == [binding_hash(binding)]
    # A proxy that shows the answer as it is (Traefik, Caddy) still sends the browser on.
    assert 'http-equiv="refresh"' in response.text and len(response.content) < 1024
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers", [{"accept": "application/json"}, {"X_Requested_With": "XMLHttpRequest"}]
)
async def test_a_non_browser_without_a_session_gets_a_bare_401(
    proxy: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await ask(proxy, WIKI_HOST, "/docs", **headers)
    assert response.status_code == 401
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers


async def test_denied_is_a_short_403_not_the_page(setup: Setup, proxy: httpx.AsyncClient) -> None:
    bob = await setup.session(BOB)
    alice = await setup.session(ALICE)
    on_wiki = await ask(proxy, WIKI_HOST, "/docs", cookie=bob)
    on_admin = await ask(proxy, WIKI_HOST, "/admin/users", cookie=alice)
    for response in (on_wiki, on_admin):
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/plain")
        assert len(response.content) < 200
        assert not identity_headers(response)
    assert on_admin.text == "Wiki admin is for root."


async def test_the_path_is_matched_decoded_and_without_the_query(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    alice = await setup.session(ALICE)
    statuses = [
        (await ask(proxy, WIKI_HOST, uri, cookie=alice)).status_code
        for uri in ("/docs?next=/admin", "/admin?x=1", "/%61dmin/x", "/ADMIN")
    ]
    assert statuses == [200, 403, 403, 403]


async def test_a_session_for_another_app_host_does_not_fit(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    alice_on_payroll = await setup.session(ALICE, app_id="payroll")
    response = await ask(proxy, WIKI_HOST, "/docs", cookie=alice_on_payroll)
    assert response.status_code == 401


async def test_bypass_is_200_with_no_identity(setup: Setup, proxy: httpx.AsyncClient) -> None:
    alice = await setup.session(ALICE)
    for cookie in ("", alice):
        response = await ask(proxy, "status.example.com", "/", cookie=cookie)
        assert response.status_code == 200
        assert not identity_headers(response)


async def test_ip_rules_see_the_client_address_the_proxy_reports(
    proxy: httpx.AsyncClient,
) -> None:
    inside = await ask(proxy, "office.example.com", "/", X_Forwarded_For="192.0.2.5")
    outside = await ask(proxy, "office.example.com", "/", X_Forwarded_For="198.51.100.1")
    assert (inside.status_code, outside.status_code) == (200, 401)


async def test_service_tokens(setup: Setup, proxy: httpx.AsyncClient) -> None:
    good = {"CF_Access_Client_Id": setup.client_id, "CF_Access_Client_Secret": setup.client_secret}
    wrong = {**good, "CF_Access_Client_Secret": "0" * 64}
    admitted = await ask(proxy, "payroll.example.com", "/api/run", accept="*/*", **good)
    refused = await ask(proxy, "payroll.example.com", "/api/run", accept="*/*", **wrong)
    elsewhere = await ask(proxy, WIKI_HOST, "/docs", **good)
    # No user behind a service token: only the app token naming it (its common_name).
    assert admitted.status_code == 200
    assert set(identity_headers(admitted)) == {"cf-access-jwt-assertion"}
    assert refused.status_code == 401 and "location" not in refused.headers
    assert elsewhere.status_code == 403


async def test_a_host_no_app_covers_is_403(proxy: httpx.AsyncClient) -> None:
    response = await ask(proxy, "nowhere.example.com", "/")
    assert response.status_code == 403
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("host", "uri", "method"),
    [
        (None, "/docs", "GET"),
        ("", "/docs", "GET"),
        ("wiki.example.com/admin", "/docs", "GET"),
        ("wiki example.com", "/docs", "GET"),
        (WIKI_HOST, None, "GET"),
        (WIKI_HOST, "", "GET"),
        (WIKI_HOST, "docs", "GET"),
        (WIKI_HOST, "https://wiki.example.com/docs", "GET"),
        (WIKI_HOST, "/docs/../admin", "GET"),
        (WIKI_HOST, "/docs/%2e%2e/admin", "GET"),
        (WIKI_HOST, "/docs/%2E%2E/admin?x=1", "GET"),
        (WIKI_HOST, "/docs/./x", "GET"),
        (WIKI_HOST, "/docs\\..\\admin", "GET"),
        (WIKI_HOST, "/docs%5c..%5cadmin", "GET"),
        (WIKI_HOST, "/docs/..;/admin", "GET"),
        (WIKI_HOST, "/docs/%2e%2e;x/admin", "GET"),
        (WIKI_HOST, "/docs", "G T"),
    ],
)
async def test_a_missing_or_malformed_description_is_400(
    setup: Setup, proxy: httpx.AsyncClient, host: str | None, uri: str | None, method: str
) -> None:
    alice = await setup.session(ALICE)
    response = await ask(proxy, host, uri, cookie=alice, X_Forwarded_Method=method)
    assert response.status_code == 400
    assert not identity_headers(response)


async def test_a_uri_the_client_adds_beside_the_proxys_is_400(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    """nginx sets X-Original-URI and passes the client's headers on: a client-sent
    X-Forwarded-Uri must not choose the path that is judged."""
    response = await ask(proxy, WIKI_HOST, "/docs", X_Original_URI="/docs/other")
    assert response.status_code == 400
    same = await ask(proxy, WIKI_HOST, "/docs", X_Original_URI="/docs")
    assert same.status_code != 400
    only_original = await ask(proxy, WIKI_HOST, None, X_Original_URI="/docs")
    assert only_original.status_code != 400


async def test_a_description_header_sent_twice_is_400(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    """A proxy that appends its own X-Forwarded-Host after the client's: neither is believed."""
    headers = [
        ("Accept", HTML),
        ("X-Forwarded-For", CLIENT_ADDRESS),
        ("X-Forwarded-Host", "elsewhere.example.com"),  # the client's
        ("X-Forwarded-Host", WIKI_HOST),  # the proxy's
        ("X-Forwarded-Uri", "/docs"),
    ]
    response = await proxy.get("/cdn-cgi/access/authz", headers=headers)
    assert response.status_code == 400
    assert not identity_headers(response)


async def test_the_check_takes_any_method_and_reads_the_original_from_the_header(
    setup: Setup, proxy: httpx.AsyncClient
) -> None:
    alice = await setup.session(ALICE)
    for method in ("POST", "HEAD", "DELETE"):
        response = await ask(proxy, WIKI_HOST, "/docs", cookie=alice, method=method)
        assert response.status_code == 200, method
    with_header = await ask(proxy, WIKI_HOST, "/docs", cookie=alice, X_Forwarded_Method="PUT")
    assert with_header.status_code == 200


# --- a sign-in that a forward-auth 401 starts -----------------------------------------------


async def test_a_sign_in_started_by_the_401_completes_and_then_the_check_allows(
    setup: Setup, proxy: httpx.AsyncClient, okta: FakeOkta
) -> None:
    async with browser(setup.app, WIKI) as client:
        # The proxy asks with the browser's headers and hands the 401's cookie to the browser.
        first = await ask(proxy, WIKI_HOST, "/docs?x=1")
        name, _, rest = first.headers["set-cookie"].partition("=")
        client.cookies.set(name, rest.partition(";")[0], domain=WIKI_HOST)
        to_okta = await client.get(first.headers["location"])
        at_team = await client.get(okta.authorize(to_okta.headers["location"], "00ualice"))
        authorized = at_team.headers["location"]
        assert authorized.startswith(f"{WIKI}/cdn-cgi/access/authorized?")
        done = await client.get(authorized)  # the front proxy passes /cdn-cgi/access/ on
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/docs?x=1"
        session = client.cookies.get("CF_Authorization", domain=WIKI_HOST)
    assert session
    allowed = await ask(proxy, WIKI_HOST, "/docs?x=1", cookie=session)
    assert allowed.status_code == 200
    assert allowed.headers["cf-access-authenticated-user-email"] == "alice@example.com"


# --- proxy mode and forward-auth mode agree -------------------------------------------------

CASES = [
    (who, host, path, accept)
    for who in (None, "alice", "bob")
    for host, path in (
        (WIKI_HOST, "/docs"),
        (WIKI_HOST, "/admin/x"),
        ("status.example.com", "/"),
        ("payroll.example.com", "/"),
        ("office.example.com", "/"),
    )
    for accept in (HTML, "application/json")
]


@pytest.mark.parametrize(("who", "host", "path", "accept"), CASES)
async def test_proxy_mode_and_forward_auth_agree(
    setup: Setup,
    proxy: httpx.AsyncClient,
    upstream: EchoUpstream,
    who: str | None,
    host: str,
    path: str,
    accept: str,
) -> None:
    rt = setup.app.runtime
    assert rt is not None
    app = rt.directory.match(host, path)
    assert app is not None
    cookie = ""
    if who is not None:
        cookie = await setup.session(ALICE if who == "alice" else BOB, app_id=app.id)
    async with browser(setup.app, f"https://{host}") as client:
        headers = {"Accept": accept} | ({"Cookie": f"CF_Authorization={cookie}"} if cookie else {})
        proxied = await client.get(path, headers=headers)
    checked = await ask(proxy, host, path, cookie=cookie, accept=accept)

    if proxied.status_code == 200:
        assert checked.status_code == 200
        seen = upstream.requests[-1]["headers"]
        assert checked.headers.get("cf-access-authenticated-user-email") == seen.get(
            "cf-access-authenticated-user-email"
        )
    elif proxied.status_code == 302:
        assert checked.status_code == 401

        def without_meta(url: str) -> tuple[str, dict[str, list[str]]]:
            parts = urlsplit(url)
            query = parse_qs(parts.query)
            query.pop("meta")  # the hash of each answer's own fresh binding
            return parts._replace(query="").geturl(), query

        assert without_meta(checked.headers["location"]) == without_meta(
            proxied.headers["location"]
        )
        assert "CF_AppSession=" in checked.headers["set-cookie"]
    else:
        assert checked.status_code == proxied.status_code


async def test_the_check_s_log_line_says_what_was_decided_and_why(
    setup: Setup, proxy: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    bob = await setup.session(BOB)
    alice = await setup.session(ALICE)
    assert (await ask(proxy, WIKI_HOST, "/docs", cookie=bob)).status_code == 403
    assert (await ask(proxy, WIKI_HOST, "/docs", cookie=alice)).status_code == 200
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    fields = [
        (r.app, r.decision, r.email, bool(r.policy), bool(r.rule))  # type: ignore[attr-defined]
        for r in lines
    ]
    assert fields == [
        ("wiki", "deny", "bob@example.com", True, True),
        ("wiki", "allow", "alice@example.com", True, False),
    ]
