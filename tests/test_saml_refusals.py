"""SAML sign-in (SPEC 10) against a real SAML IdP (saml_idp.py), and every Response it must refuse.

Each refusal is an HTML error page with a reference id, no session (no `CF_Authorization`,
`get-identity` 401, the app still sends the browser to sign in) and no request reaching the
upstream. The controls (alice admitted, a clock within the leeway) show that the same path
accepts a good Response, so a refusal is the check's doing, not a broken setup.
"""

from __future__ import annotations

import base64
import copy
import logging
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from harness import EchoUpstream, assert_rejected, browser, session_cookie
from lxml import etree
from redis_server import RedisServer
from saml_idp import (
    ALICE,
    BOB,
    NS,
    SAML_IDP_ID,
    ResponseOptions,
    SamlIdP,
    SamlUser,
    post_to_callback,
    saml_form,
    saml_sign_in,
)

from gateway.app import Gateway
from gateway.state.registry import Registry

APP_URL = "/docs/page?x=1"
MALLORY = "mallory@example.com"
MALLORY_USER = SamlUser(MALLORY, ("Engineering",))  # whom the policy would admit
ELSEWHERE = "https://elsewhere.example.com/cdn-cgi/access/callback"
FORBIDDEN_FILE = "root:x:0:0"  # the first line of /etc/passwd, which must never be read


async def assert_refused(
    client: httpx.AsyncClient,
    answer: httpx.Response,
    upstream: EchoUpstream,
    gateway: Gateway,
    status: int = 400,
) -> None:
    """An error page, the browser no more signed in than before it posted, and no user
    recorded (nothing stored half-way)."""
    assert answer.status_code == status, (answer.status_code, answer.headers.get("location"))
    await assert_rejected(answer, upstream, status)
    assert "CF_Authorization" not in client.cookies
    identity = await client.get("/cdn-cgi/access/get-identity")
    assert identity.status_code == 401, identity.text
    again = await client.get(APP_URL)
    assert again.status_code == 302
    assert "/cdn-cgi/access/login/" in again.headers["location"]
    assert upstream.requests == []
    assert gateway.runtime is not None
    assert await Registry(gateway.runtime.store).all() == []


async def refused_sign_in(
    client: httpx.AsyncClient,
    idp: SamlIdP,
    upstream: EchoUpstream,
    gateway: Gateway,
    options: ResponseOptions,
) -> httpx.Response:
    idp.options = options
    answer = await saml_sign_in(client, idp, ALICE)
    await assert_refused(client, answer, upstream, gateway)
    return answer


# --- the controls: a good Response is accepted ----------------------------------------------


async def test_alice_signs_in_and_the_upstream_sees_her_email_and_groups(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
) -> None:
    done = await saml_sign_in(saml_client, saml_idp, ALICE)
    assert done.status_code == 302, done.text
    assert done.headers["location"] == APP_URL
    assert session_cookie(done) is not None
    page = await saml_client.get(APP_URL)
    assert page.status_code == 200
    seen = page.json()["headers"]
    assert seen["cf-access-authenticated-user-email"] == ALICE.email
    identity = (await saml_client.get("/cdn-cgi/access/get-identity")).json()
    assert identity["email"] == ALICE.email
    assert identity["groups"] == ["Engineering", "Everyone"]
    assert identity["idp"] == {"id": SAML_IDP_ID, "type": "saml"}
    assert identity["saml_attributes"]["department"] == ["R&D"]
    assert saml_gateway.runtime is not None  # the registry check of assert_refused can fail
    users = await Registry(saml_gateway.runtime.store).all()
    assert [user.email for user in users] == [ALICE.email]
    (request,) = saml_idp.requests
    assert request.assertion_consumer_service_url in (None, saml_idp.acs_url)
    assert request.issuer.text == saml_idp.sp_entity_id


async def test_bob_is_refused_by_the_saml_group_rule(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    denied = await saml_sign_in(saml_client, saml_idp, BOB)
    assert denied.status_code == 403
    assert upstream.requests == []


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(skew=120),
        ResponseOptions(not_before=150),
        ResponseOptions(signed="response"),
        ResponseOptions(signed="both"),
    ],
    ids=["idp-clock-2-min-ahead", "not-before-in-2.5-min", "response-signed", "both-signed"],
)
async def test_a_good_response_is_accepted(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
    options: ResponseOptions,
) -> None:
    saml_idp.options = options
    done = await saml_sign_in(saml_client, saml_idp, ALICE)
    assert done.status_code == 302, done.text
    assert (await saml_client.get(APP_URL)).status_code == 200


# --- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(signed="none"),
        ResponseOptions(signer="foreign"),
        ResponseOptions(signer="foreign", signed="response"),
        ResponseOptions(signer="foreign", signed="both"),
    ],
    ids=["unsigned", "unknown-cert-assertion", "unknown-cert-response", "unknown-cert-both"],
)
async def test_a_response_not_signed_by_the_configured_certificate_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    options: ResponseOptions,
) -> None:
    await refused_sign_in(saml_client, saml_idp, upstream, saml_gateway, options)


def _attribute_values(tree: etree._Element, name: str) -> list[etree._Element]:
    return list(tree.xpath(f"//saml:Attribute[@Name='{name}']/saml:AttributeValue", namespaces=NS))


def _grant_engineering(tree: etree._Element) -> None:
    """Bob's `groups` value Sales rewritten to Engineering, after the IdP signed it."""
    (value,) = _attribute_values(tree, "groups")
    value.text = "Engineering"


def _become_mallory(tree: etree._Element) -> None:
    for value in _attribute_values(tree, "email"):
        value.text = MALLORY
    for name_id in tree.xpath("//saml:NameID", namespaces=NS):
        name_id.text = MALLORY


@pytest.mark.parametrize("signed", ["assertion", "response", "both"])
@pytest.mark.parametrize("tamper", [_grant_engineering, _become_mallory])
async def test_an_attribute_altered_after_signing_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    signed: str,
    tamper: Callable[[etree._Element], None],
) -> None:
    saml_idp.options = ResponseOptions(signed=signed, tamper=tamper)  # type: ignore[arg-type]
    answer = await saml_sign_in(saml_client, saml_idp, BOB)
    await assert_refused(saml_client, answer, upstream, saml_gateway)


# --- signature wrapping: an unsigned assertion for mallory (in Engineering) beside or around
# the signed one for alice; read, it would let mallory in.


def _evil_copy(assertion: etree._Element) -> etree._Element:
    """The signed assertion, unsigned, with a new ID, for mallory."""
    evil = copy.deepcopy(assertion)
    for signature in evil.findall("ds:Signature", NS):
        evil.remove(signature)
    evil.set("ID", "_evil" + assertion.get("ID", ""))
    _become_mallory(evil)
    return evil


def _signed_assertion(tree: etree._Element) -> etree._Element:
    (assertion,) = tree.findall("saml:Assertion", NS)
    return assertion


def _evil_before(tree: etree._Element) -> None:
    signed = _signed_assertion(tree)
    signed.addprevious(_evil_copy(signed))


def _evil_after(tree: etree._Element) -> None:
    signed = _signed_assertion(tree)
    signed.addnext(_evil_copy(signed))


def _evil_with_the_same_id_before(tree: etree._Element) -> None:
    signed = _signed_assertion(tree)
    evil = _evil_copy(signed)
    evil.set("ID", signed.get("ID", ""))
    signed.addprevious(evil)


def _evil_with_the_same_id_after(tree: etree._Element) -> None:
    signed = _signed_assertion(tree)
    evil = _evil_copy(signed)
    evil.set("ID", signed.get("ID", ""))
    signed.addnext(evil)


def _evil_around_in_advice(tree: etree._Element) -> None:
    """The evil assertion in the signed one's place, holding it in its Advice."""
    signed = _signed_assertion(tree)
    evil = _evil_copy(signed)
    signed.addprevious(evil)
    advice = etree.Element(f"{{{NS['saml']}}}Advice")
    evil.find("saml:Subject", NS).addprevious(advice)  # type: ignore[union-attr]
    advice.append(signed)  # moves it


def _signed_hidden_in_extensions(tree: etree._Element) -> None:
    """The signed assertion moved into the Response's Extensions, the evil one in its place."""
    signed = _signed_assertion(tree)
    evil = _evil_copy(signed)
    signed.addprevious(evil)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    tree.find("saml:Issuer", NS).addnext(extensions)  # type: ignore[union-attr]
    extensions.append(signed)


def _signed_response_wrapped(tree: etree._Element) -> None:
    """XSW on a signed Response: the original (signed) Response inside the Signature's Object
    of the Response, whose own assertion is swapped for mallory's."""
    original = copy.deepcopy(tree)
    signed = _signed_assertion(tree)
    signed.addprevious(_evil_copy(signed))
    tree.remove(signed)
    tree.set("ID", "_evil" + tree.get("ID", ""))
    signature = tree.find("ds:Signature", NS)
    assert signature is not None
    holder = etree.SubElement(signature, f"{{{NS['ds']}}}Object")
    holder.append(original)


@pytest.mark.parametrize(
    ("signed", "wrap"),
    [
        ("assertion", _evil_before),
        ("assertion", _evil_after),
        ("assertion", _evil_with_the_same_id_before),
        ("assertion", _evil_with_the_same_id_after),
        ("assertion", _evil_around_in_advice),
        ("assertion", _signed_hidden_in_extensions),
        ("response", _evil_before),
        ("response", _signed_response_wrapped),
        ("both", _evil_before),
        ("both", _evil_around_in_advice),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__.strip("_"),
)
async def test_signature_wrapping_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    signed: str,
    wrap: Callable[[etree._Element], None],
) -> None:
    options = ResponseOptions(signed=signed, tamper=wrap)  # type: ignore[arg-type]
    answer = await refused_sign_in(saml_client, saml_idp, upstream, saml_gateway, options)
    assert MALLORY not in answer.text


# --- encrypted assertions: encryption (for the SP's public certificate, which anyone can
# read in its metadata) proves nothing about who wrote the assertion; the signature does.


async def sp_certificate(client: httpx.AsyncClient) -> str:
    """The SP's certificate as its metadata publishes it, in PEM."""
    metadata = etree.fromstring(
        (await client.get(f"/cdn-cgi/access/saml-metadata/{SAML_IDP_ID}")).content
    )
    der = metadata.xpath("string(//ds:X509Certificate)", namespaces=NS).strip()
    return f"-----BEGIN CERTIFICATE-----\n{der}\n-----END CERTIFICATE-----\n"


async def test_an_encrypted_signed_assertion_is_accepted(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    saml_idp.options = ResponseOptions(encrypt_for=await sp_certificate(saml_client))
    done = await saml_sign_in(saml_client, saml_idp, ALICE)
    assert done.status_code == 302, done.text
    identity = await saml_client.get("/cdn-cgi/access/get-identity")
    assert identity.json()["email"] == ALICE.email


@pytest.mark.parametrize(
    ("signed", "signer", "wrap", "user"),
    [
        ("none", "idp", None, MALLORY_USER),
        ("assertion", "foreign", None, MALLORY_USER),
        ("assertion", "idp", _evil_after, ALICE),
        ("assertion", "idp", _evil_before, ALICE),
    ],
    ids=["unsigned", "unknown-cert", "plain-evil-after", "plain-evil-before"],
)
async def test_an_encrypted_assertion_not_signed_by_the_idp_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    signed: str,
    signer: str,
    wrap: Callable[[etree._Element], None] | None,
    user: SamlUser,
) -> None:
    """An attacker encrypts an assertion of their own for the SP (unsigned, or signed by their
    key), or puts a plain unsigned one beside the IdP's encrypted one."""
    saml_idp.users[MALLORY] = MALLORY_USER
    saml_idp.options = ResponseOptions(
        signed=signed,  # type: ignore[arg-type]
        signer=signer,  # type: ignore[arg-type]
        tamper=wrap,
        encrypt_for=await sp_certificate(saml_client),
    )
    answer = await saml_sign_in(saml_client, saml_idp, user)
    await assert_refused(saml_client, answer, upstream, saml_gateway)
    assert MALLORY not in answer.text


# --- addressing and time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(audience="https://elsewhere.example.com/sp"),
        ResponseOptions(recipient=ELSEWHERE),
        ResponseOptions(recipient=ELSEWHERE, signed="both"),
        ResponseOptions(destination=ELSEWHERE),
        ResponseOptions(destination=ELSEWHERE, signed="both"),
        ResponseOptions(issuer="http://www.okta.com/exk-another-app"),
    ],
    ids=[
        "audience",
        "recipient",
        "recipient-both-signed",
        "destination",
        "destination-both-signed",
        "issuer",
    ],
)
async def test_a_response_meant_for_another_party_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    options: ResponseOptions,
) -> None:
    await refused_sign_in(saml_client, saml_idp, upstream, saml_gateway, options)


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(not_on_or_after=-240),
        ResponseOptions(skew=-600),
        ResponseOptions(not_before=240),
        ResponseOptions(skew=600),
    ],
    ids=["expired", "idp-clock-10-min-behind", "not-before-in-4-min", "idp-clock-10-min-ahead"],
)
async def test_a_response_outside_its_validity_beyond_the_leeway_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    options: ResponseOptions,
) -> None:
    await refused_sign_in(saml_client, saml_idp, upstream, saml_gateway, options)


# --- binding to the browser, replay, IdP-initiated ----------------------------------------


@pytest_asyncio.fixture
async def saml_gateway_browsers(
    saml_gateway: Gateway,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two browsers on the same gateway: a victim, and an attacker elsewhere."""
    async with (
        browser(saml_gateway) as victim,
        browser(saml_gateway, address="198.51.100.9") as attacker,
    ):
        yield victim, attacker


async def test_a_response_posted_by_another_browser_is_refused(
    saml_gateway_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    saml_gateway: Gateway,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
) -> None:
    victim, attacker = saml_gateway_browsers
    stolen = await saml_form(victim, saml_idp, ALICE)
    answer = await post_to_callback(attacker, stolen)
    await assert_refused(attacker, answer, upstream, saml_gateway)


async def test_a_response_to_another_browsers_request_is_refused(
    saml_gateway_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    saml_gateway: Gateway,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
) -> None:
    """The attacker's own RelayState, with the Response (InResponseTo) of the victim's."""
    victim, attacker = saml_gateway_browsers
    stolen = await saml_form(victim, saml_idp, ALICE)
    own = await saml_form(attacker, saml_idp, BOB)
    own.fields["SAMLResponse"] = stolen.fields["SAMLResponse"]
    answer = await post_to_callback(attacker, own)
    await assert_refused(attacker, answer, upstream, saml_gateway)


async def test_a_victims_signed_assertion_in_a_response_to_the_attackers_request_is_refused(
    saml_gateway_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    saml_gateway: Gateway,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
) -> None:
    """Only the assertion is signed, so the Response around it is the attacker's to write: its
    InResponseTo names the attacker's own request; the assertion's still names the victim's."""
    victim, attacker = saml_gateway_browsers
    stolen = await saml_form(victim, saml_idp, ALICE)
    own = await saml_form(attacker, saml_idp, BOB)
    attackers_request = saml_idp.requests[-1].id
    envelope = etree.fromstring(base64.b64decode(stolen.fields["SAMLResponse"]))
    envelope.set("InResponseTo", attackers_request)
    own.fields["SAMLResponse"] = base64.b64encode(etree.tostring(envelope)).decode()
    answer = await post_to_callback(attacker, own)
    await assert_refused(attacker, answer, upstream, saml_gateway)


async def test_the_same_response_posted_twice_is_refused_the_second_time(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    form = await saml_form(saml_client, saml_idp, ALICE)
    first = await post_to_callback(saml_client, form)
    assert first.status_code == 302, first.text
    again = await post_to_callback(saml_client, form)
    assert again.status_code == 400, again.text
    assert "text/html" in again.headers["content-type"]
    assert "reference" in again.text
    assert session_cookie(again) is None
    assert upstream.requests == []


async def test_a_response_sent_in_the_url_instead_of_posted_is_refused(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, saml_gateway: Gateway, upstream: EchoUpstream
) -> None:
    """The HTTP-POST binding only: a Response in a query string would sit in every proxy's and
    access log's copy of the URL."""
    form = await saml_form(saml_client, saml_idp, ALICE)
    query = {"state": form.fields["RelayState"], "SAMLResponse": form.fields["SAMLResponse"]}
    answer = await saml_client.get(saml_idp.acs_url, params=query)
    await assert_refused(saml_client, answer, upstream, saml_gateway)


def _start_from_the_app(page: httpx.Response) -> bool:
    return re.search(r"start\w*\s+(from|at)\s+the\s+app", page.text, re.IGNORECASE) is not None


async def test_an_idp_initiated_response_tells_to_start_from_the_app(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, saml_gateway: Gateway, upstream: EchoUpstream
) -> None:
    """An Okta dashboard tile: no sign-in begun, no RelayState, no InResponseTo."""
    unsolicited = saml_idp.response_xml(ALICE, None, ResponseOptions(idp_initiated=True))
    answer = await saml_client.post(
        saml_idp.acs_url, data={"SAMLResponse": base64.b64encode(unsolicited).decode()}
    )
    await assert_refused(saml_client, answer, upstream, saml_gateway)
    assert _start_from_the_app(answer), answer.text


async def test_an_idp_initiated_response_during_a_sign_in_is_refused(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, saml_gateway: Gateway, upstream: EchoUpstream
) -> None:
    """The browser's own RelayState with a Response that answers no request."""
    saml_idp.options = ResponseOptions(idp_initiated=True)
    answer = await saml_sign_in(saml_client, saml_idp, ALICE)
    await assert_refused(saml_client, answer, upstream, saml_gateway)
    assert _start_from_the_app(answer), answer.text


async def test_redis_down_at_the_callback_is_a_503_page_and_no_session(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    upstream: EchoUpstream,
    redis_server: RedisServer,
) -> None:
    """Fail closed: a good Response cannot be checked against its pending sign-in."""
    form = await saml_form(saml_client, saml_idp, ALICE)
    redis_server.stop()
    try:
        answer = await post_to_callback(saml_client, form)
    finally:
        redis_server.start()
    await assert_rejected(answer, upstream, 503)
    assert "CF_Authorization" not in saml_client.cookies


# --- what the IdP says, and how a signed value is read ----------------------------------------

RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"


def _idp_refused(tree: etree._Element) -> None:
    """Okta's refusal (the user is not assigned to the app): a Responder status. The
    assertion, signed on its own, is left in: a status that is not Success refuses anyway."""
    (status_code,) = tree.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    status_code.set("Value", RESPONDER)


async def test_a_response_whose_status_is_not_success_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
) -> None:
    saml_idp.options = ResponseOptions(tamper=_idp_refused)
    answer = await saml_sign_in(saml_client, saml_idp, ALICE)
    await assert_refused(saml_client, answer, upstream, saml_gateway, status=403)


def _comment_after_alice(tree: etree._Element) -> None:
    """`alice@example.com<!---->.evil.example`: exclusive c14n drops comments, so the signature
    still holds; a reader that takes the first text node sees alice."""
    for value in [*_attribute_values(tree, "email"), *tree.xpath("//saml:NameID", namespaces=NS)]:
        assert value.text == EVIL_TWIN.email
        value.text = ALICE.email
        comment = etree.Comment("")
        comment.tail = EVIL_TWIN.email.removeprefix(ALICE.email)
        value.append(comment)


EVIL_TWIN = SamlUser(f"{ALICE.email}.evil.example", ("Engineering",))


async def test_a_comment_inside_a_signed_email_does_not_cut_it_short(
    saml_client: httpx.AsyncClient, saml_idp: SamlIdP, upstream: EchoUpstream
) -> None:
    """The IdP vouches for alice@example.com.evil.example (a user the attacker registered);
    whether or not the gateway takes it, it never signs alice@example.com in."""
    saml_idp.users[EVIL_TWIN.email] = EVIL_TWIN
    saml_idp.options = ResponseOptions(tamper=_comment_after_alice)
    answer = await saml_sign_in(saml_client, saml_idp, EVIL_TWIN)
    identity = await saml_client.get("/cdn-cgi/access/get-identity")
    if answer.status_code == 302:
        assert identity.json()["email"] == EVIL_TWIN.email
        page = await saml_client.get(APP_URL)
        assert page.json()["headers"]["cf-access-authenticated-user-email"] == EVIL_TWIN.email
    else:
        assert answer.status_code == 400, answer.text
        assert identity.status_code == 401
        assert upstream.requests == []


# --- hostile XML ------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE samlp:Response [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def _with_doctype(doctype: bytes, entity: str) -> Callable[[bytes], bytes]:
    """The signed Response behind `doctype`, alice's email value replaced by `&entity;`."""

    def rewrite(signed: bytes) -> bytes:
        body = re.sub(rb"^<\?xml[^>]*\?>\s*", b"", signed)
        value = f">{ALICE.email}</".encode()
        assert value in body
        return doctype + body.replace(value, f">&{entity};</".encode())

    return rewrite


EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE samlp:Response [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE samlp:Response [ <!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext; ]>
"""


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(raw=_with_doctype(BILLION_LAUGHS, "lol9")),
        ResponseOptions(raw=_with_doctype(EXTERNAL_ENTITY, "xxe")),
        ResponseOptions(raw=_with_doctype(PARAMETER_ENTITY, "lt")),
        ResponseOptions(raw=BILLION_LAUGHS + b"<samlp:Response>&lol9;</samlp:Response>"),
    ],
    ids=["billion-laughs", "external-entity", "external-parameter-entity", "bare-bomb"],
)
async def test_hostile_xml_is_refused_and_nothing_is_expanded(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    options: ResponseOptions,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = await refused_sign_in(saml_client, saml_idp, upstream, saml_gateway, options)
    assert FORBIDDEN_FILE not in answer.text
    assert "lollollol" not in answer.text
    assert FORBIDDEN_FILE not in caplog.text


@pytest.mark.parametrize(
    "junk",
    ["not base64 !", base64.b64encode(b"<samlp:Response").decode(), ""],
    ids=["not-base64", "not-xml", "empty"],
)
async def test_a_response_that_is_not_base64_xml_is_refused(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    saml_gateway: Gateway,
    upstream: EchoUpstream,
    junk: str,
) -> None:
    form = await saml_form(saml_client, saml_idp, ALICE)
    form.fields["SAMLResponse"] = junk
    answer = await post_to_callback(saml_client, form)
    await assert_refused(saml_client, answer, upstream, saml_gateway)


# --- the log --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ResponseOptions(),
        ResponseOptions(signed="none"),
        ResponseOptions(signer="foreign"),
        ResponseOptions(tamper=_become_mallory),
        ResponseOptions(not_on_or_after=-600),
        ResponseOptions(audience="https://elsewhere.example.com/sp"),
    ],
    ids=["accepted", "unsigned", "unknown-cert", "tampered", "expired", "audience"],
)
async def test_no_response_or_assertion_reaches_the_log(
    saml_client: httpx.AsyncClient,
    saml_idp: SamlIdP,
    options: ResponseOptions,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An assertion is a bearer credential: neither it (as XML), its signature nor the posted
    Response is logged, whether the sign-in succeeds or not. (Its ID may be: pysaml2 names it
    when a signature check fails, and it opens nothing on its own.)"""
    saml_idp.options = options
    form = await saml_form(saml_client, saml_idp, ALICE)
    posted = form.fields["SAMLResponse"]
    xml = etree.fromstring(base64.b64decode(posted))
    signature_values = [
        "".join(value.split())[:40]
        for value in xml.xpath("//ds:SignatureValue/text()", namespaces=NS)
    ]
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        await post_to_callback(saml_client, form)
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}"
        for record in caplog.records
    )
    assert caplog.records, "nothing was logged at all"
    assert posted[:40] not in logged
    assert re.search(r"<(\w+:)?(Assertion|Response|NameID)\b", logged) is None  # no XML
    for value in signature_values:
        assert value not in "".join(logged.split())
