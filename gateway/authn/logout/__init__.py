"""Logouts an identity provider pushes to the gateway (SPEC 8): Okta Universal Logout
(`universal.py`, draft-parecki-oauth-global-token-revocation) and OpenID Connect Back-Channel
Logout 1.0 (`backchannel.py`).

Both take a JWT the IdP signed and check all of it before anything changes: the signature with
the IdP's keys (`SignedJWTVerifier` over the provider's `KeyCache`), the issuer, the audience,
the times, and a `jti` no instance has spent (`unspent`). Only then do they end sessions,
through `SessionManager`, whose records every instance reads on the next request; the `jti` is
spent (`spend`) once that is done, so a logout that failed half-way may be sent again.
A refusal is a `LogoutRequestError` carrying its status and OAuth-style error code; the web layer
(`gateway.web.logout_receivers`) turns it into JSON. No token reaches a message or the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.authn.providers.id_token import CLOCK_LEEWAY, numeric_date
from gateway.errors import LogoutRequestError
from gateway.state.store import Store

_JTI_KEY = "logout_jti:"

# Makes the refusal of a token from a description: each receiver refuses with its own status.
Refuse = Callable[[str], LogoutRequestError]


def _time(claims: Mapping[str, Any], name: str, refuse: Refuse, description: str) -> float:
    """A NumericDate claim (RFC 7519 2), or the refusal raised."""
    value = numeric_date(claims.get(name))
    if value is None:
        raise refuse(description)
    return value


def check_times(
    claims: Mapping[str, Any], now: float, refuse: Refuse, *, require_exp: bool
) -> float:
    """RFC 7519 4.1.4-4.1.6 with the ID tokens' clock leeway: `exp` not passed (required when
    `require_exp`), `iat` present and not in the future, `nbf` reached. Returns the time until
    which the token could be presented again, for its `jti` to be remembered."""
    iat = _time(claims, "iat", refuse, "The token has no issue time (iat)")
    if iat > now + CLOCK_LEEWAY:
        raise refuse("The token's issue time (iat) is in the future; check the clocks (NTP)")
    until = iat + CLOCK_LEEWAY
    if "exp" in claims or require_exp:
        exp = _time(claims, "exp", refuse, "The token has no valid expiry (exp)")
        if now >= exp + CLOCK_LEEWAY:
            raise refuse("The token has expired")
        until = max(until, exp + CLOCK_LEEWAY)
    if "nbf" in claims:
        nbf = _time(claims, "nbf", refuse, "The token's nbf is not a time")
        if nbf > now + CLOCK_LEEWAY:
            raise refuse("The token is not valid yet (nbf)")
    return until


def audiences(claims: Mapping[str, Any]) -> list[str]:
    """The `aud` claim as a list (RFC 7519 4.1.3: a string or an array of strings)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def token_id(claims: Mapping[str, Any], refuse: Refuse) -> str:
    """The `jti` claim, required: without it a replay could not be told apart."""
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise refuse("The token has no jti (token id)")
    return jti


@dataclass(frozen=True, slots=True)
class TokenUse:
    """A checked token's `jti`, under its store key, and how long it must stay remembered."""

    key: str
    ttl: float


async def unspent(
    store: Store, kind: str, idp_id: str, jti: str, ttl: float, replayed: LogoutRequestError
) -> TokenUse:
    """The use of the token `jti` of `idp_id`, which no instance has spent yet; raises
    `replayed` otherwise. It is spent (`spend`) once the logout it asks for is done, so a logout
    the gateway failed to carry out (the store down: "try again") can be sent again."""
    digest = hashlib.sha256(jti.encode()).hexdigest()  # bounded, whatever the IdP sent
    use = TokenUse(f"{_JTI_KEY}{kind}:{idp_id}:{digest}", max(ttl, 1.0))
    if await store.get(use.key) is not None:
        raise replayed
    return use


async def spend(store: Store, use: TokenUse) -> None:
    """Remember the token as used, for as long as it could still be presented. Two copies
    sent at once may both pass `unspent`: both end the same sessions, which is harmless."""
    await store.set_if_absent(use.key, b"1", ttl=use.ttl)
