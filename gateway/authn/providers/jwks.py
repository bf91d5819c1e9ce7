"""The signing keys of one OIDC provider: `KeyCache`, the JWKS (RFC 7517) as fetched, and which
key verifies a token.

`KeyCache` holds the provider's keys for the age its provider gives (DISCOVERY_TTL) and looks
again when a token names a kid it lacks, because keys rotate without notice (OKTA.md). Its
bounds: concurrent sign-ins that need a fresh key set share one fetch; a kid a fetch lacked is
not looked up again for UNKNOWN_KID_TTL (30 s; at most UNKNOWN_KIDS_KEPT are remembered); and,
besides the hourly refresh, at most JWKS_REFETCH_LIMIT (6) refetches start in any
JWKS_REFETCH_WINDOW (60 s), so a new kid is still looked up right after another one was missing,
while a flood of made-up kids costs at most 6 fetches a minute. A token without a kid (OIDC Core
10.1 allows it when the set has one key) that fails against the cached key gets one fresh look
within the same bounds, since the rotation of that only key shows up as a failed signature, not
as an unknown kid. Fetching the set is the provider's (`OIDCProvider._fetch_keys`); reading its
entries (`signing_keys`) is here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from gateway.authn.providers import shorten

# The OIDC core's logger: these lines are part of its story of a sign-in.
logger = logging.getLogger("gateway.oidc")

UNKNOWN_KID_TTL = 30.0  # a kid a fetch lacked is not looked up again for this long
UNKNOWN_KIDS_KEPT = 1000  # at most this many such kids are remembered
JWKS_REFETCH_LIMIT = 6  # at most this many refetches (beyond the hourly one) start ...
JWKS_REFETCH_WINDOW = 60.0  # ... in any window of this many seconds

PublicKey = RSAKey | ECKey


class KeyCache:
    """One provider's JWKS: fetched when `max_age` old, and again, within the bounds the module
    docstring gives, when a token needs a key the cached set lacks.

    Fetches are numbered as they begin. A lookup passes the number reached when its token was
    in hand (`mark`); only a set from a later fetch tells it the IdP lacks the key, because one
    begun earlier may predate the key (Okta: the JWKS "could lag slightly").
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, PublicKey]]],
        clock: Callable[[], float],
        idp_id: str,
        *,
        max_age: float,
    ) -> None:
        self._fetch_keys = fetch
        self._clock = clock
        self._idp_id = idp_id
        self._max_age = max_age
        self._lock = asyncio.Lock()  # held while fetching: waiters use that fetch's keys
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = -math.inf
        self._begun = 0  # fetches begun so far
        self._held = 0  # the number of the fetch whose keys are held
        self._refetches: deque[float] = deque()  # when the refetches of the last window began
        self._missing: dict[str, float] = {}  # kid -> when a fresh fetch lacked it; oldest first

    def mark(self) -> int:
        """The fetch number now, for a token in hand now."""
        return self._begun

    async def key(
        self, kid: str | None, mark: int, *, failed: bool = False
    ) -> tuple[PublicKey | None, bool]:
        """The key for `kid` (without a kid, the only key) or None, and whether the set it
        comes from was fetched after `mark`. `failed`: the key held did not verify the token,
        so a set fetched after `mark` is wanted even though a key is there."""
        async with self._lock:
            now = self._clock()
            if now - self._fetched_at >= self._max_age:
                await self._fetch(now, "")
            key = _pick_key(self._keys, kid)
            if (key is None or failed) and self._held <= mark and self._may_refetch(kid, now):
                reason = "no cached key for a token without key id"
                await self._fetch(now, "unknown key id" if kid is not None else reason)
                key = _pick_key(self._keys, kid)
            fresh = self._held > mark
            if key is None and kid is not None and fresh:
                self._remember(kid, now)
            return key, fresh

    def _may_refetch(self, kid: str | None, now: float) -> bool:
        if kid is not None and now - self._missing.get(kid, -math.inf) < UNKNOWN_KID_TTL:
            return False  # a fetch lacked it a moment ago
        while self._refetches and now - self._refetches[0] >= JWKS_REFETCH_WINDOW:
            self._refetches.popleft()
        if len(self._refetches) < JWKS_REFETCH_LIMIT:
            return True
        logger.warning(
            "idp %s: key set refetched %d times in %d s; not again yet",
            self._idp_id,
            JWKS_REFETCH_LIMIT,
            JWKS_REFETCH_WINDOW,
            extra={"step": "jwks", "idp": self._idp_id},
        )
        return False

    async def _fetch(self, now: float, reason: str) -> None:
        """Fetch the key set; a `reason` makes it a refetch, counted against the limit."""
        self._begun += 1
        number = self._begun
        if reason:
            self._refetches.append(now)  # counted when begun, so failing fetches count too
            logger.info(
                "idp %s: %s, fetching the key set again",
                self._idp_id,
                reason,
                extra={"step": "jwks", "idp": self._idp_id},
            )
        self._keys = await self._fetch_keys()
        self._fetched_at = self._clock()
        self._held = number

    def _remember(self, kid: str, now: float) -> None:
        self._missing.pop(kid, None)  # re-added last, which keeps the dict oldest first
        self._missing[kid] = now
        while True:  # forget the expired, and the oldest beyond UNKNOWN_KIDS_KEPT
            oldest, at = next(iter(self._missing.items()))
            if now - at < UNKNOWN_KID_TTL and len(self._missing) <= UNKNOWN_KIDS_KEPT:
                break
            del self._missing[oldest]


def signing_keys(entries: object) -> dict[str, PublicKey]:
    """The RSA/EC signing keys of a JWKS `keys` array, by kid ("" for none); {} when `entries`
    is not an array or holds no such key."""
    keys: dict[str, PublicKey] = {}
    for entry in entries if isinstance(entries, list) else []:
        key = _import_signing_key(entry)
        if key is not None:
            keys[str(entry.get("kid", ""))] = key
    return keys


def _import_signing_key(entry: object) -> PublicKey | None:
    """A JWKS entry as a public key, or None when it is not an RSA/EC signing key.

    RFC 7517 5: keys that are not understood are ignored, not fatal. Symmetric ("oct") keys are
    never taken from a JWKS, so no HMAC verification can be reached through it.
    """
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    try:
        if entry.get("kty") == "RSA":
            return RSAKey.import_key(entry)
        if entry.get("kty") == "EC":
            return ECKey.import_key(entry)
    except (JoseError, ValueError, TypeError):
        logger.warning(
            "ignoring a malformed key (kid %s) in the key set", shorten(entry.get("kid"))
        )
    return None


def _pick_key(keys: Mapping[str, PublicKey], kid: str | None) -> PublicKey | None:
    if kid is None:
        # OIDC Core 10.1: kid may be left out only when the key set has a single key.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)
