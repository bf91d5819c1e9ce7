"""The signed-in identity: what get-identity returns, what policies read, what sessions carry.

Its JSON shape is the one in SPEC 4 ("Identity"), the same as Cloudflare Access's
`get-identity`, so origin code written for Cloudflare works unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Namespace for user uuids: a user's uuid is stable per (IdP, Okta user id), never per email,
# because an Okta login's email can change (OKTA.md: "key users on sub, not on email").
_USER_NAMESPACE = uuid.UUID("6f1d6c8e-2f4b-4c59-9d0e-8a7b1c2d3e4f")


def user_uuid_for(idp_id: str, sub: str) -> str:
    """The stable user uuid of the person `sub` at identity provider `idp_id`."""
    return str(uuid.uuid5(_USER_NAMESPACE, f"{idp_id}:{sub}"))


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def freeze(value: Any) -> Any:
    """A JSON value made read-only all through: objects become mapping views, arrays tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A frozen value as plain JSON again (objects dicts, arrays lists), a fresh copy."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Identity:
    id: str  # the identity nonce: new at every sign-in
    user_uuid: str
    sub: str
    name: str
    email: str
    groups: tuple[str, ...]
    idp_id: str
    idp_type: str
    iat: int
    ip: str = ""
    amr: tuple[str, ...] = ()
    # Read-only all through (`freeze`): an identity is shared (sessions' decode cache), so
    # nobody may change it, not even a list inside a claim.
    oidc_fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    # SAML (SPEC 10): the kept attributes, each a tuple of strings; empty for other IdPs.
    saml_attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    service_token_id: str = ""
    service_token_status: bool = False
    version: int = 1
    # The IdP's session id (the ID token's `sid`, OIDC Back-Channel Logout 1.0 section 2.2):
    # kept with the session so that a logout token naming it ends exactly its sessions.
    sid: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.oidc_fields, MappingProxyType):
            object.__setattr__(self, "oidc_fields", freeze(self.oidc_fields))
        if not isinstance(self.saml_attributes, MappingProxyType):
            object.__setattr__(self, "saml_attributes", freeze(self.saml_attributes))

    @property
    def custom(self) -> dict[str, Any]:
        """The app token's `custom` claim: the kept OIDC claims, or SAML attributes."""
        fields = self.saml_attributes if self.idp_type == "saml" else self.oidc_fields
        return {name: thaw(value) for name, value in fields.items()}

    def to_json(self) -> dict[str, Any]:
        """The SPEC 4 identity document; a SAML user's adds `saml_attributes` (SPEC 10)."""
        document = {
            "id": self.id,
            "user_uuid": self.user_uuid,
            "name": self.name,
            "email": self.email,
            "groups": list(self.groups),
            "idp": {"id": self.idp_id, "type": self.idp_type},
            "oidc_fields": thaw(self.oidc_fields),
            "amr": list(self.amr),
            "iat": self.iat,
            "ip": self.ip,
            "service_token_id": self.service_token_id,
            "service_token_status": self.service_token_status,
            "version": self.version,
        }
        if self.idp_type == "saml":
            document["saml_attributes"] = thaw(self.saml_attributes)
        return document

    def to_record(self) -> dict[str, Any]:
        """The identity as stored in a session record: the document plus the Okta `sub` and
        the IdP session's `sid`."""
        return {**self.to_json(), "sub": self.sub, "sid": self.sid}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Identity:
        idp = data["idp"]
        return cls(
            id=data["id"],
            user_uuid=data["user_uuid"],
            sub=data.get("sub", ""),
            name=data["name"],
            email=data["email"],
            groups=tuple(data["groups"]),
            idp_id=idp["id"],
            idp_type=idp["type"],
            iat=data["iat"],
            ip=data.get("ip", ""),
            amr=tuple(data.get("amr", ())),
            oidc_fields=data.get("oidc_fields", {}),
            saml_attributes=data.get("saml_attributes", {}),
            service_token_id=data.get("service_token_id", ""),
            service_token_status=data.get("service_token_status", False),
            version=data.get("version", 1),
            sid=data.get("sid", ""),
        )
