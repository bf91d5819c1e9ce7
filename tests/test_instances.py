"""Several `gateway serve` processes on one real Redis behave as one (SPEC 5).

Two gateway processes (real sockets, the production entry point) share a Redis. Okta is the
development IdP served from this test process over loopback, since respx cannot reach into
another process. The processes and the browser that sends each request to either instance
are gateway_processes.py's.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from demo_process import LoginForm
from gateway_processes import PUBLIC_HOST, PUBLIC_URL, Browser, Instance, on, serve
from harness import EchoUpstream, free_port
from redis_server import RedisServer

from gateway.demo.devidp import DevUser, create_dev_idp

CLIENT_ID = "0oainstances"
CLIENT_SECRET = "instances-client-secret"
SCIM_SECRET = "instances-scim-secret-0123456789"
ADMIN_TOKEN = "instances-admin-token-0123456789"
ALICE = DevUser.generate("alice@example.com", "Alice Example", ("Engineering",))


@pytest_asyncio.fixture
async def dev_idp() -> AsyncIterator[str]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    app = create_dev_idp(
        issuer=issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{PUBLIC_URL}/cdn-cgi/access/callback"],
        users=[ALICE],
        api_token="unused-api-token",
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield issuer
    server.should_exit = True
    await task


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    echo = EchoUpstream()
    await echo.start()
    yield echo
    await echo.stop()


@pytest.fixture
def instances(
    tmp_path: Path, redis_url: str, dev_idp: str, upstream: EchoUpstream
) -> Iterator[list[Instance]]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "{PUBLIC_URL}"
            cookie_secret = "instances-cookie-secret-0123456789abcdef"
            store = "{redis_url}"
            cookie_secure = false
            admin_token = "{ADMIN_TOKEN}"

            [[identity_providers]]
            id = "dev-okta"
            name = "Okta"
            type = "okta"
            [identity_providers.config]
            client_id = "{CLIENT_ID}"
            client_secret = "{CLIENT_SECRET}"
            okta_account = "{dev_idp}"
            [identity_providers.scim_config]
            enabled = true
            user_deprovision = true
            secret = "{SCIM_SECRET}"

            [[apps]]
            id = "docs"
            name = "Docs"
            domain = "{PUBLIC_HOST}"
            upstream = "{upstream.url}"
            [[apps.policies]]
            name = "Engineering"
            decision = "allow"
            include = [ {{ okta = {{ name = "Engineering" }} }} ]
            require = [ {{ user_risk_score = {{ user_risk_score = ["low"] }} }} ]

            [[apps]]
            id = "docs-admin"
            name = "Docs admin"
            domain = "{PUBLIC_HOST}/admin"
            upstream = "{upstream.url}"
            [[apps.policies]]
            name = "Root only"
            decision = "allow"
            include = [ {{ email = {{ email = "root@example.com" }} }} ]
        """)
    )
    with serve(config) as started:
        yield started


async def sign_in(browser: Browser, begin_on: Instance, finish_on: Instance) -> httpx.Response:
    """Open the app on one instance, log in at the IdP, and land the callback on the other."""
    async with (
        httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw,
        httpx.AsyncClient(timeout=10) as idp,
    ):
        to_login = await browser.get(gw, f"{begin_on.url}/docs")
        assert to_login.status_code == 302
        to_idp = await browser.get(gw, on(begin_on, to_login.headers["location"]))
        assert to_idp.status_code == 302
        form_page = await idp.get(to_idp.headers["location"])
        form = LoginForm(form_page.text)
        fields = {**form.fields, "username": ALICE.email, "password": ALICE.password}
        back = await idp.post(str(form_page.url.join(form.action)), data=fields)
        assert back.status_code in (302, 303), back.text
        callback = back.headers["location"]
        assert callback.startswith(f"{PUBLIC_URL}/cdn-cgi/access/callback?")
        return await browser.get(gw, on(finish_on, callback))


async def test_a_sign_in_begun_on_one_instance_finishes_on_the_other(
    instances: list[Instance], upstream: EchoUpstream
) -> None:
    a, b = instances
    browser = Browser()
    done = await sign_in(browser, begin_on=a, finish_on=b)
    assert done.status_code == 302 and done.headers["location"] == "/docs"
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        for instance in (a, b):
            page = await browser.get(gw, f"{instance.url}/docs")
            assert page.status_code == 200
            assert page.json()["headers"]["cf-access-authenticated-user-email"] == ALICE.email


async def test_a_logout_on_one_instance_bounces_the_user_on_the_other(
    instances: list[Instance], upstream: EchoUpstream
) -> None:
    a, b = instances
    browser = Browser()
    await sign_in(browser, begin_on=a, finish_on=a)
    old_cookie = browser.cookies["CF_Authorization"]
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        assert (await browser.get(gw, f"{b.url}/docs")).status_code == 200
        assert (await browser.get(gw, f"{a.url}/cdn-cgi/access/logout")).status_code == 200
        hits = len(upstream.requests)
        replay = Browser({"CF_Authorization": old_cookie})
        bounced = await replay.get(gw, f"{b.url}/docs")
        assert bounced.status_code == 302
        assert "/cdn-cgi/access/login/" in bounced.headers["location"]
        assert len(upstream.requests) == hits


async def test_a_scim_deprovision_through_one_instance_bounces_the_user_on_the_other(
    instances: list[Instance], upstream: EchoUpstream
) -> None:
    a, b = instances
    browser = Browser()
    await sign_in(browser, begin_on=b, finish_on=b)
    scim = f"{a.url}/populations/dev-okta/scim/v2"
    headers = {
        "Host": PUBLIC_HOST,
        "Authorization": f"Bearer {SCIM_SECRET}",
        "Content-Type": "application/scim+json",
    }
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        assert (await browser.get(gw, f"{b.url}/docs")).status_code == 200
        created = await gw.post(
            f"{scim}/Users",
            headers=headers,
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": ALICE.email,
                "externalId": ALICE.sub,
                "name": {"givenName": "Alice", "familyName": "Example"},
                "emails": [{"primary": True, "value": ALICE.email, "type": "work"}],
                "active": True,
            },
        )
        assert created.status_code == 201, created.text
        deactivated = await gw.patch(
            f"{scim}/Users/{created.json()['id']}",
            headers=headers,
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
        )
        assert deactivated.status_code == 200, deactivated.text
        bounced = await browser.get(gw, f"{b.url}/docs")
        assert bounced.status_code == 302
        assert "/cdn-cgi/access/login/" in bounced.headers["location"]


async def test_a_user_who_turns_risky_on_one_instance_is_refused_on_the_other_until_a_reset(
    instances: list[Instance], upstream: EchoUpstream
) -> None:
    """SPEC 8: ten denials by policy on one instance make the user `medium`; the other
    instance refuses them on their very next request (the app requires a low level), and lets
    them in again once the API resets them."""
    a, b = instances
    browser = Browser()
    await sign_in(browser, begin_on=a, finish_on=a)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        assert (await browser.get(gw, f"{b.url}/docs")).status_code == 200
        for _ in range(10):
            assert (await browser.get(gw, f"{a.url}/admin/")).status_code == 403
        hits = len(upstream.requests)
        refused = await browser.get(gw, f"{b.url}/docs")
        assert refused.status_code == 403
        assert len(upstream.requests) == hits
        (alice,) = (await gw.get(f"{b.url}/api/users", headers=admin)).json()["result"]
        risk = await gw.get(f"{b.url}/api/zt_risk_scoring/{alice['id']}", headers=admin)
        assert risk.json()["result"]["risk_level"] == "medium"
        reset = await gw.post(f"{a.url}/api/zt_risk_scoring/{alice['id']}/reset", headers=admin)
        assert reset.status_code == 200, reset.text
        assert (await browser.get(gw, f"{b.url}/docs")).status_code == 200


async def test_redis_stopped_means_503_and_it_resumes_without_a_restart(
    instances: list[Instance], upstream: EchoUpstream, redis_server: RedisServer
) -> None:
    a, b = instances
    browser = Browser()
    await sign_in(browser, begin_on=a, finish_on=b)
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        redis_server.stop()
        try:
            hits = len(upstream.requests)
            for instance in (a, b):
                down = await browser.get(gw, f"{instance.url}/docs")
                assert down.status_code == 503
                assert "text/html" in down.headers["content-type"]
                # what failed is for the log (the reference id finds it), not for the browser
                assert "Redis" not in down.text and f":{redis_server.port}" not in down.text
                ready = await gw.get(f"{instance.url}/readyz")
                assert ready.status_code == 503
            assert len(upstream.requests) == hits
        finally:
            redis_server.start()
        # Back without restarting the gateways: the same session works again (Redis kept no
        # data across the restart here, so sign in again on either instance).
        browser = Browser()
        await sign_in(browser, begin_on=b, finish_on=a)
        for instance in (a, b):
            assert (await browser.get(gw, f"{instance.url}/docs")).status_code == 200


def test_instances_answer_health_checks_on_an_ip_host(instances: list[Instance]) -> None:
    for instance in instances:
        assert httpx.get(f"{instance.url}/healthz", timeout=2).status_code == 200
        assert re.fullmatch(r"ready\s*", httpx.get(f"{instance.url}/readyz", timeout=2).text)
