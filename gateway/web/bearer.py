"""Bearer tokens (RFC 6750 2.1): the credentials of an `Authorization: Bearer` header, and the
constant-time comparison of a presented token with the configured one.

The admin API and `/metrics` both take the admin token this way. Tokens are compared as SHA-256
digests, of equal length whatever was sent, so the comparison leaks neither the token's content
nor its length.
"""

from __future__ import annotations

import hashlib
import hmac


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for another scheme or none."""
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def same_token(given: str, expected: str) -> bool:
    """Whether `given` is `expected`, in constant time."""
    given_digest = hashlib.sha256(given.encode()).digest()
    return hmac.compare_digest(given_digest, hashlib.sha256(expected.encode()).digest())


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an `Authorization` header value is `Bearer <token>`."""
    given = bearer_token(authorization)
    return given is not None and same_token(given, token)
