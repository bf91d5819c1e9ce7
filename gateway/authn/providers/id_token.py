"""ID-token validation for the OIDC providers (OIDC Core 3.1.3.7): `IDTokenValidator` has the
form, the algorithm and the signature checked against the provider's `KeyCache` by a
`SignedJWTVerifier` (`signed_jwt.py`), checks the iss, aud, azp, sub, exp, iat, nbf and nonce
claims, and hands back the claims. It takes what it needs from its provider explicitly (client
ID, issuer, allowed algorithms, key cache, clock, how to name the IdP) and reports each failure
through the provider's log callback as a `TokenValidationError` at step "id_token".
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from gateway.authn.providers import shorten
from gateway.authn.providers.jwks import KeyCache
from gateway.authn.providers.signed_jwt import SignedJWTVerifier
from gateway.errors import SignInError, TokenValidationError

CLOCK_LEEWAY = 60.0  # seconds of clock skew allowed on exp / iat / nbf (SPEC 4: "small leeway")

# Never "none", never HMAC: an HS256 token keyed with the client secret could be minted by anyone
# holding that secret (SPEC 4).
OIDC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})


class IDTokenValidator:
    """Validates the ID tokens of one provider.

    `algorithms` are the ones the provider accepts (a subset of OIDC_ALGORITHMS); `who` names
    the IdP in messages and `issuer_hint` says what to check when the issuer differs; `log`
    records a failure and returns it, to be raised.
    """

    def __init__(
        self,
        *,
        client_id: str,
        issuer: str,
        algorithms: frozenset[str],
        keys: KeyCache,
        clock: Callable[[], float],
        log: Callable[[SignInError], SignInError],
        who: str,
        issuer_hint: str,
    ) -> None:
        self._client_id = client_id
        self._issuer = issuer
        self._clock = clock
        self._log = log
        self._issuer_hint = issuer_hint
        self._signature = SignedJWTVerifier(
            what="ID token",
            algorithms=algorithms,
            keys=keys,
            fail=lambda description, hint: log(_invalid(description, hint=hint)),
            who=who,
            unknown_key_hint="if keys were just rotated, retry in a minute; otherwise check the "
            "issuer (Okta domain / authorization server ID)",
        )

    async def validate(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core 3.1.3.7: signature, alg, iss, aud, azp, exp, iat, nonce. Returns the claims."""
        if id_token.count(".") == 4:
            raise self._log(
                TokenValidationError(
                    "The ID token is encrypted (JWE); the gateway needs a signed ID token",
                    step="id_token",
                    hint="turn off ID token encryption for this app in Okta",
                )
            )
        _, claims = await self._signature.verified(id_token)
        self._check_claims(claims, nonce)
        return claims

    def _check_claims(self, claims: Mapping[str, Any], nonce: str) -> None:
        cid = self._client_id
        now = self._clock()
        # OIDC Core 3.1.3.7 step 2: iss must exactly match the issuer.
        if claims.get("iss") != self._issuer:
            raise self._log(
                _invalid(
                    f"The ID token's issuer {shorten(claims.get('iss'))} is not the expected "
                    f"{self._issuer!r}",
                    hint=self._issuer_hint,
                )
            )
        # Step 3: aud must contain client_id (a string or an array of strings).
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if cid not in audiences:
            raise self._log(
                _invalid(
                    "The ID token's audience does not include this client ID",
                    hint="check the client ID",
                )
            )
        # Steps 4-5: with several audiences azp is required, and when present it must be us.
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise self._log(
                _invalid("The ID token has several audiences but no azp (authorized party)")
            )
        if azp is not None and azp != cid:
            raise self._log(_invalid("The ID token's azp (authorized party) is not this client ID"))
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise self._log(_invalid("The ID token has no sub (subject)"))
        clock_hint = "check this host's clock (NTP)"
        # Step 9: exp in the future; step 10: iat not in the future; both within the leeway.
        exp = numeric_date(claims.get("exp"))
        if exp is None or now >= exp + CLOCK_LEEWAY:
            raise self._log(_invalid("The ID token has expired (or has no exp)", hint=clock_hint))
        iat = numeric_date(claims.get("iat"))
        if iat is None or iat > now + CLOCK_LEEWAY:
            raise self._log(
                _invalid(
                    "The ID token's issue time (iat) is missing or in the future", hint=clock_hint
                )
            )
        nbf = numeric_date(claims.get("nbf"))
        if "nbf" in claims and (nbf is None or nbf > now + CLOCK_LEEWAY):  # RFC 7519 4.1.5
            raise self._log(_invalid("The ID token is not valid yet (nbf)", hint=clock_hint))
        # Step 11: the nonce sent in the authorize request must come back, unchanged.
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not sent:
            raise self._log(_invalid("The ID token has no nonce"))
        if not nonce or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise self._log(
                _invalid(
                    "The ID token's nonce does not match this sign-in (a replayed or mixed-up "
                    "sign-in)",
                    hint="start the sign-in again in one browser tab",
                )
            )


def _invalid(description: str, *, hint: str = "") -> TokenValidationError:
    return TokenValidationError(description, step="id_token", hint=hint)


def numeric_date(value: object) -> float | None:
    """A JWT time claim as seconds, or None when it is not a number."""
    # RFC 7519 2 NumericDate; a JSON true is not a number even though bool is an int in Python.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
