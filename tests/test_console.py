"""The console's framework (SPEC 9 "Access"): who gets in, CSRF, headers, static files."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from console_harness import ADMINS, console_doc, console_sign_in, post_form
from fake_okta import BASE, CLIENT_ID, CLIENT_SECRET, FakeOkta
from harness import COOKIE_SECRET, EchoUpstream, browser, running

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.console.routes import PAGES
from gateway.console.security import CONTENT_SECURITY_POLICY, csrf_token
from gateway.console.signin import console_path
from gateway.errors import ConfigError
from gateway.identity import user_uuid_for
from gateway.state.sessions import CookieSigner
from gateway.state.store import Store


def _url(path: str) -> str:
    """A concrete console URL for a page path: every parameter filled in."""
    return "/console" + re.sub(r"\{[^}]+\}", "x", path)


# Every page that needs admission, GET and POST alike, and a path no page has.
ADMITTED_ONLY = [
    *sorted({(p.method, _url(p.path)) for p in PAGES}),
    ("GET", "/console/no-such-page"),
    ("POST", "/console/no-such-page"),
]


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


async def test_a_policy_member_signs_in_to_the_console(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    first = await client.get("/console/")
    assert first.status_code == 401
    assert "/console/login?idp=okta-test" in first.text
    page = await console_sign_in(client, okta, "00ualice")
    assert page.status_code == 200, page.text
    for landmark in ("<header", "<nav", "<main"):
        assert landmark in page.text
    for item in ("Overview", "Login methods", "Applications", "Users", "Logs", "Risk", "Settings"):
        assert f">{item}</a>" in page.text
    assert "alice@example.com" in page.text


async def test_an_admin_whom_scim_deactivated_cannot_sign_in_to_the_console(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    """The console's sign-in refuses a deactivated person as an app's does, and it counts."""
    assert gateway.runtime is not None
    facts = {"id": "scim-1", "userName": "alice@example.com", "active": False}
    await gateway.runtime.registry.provisioned("okta-test", facts)
    to_okta = await client.get("/console/login?idp=okta-test&next=/console/")
    refused = await client.get(okta.authorize(to_okta.headers["location"], "00ualice"))
    assert refused.status_code == 403
    assert "deactivated" in refused.text
    assert "CF_Authorization" not in refused.headers.get("set-cookie", "")
    assert (await client.get("/console/")).status_code == 401
    alice = user_uuid_for("okta-test", "00ualice")
    assert await gateway.runtime.risk.level(alice) == "high"


async def test_bob_gets_403_on_every_console_url(client: httpx.AsyncClient, okta: FakeOkta) -> None:
    page = await console_sign_in(client, okta, "00ubob")
    assert page.status_code == 403
    assert "bob@example.com may not use the gateway console" in page.text
    # his own session's token, from the gateway's origin: still refused, before any page runs
    token = _token_of(client)
    for method, url in ADMITTED_ONLY:
        if method == "GET":
            answer = await client.get(url)
        else:
            answer = await post_form(client, url, {"name": "x"}, csrf=token)
        assert answer.status_code == 403, (method, url, answer.text)
        assert "may not use the gateway console" in answer.text
        assert "text/html" in answer.headers["content-type"]


def _token_of(client: httpx.AsyncClient) -> str:
    """The CSRF token of the client's console session, as the console would make it."""
    cookie = client.cookies.get("CF_Authorization")
    assert cookie is not None
    session_id = CookieSigner((COOKIE_SECRET,), "gateway.session").unsign(cookie)
    assert session_id is not None
    return csrf_token((COOKIE_SECRET,), session_id)


async def test_without_a_session_a_get_is_the_sign_in_page_and_a_post_a_403(
    client: httpx.AsyncClient,
) -> None:
    for method, url in ADMITTED_ONLY:
        if method == "GET":
            answer = await client.get(url)
            assert answer.status_code == 401, url
            assert "Sign in to the console" in answer.text
        else:
            answer = await post_form(client, url, {}, csrf="0" * 64)
            assert answer.status_code == 403, url


async def test_no_policy_admits_nobody(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    settings = parse_settings(console_doc(upstream.url, policy=None))
    async with running(create_app(settings, store=store)) as app, browser(app) as client:
        page = await console_sign_in(client, okta, "00ualice")
        assert page.status_code == 403
        assert (await client.get("/console/settings")).status_code == 403


def test_a_console_policy_is_checked_like_an_app_policy(upstream: EchoUpstream) -> None:
    doc = console_doc(upstream.url, policy={"include": [{"grop": {}}], "decision": "deny"})
    with pytest.raises(ConfigError) as caught:
        parse_settings(doc)
    assert "console.policy.include[0]: unknown rule 'grop'" in caught.value.problems
    assert "console.policy.decision: unknown key" in caught.value.problems
    with pytest.raises(ConfigError) as empty:
        parse_settings(console_doc(upstream.url, policy={"include": []}))
    assert empty.value.problems == ["console.policy.include: needs at least one rule"]


async def test_every_console_page_sends_the_security_headers(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    await console_sign_in(client, okta, "00ualice")
    gets = [url for method, url in ADMITTED_ONLY if method == "GET" and "/x" not in url]
    answers = [await client.get(url) for url in gets]
    answers += [await client.get(f"/console/static/{name}") for name in ("console.css", "x")]
    answers.append(await client.get("/console/link?token=x"))
    await client.get("/cdn-cgi/access/logout")
    answers.append(await client.get("/console/"))
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY, answer.url
        assert "unsafe-inline" not in csp
        assert "script-src 'self'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    # no inline script, style or handler for the CSP to refuse
    for answer in answers:
        if "text/html" in answer.headers["content-type"]:
            assert not re.search(r"<script>|<style|style=| on[a-z]+=", answer.text), answer.url


async def test_static_files_come_from_the_package(client: httpx.AsyncClient) -> None:
    script = await client.get("/console/static/console.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "data-copy" in script.text
    assert (await client.get("/console/static/%2e%2e%2fapp.py")).status_code in (400, 404)
    assert (await client.get("/console/static/nothing.js")).status_code == 404


async def test_signing_out_of_the_gateway_signs_out_of_the_console(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    page = await console_sign_in(client, okta, "00ualice")
    assert page.status_code == 200
    cookie = client.cookies.get("CF_Authorization")
    assert "/cdn-cgi/access/logout" in page.text
    await client.get("/cdn-cgi/access/logout")
    assert (await client.get("/console/")).status_code == 401
    # the old cookie, kept by an attacker or another tab, is revoked too
    client.cookies.set("CF_Authorization", cookie or "", domain="access.example.com")
    assert (await client.get("/console/")).status_code == 401


async def test_the_console_is_the_team_hosts_only(gateway: Gateway, okta: FakeOkta) -> None:
    async with browser(gateway, "https://wiki.example.com") as wiki:
        answer = await wiki.get("/console/")
    # on an app host the path is the app's: the sign-in redirect, never the console
    assert answer.status_code == 302
    assert "/cdn-cgi/access/login/" in answer.headers["location"]


async def test_console_sign_ins_are_in_the_access_log(
    gateway: Gateway, okta: FakeOkta, api: httpx.AsyncClient
) -> None:
    async with browser(gateway) as alice, browser(gateway) as bob:
        await console_sign_in(alice, okta, "00ualice")
        await console_sign_in(bob, okta, "00ubob")
    entries = (await api.get("/api/logs/access")).json()["result"]
    assert [(e["app"], e["email"], e["decision"], e["kind"]) for e in entries] == [
        ("console", "bob@example.com", "deny", "sign_in"),
        ("console", "alice@example.com", "allow", "sign_in"),
    ]
    assert entries[0]["rule"] == "not admitted by [console.policy]"


async def test_a_deleted_login_method_no_longer_opens_the_console(
    client: httpx.AsyncClient, okta: FakeOkta, api: httpx.AsyncClient
) -> None:
    idp = {
        "name": "Second Okta",
        "type": "okta",
        "config": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "okta_account": BASE},
    }
    idp_id = (await api.post("/api/identity_providers", json=idp)).json()["result"]["id"]
    assert (await console_sign_in(client, okta, "00ualice", idp_id)).status_code == 200
    assert (await api.delete(f"/api/identity_providers/{idp_id}")).is_success
    assert (await client.get("/console/")).status_code == 403


def test_a_sign_in_returns_only_to_a_console_page() -> None:
    assert console_path("/console/settings") == "/console/settings"
    for elsewhere in ("/api/users", "//evil.example/console/", "/console/../api", None, ""):
        assert console_path(elsewhere) == "/console/"
    assert console_path("/console/\\evil") == "/console/"


async def test_a_console_policy_judges_the_admins_risk_level(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    """A `user_risk_score` rule of `[console.policy]` sees the admin's level now, as an app's
    policy does: an admin whose risk turned high is refused on their next console request."""
    policy = {**ADMINS, "require": [{"user_risk_score": {"user_risk_score": ["low"]}}]}
    settings = parse_settings(console_doc(upstream.url, policy=policy))
    async with running(create_app(settings, store=store)) as app, browser(app) as client:
        assert app.runtime is not None
        assert (await console_sign_in(client, okta, "00ualice")).status_code == 200
        alice = user_uuid_for("okta-test", "00ualice")
        for _ in range(10):
            await app.runtime.risk.sign_in_failed(alice, "alice@example.com", "okta-test", "x")
        assert await app.runtime.risk.level(alice) != "low"
        refused = await client.get("/console/settings")
        assert refused.status_code == 403
        assert "may not use the gateway console" in refused.text
        # signing in again is refused too, and the access log says so
        assert (await console_sign_in(client, okta, "00ualice")).status_code == 403
        latest = (await app.runtime.access_log.entries(1))[0]
        assert (latest["app"], latest["decision"]) == ("console", "deny")
