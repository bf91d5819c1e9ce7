"""The test SAML IdP (saml_idp.py) against pysaml2's own SP client, so it is known-good on its own.

The gateway's SAML tests trust that a default Response is valid and that each knob breaks
exactly what it names; here pysaml2's `Saml2Client` (a maintained SP) says so, through the
real HTTP endpoint: the AuthnRequest goes out by HTTP-Redirect, the form comes back.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from demo_process import LoginForm
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.response import AuthnResponse
from saml_idp import ALICE, BOB, NS, KeyPair, ResponseOptions, SamlIdP, as_user, redirect_query

SP = "https://access.example.com/cdn-cgi/access/callback"


@pytest_asyncio.fixture
async def idp(tmp_path: Path) -> AsyncIterator[SamlIdP]:
    server = SamlIdP(tmp_path, sp_entity_id=SP, acs_url=SP)
    await server.start()
    yield server
    await server.stop()


def sp_client(
    idp: SamlIdP, *, want_response_signed: bool = False, keys: KeyPair | None = None
) -> Saml2Client:
    own_keys = (
        {}
        if keys is None
        else {
            "key_file": str(keys.key_file),
            "cert_file": str(keys.cert_file),
            "encryption_keypairs": [
                {"key_file": str(keys.key_file), "cert_file": str(keys.cert_file)}
            ],
        }
    )
    config = SPConfig().load(
        {
            **own_keys,
            "entityid": SP,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "metadata": {"inline": [idp.metadata_xml()]},
            "accepted_time_diff": 180,
            "allow_unknown_attributes": True,  # Okta's names: email, groups
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(SP, BINDING_HTTP_POST)]},
                    "want_assertions_signed": not want_response_signed,
                    "want_response_signed": want_response_signed,
                    "allow_unsolicited": False,
                }
            },
        }
    )
    return Saml2Client(config)


async def answer(idp: SamlIdP, client: Saml2Client, user: str = ALICE.email) -> tuple[str, Any]:
    """The SP's AuthnRequest through the IdP's SSO endpoint: (request id, POST form)."""
    request_id, info = client.prepare_for_authenticate(
        entityid=idp.issuer, relay_state="relay-1", binding=BINDING_HTTP_REDIRECT
    )
    location = dict(info["headers"])["Location"]
    assert location.startswith(idp.sso_url)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(as_user(location, user))
    assert page.status_code == 200, page.text
    form = LoginForm(page.text)
    assert form.action == SP and form.fields["RelayState"] == "relay-1"
    return request_id, form


def parse(client: Saml2Client, request_id: str, form: Any) -> AuthnResponse:
    # Without conv_info pysaml2 checks no Recipient at all (AuthnResponse.verify_recipient).
    return client.parse_authn_request_response(
        form.fields["SAMLResponse"],
        BINDING_HTTP_POST,
        outstanding={request_id: "/"},
        conv_info={"entity_id": SP},
    )


def refusal(client: Saml2Client, request_id: str, form: Any) -> str:
    """Why pysaml2 refuses the form's Response (the exception's name), or "" if it accepts."""
    try:
        response = parse(client, request_id, form)
    except Exception as error:  # pysaml2 raises many kinds; any is a refusal
        return type(error).__name__
    return "" if response is not None else "None (a wrong Destination, say)"


async def test_alice_signs_in_with_email_groups_and_attributes(idp: SamlIdP) -> None:
    client = sp_client(idp)
    request_id, form = await answer(idp, client)
    response = parse(client, request_id, form)
    assert response.ava["email"] == ["alice@example.com"]
    assert response.ava["groups"] == ["Engineering", "Everyone"]
    assert response.ava["department"] == ["R&D"]
    assert response.name_id.text == "alice@example.com"
    assert response.in_response_to == request_id
    assert [request.id for request in idp.requests] == [request_id]


async def test_bob_is_in_sales(idp: SamlIdP) -> None:
    client = sp_client(idp)
    request_id, form = await answer(idp, client, BOB.email)
    assert parse(client, request_id, form).ava["groups"] == ["Sales"]


@pytest.mark.parametrize("signed", ["response", "both"])
async def test_a_signed_response_is_accepted_by_an_sp_that_wants_one(
    idp: SamlIdP, signed: str
) -> None:
    idp.options = ResponseOptions(signed=signed)  # type: ignore[arg-type]
    client = sp_client(idp, want_response_signed=True)
    request_id, form = await answer(idp, client)
    assert parse(client, request_id, form).ava["email"] == ["alice@example.com"]


async def test_an_encrypted_assertion_is_read_with_the_sp_key(idp: SamlIdP, tmp_path: Path) -> None:
    sp_keys = KeyPair.generate(tmp_path, "sp")
    idp.options = ResponseOptions(encrypt_for=sp_keys.cert_pem)
    client = sp_client(idp, keys=sp_keys)
    request_id, form = await answer(idp, client)
    xml = base64.b64decode(form.fields["SAMLResponse"])
    assert b"EncryptedAssertion" in xml and ALICE.email.encode() not in xml
    assert parse(client, request_id, form).ava["email"] == ["alice@example.com"]


async def test_an_idp_clock_a_minute_ahead_is_within_the_leeway(idp: SamlIdP) -> None:
    idp.options = ResponseOptions(skew=60)
    client = sp_client(idp)
    request_id, form = await answer(idp, client)
    assert parse(client, request_id, form).ava["email"] == ["alice@example.com"]


async def test_a_request_the_idp_cannot_parse_is_a_400(idp: SamlIdP) -> None:
    async with httpx.AsyncClient() as browser:
        page = await browser.get(idp.sso_url, params={"SAMLRequest": "bm90IHNhbWw="})
    assert page.status_code == 400
    assert idp.requests == []


def swap_email(tree: etree._Element) -> None:
    (value,) = tree.xpath("//saml:Attribute[@Name='email']/saml:AttributeValue", namespaces=NS)
    value.text = "mallory@example.com"


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(signed="none"),
        ResponseOptions(signer="foreign"),
        ResponseOptions(tamper=swap_email),
        ResponseOptions(audience="https://elsewhere.example.com/sp"),
        ResponseOptions(recipient="https://elsewhere.example.com/acs"),
        ResponseOptions(not_on_or_after=-600),
        ResponseOptions(skew=-900),
        ResponseOptions(not_before=600),
        ResponseOptions(in_response_to="id-of-another-request"),
        ResponseOptions(idp_initiated=True),
    ],
    ids=[
        "unsigned",
        "foreign-key",
        "tampered",
        "audience",
        "recipient",
        "expired",
        "clock-behind",
        "not-yet-valid",
        "in-response-to",
        "idp-initiated",
    ],
)
async def test_each_attack_knob_makes_a_response_pysaml2_refuses(
    idp: SamlIdP, options: ResponseOptions
) -> None:
    client = sp_client(idp)
    idp.options = options
    request_id, form = await answer(idp, client)
    assert refusal(client, request_id, form), "pysaml2 accepted it"


async def test_the_knobs_change_what_they_name(idp: SamlIdP) -> None:
    # (pysaml2's SP, as configured above, lets a wrong Destination through: checked here only)
    idp.options = ResponseOptions(
        audience="https://aud.example",
        recipient="https://rcp.example",
        destination="https://dst.example",
        in_response_to="req-x",
    )
    tree = etree.fromstring(idp.response_xml(ALICE, "ignored"))
    assert tree.get("Destination") == "https://dst.example"
    assert tree.xpath("string(//saml:Audience)", namespaces=NS) == "https://aud.example"
    assert (
        tree.xpath("string(//saml:SubjectConfirmationData/@Recipient)", namespaces=NS)
        == "https://rcp.example"
    )
    assert tree.get("InResponseTo") == "req-x"
    unsolicited = etree.fromstring(
        idp.response_xml(ALICE, "req-1", ResponseOptions(idp_initiated=True))
    )
    assert unsolicited.get("InResponseTo") is None
    assert not unsolicited.xpath("//@InResponseTo")
    both = etree.fromstring(idp.response_xml(ALICE, "req-1", ResponseOptions(signed="both")))
    assert len(both.xpath("/samlp:Response/ds:Signature", namespaces=NS)) == 1
    assert len(both.xpath("//saml:Assertion/ds:Signature", namespaces=NS)) == 1
    raw = b"<not-saml/>"
    assert idp.response_xml(ALICE, "req-1", ResponseOptions(raw=raw)) == raw
    assert base64.b64decode(base64.b64encode(raw)) == raw


def test_redirect_query_reads_the_binding_parameters() -> None:
    url = "https://idp.example/sso?SAMLRequest=abc%2B&RelayState=r1"
    assert redirect_query(url) == {"SAMLRequest": "abc+", "RelayState": "r1"}
