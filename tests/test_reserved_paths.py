"""The gateway's own paths (SPEC 4, `web/routes.py`) and everything else.

Each gateway route answers on its hosts, in its own format. Every other path, however close its
name, belongs to the app that covers the host, on the team host too (a single-host deployment:
the harness's `team-app` covers `access.example.com/*`): the guard and the app's policy decide,
and the upstream is reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from admin_harness import AUTH, admin_doc, assert_failure
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, WIKI, EchoUpstream, browser, running, sign_in

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.store.memory import MemoryStore
from gateway.web.routes import gateway_routes

UNCOVERED = "https://203.0.113.9"  # an address no app covers: probes reach their instance
SCIM_USERS = f"/populations/{IDP_ID}/scim/v2/Users"
TEAM_DENY = "Ask #it-help for access."  # team-app's deny page

# The team-host-only routes and the probes: on an app host, the app's paths.
TEAM_ROUTES = [
    "/test-idp",
    "/api",
    "/api/openapi.json",
    SCIM_USERS,
    "/.well-known/ssf-configuration",
    "/healthz",
    "/readyz",
    "/metrics",
]
# One letter, a suffix or a segment away from a gateway route: the app's, on every host.
NEAR_MISSES = [
    "/healthzone",
    "/healthz/deep",
    "/readyzz",
    "/metrics-dashboard",
    "/metrics/app",
    "/test-idp-notes",
    "/test-idp/x",
    "/apix",
    "/api-docs",
    "/populationsfoo",
    "/populations-x/scim/v2/Users",
    "/cdn-cgi",
    "/cdn-cgi/accessx",
    "/cdn-cgi/access-log",
    "/cdn-cgi/other/x",
    "/.well-known/ssf-configurations",
    "/.well-known/openid-configuration",
]


@pytest_asyncio.fixture
async def app(upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    settings = parse_settings(admin_doc(upstream.url))
    async with running(create_app(settings, store=MemoryStore())) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def signed_in(app: Gateway, okta: FakeOkta, sub: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser with a team-host session (the team-host app's session too)."""
    async with browser(app) as client:
        await sign_in(client, okta, sub, url="/")
        yield client


async def follow(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET `url`, following the gateway's redirects (a signed-in browser needs no Okta)."""
    response = await client.get(url)
    for _ in range(5):
        if response.status_code != 302:
            return response
        response = await client.get(str(response.url.join(response.headers["location"])))
    raise AssertionError(f"redirect loop from {url}")


def assert_the_apps(response: httpx.Response, upstream: EchoUpstream, path: str) -> None:
    """The upstream answered, and saw this very path."""
    assert response.status_code == 200, (path, response.status_code, response.text[:200])
    assert response.json()["path_qs"] == path
    assert upstream.requests[-1]["path_qs"] == path


# --- gateway routes on their hosts ----------------------------------------------------------


@pytest.mark.parametrize("base", [TEAM, WIKI, UNCOVERED])
async def test_the_access_paths_answer_on_every_host(
    app: Gateway, upstream: EchoUpstream, base: str
) -> None:
    async with browser(app, base) as client:
        certs = await client.get("/cdn-cgi/access/certs")
        assert certs.status_code == 200 and certs.json()["keys"]
        identity = await client.get("/cdn-cgi/access/get-identity")
        assert identity.status_code == 401 and identity.json() == {"err": "no session"}
        # The whole prefix is reserved, the mount's own path included.
        for path in ("/cdn-cgi/access/nowhere", "/cdn-cgi/access"):
            assert (await client.get(path)).status_code == 404, path
    assert upstream.requests == []


@pytest.mark.parametrize("base", [TEAM, UNCOVERED])
async def test_the_probes_answer_on_the_team_host_and_hosts_no_app_covers(
    app: Gateway, upstream: EchoUpstream, base: str
) -> None:
    async with browser(app, base) as client:
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get("/readyz")).text == "ready"
        metrics = await client.get("/metrics", headers=AUTH)
        assert metrics.status_code == 200 and "gateway_requests_total" in metrics.text
        assert (await client.get("/metrics")).status_code == 401
    assert upstream.requests == []


async def test_the_team_routes_answer_on_the_team_host_in_their_formats(
    app: Gateway, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with browser(app) as client:
        test = await client.get(f"/test-idp?idp={IDP_ID}")
        assert test.status_code == 302
        assert test.headers["location"].startswith(okta.authorization_endpoint)
        openapi = await client.get("/api/openapi.json")
        assert openapi.status_code == 200 and openapi.json()["openapi"]
        # A mount covers its own path: `/api` is the admin API's, in its envelope.
        assert_failure(await client.get("/api"), 401, "unauthorized")
        assert_failure(await client.get("/api", headers=AUTH), 404, "no_route")
        ssf = await client.get("/.well-known/ssf-configuration")
        assert ssf.status_code == 200 and ssf.json()["issuer"] == TEAM
        scim = await client.get(SCIM_USERS)  # SCIM is not enabled for this IdP
        assert scim.status_code == 404
        assert scim.headers["content-type"] == "application/scim+json"
    assert upstream.requests == []


@pytest.mark.parametrize("base", [TEAM, WIKI])
async def test_an_ambiguous_path_is_refused_in_the_format_of_the_route_it_names(
    app: Gateway, upstream: EchoUpstream, base: str
) -> None:
    async with browser(app, base) as client:
        assert_failure(await client.get("/api/%2E%2E/apps", headers=AUTH), 400, "invalid_path")
        scim = await client.get(f"/populations/{IDP_ID}/scim/v2/%2E%2E/Users")
        assert scim.status_code == 400
        assert scim.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        for near_miss in ("/apix/%2E%2E", "/populationsfoo/%2E%2E", "/cdn-cgi/accessx/%2E"):
            plain = await client.get(near_miss)
            assert plain.status_code == 400, near_miss
            assert plain.text == "Bad request: invalid host or path."
    assert upstream.requests == []


# --- every other path is the app's ----------------------------------------------------------


async def test_team_routes_on_an_app_host_reach_the_app(
    app: Gateway, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with signed_in(app, okta, "00ualice") as alice:
        for path in TEAM_ROUTES:
            assert_the_apps(await follow(alice, f"{WIKI}{path}"), upstream, path)
    async with signed_in(app, okta, "00ubob") as bob:  # not in Engineering
        for path in TEAM_ROUTES:
            denied = await follow(bob, f"{WIKI}{path}")
            assert denied.status_code == 403, path


async def test_near_misses_on_the_team_host_reach_the_policy_and_the_upstream(
    app: Gateway, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with browser(app) as anonymous:
        for path in NEAR_MISSES:
            to_login = await anonymous.get(path)
            assert to_login.status_code == 302, path
            assert to_login.headers["location"].startswith(f"{TEAM}/cdn-cgi/access/login/")
    async with signed_in(app, okta, "00ubob") as bob:
        for path in NEAR_MISSES:
            denied = await bob.get(path)
            assert denied.status_code == 403 and TEAM_DENY in denied.text, path
    assert upstream.requests == []
    async with signed_in(app, okta, "00ualice") as alice:
        for path in NEAR_MISSES:
            assert_the_apps(await alice.get(path), upstream, path)
    assert [seen["path_qs"] for seen in upstream.requests] == NEAR_MISSES


async def test_near_misses_on_an_app_host_reach_the_app(
    app: Gateway, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with signed_in(app, okta, "00ualice") as alice:
        for path in NEAR_MISSES:
            assert_the_apps(await follow(alice, f"{WIKI}{path}"), upstream, path)


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/healthz", "healthz"),
        ("/healthz/", None),
        ("/api", "admin"),
        ("/api/", "admin"),
        ("/api/apps/x", "admin"),
        ("/apix", None),
        ("/populations", "scim"),
        ("/populations/x/scim/v2/Users", "scim"),
        ("/cdn-cgi/access/login/wiki.example.com", "access"),
        ("/cdn-cgi/accessx/login", None),
        ("/", None),
        ("", None),
        ("*", None),
    ],
)
def test_a_path_is_a_routes_when_equal_or_below_a_mount_at_a_slash(
    path: str, name: str | None
) -> None:
    route = gateway_routes().match(path)
    assert (route.name if route else None) == name


def test_every_starlette_route_lies_within_its_gateway_route() -> None:
    # Dispatch reaches the Starlette app only for the table's paths: a route outside would
    # never answer.
    for route in gateway_routes().routes:
        assert route.serve, route.path
        for served in route.serve:
            assert route.covers(getattr(served, "path", route.path)), (route.path, served)
