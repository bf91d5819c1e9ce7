"""A real SAML 2.0 identity provider for the tests: pysaml2's IdP `Server` on a loopback socket.

`SamlIdP` plays Okta's SAML app (OKTA.md "Okta as a SAML 2.0 IdP"): its SSO endpoint takes the
gateway's HTTP-Redirect AuthnRequest, parses it with pysaml2 (a request it cannot parse is a
400, as at Okta) and answers the HTTP-POST form (`SAMLResponse`, `RelayState`) for a user,
signed with xmlsec1 (RSA-SHA256) by the IdP's key. The IdP's key and self-signed certificate,
and an attacker's, are made when it is built.

The knobs of one Response are a `ResponseOptions` (what is signed and by which key, audience,
recipient, destination, issuer, times, `InResponseTo`, an edit after signing, encryption for
the SP, raw XML). A test sets them on `idp.options` before the browser reaches the IdP, or
passes them to `response_xml`. The end of the module is the gateway's side: its config for
this IdP and the browser's walk through a SAML sign-in.
"""

from __future__ import annotations

import base64
import datetime
import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from demo_process import LoginForm
from harness import TEAM, settings_doc, start_sign_in
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.server import Server
from saml2.sigver import (
    ASSERT_XPATH,
    CryptoBackendXmlSec1,
    SecurityContext,
    pre_encryption_part,
    pre_signature_part,
    signed_instance_factory,
)
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

XMLSEC1 = "/usr/bin/xmlsec1"
ISSUER = "http://www.okta.com/exk-samltest"  # Okta's IdP issuer shape
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
RSA_SHA256 = {"sign_alg": SIG_RSA_SHA256, "digest_alg": DIGEST_SHA256}  # Okta's algorithms
Signed = Literal["assertion", "response", "both", "none"]
Signer = Literal["idp", "foreign"]
Tamper = Callable[[etree._Element], None]


@dataclass(frozen=True)
class SamlUser:
    email: str
    groups: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def statement(self) -> dict[str, tuple[str, ...]]:
        """The attribute statements of the Okta app (SPEC 10): `email`, `groups`, and extras."""
        return {"email": (self.email,), "groups": self.groups, **self.attributes}


ALICE = SamlUser("alice@example.com", ("Engineering", "Everyone"), {"department": ("R&D",)})
BOB = SamlUser("bob@example.com", ("Sales",))


@dataclass(frozen=True)
class ResponseOptions:
    """How one Response is made. Offsets are seconds from the IdP's clock.

    - `signed`: which element carries a signature ("both" signs the assertion, then the
      Response around it, as Okta does by default).
    - `signer`: "idp" (the configured certificate) or "foreign" (another key, whose own
      certificate is embedded in KeyInfo, as an attacker would).
    - `audience`, `recipient`, `destination`, `issuer`: override the correct values.
    - `in_response_to`: override the AuthnRequest ID; `idp_initiated` omits it everywhere.
    - `skew`: shifts every timestamp (an IdP clock ahead or behind); `not_before` and
      `not_on_or_after` place the Conditions (and the SubjectConfirmationData expiry) alone.
    - `tamper`: edits the lxml tree of the signed Response before it is encoded.
    - `encrypt_for`: a PEM certificate (the SP's): the assertion the IdP made is encrypted for
      it (AES-256-CBC, RSA-OAEP) after signing and `tamper`, as Okta's "Assertion Encryption".
    - `raw`: the XML to send instead of anything made here, or a function of the signed XML
      (bytes) that returns it (XML bombs, external entities, DOCTYPEs).
    """

    signed: Signed = "assertion"
    signer: Signer = "idp"
    audience: str | None = None
    recipient: str | None = None
    destination: str | None = None
    issuer: str | None = None
    in_response_to: str | None = None
    idp_initiated: bool = False
    skew: float = 0
    not_before: float | None = None
    not_on_or_after: float | None = None
    tamper: Tamper | None = None
    encrypt_for: str | None = None
    raw: bytes | Callable[[bytes], bytes] | None = None


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_file.read_text()

    @classmethod
    def generate(cls, directory: Path, name: str) -> KeyPair:
        """An RSA key and a self-signed certificate for it, as PEM files in `directory`."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        pair = cls(directory / f"{name}.key", directory / f"{name}.crt")
        pair.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def security_context(self) -> SecurityContext:
        return SecurityContext(
            CryptoBackendXmlSec1(XMLSEC1),
            key_file=str(self.key_file),
            cert_file=str(self.cert_file),
        )

    def cert_base64(self) -> str:
        """The certificate's DER in base64, as KeyInfo and metadata carry it."""
        return "".join(self.cert_pem.strip().splitlines()[1:-1])


def sp_metadata(entity_id: str, acs_url: str) -> str:
    """The SP as SPEC 10 describes it, for the IdP's own metadata store."""
    return f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    entityID="{html.escape(entity_id)}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>{saml.NAMEID_FORMAT_EMAILADDRESS}</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{BINDING_HTTP_POST}"
        Location="{html.escape(acs_url)}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"""


def _instant(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def post_form(action: str, response: bytes, relay_state: str | None) -> str:
    """The HTTP-POST binding's auto-submitting form, as Okta serves it."""
    fields = {"SAMLResponse": base64.b64encode(response).decode()}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}"/>'
        for name, value in fields.items()
    )
    return (
        '<html><body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(action)}">{inputs}'
        '<input type="submit" value="Continue"/></form></body></html>'
    )


class SamlIdP:
    """One Okta SAML app for one SP (the gateway), served on 127.0.0.1 once `start`ed.

    `users` are signed in by email: the SSO endpoint answers for its `user` query parameter
    (the helper adds it, as if the person had typed it at the IdP), else for ALICE.
    `requests` holds every AuthnRequest it parsed, in order; `options` makes the next Responses.
    """

    def __init__(
        self,
        directory: Path,
        *,
        sp_entity_id: str,
        acs_url: str,
        clock: Callable[[], float] = time.time,
        users: tuple[SamlUser, ...] = (ALICE, BOB),
    ) -> None:
        self.sp_entity_id = sp_entity_id
        self.acs_url = acs_url
        self.clock = clock
        self.users = {user.email: user for user in users}
        self._directory = directory
        self.issuer = ISSUER
        self.keys = KeyPair.generate(directory, "idp")
        self.foreign = KeyPair.generate(directory, "foreign")
        self.options = ResponseOptions()
        self.requests: list[samlp.AuthnRequest] = []
        self.sso_url = ""
        self.metadata_url = ""
        self._server: Server | None = None
        self._runner: web.AppRunner | None = None

    # --- serving -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/sso", self._sso)
        app.router.add_get("/metadata", self._metadata)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = int(self._runner.addresses[0][1])
        self.sso_url = f"http://127.0.0.1:{port}/sso"
        self.metadata_url = f"http://127.0.0.1:{port}/metadata"
        self._server = self._pysaml2_server()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _pysaml2_server(self) -> Server:
        config = IdPConfig().load(
            {
                "entityid": self.issuer,
                "xmlsec_binary": XMLSEC1,
                "key_file": str(self.keys.key_file),
                "cert_file": str(self.keys.cert_file),
                "metadata": {"inline": [sp_metadata(self.sp_entity_id, self.acs_url)]},
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                        },
                        "name_id_format": [saml.NAMEID_FORMAT_EMAILADDRESS],
                    }
                },
            }
        )
        return Server(config=config)

    @property
    def server(self) -> Server:
        assert self._server is not None, "SamlIdP.start() first"
        return self._server

    def metadata_xml(self) -> str:
        """The IdP's metadata (entity id, SSO endpoint, signing certificate), as Okta's."""
        return str(entity_descriptor(self.server.config))

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metadata_xml(), content_type="application/xml")

    async def _sso(self, request: web.Request) -> web.Response:
        saml_request = request.query.get("SAMLRequest")
        if saml_request is None:
            return web.Response(status=400, text="no SAMLRequest")
        try:
            parsed = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        except Exception as error:  # pysaml2 raises many kinds; each is a bad request here
            return web.Response(status=400, text=f"bad AuthnRequest: {error}")
        if parsed is None:
            return web.Response(status=400, text="bad AuthnRequest")
        authn_request = parsed.message
        self.requests.append(authn_request)
        user = self.users.get(request.query.get("user", ALICE.email))
        if user is None:
            return web.Response(status=403, text="unknown user")
        xml = self.response_xml(user, authn_request.id)
        page = post_form(self.acs_url, xml, request.query.get("RelayState"))
        return web.Response(text=page, content_type="text/html")

    # --- making Responses -------------------------------------------------------------------

    def response_xml(
        self, user: SamlUser, in_response_to: str | None, options: ResponseOptions | None = None
    ) -> bytes:
        """The Response to AuthnRequest `in_response_to` for `user`, made as `options` say
        (the IdP's current `options` when none are given)."""
        options = options or self.options
        if isinstance(options.raw, bytes):
            return options.raw
        if options.idp_initiated:
            in_response_to = None
        elif options.in_response_to is not None:
            in_response_to = options.in_response_to
        response = self._unsigned(user, in_response_to, options)
        signer = self.keys if options.signer == "idp" else self.foreign
        to_sign = []
        if options.signed in ("assertion", "both"):
            assertion = response.assertion
            assertion.signature = pre_signature_part(
                assertion.id, signer.cert_base64(), 2, **RSA_SHA256
            )
            to_sign.append((saml.Assertion.c_tag, assertion.id))
        if options.signed in ("response", "both"):
            response.signature = pre_signature_part(
                response.id, signer.cert_base64(), 1, **RSA_SHA256
            )
            to_sign.append((samlp.Response.c_tag, response.id))
        xml = signed_instance_factory(response, signer.security_context(), to_sign)
        signed = (xml if isinstance(xml, str) else xml.to_string().decode()).encode()
        if options.tamper is not None:
            tree = etree.fromstring(signed)
            options.tamper(tree)
            signed = etree.tostring(tree)
        if options.encrypt_for is not None:
            signed = self._encrypted(signed, response.assertion.id, options.encrypt_for)
        return signed if options.raw is None else options.raw(signed)

    def _encrypted(self, xml: bytes, assertion_id: str, certificate: str) -> bytes:
        """`xml` with its assertion `assertion_id` moved into an EncryptedAssertion and
        encrypted there for `certificate` by xmlsec1 (pysaml2's backend)."""
        tree = etree.fromstring(xml)
        assertion = tree.xpath("saml:Assertion[@ID=$id]", namespaces=NS, id=assertion_id)[0]
        holder = etree.Element(f"{{{NS['saml']}}}EncryptedAssertion")
        holder.text = "ASSERTION"
        assertion.addprevious(holder)
        tree.remove(assertion)
        # Decrypted, the assertion is read on its own: it declares every prefix it uses, as
        # lxml writes a lone element (and would drop again were it put back into the tree).
        document = (
            etree.tostring(tree)
            .decode()
            .replace("ASSERTION", etree.tostring(assertion).decode(), 1)
        )
        certificate_file = self._directory / "encrypt-for.crt"
        certificate_file.write_text(certificate)
        template = pre_encryption_part(
            msg_enc="http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            encrypt_cert="".join(certificate.strip().splitlines()[1:-1]),
        )
        backend = self.keys.security_context().crypto
        encrypted = backend.encrypt_assertion(
            document,
            str(certificate_file),
            str(template),
            key_type="aes-256",
            node_xpath=ASSERT_XPATH,
        )
        return str(encrypted).encode()

    def _unsigned(
        self, user: SamlUser, in_response_to: str | None, options: ResponseOptions
    ) -> samlp.Response:
        now = self.clock() + options.skew
        not_before = now + options.not_before if options.not_before is not None else now - 60
        expires = (
            now + options.not_on_or_after if options.not_on_or_after is not None else now + 300
        )
        destination = options.destination or self.acs_url
        response = self.server.create_authn_response(
            identity={},
            in_response_to=in_response_to,
            destination=destination,
            sp_entity_id=self.sp_entity_id,
            name_id=saml.NameID(format=saml.NAMEID_FORMAT_EMAILADDRESS, text=user.email),
            authn={"class_ref": PASSWORDPROTECTEDTRANSPORT},
            issuer=saml.Issuer(
                text=options.issuer or self.issuer, format=saml.NAMEID_FORMAT_ENTITY
            ),
            sign_assertion=False,
            sign_response=False,
        )
        assert isinstance(response, samlp.Response), response
        response.issue_instant = _instant(now)
        assertion = response.assertion
        assertion.issue_instant = _instant(now)
        assertion.conditions.not_before = _instant(not_before)
        assertion.conditions.not_on_or_after = _instant(expires)
        if options.audience is not None:
            for restriction in assertion.conditions.audience_restriction:
                restriction.audience = [saml.Audience(text=options.audience)]
        for statement in assertion.authn_statement:
            statement.authn_instant = _instant(now)
            statement.session_not_on_or_after = None
        for confirmation in assertion.subject.subject_confirmation:
            data = confirmation.subject_confirmation_data
            data.recipient = options.recipient or self.acs_url
            data.not_on_or_after = _instant(expires)
            data.in_response_to = in_response_to
        assertion.attribute_statement = [
            saml.AttributeStatement(
                attribute=[
                    saml.Attribute(
                        name=name,
                        name_format=saml.NAME_FORMAT_UNSPECIFIED,
                        attribute_value=[_string_value(value) for value in values],
                    )
                    for name, values in user.statement().items()
                ]
            )
        ]
        return response

    def options_for(self, **changes: object) -> ResponseOptions:
        """The IdP's current options with `changes`."""
        return replace(self.options, **changes)  # type: ignore[arg-type]


def _string_value(value: str) -> saml.AttributeValue:
    attribute_value = saml.AttributeValue()
    attribute_value.set_text(value)
    return attribute_value


def as_user(url: str, email: str) -> str:
    """The IdP's SSO URL (with the SP's query) answered for `email`, as if typed at the IdP."""
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode({'user': email})}"


def redirect_query(url: str) -> dict[str, str]:
    """The single-valued query parameters of an HTTP-Redirect binding URL."""
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# --- the gateway's side: its config for this IdP, and a browser through a SAML sign-in ------

SAML_IDP_ID = "okta-saml"
SP_ENTITY_ID = f"{TEAM}/cdn-cgi/access/callback"  # SPEC 10: entity id and ACS are the callback
ENGINEERING = {
    "name": "Engineering",
    "decision": "allow",
    "include": [{"saml": {"attribute_name": "groups", "attribute_value": "Engineering"}}],
}


def saml_settings_doc(upstream: str, idp: SamlIdP, **config: Any) -> dict[str, Any]:
    """`harness.settings_doc` with one `saml` IdP (this one) and its apps admitting the SAML
    group Engineering; `config` overrides keys of the IdP's config."""
    doc = settings_doc(upstream)
    doc["identity_providers"] = [
        {
            "id": SAML_IDP_ID,
            "name": "Okta SAML",
            "type": "saml",
            "config": {
                "issuer_url": idp.issuer,
                "sso_target_url": idp.sso_url,
                "idp_public_certs": [idp.keys.cert_pem],
                "email_attribute_name": "email",
                "attributes": ["groups", "department"],
                **config,
            },
        }
    ]
    for app in doc["apps"]:
        app["policies"] = [ENGINEERING]
    return doc


async def idp_form(idp: SamlIdP, authn_url: str, user: SamlUser = ALICE) -> LoginForm:
    """The browser at the IdP (a real HTTP request): the HTTP-POST form it is handed."""
    assert authn_url.startswith(f"{idp.sso_url}?"), authn_url
    assert "SAMLRequest" in redirect_query(authn_url)
    async with httpx.AsyncClient(timeout=10) as browser_at_idp:
        page = await browser_at_idp.get(as_user(authn_url, user.email))
    assert page.status_code == 200, page.text
    return LoginForm(page.text)


async def saml_form(
    client: httpx.AsyncClient, idp: SamlIdP, user: SamlUser = ALICE, url: str = "/docs/page?x=1"
) -> LoginForm:
    """GET a protected URL as a browser, follow it to the IdP: the form the IdP answers."""
    return await idp_form(idp, await start_sign_in(client, url), user)


async def post_to_callback(client: httpx.AsyncClient, form: LoginForm) -> httpx.Response:
    """The browser submits the IdP's form to the gateway; a denial is followed to its page."""
    assert form.action == SP_ENTITY_ID, form.action
    answer = await client.post(form.action, data=form.fields)
    if answer.status_code == 302 and answer.headers["location"].startswith(
        "/cdn-cgi/access/denied/"
    ):
        return await client.get(answer.headers["location"])
    return answer


async def saml_sign_in(
    client: httpx.AsyncClient, idp: SamlIdP, user: SamlUser = ALICE, url: str = "/docs/page?x=1"
) -> httpx.Response:
    """The whole dance: app -> login -> IdP (SAMLRequest) -> form -> POST to the callback;
    returns the callback's answer (a denial: the denied page)."""
    return await post_to_callback(client, await saml_form(client, idp, user, url))
