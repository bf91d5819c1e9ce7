"""`/api/apps`: apps with their policies, live on every instance; `revoke_tokens`.

An app made through the API governs requests on its host at once, with no restart, and its
host answers 404 once it is deleted. Revoking an app's tokens ends its app sessions on every
instance at the next request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, admin_doc, assert_failure, instance
from clock import FakeClock
from fake_okta import FakeOkta
from harness import WIKI, EchoUpstream, browser, running

from gateway.admin.envelope import CODES
from gateway.admin.serialize import format_duration
from gateway.app import Gateway, create_app
from gateway.config import parse_duration, parse_settings
from gateway.identity import Identity, user_uuid_for
from gateway.state.catalog import POLL_INTERVAL
from gateway.state.registry import Registry
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store import Store

NEW = "https://new.example.com"
ENGINEERING = {
    "name": "Engineering",
    "decision": "allow",
    "include": [{"okta": {"name": "Engineering"}}],
}


def app_body(upstream_url: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "New",
        "domain": "new.example.com",
        "upstream": upstream_url,
        "policies": [ENGINEERING],
        **fields,
    }


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(admin_doc(upstream.url)), store=store)) as app:
        yield app


async def create(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/api/apps", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def visit(
    client: httpx.AsyncClient, okta: FakeOkta | None, url: str, sub: str
) -> httpx.Response:
    """Open `url` as a browser and follow the whole dance, signing in at Okta as `sub` if the
    gateway asks (and `okta` is given); the last answer."""
    response = await client.get(url)
    for _ in range(10):
        if response.status_code != 302:
            return response
        location = response.headers["location"]
        if okta is not None and location.startswith(okta.authorization_endpoint):
            location = okta.authorize(location, sub)
        response = await client.get(str(response.url.join(location)))
    raise AssertionError("redirect loop")


# --- an app made over the API is live at once -----------------------------------------------


async def test_an_app_made_over_the_api_is_governed_by_its_policy(
    gateway: Gateway, api: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    async with browser(gateway, NEW) as before:
        assert (await before.get(f"{NEW}/")).status_code == 404  # nothing served there yet
    made = await create(api, app_body(upstream.url))
    async with browser(gateway, NEW) as alice, browser(gateway, NEW) as bob:
        page = await visit(alice, okta, f"{NEW}/page", "00ualice")
        assert page.status_code == 200, page.text
        assert page.json()["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"
        denied = await visit(bob, okta, f"{NEW}/page", "00ubob")
        assert denied.status_code == 403

        # A replaced policy decides the very next request: now only Sales may enter.
        sales = {**ENGINEERING, "name": "Sales", "include": [{"okta": {"name": "Sales"}}]}
        replaced = await api.put(
            f"/api/apps/{made['id']}", json=app_body(upstream.url, policies=[sales])
        )
        assert replaced.status_code == 200, replaced.text
        assert (await alice.get(f"{NEW}/page")).status_code == 403
        assert (await visit(bob, None, f"{NEW}/page", "00ubob")).status_code == 200

        deleted = await api.delete(f"/api/apps/{made['id']}")
        assert deleted.status_code == 200 and deleted.json()["result"] == {"id": made["id"]}
        hits = len(upstream.requests)
        for client in (alice, bob):
            gone = await client.get(f"{NEW}/page")
            assert gone.status_code == 404
        assert len(upstream.requests) == hits


async def test_create_and_read(api: httpx.AsyncClient, upstream: EchoUpstream) -> None:
    body = app_body(
        upstream.url,
        session_duration="1h30m",
        allowed_idps=["okta-test"],
        auto_redirect_to_identity=False,
        same_site_cookie_attribute="strict",
        http_only_cookie_attribute=False,
        custom_deny_message="Ask IT.",
    )
    made = await create(api, body)
    assert made["aud"] and len(made["aud"]) == 64
    assert made == {
        **body,
        "id": made["id"],
        "aud": made["aud"],
        "read_only": False,
        "policies": [{**ENGINEERING, "require": [], "exclude": []}],
    }
    assert (await api.get(f"/api/apps/{made['id']}")).json()["result"] == made
    listed = (await api.get("/api/apps")).json()["result"]
    assert [a["id"] for a in listed] == ["team-app", "wiki", made["id"]]
    assert listed[2] == made
    assert listed[1]["read_only"] is True and listed[1]["session_duration"] == "1h"


async def test_every_rule_kind_round_trips(api: httpx.AsyncClient, upstream: EchoUpstream) -> None:
    rules = [
        {"everyone": {}},
        {"email": {"email": "a@example.com"}},
        {"email_domain": {"domain": "example.com"}},
        {"okta": {"name": "Engineering"}},
        {"okta": {"name": "Engineering", "identity_provider_id": "okta-test"}},
        {"group_name": {"name": "Everyone"}},
        {"oidc": {"claim_name": "department", "claim_value": "R&D"}},
        {"login_method": {"id": "okta-test"}},
        {"auth_method": {"auth_method": "mfa"}},
        {"ip": {"ip": "192.0.2.0/24"}},
        {"ip": {"ip": "2001:db8::/32"}},
        {"service_token": {"token_id": "abc"}},
        {"any_valid_service_token": {}},
    ]
    policies = [
        {
            "name": "A",
            "decision": "allow",
            "include": rules,
            "require": rules[:2],
            "exclude": rules[3:4],
        },
        {"name": "B", "decision": "non_identity", "include": rules[-2:], "session_duration": "8h"},
    ]
    made = await create(api, app_body(upstream.url, policies=policies))
    assert made["policies"][0] == policies[0]
    assert made["policies"][1] == {**policies[1], "require": [], "exclude": []}
    # GET, strip what the gateway sets, PUT it back: the same app.
    again = {k: v for k, v in made.items() if k not in ("id", "aud", "read_only")}
    replaced = await api.put(f"/api/apps/{made['id']}", json=again)
    assert replaced.json()["result"] == made


def test_durations_are_written_the_way_they_are_read() -> None:
    assert format_duration(86400) == "24h"
    assert format_duration(5400) == "1h30m"
    assert format_duration(90.5) == "1m30s500ms"
    assert format_duration(0.25) == "250ms"
    for text in ("24h", "1h30m", "45s", "8760h", "1h1m1s1ms"):
        assert format_duration(parse_duration(text)) == text


async def test_file_apps_are_read_only(api: httpx.AsyncClient, upstream: EchoUpstream) -> None:
    before = (await api.get("/api/apps/wiki")).json()["result"]
    assert before["read_only"] is True
    replaced = await api.put("/api/apps/wiki", json=app_body(upstream.url))
    assert "read-only" in assert_failure(replaced, 403, "read_only")[0]
    assert_failure(await api.delete("/api/apps/wiki"), 403, "read_only")
    assert (await api.get("/api/apps/wiki")).json()["result"] == before


async def test_unknown_ids_are_404(api: httpx.AsyncClient, upstream: EchoUpstream) -> None:
    for response in (
        await api.get("/api/apps/nope"),
        await api.put("/api/apps/nope", json=app_body(upstream.url)),
        await api.delete("/api/apps/nope"),
        await api.post("/api/apps/nope/revoke_tokens"),
    ):
        assert assert_failure(response, 404, "not_found") == ["No app with id 'nope'."]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        ({"bogus": True}, ["bogus: unknown key"]),
        ({"domain": 5}, ["domain: must be a string"]),
        ({"upstream": "ftp://x"}, ["upstream: must be an absolute https or http URL"]),
        ({"upstream": "http://[x"}, ["upstream: must be an absolute https or http URL"]),
        (
            {"upstream": "http://127.0.0.1:99999"},
            ["upstream: must be an absolute https or http URL"],
        ),
        ({"domain": "https://x.example.com"}, ["domain: must be host[/path] without a scheme"]),
        (
            {"session_duration": "soon"},
            ["session_duration: invalid duration 'soon' (use e.g. '24h', '30m', '1h30m')"],
        ),
        ({"session_duration": "87601h"}, ["session_duration: must be at most 87600h"]),
        ({"session_duration": 1e300}, ["session_duration: must be at most 87600h"]),
        (
            {"same_site_cookie_attribute": "loose"},
            ["same_site_cookie_attribute: must be one of 'none', 'lax', 'strict', not 'loose'"],
        ),
        (
            {"policies": [{"name": "p", "decision": "allow", "include": []}]},
            ["policies[0].include: needs at least one rule"],
        ),
        (
            {"policies": [{"name": "p", "include": [{"everyone": {}}]}]},
            ["policies[0].decision: is required"],
        ),
        (
            {
                "policies": [
                    {"name": "p", "decision": "allow", "include": [{"grop": {}}, {"email": {}}]}
                ]
            },
            [
                "policies[0].include[0]: unknown rule 'grop'",
                "policies[0].include[1].email.email: is required",
            ],
        ),
        (
            {
                "policies": [
                    {
                        "name": "p",
                        "decision": "allow",
                        "include": [{"ip": {"ip": "10.0.0.0/33"}}],
                        "session_duration": "100000h",
                    }
                ]
            },
            [
                "policies[0].include[0].ip.ip: invalid IP address or CIDR '10.0.0.0/33'",
                "policies[0].session_duration: must be at most 87600h",
            ],
        ),
        (
            {"id": "x", "aud": "y", "read_only": True},
            [f"{k}: is set by the gateway; leave it out" for k in ("id", "read_only", "aud")],
        ),
    ],
)
async def test_invalid_bodies_list_every_problem_with_its_key_path(
    api: httpx.AsyncClient, upstream: EchoUpstream, fields: dict[str, Any], problems: list[str]
) -> None:
    response = await api.post("/api/apps", json=app_body(upstream.url, **fields))
    assert assert_failure(response, 400, "invalid_config") == problems
    assert len((await api.get("/api/apps")).json()["result"]) == 2  # nothing stored


@pytest.mark.parametrize("number", ["1e400", "1" + "0" * 400])
async def test_durations_too_large_for_a_float_are_refused(
    api: httpx.AsyncClient, upstream: EchoUpstream, number: str
) -> None:
    policy = {**ENGINEERING, "session_duration": 0}
    body = json.dumps(app_body(upstream.url, session_duration=0, policies=[policy]))
    raw = body.replace('"session_duration": 0', f'"session_duration": {number}')
    response = await api.post(
        "/api/apps", content=raw, headers={"Content-Type": "application/json"}
    )
    assert assert_failure(response, 400, "invalid_config") == [
        "session_duration: must be at most 87600h",
        "policies[0].session_duration: must be at most 87600h",
    ]


async def test_missing_required_fields(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/apps", json={})
    assert assert_failure(response, 400, "invalid_config") == [
        "domain: is required",
        "upstream: is required",
    ]


async def test_a_domain_another_app_serves_is_a_conflict(
    api: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    response = await api.post("/api/apps", json=app_body(upstream.url, domain="WIKI.example.com"))
    assert assert_failure(response, 409, "conflict") == [
        "domain: 'wiki.example.com' is already served by app 'wiki'."
    ]
    # "host/*" covers all that "host" does but "/": it would take the file app's place
    response = await api.post("/api/apps", json=app_body(upstream.url, domain="wiki.example.com/*"))
    assert assert_failure(response, 409, "conflict") == [
        "domain: 'wiki.example.com/*' is already served by app 'wiki'."
    ]
    made = await create(api, app_body(upstream.url))
    same = await api.put(f"/api/apps/{made['id']}", json=app_body(upstream.url))
    assert same.status_code == 200  # its own domain is no clash


async def test_an_unknown_allowed_idp_is_unprocessable(
    api: httpx.AsyncClient, upstream: EchoUpstream
) -> None:
    response = await api.post(
        "/api/apps", json=app_body(upstream.url, allowed_idps=["okta-test", "nope"])
    )
    assert assert_failure(response, 422, "unprocessable") == [
        "allowed_idps[1]: no identity provider 'nope'"
    ]


# --- the configuration checks (gateway/checks.py), as check-config runs them ---------------

NOT_KNOWN = (
    "is not known: no SCIM push and no sign-in has shown it, and a rule on a group nobody is in "
    "lets nobody in"
)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            {"okta": {"name": "Engineering", "identity_provider_id": "okta-prod"}},
            "policies[0].include[0].okta.identity_provider_id: "
            "no identity provider 'okta-prod': the rule would never match",
        ),
        (
            {"login_method": {"id": "okta-prod"}},
            "policies[0].include[0].login_method.id: "
            "no identity provider 'okta-prod': the rule would never match",
        ),
    ],
)
async def test_a_rule_naming_a_missing_idp_is_unprocessable(
    api: httpx.AsyncClient, upstream: EchoUpstream, rule: dict[str, Any], problem: str
) -> None:
    policy = {"name": "P", "decision": "allow", "include": [rule]}
    response = await api.post("/api/apps", json=app_body(upstream.url, policies=[policy]))
    assert assert_failure(response, 422, "unprocessable") == [problem]
    made = await create(api, app_body(upstream.url))
    replaced = await api.put(
        f"/api/apps/{made['id']}", json=app_body(upstream.url, policies=[policy])
    )
    assert assert_failure(replaced, 422, "unprocessable") == [problem]
    assert (await api.get("/api/apps")).json()["result"][-1]["policies"][0]["name"] == "Engineering"


async def test_warnings_come_back_in_messages(
    api: httpx.AsyncClient, upstream: EchoUpstream, store: Store
) -> None:
    await Registry(store).record_sign_in(
        Identity(
            id="nonce",
            user_uuid=user_uuid_for("okta-test", "00ualice"),
            sub="00ualice",
            name="Alice Example",
            email="alice@example.com",
            groups=("Engineering", "Everyone"),
            idp_id="okta-test",
            idp_type="okta",
            iat=1_764_460_800,
        )
    )
    known = await api.post("/api/apps", json=app_body(upstream.url))
    assert known.status_code == 201
    assert known.json()["messages"] == []  # Engineering was seen at a sign-in

    typo = {"name": "Eng", "decision": "allow", "include": [{"okta": {"name": "Enginering"}}]}
    response = await api.post(
        "/api/apps", json=app_body(upstream.url, domain="typo.example.com", policies=[typo])
    )
    assert response.status_code == 201  # accepted: the group may simply not have signed in yet
    assert response.json()["messages"] == [
        {
            "code": CODES["config_warning"],
            "message": f"policies[0].include[0].okta.name: group 'Enginering' {NOT_KNOWN} "
            "(did you mean 'Engineering'?)",
        }
    ]

    empty = await api.post(
        "/api/apps", json=app_body(upstream.url, domain="empty.example.com", policies=[])
    )
    assert empty.status_code == 201
    assert [m["message"] for m in empty.json()["messages"]] == [
        "policies: none: nobody can reach this app (deny by default)"
    ]


# --- revoke_tokens --------------------------------------------------------------------------


async def test_revoke_tokens_ends_the_app_sessions(
    gateway: Gateway, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    async with browser(gateway, WIKI) as client:
        assert (await visit(client, okta, f"{WIKI}/", "00ualice")).status_code == 200
        revoked = await api.post("/api/apps/wiki/revoke_tokens")
        assert revoked.status_code == 200
        assert revoked.json()["result"] == {"id": "wiki", "revoked_sessions": 1}
        api_call = await client.get(f"{WIKI}/", headers={"X-Requested-With": "XMLHttpRequest"})
        assert api_call.status_code == 401
        # The team-domain session survives (as at Cloudflare): a browser is let back in
        # silently, through the policies again, with no trip to Okta.
        calls = okta.routes["token"].call_count
        assert (await visit(client, None, f"{WIKI}/", "00ualice")).status_code == 200
        assert okta.routes["token"].call_count == calls


async def test_revoke_tokens_takes_effect_on_every_instance(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with (
        instance(redis_url, admin_doc(upstream.url)) as one,
        instance(redis_url, admin_doc(upstream.url)) as two,
        admin_client(one) as api_one,
        browser(one, WIKI) as on_one,
    ):
        assert (await visit(on_one, okta, f"{WIKI}/", "00ualice")).status_code == 200
        async with browser(two, WIKI) as on_two:
            on_two.cookies = on_one.cookies  # the same browser, reaching the other instance
            xhr = {"X-Requested-With": "XMLHttpRequest"}
            assert (await on_two.get(f"{WIKI}/a", headers=xhr)).status_code == 200
            assert (await api_one.post("/api/apps/wiki/revoke_tokens")).status_code == 200
            assert (await on_two.get(f"{WIKI}/a", headers=xhr)).status_code == 401


PROPAGATION_BOUND = 10 * POLL_INTERVAL  # seconds; a passing poll returns as soon as it sees it


async def poll(answer: Callable[[], Awaitable[httpx.Response]], status: int) -> httpx.Response:
    """Ask again until the answer has `status` (another instance polls the catalog every
    POLL_INTERVAL); fails after PROPAGATION_BOUND. The bound is generous on purpose: both
    instances, their catalog watchers and this poll share one event loop, and on a loaded CI
    machine one watcher round can take far longer than POLL_INTERVAL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROPAGATION_BOUND
    while (response := await answer()).status_code != status:
        assert loop.time() < deadline, response.text
        await asyncio.sleep(0.02)
    return response


async def test_an_app_made_on_one_instance_is_served_by_another(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with (
        instance(redis_url, admin_doc(upstream.url)) as one,
        instance(redis_url, admin_doc(upstream.url)) as two,
        admin_client(one) as api_one,
        browser(two, NEW) as on_two,
    ):
        made = await create(api_one, app_body(upstream.url))
        await poll(lambda: on_two.get(f"{NEW}/"), 302)
        assert (await visit(on_two, okta, f"{NEW}/", "00ualice")).status_code == 200
        assert (await api_one.delete(f"/api/apps/{made['id']}")).status_code == 200
        await poll(lambda: on_two.get(f"{NEW}/"), 404)


async def test_revoke_app_deletes_only_that_apps_sessions(store: Store, clock: FakeClock) -> None:
    sessions = SessionManager(store, CookieSigner(("k" * 32,), "test"), clock)
    alice = Identity(
        id="n",
        user_uuid="u1",
        sub="s",
        name="A",
        email="a@x",
        groups=(),
        idp_id="i",
        idp_type="okta",
        iat=0,
    )
    wiki, _ = await sessions.create(alice, kind="app", duration=60, app_id="wiki")
    other, other_cookie = await sessions.create(alice, kind="app", duration=60, app_id="other")
    team, team_cookie = await sessions.create(alice, kind="global", duration=60)
    assert await sessions.revoke_app("wiki") == 1
    assert await sessions.revoke_app("wiki") == 0
    assert await sessions.load(other_cookie) is not None
    assert await sessions.load(team_cookie) is not None
    assert {s.id for s in await sessions.active_sessions("u1")} == {other.id, team.id}
    assert wiki.id not in await store.set_members("user_sessions:u1")  # pruned when read
