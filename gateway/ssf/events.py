"""What the transmitter says and publishes: the Security Event Token and its metadata.

A SET (RFC 8417) is a JWT with `typ: secevent+jwt`, signed RS256 with a key from
`/cdn-cgi/access/ssf/jwks`. The one event it carries is Okta's `user-risk-change`, whose members
are the ones Okta documents (SPEC 8). `/.well-known/ssf-configuration` is the transmitter's
metadata (OpenID Shared Signals Framework 1.0, section 7.1): the URL an Okta admin enters for a
Security Events Provider, from which Okta reads `issuer` and `jwks_uri`.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.authz.app_tokens import SigningKey, sign_jwt
from gateway.risk.changes import LevelChange

USER_RISK_CHANGE = "https://schemas.okta.com/secevent/okta/event-type/user-risk-change"
SET_TYPE = "secevent+jwt"
SET_MEDIA_TYPE = "application/secevent+jwt"
PUSH_DELIVERY = "urn:ietf:rfc:8935"  # RFC 8935: the transmitter POSTs each SET to the receiver
WELL_KNOWN_PATH = "/.well-known/ssf-configuration"
JWKS_PATH = "/cdn-cgi/access/ssf/jwks"


def risk_change_set(
    change: LevelChange, *, key: SigningKey, issuer: str, audience: str, now: float
) -> tuple[str, str]:
    """(jti, the signed SET) telling `audience` (the Okta org URL) of one level change."""
    jti = uuid.uuid4().hex
    event = {
        "subject": {"user": {"format": "email", "email": change.email}},
        "current_level": change.current,
        "previous_level": change.previous,
        "event_timestamp": int(change.at),
        "initiating_entity": change.initiating_entity,
        "reason_admin": {"en": change.reason},
    }
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": int(now),
        "jti": jti,
        "events": {USER_RISK_CHANGE: event},
    }
    return jti, sign_jwt(key, claims, typ=SET_TYPE)


def configuration_document(public_url: str) -> dict[str, Any]:
    """`/.well-known/ssf-configuration`: SSF 1.0 transmitter metadata. Okta's receiver is
    configured by hand (its Security Events Provider), so no stream-management endpoints are
    offered; push delivery is the one method."""
    return {
        "spec_version": "1_0",
        "issuer": public_url,
        "jwks_uri": public_url + JWKS_PATH,
        "delivery_methods_supported": [PUSH_DELIVERY],
        "events_supported": [USER_RISK_CHANGE],
    }


def jwks_document(keys: list[SigningKey]) -> dict[str, Any]:
    """`/cdn-cgi/access/ssf/jwks`: the public keys SETs are signed with, current first."""
    return {"keys": [k.public_jwk() for k in keys]}
