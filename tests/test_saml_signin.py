"""SAML 2.0 sign-in, the product side (SPEC 10): a real IdP (tests/saml_idp.py, pysaml2's Server)
signs alice and bob in through the gateway; what the upstream, get-identity, the app token, the
policies, the SP metadata, the test page and the admin API make of it. The refusals of bad
Responses are tests/test_saml_refusals.py's; here, what the product adds around them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx
from admin_harness import TOKEN, admin_client
from clock import FakeClock
from defusedxml.ElementTree import fromstring as parse_xml
from harness import TEAM, EchoUpstream, browser, running, start_sign_in
from saml2 import BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as validate_with_saml_schema
from saml_idp import (
    ALICE,
    BOB,
    SAML_IDP_ID,
    SP_ENTITY_ID,
    ResponseOptions,
    SamlIdP,
    idp_form,
    post_to_callback,
    redirect_query,
    saml_settings_doc,
    saml_sign_in,
)
from scim_harness import create_user, deactivate, okta_client

from gateway.app import Gateway, create_app
from gateway.authn.providers import saml as saml_provider
from gateway.checks import check_idp, check_settings
from gateway.config import parse_identity_provider, parse_settings
from gateway.errors import ConfigError, IdPError
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore

pytestmark = pytest.mark.skipif(
    saml_provider.xmlsec_binary() is None,
    reason="xmlsec1 is not installed (apt-get install xmlsec1): SAML signatures need it",
)

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DEPARTMENT_HEADER = {"attribute_name": "department", "header_name": "X-User-Department"}


@pytest_asyncio.fixture
async def gateway(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> AsyncIterator[Gateway]:
    """The gateway of `saml_gateway`, with `department` also sent upstream as a header."""
    doc = saml_settings_doc(upstream.url, saml_idp, header_attributes=[DEPARTMENT_HEADER])
    async with running(create_app(parse_settings(doc), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(gateway) as c:
        yield c


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- the happy path ----------------------------------------------------------------------------


async def test_alice_signs_in_and_the_upstream_sees_her_email_groups_and_headers(
    client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    answer = await saml_sign_in(client, saml_idp, ALICE)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/docs/page?x=1"
    # A client's own copy of an attribute header never reaches the upstream.
    page = await client.get("/docs/page?x=1", headers={"X-User-Department": "Finance"})
    assert page.status_code == 200, page.text
    seen = upstream.requests[-1]["headers"]
    assert seen["cf-access-authenticated-user-email"] == "alice@example.com"
    assert seen["x-user-department"] == "R&D"
    token = _claims(seen["cf-access-jwt-assertion"])
    assert token["email"] == "alice@example.com"
    assert token["custom"] == {"groups": ["Engineering", "Everyone"], "department": ["R&D"]}

    identity = (await client.get("/cdn-cgi/access/get-identity")).json()
    assert identity["email"] == "alice@example.com"
    assert identity["groups"] == ["Engineering", "Everyone"]
    assert identity["idp"] == {"id": SAML_IDP_ID, "type": "saml"}
    assert identity["saml_attributes"] == token["custom"]


async def test_the_saml_rule_refuses_bob_and_nothing_reaches_the_upstream(
    client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    denied = await saml_sign_in(client, saml_idp, BOB)
    assert denied.status_code == 403
    assert "bob@example.com" in denied.text
    assert (await client.get("/docs/page?x=1")).status_code == 403  # and on every request
    assert upstream.requests == []


async def test_group_name_rules_match_saml_groups(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp)
    for app in doc["apps"]:
        app["policies"] = [
            {
                "name": "Eng",
                "decision": "allow",
                "include": [{"group_name": {"name": "Engineering"}}],
            }
        ]
    async with running(create_app(parse_settings(doc), store=store)) as app:
        async with browser(app) as alices:
            assert (await saml_sign_in(alices, saml_idp, ALICE)).status_code == 302
        async with browser(app) as bobs:
            assert (await saml_sign_in(bobs, saml_idp, BOB)).status_code == 403


async def test_email_comes_from_an_email_format_name_id_without_the_attribute(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp, email_attribute_name="mail")
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        assert (await saml_sign_in(c, saml_idp, ALICE)).status_code == 302
        identity = (await c.get("/cdn-cgi/access/get-identity")).json()
    assert identity["email"] == "alice@example.com"


# --- the browser binding across the IdP's cross-site POST --------------------------------------


async def test_the_login_binding_cookie_survives_the_idps_cross_site_post(
    client: httpx.AsyncClient,
) -> None:
    to_login = await client.get("/docs/page")
    to_idp = await client.get(to_login.headers["location"])
    assert to_idp.status_code == 302
    binding = next(
        c for c in to_idp.headers.get_list("set-cookie") if c.startswith("CF_Session=")
    ).lower()
    # A SameSite=Lax cookie is not sent with a cross-site POST: the IdP's answer would fail.
    assert "samesite=none" in binding
    assert "secure" in binding
    assert "httponly" in binding


async def test_a_console_sign_in_s_binding_cookie_survives_the_idps_cross_site_post_too(
    client: httpx.AsyncClient,
) -> None:
    to_idp = await client.get(f"/console/login?idp={SAML_IDP_ID}&next=/console/")
    assert to_idp.status_code == 302, to_idp.text
    binding = next(
        c for c in to_idp.headers.get_list("set-cookie") if c.startswith("CF_Session=")
    ).lower()
    assert "samesite=none" in binding
    assert "secure" in binding
    assert "httponly" in binding


async def test_a_response_posted_from_another_browser_is_refused(
    gateway: Gateway, client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    form = await idp_form(saml_idp, await start_sign_in(client, "/docs/page"))
    async with browser(gateway, address="198.51.100.9") as other:
        refused = await post_to_callback(other, form)
        assert refused.status_code == 400
        assert "another browser" in refused.text
        assert (await other.get("/cdn-cgi/access/get-identity")).status_code == 401
    assert upstream.requests == []


async def test_a_post_without_relay_state_says_to_start_from_the_application(
    client: httpx.AsyncClient, saml_idp: SamlIdP
) -> None:
    form = await idp_form(saml_idp, await start_sign_in(client, "/docs/page"))
    fields = {k: v for k, v in form.fields.items() if k != "RelayState"}
    refused = await client.post(SP_ENTITY_ID, data=fields)
    assert refused.status_code == 400
    assert "Start from the application" in refused.text
    assert "reference" in refused.text.lower()


async def test_an_oversized_or_non_form_post_is_refused_before_anything_is_read(
    client: httpx.AsyncClient,
) -> None:
    big = await client.post(SP_ENTITY_ID, data={"SAMLResponse": "A" * 600_000, "RelayState": "x"})
    assert big.status_code == 413
    not_form = await client.post(SP_ENTITY_ID, json={"SAMLResponse": "x"})
    assert not_form.status_code == 400


async def test_a_signed_authn_request_carries_an_rsa_sha256_signature(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp, sign_request=True)
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        query = redirect_query(await start_sign_in(c, "/docs/page"))
        assert query["SigAlg"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        assert query["Signature"]
        form = await idp_form(saml_idp, await start_sign_in(c, "/docs/page"))
        assert (await post_to_callback(c, form)).status_code == 302


# --- SP metadata -------------------------------------------------------------------------------


async def test_sp_metadata_names_the_callback_and_the_sp_certificate(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    root = parse_xml(answer.text)
    assert root.get("entityID") == SP_ENTITY_ID
    acs = root.find(f"{MD}SPSSODescriptor/{MD}AssertionConsumerService")
    assert acs is not None
    assert acs.get("Location") == SP_ENTITY_ID
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert root.find(f"{MD}SPSSODescriptor/{MD}KeyDescriptor") is not None


async def test_sp_metadata_is_a_404_for_an_unknown_id_and_off_the_team_host(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/cdn-cgi/access/saml-metadata/nope")).status_code == 404
    async with browser(gateway, base_url="https://wiki.example.com") as app_host:
        answer = await app_host.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")
    assert answer.status_code == 404


async def test_every_instance_publishes_the_same_sp_key(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    settings = parse_settings(saml_settings_doc(upstream.url, saml_idp))
    documents = []
    for _ in range(2):
        async with running(create_app(settings, store=store)) as app, browser(app) as c:
            documents.append((await c.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")).text)
    certificates = [
        parse_xml(d).find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate").text
        for d in documents
    ]
    assert certificates[0] == certificates[1]


# --- the SP private key on disk (pysaml2 and xmlsec1 read files) -------------------------------


async def test_the_sp_key_file_is_private_and_no_copy_outlives_its_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    # a gateway process killed before it could clean up
    killed = subprocess.Popen([sys.executable, "-c", ""])
    killed.wait()
    left_behind = temp / f"gateway-saml-{killed.pid}-k1"
    running_elsewhere = temp / f"gateway-saml-{os.getppid()}-k2"  # a live process's own copy
    for directory in (left_behind, running_elsewhere):
        directory.mkdir(mode=0o700)
        (directory / "sp.key").write_text("-----BEGIN PRIVATE KEY-----")

    settings = parse_settings(saml_settings_doc(upstream.url, saml_idp))
    async with running(create_app(settings, store=MemoryStore())) as app, browser(app) as c:
        assert (await c.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")).status_code == 200
        assert not left_behind.exists()
        assert running_elsewhere.exists()
        (ours,) = temp.glob(f"gateway-saml-{os.getpid()}-*")
        assert stat.S_IMODE(ours.stat().st_mode) == 0o700
        assert stat.S_IMODE((ours / "sp.key").stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in (ours / "sp.key").read_bytes()
    del app, c
    gc.collect()
    assert not ours.exists()  # the provider is gone, and its key files with it


# --- the test page -----------------------------------------------------------------------------


async def test_the_test_page_shows_the_attributes_and_where_email_and_groups_came_from(
    client: httpx.AsyncClient, saml_idp: SamlIdP
) -> None:
    to_idp = await client.get(f"/test-idp?idp={SAML_IDP_ID}")
    assert to_idp.status_code == 302
    form = await idp_form(saml_idp, to_idp.headers["location"])
    result = await client.post(form.action, data=form.fields)
    page = await client.get(result.headers["location"])
    assert page.status_code == 200
    assert "Your connection works!" in page.text
    assert "from the &#39;groups&#39; attribute" in page.text
    assert "the &#39;email&#39; attribute" in page.text
    assert "SAML attributes received" in page.text
    assert "R&amp;D" in page.text
    assert client.cookies.get("CF_Authorization") is None  # a test makes no session


async def test_the_test_page_says_what_to_fix_for_an_unknown_certificate(
    client: httpx.AsyncClient, saml_idp: SamlIdP
) -> None:
    saml_idp.options = saml_idp.options_for(signer="foreign")
    to_idp = await client.get(f"/test-idp?idp={SAML_IDP_ID}")
    form = await idp_form(saml_idp, to_idp.headers["location"])
    page = await client.get((await client.post(form.action, data=form.fields)).headers["location"])
    assert page.status_code == 400
    assert "SAML signature (the IdP certificate)" in page.text
    assert "idp_public_certs" in page.text


# --- configuration and the admin API -----------------------------------------------------------


def _saml(**config: Any) -> dict[str, Any]:
    return {"id": "s", "name": "S", "type": "saml", "config": config}


def _problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_identity_provider(document)
    return caught.value.problems


def test_a_bad_certificate_is_a_config_error_with_its_key_path(saml_idp: SamlIdP) -> None:
    problems = _problems(
        _saml(
            issuer_url="http://www.okta.com/exk1",
            sso_target_url="https://okta.example/sso",
            idp_public_certs=[saml_idp.keys.cert_pem, "-----BEGIN CERTIFICATE-----\nAAAA\n"],
        )
    )
    assert problems == ["config.idp_public_certs[1]: is not a PEM X.509 certificate"]


def test_saml_config_problems_are_reported_with_their_key_paths() -> None:
    assert _problems(_saml()) == [
        "config.issuer_url: is required",
        "config.sso_target_url: is required",
        "config.idp_public_certs: needs at least one certificate",
    ]
    assert _problems(
        _saml(metadata_url="https://okta.example/md", issuer_url="http://www.okta.com/exk1")
    ) == ["config.metadata_url: replaces issuer_url, sso_target_url and idp_public_certs: give one"]
    assert _problems(
        _saml(
            metadata_url="https://okta.example/md",
            header_attributes=[
                {"attribute_name": "email", "header_name": "Cf-Access-Jwt-Assertion"}
            ],
        )
    ) == [
        "config.header_attributes[0].header_name: "
        "must be an HTTP header name the gateway does not set"
    ]


def test_a_metadata_url_over_plain_http_is_refused_but_to_a_loopback_host() -> None:
    """The metadata holds the certificates assertions are checked with: read over plain http,
    anyone on the path could put in their own and sign anyone in."""
    assert _problems(_saml(metadata_url="http://okta.example/md")) == [
        "config.metadata_url: must be an https URL"
    ]
    for local in ("http://127.0.0.1:8080/md", "http://localhost/md", "http://[::1]/md"):
        assert parse_identity_provider(_saml(metadata_url=local)).config.metadata_url == local


def test_check_config_says_when_xmlsec1_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    idp = parse_identity_provider(_saml(metadata_url="https://okta.example/md"))
    assert check_idp(idp) == []
    monkeypatch.setattr(saml_provider, "XMLSEC_BINARY", "no-such-xmlsec1-here")
    [finding] = check_idp(idp)
    assert finding.severity == "error"
    assert "xmlsec1" in finding.message


async def test_the_admin_api_makes_and_shows_a_saml_idp(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp)
    doc["gateway"]["admin_token"] = TOKEN
    body = {
        "name": "Okta SAML 2",
        "type": "saml",
        "config": {
            "issuer_url": saml_idp.issuer,
            "sso_target_url": saml_idp.sso_url,
            "idp_public_certs": [saml_idp.keys.cert_pem],
            "header_attributes": [DEPARTMENT_HEADER],
        },
    }
    gateway = create_app(parse_settings(doc), store=store)
    async with running(gateway), admin_client(gateway) as api:
        made = await api.post("/api/identity_providers", json=body)
        assert made.status_code == 201, made.text
        result = made.json()["result"]
        assert result["type"] == "saml"
        assert result["config"]["redirect_url"] == SP_ENTITY_ID
        assert result["config"]["header_attributes"] == [DEPARTMENT_HEADER]
        assert result["config"]["email_attribute_name"] == "email"
        bad = {**body, "config": {**body["config"], "idp_public_certs": ["not a certificate"]}}
        refused = await api.post("/api/identity_providers", json=bad)
        assert refused.status_code == 422
        assert "config.idp_public_certs[0]" in refused.text
        async with browser(gateway) as c:
            answer = await c.get(f"/cdn-cgi/access/saml-metadata/{result['id']}")
        assert answer.status_code == 200


# --- forward-auth and metadata_url -------------------------------------------------------------


async def test_forward_auth_answers_every_attribute_header_blank_when_unset(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    headers = [DEPARTMENT_HEADER, {"attribute_name": "costCenter", "header_name": "X-Cost-Center"}]
    doc = saml_settings_doc(
        upstream.url,
        saml_idp,
        header_attributes=headers,
        attributes=["groups", "department", "costCenter"],
    )
    doc["gateway"]["trusted_proxies"] = ["10.0.0.0/8"]
    async with running(create_app(parse_settings(doc), store=store)) as app:
        async with browser(app) as alices:
            assert (await saml_sign_in(alices, saml_idp, ALICE)).status_code == 302
            session = alices.cookies["CF_Authorization"]
        async with browser(app, address="10.0.0.2") as proxy:
            answer = await proxy.get(
                "/cdn-cgi/access/authz",
                headers={
                    "X-Forwarded-Host": "access.example.com",
                    "X-Forwarded-Uri": "/docs",
                    "X-Forwarded-For": "203.0.113.7",
                    "Cookie": f"CF_Authorization={session}",
                },
            )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-user-department"] == "R&D"
    # Answered empty: the front proxy then sets it empty over whatever the client sent.
    assert answer.headers["x-cost-center"] == ""


async def test_an_idp_given_by_its_metadata_url_signs_alice_in(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp)
    doc["identity_providers"][0]["config"] = {
        "metadata_url": saml_idp.metadata_url,
        "attributes": ["groups"],
    }
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        assert (await saml_sign_in(c, saml_idp, ALICE)).status_code == 302
        assert (await c.get("/docs/page?x=1")).status_code == 200


def metadata_url_provider(
    url: str, http: httpx.AsyncClient, clock: FakeClock
) -> saml_provider.SamlProvider:
    """A SAML provider that reads its IdP's metadata from `url`, on `clock`."""
    return saml_provider.SamlProvider(
        parse_identity_provider(_saml(metadata_url=url)),
        http,
        MemoryStore(clock=clock),
        acs_url=SP_ENTITY_ID,
        clock=clock,
    )


async def test_a_failing_metadata_url_is_read_again_after_a_pause_not_at_every_sign_in(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, saml_idp: SamlIdP
) -> None:
    """The last good metadata serves meanwhile: no sign-in waits for the dead URL's timeout."""
    url = "https://idp.example/saml/metadata"
    route = router.get(url).mock(return_value=httpx.Response(200, text=saml_idp.metadata_xml()))
    provider = metadata_url_provider(url, http, clock)
    first = await provider.metadata_document()
    route.mock(return_value=httpx.Response(503))
    clock.advance(saml_provider.METADATA_TTL + 1)
    for _ in range(3):
        assert await provider.metadata_document() == first  # from the last good copy
    assert route.call_count == 2
    clock.advance(saml_provider.METADATA_RETRY + 1)
    await provider.metadata_document()
    assert route.call_count == 3


async def test_a_metadata_url_failing_from_the_start_is_read_once_per_pause_not_per_sign_in(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, saml_idp: SamlIdP
) -> None:
    """No good copy yet: a flood of sign-ins while the first read hangs makes one request to
    the IdP, and those that follow within the pause get the error page without waiting."""
    url = "https://idp.example/saml/metadata"
    asked, answered = asyncio.Event(), asyncio.Event()

    async def hanging_then_timing_out(request: httpx.Request) -> httpx.Response:
        asked.set()
        await answered.wait()
        raise httpx.ConnectTimeout("timed out", request=request)

    route = router.get(url).mock(side_effect=hanging_then_timing_out)
    provider = metadata_url_provider(url, http, clock)
    flood = [asyncio.create_task(provider.begin()) for _ in range(5)]
    await asked.wait()  # the first sign-in's read is under way; the others queue behind it
    answered.set()
    outcomes = await asyncio.gather(*flood, return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [IdPError] * 5
    assert all(outcome.status == 502 and outcome.step == "metadata" for outcome in outcomes)
    assert route.call_count == 1

    clock.advance(saml_provider.METADATA_RETRY - 1)
    with pytest.raises(IdPError, match="metadata could not be read"):
        await provider.begin()
    with pytest.raises(IdPError):
        await provider.metadata_document()
    assert route.call_count == 1

    route.mock(side_effect=None, return_value=httpx.Response(200, text=saml_idp.metadata_xml()))
    clock.advance(2)  # the pause is over: read again, and this time it answers
    assert (await provider.begin()).url.startswith(saml_idp.sso_url)
    assert route.call_count == 2


async def test_an_encrypted_assertion_is_decrypted_with_the_sp_key(
    client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    metadata = parse_xml((await client.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")).text)
    certificate = metadata.find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate").text
    sp_cert = f"-----BEGIN CERTIFICATE-----\n{certificate.strip()}\n-----END CERTIFICATE-----\n"
    query = redirect_query(await start_sign_in(client, "/docs/page"))
    request = saml_idp.server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
    # pysaml2's IdP signs the assertion, then encrypts it for the SP (Okta's "Encrypted").
    response = saml_idp.server.create_authn_response(
        identity={"email": [ALICE.email], "groups": list(ALICE.groups)},
        in_response_to=request.message.id,
        destination=SP_ENTITY_ID,
        sp_entity_id=SP_ENTITY_ID,
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=ALICE.email),
        authn={"class_ref": PASSWORDPROTECTEDTRANSPORT},
        sign_assertion=True,
        encrypt_assertion=True,
        encrypt_cert_assertion=sp_cert,
    )
    assert b"EncryptedAssertion" in str(response).encode()
    answer = await client.post(
        SP_ENTITY_ID,
        data={
            "SAMLResponse": base64.b64encode(str(response).encode()).decode(),
            "RelayState": query["RelayState"],
        },
    )
    assert answer.status_code == 302, answer.text
    assert (await client.get("/cdn-cgi/access/get-identity")).json()["email"] == ALICE.email


@pytest.mark.parametrize(
    ("options", "step"),
    [
        # pysaml2 reads SubjectConfirmationData's Recipient only when told who it is: a check
        # that was silently off until this test
        (ResponseOptions(recipient="https://evil.example/cdn-cgi/access/callback"), "Recipient"),
        (ResponseOptions(issuer="http://www.okta.com/exk-other"), "Issuer"),
        (ResponseOptions(not_on_or_after=-600, not_before=-900), "expired or not yet valid"),
    ],
)
async def test_each_refusal_names_what_to_fix_and_makes_no_session(
    client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
    options: ResponseOptions,
    step: str,
) -> None:
    saml_idp.options = options
    refused = await saml_sign_in(client, saml_idp, ALICE)
    assert refused.status_code == 400
    assert step in refused.text
    assert (await client.get("/cdn-cgi/access/get-identity")).status_code == 401
    assert upstream.requests == []


# --- SCIM --------------------------------------------------------------------------------------


async def test_scim_deactivation_ends_a_saml_users_sessions_matched_by_email(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp)
    doc["identity_providers"][0]["scim_config"] = {"enabled": True, "user_deprovision": True}
    async with running(create_app(parse_settings(doc), store=store)) as app:
        rt = app.runtime
        assert rt is not None
        idp = rt.settings.idp(SAML_IDP_ID)
        assert idp is not None
        secret = await rt.scim_secrets.regenerate(idp)
        base = f"{TEAM}/populations/{SAML_IDP_ID}/scim/v2"
        async with browser(app) as alices, okta_client(app, secret, base) as scim:
            assert (await saml_sign_in(alices, saml_idp, ALICE)).status_code == 302
            # Okta's SCIM app knows alice by her email and its own user id, never the NameID.
            user = await create_user(scim, external_id="00u-not-the-name-id")
            assert (await alices.get("/docs/page?x=1")).status_code == 200
            assert (await scim.patch(f"/Users/{user['id']}", json=deactivate())).is_success
            assert (await alices.get("/docs/page?x=1")).status_code == 302  # to sign in again


# --- failing closed ----------------------------------------------------------------------------


async def test_without_xmlsec1_sign_in_fails_closed_with_a_page(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saml_provider, "XMLSEC_BINARY", "no-such-xmlsec1-here")
    doc = saml_settings_doc(upstream.url, saml_idp)
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        to_login = await c.get("/docs/page")
        page = await c.get(to_login.headers["location"])
    assert page.status_code == 503
    assert "xmlsec1" in page.text
    assert "Traceback" not in page.text


async def test_an_unreachable_metadata_url_fails_closed_with_a_page(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp)
    doc["identity_providers"][0]["config"] = {"metadata_url": "http://127.0.0.1:9/metadata"}
    async with running(create_app(parse_settings(doc), store=store)) as app, browser(app) as c:
        to_login = await c.get("/docs/page")
        page = await c.get(to_login.headers["location"])
    assert page.status_code == 502
    assert "metadata" in page.text


async def test_sp_metadata_validates_against_the_saml_metadata_schema(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")).text
    validate_with_saml_schema(document)  # raises XMLSchemaError on any departure
    with pytest.raises(XMLSchemaError):  # and it does check: an ACS without its Location
        validate_with_saml_schema(document.replace(f'Location="{SP_ENTITY_ID}"', ""))


# --- several instances -------------------------------------------------------------------------


async def test_a_sign_in_started_on_one_instance_finishes_on_another(
    store: Store, upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    """Two gateways on one store (Redis, or one memory store): the pending state, the SP key
    and the used-assertion ids are all in it."""
    settings = parse_settings(saml_settings_doc(upstream.url, saml_idp))
    async with (
        running(create_app(settings, store=store)) as first,
        running(create_app(settings, store=store)) as second,
        browser(first) as on_first,
        browser(second) as on_second,
    ):
        form = await idp_form(saml_idp, await start_sign_in(on_first, "/docs/page?x=1"))
        on_second.cookies = on_first.cookies
        answer = await post_to_callback(on_second, form)
        assert answer.status_code == 302, answer.text
        assert (await on_second.get("/docs/page?x=1")).status_code == 200
        on_first.cookies = on_second.cookies
        assert (await on_first.get("/docs/page?x=1")).status_code == 200
        replayed = await post_to_callback(on_first, form)  # the same Response, on the other
        assert replayed.status_code == 400


def test_check_config_warns_of_a_saml_rule_on_an_attribute_no_idp_keeps(
    upstream: EchoUpstream, saml_idp: SamlIdP
) -> None:
    doc = saml_settings_doc(upstream.url, saml_idp, attributes=["department"])
    settings = parse_settings(doc)  # the apps' rule reads "groups", which is not kept
    findings = check_settings(settings, None)
    assert [(f.severity, f.path) for f in findings] == [
        ("warning", f"apps[{i}].policies[0].include[0].saml.attribute_name") for i in (0, 1)
    ]
    assert "'groups'" in findings[0].message
    kept = parse_settings(saml_settings_doc(upstream.url, saml_idp))
    assert check_settings(kept, None) == []
