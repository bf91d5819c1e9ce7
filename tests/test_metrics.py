"""`/metrics`: what a scripted sign-in and a few requests leave in the Prometheus exposition.

The gateway runs whole, in process, with the fake Okta and a real upstream on a socket; the
exposition is read back with prometheus-client's own parser, so the assertions are on samples,
not on text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from clock import FakeClock
from fake_okta import FakeOkta
from harness import (
    IDP_ID,
    TEAM,
    WIKI,
    EchoUpstream,
    browser,
    free_port,
    running,
    settings_doc,
    sign_in,
    sign_in_everywhere,
)
from prometheus_client.parser import text_string_to_metric_families
from scim_harness import create_user, deactivate, new_secret, okta_client

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.ops.metrics import LiveSessions, Metrics, idp_endpoint, scim_outcome
from gateway.state.store import Store

ADMIN_TOKEN = "metrics-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def metrics_doc(upstream: str, admin_token: str = ADMIN_TOKEN, **idp: Any) -> dict[str, Any]:
    doc = settings_doc(upstream, **idp)
    doc["gateway"]["admin_token"] = admin_token
    return doc


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    """The shared fixture's gateway, with an admin token for `/metrics`."""
    async with running(create_app(parse_settings(metrics_doc(upstream.url)), store=store)) as app:
        yield app


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- the scripted sign-in -------------------------------------------------------------------


async def test_a_sign_in_and_requests_show_in_the_metrics(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    done = await sign_in(client, okta, "00ualice")
    assert done.status_code == 302
    for _ in range(3):
        assert (await client.get("/docs/page")).status_code == 200
    xhr = await client.get("/docs/page", headers={"X-Requested-With": "XMLHttpRequest"})
    assert xhr.status_code == 200  # signed in: XHR too
    async with browser(gateway) as stranger:
        assert (await stranger.get("/docs/page", headers={"Accept": "*/*"})).status_code == 401

    samples = await scrape(client)

    # sign-ins by IdP and outcome, and how long the callback took
    assert value(samples, "gateway_signins_total", idp=IDP_ID, outcome="success", step="") == 1
    assert value(samples, "gateway_signin_duration_seconds_count", idp=IDP_ID) == 1
    assert value(samples, "gateway_signin_duration_seconds_sum", idp=IDP_ID) > 0
    # requests by app, decision and status
    requests = "gateway_requests_total"
    assert value(samples, requests, app="team-app", decision="allow", status="200") == 4
    # the first visit, sent to sign in; and the stranger's 401
    assert value(samples, requests, app="team-app", decision="unauthenticated", status="302") == 1
    assert value(samples, requests, app="team-app", decision="unauthenticated", status="401") == 1
    # the gateway's own routes: login (to Okta) and the callback (to the app)
    assert value(samples, requests, app="", decision="gateway", status="302") == 2
    # the proxied requests' latency histogram and the upstream calls
    histogram = "gateway_proxy_request_duration_seconds"
    assert value(samples, f"{histogram}_count", app="team-app") == 4
    assert value(samples, f"{histogram}_bucket", app="team-app", le="+Inf") == 4
    assert value(samples, f"{histogram}_sum", app="team-app") > 0
    assert len(upstream.requests) == 4
    # the calls to Okta, by endpoint
    for endpoint in ("discovery", "token", "jwks"):
        assert value(samples, "gateway_idp_requests_total", endpoint=endpoint, status="2xx") == 1
    # one global session, live
    assert value(samples, "gateway_sessions_created_total", kind="global") == 1
    assert value(samples, "gateway_sessions_active") == 1
    # and the process collectors of the dedicated registry
    assert value(samples, "process_cpu_seconds_total") > 0

    await client.get("/cdn-cgi/access/logout")
    samples = await scrape(client)
    assert value(samples, "gateway_sessions_revoked_total") == 1
    assert value(samples, "gateway_sessions_active") == 0


async def test_a_denied_user_and_a_failed_sign_in_are_counted(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    await sign_in(client, okta, "00ubob")  # Sales: the Engineering-only app says no
    assert (await client.get("/docs/page")).status_code == 403

    async with browser(gateway) as other:
        okta.answer("token", FakeOkta.oauth_error(500, "server_error", "Okta is down"))
        assert (await sign_in(other, okta, "00ualice")).status_code == 502

    samples = await scrape(client)
    requests = "gateway_requests_total"
    assert value(samples, requests, app="team-app", decision="deny", status="403") == 1
    signins = "gateway_signins_total"
    assert value(samples, signins, idp=IDP_ID, outcome="success", step="") == 1
    assert value(samples, signins, idp=IDP_ID, outcome="failure", step="token") == 1
    assert value(samples, "gateway_signin_duration_seconds_count", idp=IDP_ID) == 2
    idp_errors = "gateway_idp_request_errors_total"
    assert value(samples, idp_errors, endpoint="token", reason="server_error") == 1
    assert value(samples, "gateway_idp_requests_total", endpoint="token", status="5xx") == 1
    assert upstream.requests == []


async def test_a_replayed_callback_is_a_failure_at_the_state_step(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    await client.get("/cdn-cgi/access/callback?code=abc&state=never-issued")
    samples = await scrape(client)
    assert value(samples, "gateway_signins_total", idp="", outcome="failure", step="state") == 1


async def test_okta_timeouts_are_counted_as_errors(
    client: httpx.AsyncClient, okta: FakeOkta
) -> None:
    okta.answer("discovery", httpx.ConnectTimeout)
    response = await client.get("/docs/page")
    assert (await client.get(response.headers["location"])).status_code == 504
    samples = await scrape(client)
    assert value(samples, "gateway_idp_requests_total", endpoint="discovery", status="error") == 1
    errors = "gateway_idp_request_errors_total"
    assert value(samples, errors, endpoint="discovery", reason="timeout") == 1


async def test_an_unreachable_upstream_is_an_upstream_error(store: Store, okta: FakeOkta) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(parse_settings(metrics_doc(closed)), store=store)
    async with running(app), browser(app) as client:
        await sign_in(client, okta, "00ualice")
        assert (await client.get("/docs/page")).status_code == 502
        samples = await scrape(client)
    requests = "gateway_requests_total"
    assert value(samples, requests, app="team-app", decision="allow", status="502") == 1
    errors = "gateway_upstream_errors_total"
    assert value(samples, errors, app="team-app", reason="unreachable") == 1
    assert value(samples, "gateway_proxy_request_duration_seconds_count", app="team-app") == 1


async def test_scim_requests_are_counted_by_outcome(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{TEAM}/populations/{IDP_ID}/scim/v2/Users")
    assert response.status_code >= 400  # no SCIM secret sent
    samples = await scrape(client)
    outcome = scim_outcome(response.status_code)
    assert value(samples, "gateway_scim_requests_total", outcome=outcome) == 1


ENDINGS = (
    "sign-out",
    "admin revoke_user",
    "SCIM deactivate",
    "Universal Logout",
    "back-channel sid",
    "back-channel sub",
)


async def end_alices_sessions(
    ending: str, app: Gateway, laptop: httpx.AsyncClient, okta: FakeOkta
) -> httpx.Response:
    """Alice's sessions end by her laptop's sign-out, the admin API, SCIM, or Okta's logout
    pushes: a back-channel logout token naming her laptop's sid ends only the laptop's."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEAM) as team:
        if ending == "sign-out":
            return await laptop.get(f"{TEAM}/cdn-cgi/access/logout")
        if ending == "admin revoke_user":
            return await team.post(
                "/api/revoke_user", json={"email": "alice@example.com"}, headers=BEARER
            )
        if ending == "SCIM deactivate":
            async with okta_client(app, await new_secret(app)) as scim:
                user = await create_user(scim)
                return await scim.patch(f"/Users/{user['id']}", json=deactivate())
        if ending == "Universal Logout":
            path = f"/cdn-cgi/access/global-token-revocation/{IDP_ID}"
            return await team.post(
                path,
                json={"sub_id": {"format": "email", "email": "alice@example.com"}},
                headers={"Authorization": f"Bearer {okta.universal_logout_token(TEAM + path)}"},
            )
        sid = {"sid": "sid-laptop"} if ending == "back-channel sid" else {}
        return await team.post(
            f"/cdn-cgi/access/backchannel-logout/{IDP_ID}",
            data={"logout_token": okta.logout_token(sub="00ualice", **sid)},
        )


@pytest.mark.parametrize("ending", ENDINGS)
async def test_every_way_sessions_end_takes_exactly_them_off_the_active_gauge(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, ending: str
) -> None:
    """Alice on her laptop and her phone (two Okta sessions), Carol: two sessions each (the
    global one, the wiki's). What ends on this instance leaves the gauge at once, and only that."""
    doc = metrics_doc(upstream.url, backchannel_logout=True, universal_logout=True)
    doc["identity_providers"][0]["scim_config"] = {"enabled": True, "user_deprovision": True}
    okta.add_user("00ucarol", "carol@example.com", "Carol Example", ["Engineering"])
    people = (("00ualice", "sid-laptop"), ("00ualice", "sid-phone"), ("00ucarol", "sid-carol"))
    async with (
        running(create_app(parse_settings(doc), store=store)) as app,
        browser(app, WIKI) as laptop,
        browser(app, WIKI) as phone,
        browser(app, WIKI) as carol,
        browser(app) as team,
    ):
        for person, (sub, sid) in zip((laptop, phone, carol), people, strict=True):
            okta.id_token_claims["sid"] = sid
            await sign_in_everywhere(person, okta, sub)
        assert value(await scrape(team), "gateway_sessions_active") == 6

        answer = await end_alices_sessions(ending, app, laptop, okta)
        assert answer.is_success or answer.is_redirect, answer.text

        samples = await scrape(team)
    ended = 2 if ending == "back-channel sid" else 4  # the laptop's, or all of Alice's
    assert value(samples, "gateway_sessions_revoked_total") == ended
    assert value(samples, "gateway_sessions_active") == 6 - ended


# --- who may read them ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
    ],
)
async def test_metrics_need_the_admin_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "gateway_requests_total" not in response.text


async def test_without_an_admin_token_there_are_no_metrics(
    store: Store, upstream: EchoUpstream
) -> None:
    app = create_app(parse_settings(metrics_doc(upstream.url, admin_token="")), store=store)
    async with running(app), browser(app) as client:
        response = await client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 404


async def test_metrics_are_served_to_a_probe_by_address(client: httpx.AsyncClient) -> None:
    response = await client.get("http://10.0.0.5:8000/metrics", headers=BEARER)
    assert response.status_code == 200


async def test_each_gateway_has_its_own_registry(store: Store, upstream: EchoUpstream) -> None:
    settings = parse_settings(metrics_doc(upstream.url))
    first, second = create_app(settings, store=store), create_app(settings, store=store)
    async with running(first), running(second), browser(first) as client, browser(second) as other:
        await client.get("/healthz")
        await client.get("/healthz")
        mine, theirs = await scrape(client), await scrape(other)
    healthz = {"app": "", "decision": "gateway", "status": "200"}
    assert value(mine, "gateway_requests_total", **healthz) == 2
    assert value(theirs, "gateway_requests_total", **healthz) == 0


# --- the pieces -----------------------------------------------------------------------------


def test_live_sessions_end_by_expiry_and_by_revocation() -> None:
    clock = FakeClock()
    live = LiveSessions(clock)
    live.add("alice-global", clock() + 100)
    live.add("alice-wiki", clock() + 10)
    live.add("bob-wiki", clock() + 100)
    live.add("bob-grafana", clock() + 100)
    assert live.count() == 4
    clock.advance(11)
    assert live.count() == 3  # alice's wiki session expired
    live.drop(["bob-wiki", "alice-wiki"])  # the wiki's sessions revoked (alice's had expired)
    assert live.count() == 2
    live.drop(["alice-global"])  # one session ended: bob's stays
    assert live.count() == 1
    live.drop(["made-by-another-instance"])
    clock.advance(100)
    assert live.count() == 0


def test_request_children_are_made_once_per_label_set() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.request_done("wiki", "allow", 200, 0.01, forwarded=True)
    metrics.request_done("wiki", "deny", 403, 0.001, forwarded=False)
    text = metrics.render().decode()
    assert 'gateway_requests_total{app="wiki",decision="allow",status="200"} 3.0' in text
    assert 'gateway_requests_total{app="wiki",decision="deny",status="403"} 1.0' in text
    assert 'gateway_proxy_request_duration_seconds_count{app="wiki"} 3.0' in text


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://dev-1.okta.com/.well-known/openid-configuration", "discovery"),
        ("https://dev-1.okta.com/oauth2/default/.well-known/openid-configuration", "discovery"),
        ("https://dev-1.okta.com/oauth2/v1/keys", "jwks"),
        ("https://dev-1.okta.com/oauth2/aus1/v1/token", "token"),
        ("https://dev-1.okta.com/oauth2/v1/userinfo", "userinfo"),
        ("https://dev-1.okta.com/api/v1/users/00u1/groups?after=x", "groups_api"),
        ("https://sso.example.com/protocol/openid-connect/certs", "jwks"),
        ("https://sso.example.com/authorize", "other"),
    ],
)
def test_idp_endpoints_are_named_from_their_paths(url: str, endpoint: str) -> None:
    assert idp_endpoint(httpx.URL(url)) == endpoint


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "success"),
        (204, "success"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (409, "conflict"),
        (400, "client_error"),
        (404, "client_error"),
        (503, "unavailable"),
        (500, "server_error"),
    ],
)
def test_scim_outcomes(status: int, outcome: str) -> None:
    assert scim_outcome(status) == outcome
