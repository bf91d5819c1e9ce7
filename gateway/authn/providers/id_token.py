"""ID-token validation for the OIDC providers (OIDC Core 3.1.3.7): `IDTokenValidator` checks the
form, the algorithm, the signature against the provider's `KeyCache`, and the iss, aud, azp, sub,
exp, iat, nbf and nonce claims, and hands back the claims. It takes what it needs from its
provider explicitly (client ID, issuer, allowed algorithms, key cache, clock, how to name the
IdP) and reports each failure through the provider's log callback as a `TokenValidationError`
at step "id_token". joserfc does the JWS cryptography behind it, so none of its dicts leak out.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from gateway.authn.providers import shorten
from gateway.authn.providers.jwks import KeyCache, PublicKey
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
        self._algorithms = algorithms
        self._keys = keys
        self._clock = clock
        self._log = log
        self._who = who
        self._issuer_hint = issuer_hint
        self._registry = jws.JWSRegistry(algorithms=sorted(algorithms), strict_check_header=False)

    async def validate(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core 3.1.3.7: signature, alg, iss, aud, azp, exp, iat, nonce. Returns the claims."""
        segments = id_token.count(".") + 1
        if segments == 5:
            raise self._log(
                TokenValidationError(
                    "The ID token is encrypted (JWE); the gateway needs a signed ID token",
                    step="id_token",
                    hint="turn off ID token encryption for this app in Okta",
                )
            )
        try:
            if segments != 3:
                raise ValueError("not three segments")
            token = jws.extract_compact(id_token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise self._log(_invalid("The ID token is not a well-formed signed JWT")) from exc
        header = token.headers()
        alg = self._check_alg(header.get("alg"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._log(_invalid("The ID token's kid header is not a string"))
        await self._verify_signature(token, kid, alg)
        try:
            claims: Any = json.loads(token.payload)
        except ValueError as exc:
            raise self._log(_invalid("The ID token's payload is not JSON")) from exc
        if not isinstance(claims, dict):
            raise self._log(_invalid("The ID token's payload is not a JSON object"))
        self._check_claims(claims, nonce)
        return claims

    def _check_alg(self, alg: object) -> str:
        if isinstance(alg, str) and alg in self._algorithms:
            return alg
        allowed = ", ".join(sorted(self._algorithms))
        if not isinstance(alg, str) or alg.lower() == "none":
            reason = "The ID token is unsigned (alg none), which is never accepted"
        elif alg.startswith("HS"):
            reason = (
                f"The ID token is signed with HMAC ({alg}, a shared secret such as the client "
                f"secret), which is never accepted; allowed: {allowed}"
            )
        else:
            reason = f"The ID token's algorithm {shorten(alg)} is not allowed; allowed: {allowed}"
        raise self._log(_invalid(reason))

    async def _verify_signature(
        self, token: jws.CompactSignature, kid: str | None, alg: str
    ) -> None:
        mark = self._keys.mark()  # the token is in hand: key sets fetched from now on are newer
        key, fresh = await self._signing_key(kid, mark)
        error = self._signature_error(token, key, alg)
        if error is not None and kid is None and not fresh:
            # Without a kid, a rotation of the only key shows as a failed signature, not as an
            # unknown kid: look at the key set once more before refusing.
            key, _ = await self._signing_key(kid, mark, failed=True)
            error = self._signature_error(token, key, alg)
        if error is not None:
            raise self._log(error)

    def _signature_error(
        self, token: jws.CompactSignature, key: PublicKey, alg: str
    ) -> TokenValidationError | None:
        """Why `token` does not verify with `key`, or None when it does."""
        key_alg = key.get("alg")
        if key_alg and key_alg != alg:  # RFC 7517 4.4: a key is used only with its own alg
            return _invalid(f"The ID token uses {alg} with a key meant for {key_alg}")
        try:
            valid = jws.validate_compact(token, key, registry=self._registry)
        except (JoseError, ValueError) as exc:
            error = _invalid(f"The ID token could not be verified with the {alg} key: {exc}")
            error.__cause__ = exc  # as `raise ... from exc` would, for when it is raised
            return error
        return None if valid else _invalid("The ID token's signature is invalid")

    async def _signing_key(
        self, kid: str | None, mark: int, *, failed: bool = False
    ) -> tuple[PublicKey, bool]:
        """The key for `kid` and whether its set was fetched after `mark` (see `KeyCache.key`)."""
        key, fresh = await self._keys.key(kid, mark, failed=failed)
        if key is None:
            raise self._log(
                _invalid(
                    f"The ID token is signed with a key ({shorten(kid or 'no kid')}) that is not "
                    f"in {self._who}'s key set",
                    hint="if keys were just rotated, retry in a minute; otherwise check the "
                    "issuer (Okta domain / authorization server ID)",
                )
            )
        return key, fresh

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
        exp = _number(claims.get("exp"))
        if exp is None or now >= exp + CLOCK_LEEWAY:
            raise self._log(_invalid("The ID token has expired (or has no exp)", hint=clock_hint))
        iat = _number(claims.get("iat"))
        if iat is None or iat > now + CLOCK_LEEWAY:
            raise self._log(
                _invalid(
                    "The ID token's issue time (iat) is missing or in the future", hint=clock_hint
                )
            )
        nbf = _number(claims.get("nbf"))
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


def _number(value: object) -> float | None:
    # RFC 7519 2 NumericDate; a JSON true is not a number even though bool is an int in Python.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
