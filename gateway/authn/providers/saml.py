"""The SAML 2.0 provider (`type = "saml"`, SPEC 10): the gateway as a service provider (SP).

`begin` sends an AuthnRequest by HTTP-Redirect (signed when `sign_request`) with a random
RelayState, which is the sign-in's state (`signin.py` keeps it, bound to the browser); the
request's ID is kept in `pending`, so the Response must answer exactly that request
(`InResponseTo`). `finish` takes the HTTP-POST Response at the callback and hands it to pysaml2,
which checks it with Debian's `xmlsec1`: the signature over the Response or the Assertion by a
configured IdP certificate (and only the signed element is read: pysaml2 validates the document
against the SAML schema and verifies the element by its ID, which defeats signature wrapping),
the Audience, Recipient and Destination, `InResponseTo`, and NotBefore / NotOnOrAfter with a
leeway of `LEEWAY` seconds. The Issuer is compared here too, and the assertion id is single-use
(kept in the store until the assertion expires). Encrypted assertions are decrypted with the SP
key. Before any of it the XML is parsed once with DTDs refused (`defusedxml`): no entity,
external or not, ever expands.

The SP key and certificate are an RSA key set in the store (`SigningKeys` under `SP_KEYS`),
shared by every instance and never rotated by itself (the IdP holds its certificate). pysaml2
reads keys from files, so each process writes them to a private temporary directory (mode 0700,
the key 0600), removed when the process ends or, if it was killed, by the next one to start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import os
import secrets
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml
from joserfc.jwk import RSAKey
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.response import AuthnResponse, InvalidAssertion, StatusError, UnsolicitedResponse
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_TRANSIENT
from saml2.sigver import SigverError
from saml2.validate import ResponseLifetimeExceed, ToEarly
from saml2.xmldsig import SIG_RSA_SHA256

from gateway.authn.providers import SignInRequest, SignInResult, shorten
from gateway.authz.app_tokens import SigningKey, SigningKeys
from gateway.config import IdentityProvider, SamlConfig
from gateway.config.reader import is_secure_url
from gateway.errors import GatewayError, IdPError, SignInError
from gateway.state.store import Store

logger = logging.getLogger("gateway.saml")
# pysaml2 logs whole Responses at debug level: an assertion is a credential, never logged.
logging.getLogger("saml2").setLevel(logging.WARNING)

REQUEST_ID = "request_id"  # the AuthnRequest's ID, kept in `SignInRequest.pending`
SP_KEYS = "saml_sp_keys"  # the store key of the SP's key set
LEEWAY = 180  # SPEC 10: NotBefore / NotOnOrAfter leeway of at most 3 minutes
METADATA_TTL = 86400.0  # SPEC 10: a metadata_url is read again daily
METADATA_RETRY = 300.0  # a failed metadata_url read is not tried again for this long
MAX_RESPONSE = 256 * 1024  # bytes of base64 in SAMLResponse: Okta's are a few KiB
_USED_KEY = "saml_assertion:"
_KEY_DIR_PREFIX = "gateway-saml-"  # then the pid of the process whose SP key it holds
_USED_TTL_FLOOR = 600.0  # an assertion id is remembered at least this long
XMLSEC_BINARY = "xmlsec1"
_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"


def xmlsec_binary() -> str | None:
    """The path of `xmlsec1`, which pysaml2 runs for every signature check; None if absent."""
    return shutil.which(XMLSEC_BINARY)


def sp_keys(store: Store, clock: Callable[[], float]) -> SigningKeys:
    """The SP's key set in the store (app-token key machinery; no automatic rotation)."""
    return SigningKeys(store, clock, name=SP_KEYS, rotate_after=math.inf, purpose="SAML SP")


@dataclass(frozen=True, slots=True)
class IdPMetadata:
    """What the gateway knows of the IdP: its entity id, SSO URL and signing certificates."""

    entity_id: str
    sso_url: str
    xml: str  # SAML metadata, for pysaml2


def idp_metadata(config: SamlConfig) -> IdPMetadata:
    """The IdP's metadata, written from `issuer_url`, `sso_target_url` and `idp_public_certs`."""
    keys = "".join(
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{_der_base64(pem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for pem in config.idp_public_certs
    )
    xml = (
        f'<md:EntityDescriptor xmlns:md="{_MD}" xmlns:ds="{_DS}" '
        f"entityID={quoteattr(config.issuer_url)}>"
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'{keys}<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" '
        f"Location={quoteattr(config.sso_target_url)}/>"
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
    return IdPMetadata(config.issuer_url, config.sso_target_url, xml)


def _der_base64(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def parse_idp_metadata(xml: str) -> IdPMetadata:
    """An IdP's metadata document (`metadata_url`): its entity id and HTTP-Redirect SSO URL
    (https, as `sso_target_url`). Raises ValueError for anything else (DTDs refused, as for
    Responses)."""
    try:
        root = parse_xml(xml, forbid_dtd=True)
    except (DefusedXmlException, SyntaxError) as exc:
        raise ValueError(f"not an XML document ({type(exc).__name__})") from exc
    if root.tag != f"{{{_MD}}}EntityDescriptor":
        raise ValueError("not one SAML EntityDescriptor")
    entity_id = root.get("entityID", "")
    sso = [
        service.get("Location", "")
        for service in root.iter(f"{{{_MD}}}SingleSignOnService")
        if service.get("Binding") == BINDING_HTTP_REDIRECT
    ]
    if not entity_id or not sso or not sso[0]:
        raise ValueError("no entityID or no HTTP-Redirect SingleSignOnService")
    if not is_secure_url(sso[0]):  # as `sso_target_url`: the browser signs in there
        raise ValueError("the HTTP-Redirect SingleSignOnService must be an https URL")
    if not any(True for _ in root.iter(f"{{{_DS}}}X509Certificate")):
        raise ValueError("no signing certificate")
    return IdPMetadata(entity_id, sso[0], xml)


class _KeyFiles:
    """The SP key and certificate as files for pysaml2 (xmlsec1 reads files), in a private
    temporary directory of this process (named with its pid), removed with this object or at
    exit; those a killed process left behind are removed by the next one to write its own."""

    def __init__(self, key: SigningKey) -> None:
        self.kid = key.kid
        _remove_orphaned_key_dirs()
        directory = tempfile.mkdtemp(prefix=f"{_KEY_DIR_PREFIX}{os.getpid()}-")  # mode 0700
        weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        self.key_file = os.path.join(directory, "sp.key")
        self.cert_file = os.path.join(directory, "sp.crt")
        private = RSAKey.import_key(key.jwk).private_key
        assert private is not None  # noqa: S101 - the store keeps private JWKs
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
        with open(self.cert_file, "w", encoding="ascii") as out:
            out.write(key.cert)


def _remove_orphaned_key_dirs() -> None:
    """Remove the key directories of this user's processes that are gone (killed before they
    could clean up): a private key must not stay on disk after its process."""
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            pid = entry.name.removeprefix(_KEY_DIR_PREFIX).split("-", 1)[0]
            if (
                entry.name.startswith(_KEY_DIR_PREFIX)
                and pid.isdigit()
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_uid == os.getuid()
                and not _alive(int(pid))
            ):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True, slots=True)
class Assertion:
    """What a validated Response said about the user."""

    assertion_id: str
    not_on_or_after: float  # when the assertion stops being valid (epoch seconds)
    name_id: str
    name_id_format: str
    attributes: dict[str, tuple[str, ...]]


class SamlProvider:
    """Signs users in with one SAML 2.0 IdP (SP-initiated, HTTP-Redirect then HTTP-POST)."""

    def __init__(
        self,
        idp: IdentityProvider,
        http: httpx.AsyncClient,
        store: Store,
        *,
        acs_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = idp.config
        if not isinstance(config, SamlConfig):
            raise TypeError(f"identity provider {idp.id!r} is not of type saml")
        self.idp = idp
        self._config = config
        self._http = http
        self._store = store
        self._keys = sp_keys(store, clock)
        self._acs_url = acs_url
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: IdPMetadata | None = None if config.metadata_url else idp_metadata(config)
        self._metadata_due = -math.inf if config.metadata_url else math.inf  # next URL read
        self._metadata_failure = ""  # why the last read failed, while there is no good copy
        self._files: _KeyFiles | None = None
        self._client: Saml2Client | None = None
        if xmlsec_binary() is None:  # said at start; every sign-in with it then fails (503)
            logger.error("idp %s: SAML needs the xmlsec1 program, which is not installed", idp.id)

    # --- the two legs ---------------------------------------------------------------------

    async def begin(self) -> SignInRequest:
        """An AuthnRequest to the IdP's SSO URL by HTTP-Redirect, RelayState the state."""
        client, metadata = await self._saml_client()
        relay_state = secrets.token_urlsafe(32)
        try:
            request_id, info = client.prepare_for_authenticate(
                entityid=metadata.entity_id,
                relay_state=relay_state,
                binding=BINDING_HTTP_REDIRECT,
                sign=self._config.sign_request,
                sigalg=SIG_RSA_SHA256 if self._config.sign_request else None,
            )
            location = dict(info["headers"])["Location"]
        except Exception as exc:  # e.g. metadata without an HTTP-Redirect SSO service
            raise self._fail(
                "The SAML AuthnRequest could not be made.", "metadata", status=502
            ) from exc
        return SignInRequest(location, relay_state, {REQUEST_ID: request_id})

    async def finish(
        self, answer: Mapping[str, str], pending: Mapping[str, str]
    ) -> SignInResult | SignInRequest:
        """The Response POSTed to the callback, for the AuthnRequest `pending` names."""
        encoded = answer.get("SAMLResponse", "")
        request_id = pending.get(REQUEST_ID, "")
        if not encoded or not request_id:
            raise self._fail("The sign-in answer has no SAML Response.", "response")
        xml = _decode(encoded)
        if xml is None:
            raise self._fail("The SAML Response is not valid base64 XML.", "response")
        try:
            # SAML messages never carry a DTD: refused before any signature work, so no entity
            # (an XML bomb, an external entity) is ever expanded, here or by xmlsec1.
            root = parse_xml(xml, forbid_dtd=True)
        except (DefusedXmlException, SyntaxError) as exc:
            raise self._fail(
                "The SAML Response is not acceptable XML (a DTD or entity, or malformed).",
                "response",
            ) from exc
        client, metadata = await self._saml_client()
        # pysaml2 refuses these too, without saying why: said here, for the test page. Only
        # ever a refusal: what is accepted is read from the verified assertion alone.
        destination = root.get("Destination")
        if destination is not None and destination != self._acs_url:
            raise self._recipient()
        issuer = root.findtext(f"{{{_ASSERTION}}}Issuer")
        if issuer is not None and issuer.strip() != metadata.entity_id:
            raise self._issuer(issuer)
        assertion = await asyncio.to_thread(self._validate, client, metadata, xml, request_id)
        remember = max(assertion.not_on_or_after - self._clock() + LEEWAY, _USED_TTL_FLOOR)
        key = f"{_USED_KEY}{self.idp.id}:{assertion.assertion_id}"
        if not await self._store.set_if_absent(key, b"1", ttl=remember):
            raise self._fail("This SAML assertion was already used.", "replay")
        return self._result(assertion)

    def _validate(
        self, client: Saml2Client, metadata: IdPMetadata, xml: bytes, request_id: str
    ) -> Assertion:
        """pysaml2's checks, then ours (Issuer, InResponseTo, Recipient) on the assertion it
        verified; in a worker thread, since xmlsec1 is a process."""
        try:
            response = client.parse_authn_request_response(
                base64.b64encode(xml).decode(),
                BINDING_HTTP_POST,
                outstanding={request_id: "/"},
                # pysaml2 checks SubjectConfirmationData's Recipient only with this set
                conv_info={"entity_id": self._acs_url},
            )
        except Exception as exc:  # pysaml2 raises a bare Exception for some checks
            raise self._refusal(exc) from exc
        if not isinstance(response, AuthnResponse) or response.assertion is None:
            raise self._fail("The SAML Response holds no valid assertion.", "response")
        if response.name_id is not None:
            # pysaml2's client remembers every user it saw, in memory, for SAML logout flows
            # this gateway does not use: forgotten, so memory does not grow with the users.
            with contextlib.suppress(KeyError):  # not kept (encrypted), or already forgotten
                client.users.remove_person(response.name_id)
        assertion = response.assertion
        issuers = {response.issuer(), assertion.issuer.text if assertion.issuer else None}
        if issuers != {metadata.entity_id}:
            raise self._issuer(", ".join(sorted(map(str, issuers))))
        if response.in_response_to != request_id:  # pysaml2 checked it; said once more
            raise self._unsolicited()
        recipients = {
            confirmation.subject_confirmation_data.recipient
            for confirmation in assertion.subject.subject_confirmation
            if confirmation.subject_confirmation_data is not None
        }
        if recipients != {self._acs_url}:  # SAML profiles 4.1.4.2: the bearer's Recipient
            raise self._recipient()
        name_id = assertion.subject.name_id if assertion.subject else None
        return Assertion(
            assertion_id=str(assertion.id),
            not_on_or_after=float(response.not_on_or_after or self._clock()),
            name_id=(name_id.text or "").strip() if name_id else "",
            name_id_format=(name_id.format or "") if name_id else "",
            attributes=_attributes(assertion),
        )

    def _result(self, assertion: Assertion) -> SignInResult:
        """Who signed in: email from `email_attribute_name` else an email-format NameID (SPEC
        10), groups from `groups`, the listed attributes kept."""
        attributes = assertion.attributes
        email_attribute = self._config.email_attribute_name
        emails = attributes.get(email_attribute, ())
        email_source = f"the {email_attribute!r} attribute"
        if not emails and assertion.name_id_format == NAMEID_FORMAT_EMAILADDRESS:
            emails, email_source = (assertion.name_id,), "the NameID (email address format)"
        if not emails or "@" not in emails[0]:
            raise self._fail(
                "The SAML assertion has no email address.",
                "email",
                status=403,
                hint=f"send an {email_attribute!r} attribute statement, or a NameID in "
                "EmailAddress format",
            )
        groups = attributes.get("groups", ())
        kept = self._config.kept_attributes
        name = (attributes.get("name") or attributes.get("displayName") or ("",))[0]
        # The user's stable id (their user uuid derives from it): the NameID, unless a
        # transient one, new at every sign-in, when the email is steadier.
        transient = assertion.name_id_format == NAMEID_FORMAT_TRANSIENT
        return SignInResult(
            sub=emails[0] if transient or not assertion.name_id else assertion.name_id,
            email=emails[0],
            name=name,
            groups=groups,
            groups_source="attribute" if "groups" in attributes else "none",
            groups_api_pages=0,
            groups_note=""
            if "groups" in attributes
            else "The assertion has no 'groups' attribute: add a group attribute statement "
            "named groups (filter Matches regex .*) to the Okta SAML app.",
            oidc_fields={},
            amr=(),
            id_token_claims={k: list(v) for k, v in attributes.items()},
            saml_attributes={k: v for k, v in attributes.items() if k in kept},
            email_source=email_source,
        )

    # --- failures -------------------------------------------------------------------------

    def _refusal(self, exc: Exception) -> SignInError:
        """A pysaml2 failure as the step an operator can act on."""
        text = str(exc)
        if isinstance(exc, UnsolicitedResponse):
            return self._unsolicited()
        if isinstance(exc, ResponseLifetimeExceed | ToEarly) or text == "Condition not OK":
            return self._fail(
                "The SAML assertion is expired or not yet valid (clocks differ by more than "
                f"{LEEWAY // 60} minutes, or the answer is old).",
                "time",
            )
        if isinstance(exc, SigverError) or "Signature" in type(exc).__name__:
            return self._fail(
                "The SAML Response is not signed by a configured IdP certificate, or was "
                "altered after signing.",
                "signature",
            )
        if "AudienceRestrictions" in text:
            return self._fail("The SAML assertion is meant for another audience.", "audience")
        if "recipient" in text.lower() or "destination" in text.lower():
            return self._recipient()
        if isinstance(exc, InvalidAssertion):  # e.g. a second assertion slipped in beside
            return self._fail("The SAML Response must hold exactly one assertion.", "response")
        if isinstance(exc, StatusError):
            return self._fail(
                f"The IdP refused the sign-in ({shorten(text)}).", "status", status=403
            )
        return self._fail("The SAML Response failed validation.", "response")

    def _issuer(self, issuer: str) -> SignInError:
        return self._fail(
            f"The SAML Response's Issuer is {shorten(issuer)}, not the configured issuer_url.",
            "issuer",
        )

    def _recipient(self) -> SignInError:
        return self._fail(
            "The SAML Response is addressed to another URL (Recipient / Destination).",
            "recipient",
        )

    def _unsolicited(self) -> SignInError:
        return self._fail(
            "This SAML answer does not answer a sign-in started here (IdP-initiated sign-in "
            "is not accepted). Start from the application's address instead.",
            "unsolicited",
        )

    def _fail(
        self, description: str, step: str, *, status: int = 400, hint: str = ""
    ) -> SignInError:
        logger.warning(
            "idp %s: SAML sign-in refused at %s: %s",
            self.idp.id,
            step,
            description,
            extra={"step": step, "idp": self.idp.id, "status": status},
        )
        exc = SignInError(description, step=step, status=status, hint=hint)
        exc.logged = True
        return exc

    def checks(self, step: str, redirect_uri: str) -> list[str]:
        """What to fix in the Okta SAML app when `step` failed (the test page's list)."""
        certs = "the X.509 certificate of the Okta app (Sign On > SAML Signing Certificates)"
        return {
            "signature": [
                f"idp_public_certs must hold {certs}; after Okta rotates it, paste the new one.",
                "Okta signs the Response and the Assertion (Response / Assertion Signature: "
                "Signed, RSA-SHA256).",
            ],
            "issuer": ["issuer_url must be the app's 'Identity Provider Issuer' exactly."],
            "audience": [f"The app's Audience URI (SP Entity ID) must be {redirect_uri}."],
            "recipient": [f"The app's Single sign-on URL must be exactly {redirect_uri}."],
            "time": [
                "The clocks of this host and Okta agree (NTP); the leeway is 3 minutes.",
                "The sign-in finished within a few minutes of leaving the gateway.",
            ],
            "email": [
                f"An attribute statement {self._config.email_attribute_name!r} = user.email, or "
                "Name ID format EmailAddress.",
            ],
            "unsolicited": ["Start from the application; Okta dashboard tiles are refused."],
            "metadata": ["metadata_url answers with the Okta app's IdP metadata."],
        }.get(step, [f"The Okta SAML app's Single sign-on URL and Audience URI: {redirect_uri}."])

    # --- the pysaml2 client ---------------------------------------------------------------

    async def _saml_client(self) -> tuple[Saml2Client, IdPMetadata]:
        """The client for the current SP key and IdP metadata; built again when either
        changes (a daily metadata read, a new SP key)."""
        async with self._lock:
            metadata = await self._idp_metadata()
            key = await self._keys.current()
            if self._client is None or self._files is None or self._files.kid != key.kid:
                self._files = _KeyFiles(key)
                self._client = None
            if self._client is None:
                try:
                    self._client = Saml2Client(self._sp_config(metadata, self._files))
                except GatewayError:  # xmlsec1 missing: said as it is
                    raise
                except Exception as exc:  # pysaml2 refuses metadata in many ways
                    raise self._fail(
                        "The SAML IdP metadata could not be used.",
                        "metadata",
                        status=502,
                        hint="check issuer_url, sso_target_url and idp_public_certs (or "
                        "metadata_url)",
                    ) from exc
            return self._client, metadata

    async def _idp_metadata(self) -> IdPMetadata:
        """The IdP metadata: from the config, or from `metadata_url`, read when due (daily;
        METADATA_RETRY seconds after a failed read). Until then the last good copy serves or,
        without one, every sign-in fails at once: none waits for, or adds to, a failing URL.
        Called under `_lock`, so sign-ins waiting for a read see its outcome, never read again."""
        if self._clock() < self._metadata_due:
            if self._metadata is None:
                raise self._metadata_unreadable()
            return self._metadata
        try:
            response = await self._http.get(self._config.metadata_url)
            response.raise_for_status()
            fresh = parse_idp_metadata(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            self._metadata_due = self._clock() + METADATA_RETRY
            self._metadata_failure = type(exc).__name__
            logger.warning(
                "idp %s: metadata_url read failed: %s; read again in %d s%s",
                self.idp.id,
                exc,
                METADATA_RETRY,
                ", the last good copy serving meanwhile" if self._metadata is not None else "",
            )
            if self._metadata is None:
                raise self._metadata_unreadable() from exc
            return self._metadata
        if self._metadata is None or fresh.xml != self._metadata.xml:
            self._client = None
        self._metadata, self._metadata_due = fresh, self._clock() + METADATA_TTL
        return fresh

    def _metadata_unreadable(self) -> IdPError:
        return IdPError(
            f"The IdP metadata could not be read ({self._metadata_failure}).",
            step="metadata",
            hint=f"check metadata_url (read again every {METADATA_RETRY / 60:.0f} minutes until "
            "it answers)",
        )

    async def prepare(self) -> None:
        """At start: read the IdP metadata (a `metadata_url`) and the SP key now rather than at
        the first sign-in. A failure is logged; a failed read is tried again METADATA_RETRY
        seconds later."""
        try:
            await self._saml_client()
        except GatewayError as exc:
            logger.warning("idp %s: SAML not ready at start: %s", self.idp.id, exc.description)

    async def metadata_document(self) -> str:
        """This SP's metadata (entity id, ACS, signing and encryption certificate)."""
        client, _ = await self._saml_client()
        return str(entity_descriptor(client.config))

    def _sp_config(self, metadata: IdPMetadata, files: _KeyFiles) -> SPConfig:
        binary = xmlsec_binary()
        if binary is None:
            raise IdPError(
                "SAML sign-in needs the xmlsec1 program, which is not installed.",
                step="metadata",
                status=503,
                hint="apt-get install xmlsec1",
            )
        config = SPConfig()
        config.load(  # raises for metadata pysaml2 cannot use: the caller's `try`
            {
                "entityid": self._acs_url,  # SPEC 10: the entity id is the ACS URL
                "xmlsec_binary": binary,
                "key_file": files.key_file,
                "cert_file": files.cert_file,
                "encryption_keypairs": [{"key_file": files.key_file, "cert_file": files.cert_file}],
                "metadata": {"inline": [metadata.xml]},
                "accepted_time_diff": LEEWAY,
                "allow_unknown_attributes": True,
                "service": {
                    "sp": {
                        "endpoints": {
                            "assertion_consumer_service": [(self._acs_url, BINDING_HTTP_POST)]
                        },
                        "allow_unsolicited": False,
                        "authn_requests_signed": self._config.sign_request,
                        "want_response_signed": False,
                        "want_assertions_signed": False,
                        "want_assertions_or_response_signed": True,
                        "only_use_keys_in_metadata": True,
                    }
                },
            }
        )
        return config


def _decode(encoded: str) -> bytes | None:
    if len(encoded) > MAX_RESPONSE:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _attributes(assertion: Any) -> dict[str, tuple[str, ...]]:
    """The assertion's attributes by the names the IdP gave them, every value a string."""
    found: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement or ():
        for attribute in statement.attribute or ():
            values = found.setdefault(str(attribute.name), [])
            values.extend((value.text or "").strip() for value in attribute.attribute_value or ())
    return {name: tuple(v for v in values if v) for name, values in found.items()}
