"""Identity provider settings (SPEC 4, 8 and 10): the config types of each `type` (okta, oidc,
saml), SCIM, and their parsing from a TOML `[[identity_providers]]` table or an admin API body,
with the same rules and key-path messages either way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cryptography import x509

from gateway.config.reader import Reader
from gateway.errors import ConfigError

UpdateBehavior = Literal["automatic", "reauth", "no_action"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """What every OpenID Connect type of IdP has: the client and which claims to take."""

    client_id: str
    client_secret: str
    claims: tuple[str, ...] = ()
    email_claim_name: str = "email"
    pkce_enabled: bool = False
    # OpenID Connect Back-Channel Logout 1.0: the IdP may end sessions (SPEC 8)
    backchannel_logout: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OktaConfig(ClientConfig):
    """`type = "okta"`: endpoints come from discovery on the org or a custom server."""

    type: ClassVar[Literal["okta"]] = "okta"
    okta_account: str
    authorization_server_id: str = ""
    api_token: str = ""
    universal_logout: bool = False  # Okta Universal Logout may end sessions (SPEC 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class OIDCConfig(ClientConfig):
    """`type = "oidc"`: a generic OpenID Connect provider, its endpoints given explicitly."""

    type: ClassVar[Literal["oidc"]] = "oidc"
    issuer: str
    auth_url: str
    token_url: str
    certs_url: str
    userinfo_url: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderAttribute:
    """A SAML attribute sent to the upstream as a request header (SPEC 10)."""

    attribute_name: str
    header_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SamlConfig:
    """`type = "saml"`: a SAML 2.0 IdP (SPEC 10), given by its issuer, SSO URL and signing
    certificates, or by a `metadata_url` that names all three (read at start, then daily)."""

    type: ClassVar[Literal["saml"]] = "saml"
    issuer_url: str = ""
    sso_target_url: str = ""
    idp_public_certs: tuple[str, ...] = ()  # PEM, each checked to be an X.509 certificate
    metadata_url: str = ""
    email_attribute_name: str = "email"
    attributes: tuple[str, ...] = ()
    sign_request: bool = False
    header_attributes: tuple[HeaderAttribute, ...] = ()

    @property
    def kept_attributes(self) -> frozenset[str]:
        """The attributes a sign-in keeps: `attributes`, and those sent upstream as headers."""
        return frozenset(self.attributes) | {h.attribute_name for h in self.header_attributes}


IdPConfig = OktaConfig | OIDCConfig | SamlConfig
IdPType = Literal["okta", "oidc", "saml"]
IDP_TYPES = ("okta", "oidc", "saml")


@dataclass(frozen=True, slots=True)
class ScimConfig:
    enabled: bool = False
    user_deprovision: bool = False
    seat_deprovision: bool = False
    identity_update_behavior: UpdateBehavior = "automatic"
    secret: str = ""


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    id: str
    name: str
    config: IdPConfig
    scim_config: ScimConfig = field(default_factory=ScimConfig)

    @property
    def type(self) -> IdPType:
        """The IdP's `type`, which is the kind of its `config`."""
        return self.config.type


def _idp_config(reader: Reader, idp_type: str) -> IdPConfig:
    if idp_type == "saml":
        return _saml_config(reader)
    # Every key of both types is read and checked whatever the type, in this order: the file
    # and the admin API have always taken them all (a key of the other type is ignored). Every
    # URL is `secure`: the gateway sends a browser there with a sign-in, or fetches what it
    # trusts from it (discovery, tokens for a code, signing keys, claims); and OpenID Connect
    # has the issuer an https URL.
    client_id = reader.string("client_id", required=True)
    client_secret = reader.string("client_secret", required=True)
    okta_account = reader.url("okta_account", required=idp_type == "okta", secure=True)
    authorization_server_id = reader.string("authorization_server_id")
    api_token = reader.string("api_token")
    claims = reader.strings("claims")
    email_claim_name = reader.string("email_claim_name", "email") or "email"
    pkce_enabled = reader.boolean("pkce_enabled", False)
    backchannel_logout = reader.boolean("backchannel_logout", False)
    universal_logout = reader.boolean("universal_logout", False)
    if universal_logout and idp_type != "okta":
        reader.problem(
            "universal_logout",
            "only Okta sends Universal Logout; for this type use backchannel_logout",
        )
    issuer = reader.url("issuer", required=idp_type == "oidc", exact=True, secure=True)
    auth_url = reader.url("auth_url", required=idp_type == "oidc", secure=True)
    token_url = reader.url("token_url", required=idp_type == "oidc", secure=True)
    certs_url = reader.url("certs_url", required=idp_type == "oidc", secure=True)
    userinfo_url = reader.url("userinfo_url", secure=True)
    scopes = reader.strings("scopes")
    reader.finish()
    if idp_type == "okta":
        return OktaConfig(
            client_id=client_id,
            client_secret=client_secret,
            okta_account=okta_account,
            authorization_server_id=authorization_server_id,
            api_token=api_token,
            claims=claims,
            email_claim_name=email_claim_name,
            pkce_enabled=pkce_enabled,
            backchannel_logout=backchannel_logout,
            universal_logout=universal_logout,
        )
    return OIDCConfig(
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,
        auth_url=auth_url,
        token_url=token_url,
        certs_url=certs_url,
        userinfo_url=userinfo_url,
        scopes=scopes,
        claims=claims,
        email_claim_name=email_claim_name,
        pkce_enabled=pkce_enabled,
        backchannel_logout=backchannel_logout,
    )


# An HTTP header name (RFC 9110 5.1 token); "_" is left out because the proxy drops client
# headers with one (a CGI server reads it as "-"), so no origin could tell them apart.
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^`|~-]{1,64}")
# Headers the gateway itself sets or strips: an attribute must never pose as one of them.
_RESERVED_HEADERS = ("cf-access-", "x-forwarded-", "host", "cookie", "x-request-id")


def _saml_config(reader: Reader) -> SamlConfig:
    # The metadata names the certificates assertions are checked with: never over plain http.
    metadata_url = reader.url("metadata_url", exact=True, secure=True)
    by_metadata = bool(metadata_url) and not any(
        reader.has(k) for k in ("issuer_url", "sso_target_url", "idp_public_certs")
    )
    # The issuer is compared to the assertion's <Issuer> character for character: kept exact.
    # It is a name, never fetched: Okta's is http://www.okta.com/<id>.
    issuer_url = reader.string("issuer_url", required=not metadata_url)
    # The browser carries the AuthnRequest there and the assertion back: `secure`.
    sso_target_url = reader.url(
        "sso_target_url", required=not metadata_url, exact=True, secure=True
    )
    certs = reader.strings("idp_public_certs")
    if not certs and not metadata_url and reader.raw("idp_public_certs") in (None, []):
        reader.problem("idp_public_certs", "needs at least one certificate")
    for i, pem in enumerate(certs):
        if not _is_certificate(pem):
            reader.problem(f"idp_public_certs[{i}]", "is not a PEM X.509 certificate")
    if metadata_url and not by_metadata:
        reader.problem(
            "metadata_url", "replaces issuer_url, sso_target_url and idp_public_certs: give one"
        )
    headers = []
    for entry in reader.tables("header_attributes"):
        header = HeaderAttribute(
            entry.string("attribute_name", required=True),
            entry.string("header_name", required=True),
        )
        if header.header_name and (
            not _HEADER_NAME.fullmatch(header.header_name)
            or header.header_name.lower().startswith(_RESERVED_HEADERS)
        ):
            entry.problem("header_name", "must be an HTTP header name the gateway does not set")
        entry.finish()
        headers.append(header)
    config = SamlConfig(
        issuer_url=issuer_url,
        sso_target_url=sso_target_url,
        idp_public_certs=certs,
        metadata_url=metadata_url,
        email_attribute_name=reader.string("email_attribute_name", "email") or "email",
        attributes=reader.strings("attributes"),
        sign_request=reader.boolean("sign_request", False),
        header_attributes=tuple(headers),
    )
    reader.finish()
    return config


def _is_certificate(pem: str) -> bool:
    try:
        x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return False
    return True


def _scim_config(reader: Reader) -> ScimConfig:
    scim = ScimConfig(
        enabled=reader.boolean("enabled", False),
        user_deprovision=reader.boolean("user_deprovision", False),
        seat_deprovision=reader.boolean("seat_deprovision", False),
        identity_update_behavior=reader.choice(  # type: ignore[arg-type]
            "identity_update_behavior", ("automatic", "reauth", "no_action"), "automatic"
        ),
        secret=reader.string("secret"),
    )
    if scim.seat_deprovision and not scim.user_deprovision:
        reader.problem("seat_deprovision", "needs user_deprovision = true")
    reader.finish()
    return scim


def read_identity_provider(reader: Reader) -> IdentityProvider:
    idp_type = reader.choice("type", IDP_TYPES, "okta")
    idp = IdentityProvider(
        id=reader.identifier("id"),
        name=reader.string("name", required=True),
        config=_idp_config(reader.table("config"), idp_type),
        scim_config=_scim_config(reader.table("scim_config")),
    )
    reader.finish()
    return idp


def parse_identity_provider(data: Mapping[str, Any]) -> IdentityProvider:
    """One identity provider object (the admin API's JSON), with the file's rules and messages.

    No `${VAR}` substitution: an API caller must not be able to read the gateway's environment.
    """
    problems: list[str] = []
    idp = read_identity_provider(Reader(data, "", problems, {}))
    if problems:
        raise ConfigError(problems)
    return idp
