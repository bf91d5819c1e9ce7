"""Every kind of access decision, as the request's log line and the request metrics name it.

`guard.decide` returns a verdict (`authz/verdict.py`) whose label is both the access line's
`decision` and the `decision` label of `gateway_requests_total`. One test per kind: each makes
one request to a protected app and reads back the one access line it left and the one request
the metrics counted (scraped from `/metrics`, as Prometheus would).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from harness import IDP_ID, TEAM, EchoUpstream, browser, free_port, running, settings_doc
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, create_app
from gateway.authz.service_tokens import ServiceTokens
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.ops.logs import JSONFormatter
from gateway.state.sessions import CookieSigner
from gateway.state.store import Store
from gateway.state.store.redis import RedisStore

ADMIN_TOKEN = "decisions-admin-token-0123456789"
TEAM_HOST = TEAM.removeprefix("https://")
OFFICE_LAN = "203.0.113.0/24"  # holds the address of harness.browser
SCRIPT = {"Accept": "*/*"}  # a client that is not a browser


def decisions_doc(upstream: str, service_token_id: str) -> dict[str, Any]:
    """The harness apps (team-app: Engineering only), and one app per policy decision."""
    doc = settings_doc(upstream)
    doc["gateway"]["admin_token"] = ADMIN_TOKEN

    def app(app_id: str, *policies: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": app_id,
            "name": app_id.title(),
            "domain": f"{app_id}.example.com",
            "upstream": upstream,
            "policies": list(policies),
        }

    doc["apps"] += [
        app("status", {"name": "Public", "decision": "bypass", "include": [{"everyone": {}}]}),
        app(
            "office",
            {"name": "LAN", "decision": "non_identity", "include": [{"ip": {"ip": OFFICE_LAN}}]},
        ),
        app(
            "payroll",
            {
                "name": "CI",
                "decision": "non_identity",
                "include": [{"service_token": {"token_id": service_token_id}}],
            },
        ),
        app(
            "vault",
            {
                "name": "No contractors",
                "decision": "deny",
                "include": [{"group_name": {"name": "Contractors"}}],
            },
            {"name": "Staff", "decision": "allow", "include": [{"everyone": {}}]},
        ),
    ]
    return doc


@dataclass
class Served:
    app: Gateway
    upstream: EchoUpstream
    client_id: str  # the service token payroll admits
    secret: str
    other_client_id: str  # a valid service token no policy admits
    other_secret: str

    async def cookie(self, email: str, groups: tuple[str, ...], app_id: str = "") -> str:
        """A global session for `email` (an app session for `app_id`), straight in the store;
        its cookie value."""
        rt = self.app.runtime
        assert rt is not None
        identity = Identity(
            id="nonce",
            user_uuid=user_uuid(email),
            sub="00u-" + email,
            name=email,
            email=email,
            groups=groups,
            idp_id=IDP_ID,
            idp_type="okta",
            iat=int(time.time()),
        )
        if app_id:
            _, cookie = await rt.sessions.create(identity, kind="app", duration=3600, app_id=app_id)
        else:
            _, cookie = await rt.sessions.create(identity, kind="global", duration=3600)
        return cookie


def user_uuid(email: str) -> str:
    return "uuid-" + email


@pytest_asyncio.fixture
async def served(store: Store, upstream: EchoUpstream) -> AsyncIterator[Served]:
    tokens = ServiceTokens(store)
    ci, secret = await tokens.create("ci")
    other, other_secret = await tokens.create("other")
    settings = parse_settings(decisions_doc(upstream.url, ci.id))
    async with running(create_app(settings, store=store)) as app:
        yield Served(app, upstream, ci.client_id, secret, other.client_id, other_secret)


def access_line(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """The one request line logged, as the gateway writes it."""
    formatter = JSONFormatter()
    [line] = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "gateway.access"]
    return line


async def requests_counted(app: Gateway) -> dict[tuple[str, str, str], float]:
    """`gateway_requests_total` by (app, decision, status), scraped from `/metrics`."""
    async with browser(app) as scraper:
        response = await scraper.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    return {
        (sample.labels["app"], sample.labels["decision"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "gateway_requests_total"
    }


async def assert_decision(
    app: Gateway,
    caplog: pytest.LogCaptureFixture,
    app_id: str,
    decision: str,
    status: int,
    user: str = "",
) -> None:
    """The request was logged and counted, once, with this app, decision and status."""
    line = access_line(caplog)
    assert (line["app"], line["decision"], line["status"], line["user_uuid"]) == (
        app_id,
        decision,
        status,
        user,
    )
    assert await requests_counted(app) == {(app_id, decision, str(status)): 1.0}


async def get(served: Served, origin: str, cookie: str = "", **headers: str) -> httpx.Response:
    """A browser's GET of `/docs` at `origin` with a session cookie for the team host and more
    `headers` (underscores for dashes)."""
    async with browser(served.app, origin) as client:
        if cookie:
            client.cookies.set("CF_Authorization", cookie, domain=origin.removeprefix("https://"))
        return await client.get(
            "/docs", headers={name.replace("_", "-"): value for name, value in headers.items()}
        )


# --- forwarded ------------------------------------------------------------------------------


async def test_a_user_the_policies_admit_is_allow(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await served.cookie("alice@example.com", ("Engineering",))
    response = await get(served, TEAM, alice)
    assert response.status_code == 200
    assert response.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
    await assert_decision(
        served.app, caplog, "team-app", "allow", 200, user_uuid("alice@example.com")
    )


async def test_a_bypass_policy_is_bypass(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    response = await get(served, "https://status.example.com")
    assert response.status_code == 200
    assert "cf-access-jwt-assertion" not in response.json()["headers"]
    await assert_decision(served.app, caplog, "status", "bypass", 200)


async def test_a_non_identity_policy_on_the_address_is_non_identity(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # Through with no identity, like a bypass, but counted as what the policy said.
    response = await get(served, "https://office.example.com")
    assert response.status_code == 200
    assert not any(name.startswith("cf-access-") for name in response.json()["headers"])
    await assert_decision(served.app, caplog, "office", "non_identity", 200)


async def test_a_service_token_the_policy_admits_is_allow(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(
        served,
        "https://payroll.example.com",
        CF_Access_Client_Id=served.client_id,
        CF_Access_Client_Secret=served.secret,
    )
    assert response.status_code == 200
    assert "cf-access-jwt-assertion" in response.json()["headers"]
    await assert_decision(served.app, caplog, "payroll", "allow", 200)


# --- refused --------------------------------------------------------------------------------


async def test_a_service_token_with_a_wrong_secret_is_unauthenticated(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(
        served,
        "https://payroll.example.com",
        CF_Access_Client_Id=served.client_id,
        CF_Access_Client_Secret="0" * 64,
    )
    assert (response.status_code, response.text) == (401, "Unauthorized: invalid service token.")
    await assert_decision(served.app, caplog, "payroll", "unauthenticated", 401)
    assert served.upstream.requests == []


async def test_a_service_token_no_policy_admits_is_deny(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(
        served,
        "https://payroll.example.com",
        CF_Access_Client_Id=served.other_client_id,
        CF_Access_Client_Secret=served.other_secret,
    )
    assert response.status_code == 403
    assert response.text == "Forbidden: this service token is not allowed here."
    await assert_decision(served.app, caplog, "payroll", "deny", 403)
    assert served.upstream.requests == []


async def test_a_browser_without_a_session_is_sent_to_sign_in(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(served, TEAM)
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{TEAM}/cdn-cgi/access/login/{TEAM_HOST}?")
    assert "CF_AppSession=" in response.headers["set-cookie"]
    await assert_decision(served.app, caplog, "team-app", "unauthenticated", 302)


async def test_a_script_without_a_session_is_unauthenticated(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(served, TEAM, **SCRIPT)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    await assert_decision(served.app, caplog, "team-app", "unauthenticated", 401)


async def test_a_user_the_policies_refuse_is_deny(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bob = await served.cookie("bob@example.com", ("Sales",))
    response = await get(served, TEAM, bob)
    assert response.status_code == 403
    assert "Ask #it-help for access." in response.text  # the app's own deny message
    await assert_decision(served.app, caplog, "team-app", "deny", 403, user_uuid("bob@example.com"))
    assert served.upstream.requests == []


async def test_a_socket_opened_from_another_site_is_deny(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The WebSocket path renders a refusal as a close before the handshake (HTTP 403)."""
    alice = await served.cookie("alice@example.com", ("Engineering",))
    handshake = {
        "type": "websocket",
        "path": "/socket",
        "raw_path": b"/socket",
        "query_string": b"",
        "scheme": "wss",
        "client": ("203.0.113.7", 50000),
        "headers": [
            (b"host", TEAM_HOST.encode()),
            (b"cookie", f"CF_Authorization={alice}".encode()),
            (b"origin", b"https://evil.example"),
        ],
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await served.app(handshake, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    await assert_decision(
        served.app, caplog, "team-app", "deny", 403, user_uuid("alice@example.com")
    )
    assert served.upstream.requests == []


async def test_a_host_no_app_covers_is_no_app(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(served, "https://nowhere.example.com")
    assert response.status_code == 404
    await assert_decision(served.app, caplog, "", "no_app", 404)


async def test_with_the_store_down_it_is_error(
    upstream: EchoUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    settings = parse_settings(decisions_doc(upstream.url, "no-such-token"))
    signed = CookieSigner(settings.gateway.cookie_secret, "gateway.session").sign("a-session")
    try:
        async with running(create_app(settings, store=dead)) as app:
            async with browser(app) as client:
                client.cookies.set("CF_Authorization", signed, domain=TEAM_HOST)
                response = await client.get("/docs")
            assert response.status_code == 503
            await assert_decision(app, caplog, "team-app", "error", 503)
    finally:
        await dead.close()
    assert upstream.requests == []


# --- why: the email, the policy that decided and, for a deny, the rule ---------------------------


def why(caplog: pytest.LogCaptureFixture) -> tuple[str, str, str, str]:
    line = access_line(caplog)
    return line["decision"], line["email"], line["policy"], line["rule"]


async def test_an_allowed_request_names_the_user_and_the_policy_that_let_them_in(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await served.cookie("alice@example.com", ("Engineering",))
    assert (await get(served, TEAM, alice)).status_code == 200
    assert why(caplog) == ("allow", "alice@example.com", "Engineering", "")


async def test_a_deny_by_default_names_the_rule_that_kept_the_user_out(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bob = await served.cookie("bob@example.com", ("Sales",))
    assert (await get(served, TEAM, bob)).status_code == 403
    assert why(caplog) == (
        "deny",
        "bob@example.com",
        "(no policy matched)",
        "Engineering: include: none matched (in Okta group 'Engineering')",
    )


async def test_a_deny_policy_is_named_with_the_rule_that_matched(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    carol = await served.cookie("carol@example.com", ("Contractors",), app_id="vault")
    assert (await get(served, "https://vault.example.com", carol)).status_code == 403
    assert why(caplog) == (
        "deny",
        "carol@example.com",
        "No contractors",
        "include: in group 'Contractors' matched",
    )


async def test_a_bypass_names_its_policy_and_nobody(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await get(served, "https://status.example.com")).status_code == 200
    assert why(caplog) == ("bypass", "", "Public", "")


async def test_a_service_token_names_the_policy_that_admitted_it(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(
        served,
        "https://payroll.example.com",
        CF_Access_Client_Id=served.client_id,
        CF_Access_Client_Secret=served.secret,
    )
    assert response.status_code == 200
    assert why(caplog) == ("allow", "", "CI", "")


async def test_a_service_token_no_policy_admits_says_so(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = await get(
        served,
        "https://payroll.example.com",
        CF_Access_Client_Id=served.other_client_id,
        CF_Access_Client_Secret=served.other_secret,
    )
    assert response.status_code == 403
    decision, email, policy, rule = why(caplog)
    assert (decision, email, policy) == ("deny", "", "(no policy matched)")
    assert "service token" in rule


async def test_an_unauthenticated_request_names_no_user_and_no_policy(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await get(served, TEAM, **SCRIPT)).status_code == 401
    assert why(caplog) == ("unauthenticated", "", "", "")
