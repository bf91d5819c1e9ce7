"""A SAML sign-in started on one `gateway serve` process finishes on another sharing Redis.

The AuthnRequest's ID and the RelayState are kept in the store, bound to the browser, so the
instance that gets the IdP's POST need not be the one that sent the browser there (SPEC 5,
SPEC 10). The IdP is saml_idp.py's, served from this test process over loopback.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from demo_process import LoginForm
from gateway_processes import PUBLIC_HOST, PUBLIC_URL, Browser, Instance, on, serve
from harness import EchoUpstream
from saml_idp import ALICE, SamlIdP, idp_form

CALLBACK = f"{PUBLIC_URL}/cdn-cgi/access/callback"


@pytest_asyncio.fixture
async def idp(tmp_path: Path) -> AsyncIterator[SamlIdP]:
    server = SamlIdP(tmp_path, sp_entity_id=CALLBACK, acs_url=CALLBACK)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def instances(
    tmp_path: Path, redis_url: str, idp: SamlIdP, upstream: EchoUpstream
) -> Iterator[list[Instance]]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "{PUBLIC_URL}"
            cookie_secret = "saml-instances-cookie-secret-0123456789"
            store = "{redis_url}"
            cookie_secure = false

            [[identity_providers]]
            id = "okta-saml"
            name = "Okta SAML"
            type = "saml"
            [identity_providers.config]
            issuer_url = "{idp.issuer}"
            sso_target_url = "{idp.sso_url}"
            idp_public_certs = [
            '''
            {{cert}}'''
            ]
            attributes = ["groups"]

            [[apps]]
            id = "docs"
            name = "Docs"
            domain = "{PUBLIC_HOST}"
            upstream = "{upstream.url}"
            [[apps.policies]]
            name = "Engineering"
            decision = "allow"
            [[apps.policies.include]]
            saml = {{ attribute_name = "groups", attribute_value = "Engineering" }}
        """).replace("{cert}", idp.keys.cert_pem.strip())
    )
    with serve(config) as started:
        yield started


async def start_at_the_idp(
    browser: Browser, gw: httpx.AsyncClient, on_instance: Instance, idp: SamlIdP
) -> LoginForm:
    """Open the app on one instance and follow it to the IdP: the form the IdP answers."""
    to_login = await browser.get(gw, f"{on_instance.url}/docs")
    assert to_login.status_code == 302, to_login.text
    to_idp = await browser.get(gw, on(on_instance, to_login.headers["location"]))
    assert to_idp.status_code == 302, to_idp.text
    form = await idp_form(idp, to_idp.headers["location"], ALICE)
    assert form.action == CALLBACK
    return form


async def test_a_saml_sign_in_begun_on_one_instance_finishes_on_the_other(
    instances: list[Instance], idp: SamlIdP, upstream: EchoUpstream
) -> None:
    a, b = instances
    browser = Browser()
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        form = await start_at_the_idp(browser, gw, a, idp)
        done = await browser.post(gw, on(b, form.action), data=form.fields)
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/docs"
        for instance in (a, b):
            page = await browser.get(gw, f"{instance.url}/docs")
            assert page.status_code == 200
            assert page.json()["headers"]["cf-access-authenticated-user-email"] == ALICE.email


async def test_a_response_used_on_one_instance_is_refused_on_the_other(
    instances: list[Instance], idp: SamlIdP, upstream: EchoUpstream
) -> None:
    a, b = instances
    browser = Browser()
    async with httpx.AsyncClient(headers={"Host": PUBLIC_HOST}, timeout=10) as gw:
        form = await start_at_the_idp(browser, gw, b, idp)
        first = await browser.post(gw, on(a, form.action), data=form.fields)
        assert first.status_code == 302, first.text
        replayed = await Browser(dict(browser.cookies)).post(
            gw, on(b, form.action), data=form.fields
        )
        assert replayed.status_code == 400, replayed.text
        assert "text/html" in replayed.headers["content-type"]
        assert "CF_Authorization" not in replayed.headers.get("set-cookie", "")
    assert upstream.requests == []
