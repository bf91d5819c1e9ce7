"""The signature half of checking a JWT an identity provider signed: `SignedJWTVerifier` checks
the compact form, the algorithm against an allow-list (never `none`, never HMAC), the `kid`, and
the signature against the provider's `KeyCache` (one more look at the key set on an unknown kid,
within the cache's bounds), and hands back the payload as a JSON object. What the claims must say
is the caller's: ID tokens (`id_token.py`), Okta's Universal Logout bearer tokens and OpenID
Connect logout tokens (`gateway.authn.logout`). Each failure is raised as the exception the
caller's `fail` makes from a description and a hint, so every caller keeps its own error type and
log. joserfc does the JWS cryptography; none of its dicts leak out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from gateway.authn.providers import shorten
from gateway.authn.providers.jwks import KeyCache, PublicKey

# `fail(description, hint)`: the exception to raise for a token that fails a check.
Fail = Callable[[str, str], Exception]


class SignedJWTVerifier:
    """Verifies the signature of one kind of JWT (`what`, e.g. "ID token") with a key cache.

    `algorithms` is the allow-list; `who` names the IdP whose key set is meant, and
    `unknown_key_hint` says what to check when no key of that set matches.
    """

    def __init__(
        self,
        *,
        what: str,
        algorithms: frozenset[str],
        keys: KeyCache,
        fail: Fail,
        who: str,
        unknown_key_hint: str = "",
    ) -> None:
        self._what = what
        self._algorithms = algorithms
        self._keys = keys
        self._fail = fail
        self._who = who
        self._unknown_key_hint = unknown_key_hint
        self._registry = jws.JWSRegistry(algorithms=sorted(algorithms), strict_check_header=False)

    def _error(self, description: str, hint: str = "") -> Exception:
        return self._fail(description, hint)

    async def verified(self, compact: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JOSE header and the claims of a token whose signature holds; raises otherwise."""
        what = self._what
        try:
            if compact.count(".") != 2:
                raise ValueError("not three segments")
            token = jws.extract_compact(compact.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise self._error(f"The {what} is not a well-formed signed JWT") from exc
        header = dict(token.headers())
        alg = self._check_alg(header.get("alg"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._error(f"The {what}'s kid header is not a string")
        await self._verify_signature(token, kid, alg)
        try:
            claims: Any = json.loads(token.payload)
        except ValueError as exc:
            raise self._error(f"The {what}'s payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise self._error(f"The {what}'s payload is not a JSON object")
        return header, claims

    def _check_alg(self, alg: object) -> str:
        if isinstance(alg, str) and alg in self._algorithms:
            return alg
        what = self._what
        allowed = ", ".join(sorted(self._algorithms))
        if not isinstance(alg, str) or alg.lower() == "none":
            reason = f"The {what} is unsigned (alg none), which is never accepted"
        elif alg.startswith("HS"):
            reason = (
                f"The {what} is signed with HMAC ({alg}, a shared secret such as the client "
                f"secret), which is never accepted; allowed: {allowed}"
            )
        else:
            reason = f"The {what}'s algorithm {shorten(alg)} is not allowed; allowed: {allowed}"
        raise self._error(reason)

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
            description, cause = error
            raise self._error(description) from cause

    def _signature_error(
        self, token: jws.CompactSignature, key: PublicKey, alg: str
    ) -> tuple[str, Exception | None] | None:
        """Why `token` does not verify with `key` (and the exception behind it), or None."""
        key_alg = key.get("alg")
        if key_alg and key_alg != alg:  # RFC 7517 4.4: a key is used only with its own alg
            return f"The {self._what} uses {alg} with a key meant for {key_alg}", None
        try:
            valid = jws.validate_compact(token, key, registry=self._registry)
        except (JoseError, ValueError) as exc:
            return f"The {self._what} could not be verified with the {alg} key: {exc}", exc
        return None if valid else (f"The {self._what}'s signature is invalid", None)

    async def _signing_key(
        self, kid: str | None, mark: int, *, failed: bool = False
    ) -> tuple[PublicKey, bool]:
        """The key for `kid` and whether its set was fetched after `mark` (see `KeyCache.key`)."""
        key, fresh = await self._keys.key(kid, mark, failed=failed)
        if key is None:
            raise self._error(
                f"The {self._what} is signed with a key ({shorten(kid or 'no kid')}) that is not "
                f"in {self._who}'s key set",
                self._unknown_key_hint,
            )
        return key, fresh
