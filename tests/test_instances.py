"""Several `gateway serve` processes on one real Redis behave as one (SPEC 5).

Two gateway processes (real sockets, the production entry point) share a Redis. Okta is the
development IdP served from this test process over loopback, since respx cannot reach into
another process. The browser is httpx with its cookies handled by hand, so each request can be
sent to either instance while naming the same public host.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from demo_process import LoginForm
from harness import EchoUpstream, free_port
from redis_server import RedisServer

from gateway.demo.devidp import DevUser, create_dev_idp

PUBLIC_HOST = "gw.test"
PUBLIC_URL = f"http://{PUBLIC_HOST}"
CLIENT_ID = "0oainstances"
CLIENT_SECRET = "instances-client-secret"
SCIM_SECRET = "instances-scim-secret-0123456789"
ADMIN_TOKEN = "instances-admin-token-0123456789"
ALICE = DevUser.generate("alice@example.com", "Alice Example", ("Engineering",))


@dataclass
class Instance:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


def wait_ready(instance: Instance, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise RuntimeError(f"gateway on {instance.port} exited {instance.process.returncode}")
        try:
            answer = httpx.get(f"{instance.url}/healthz", headers={"Host": PUBLIC_HOST}, timeout=1)
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway on {instance.port} did not start")


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
    started = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            env={**os.environ},
        )
        started.append(Instance(port, process))
    try:
        for instance in started:
            wait_ready(instance)
        yield started
    finally:
        for instance in started:
            instance.process.send_signal(signal.SIGTERM)
        for instance in started:
            try:
                instance.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                instance.process.kill()


@dataclass
class Browser:
    """A browser whose every request may go to either instance, as behind a load balancer."""

    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
        headers = {"Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await client.request("GET", url, headers=headers, **kwargs)  # type: ignore[arg-type]
        self.remember(response)
        return response

    def remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header or value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


def on(instance: Instance, url: str) -> str:
    """The same public URL, sent to one particular instance (the Host header stays public)."""
    parts = urlsplit(url)
    return f"{instance.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


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
