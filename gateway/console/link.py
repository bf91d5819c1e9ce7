"""`gateway console-link`: one-time URLs that sign the operator in to the console (SPEC 1, 9).

A link holds a random token; the store keeps only its SHA-256, with the link's expiry, for
`LINK_TTL`. Redeeming takes the record out of the store (`Store.take`: one instance, one
request wins), so a link works once across every instance sharing the store, and not after its
expiry by the gateway's clock (checked as well as the store's TTL, so an injected clock tests it).
"""

from __future__ import annotations

import hashlib
import json
import secrets

from gateway.state.store import Clock, Store

LINK_TTL = 600.0  # SPEC 1: valid 10 minutes
LINK_PATH = "/console/link"
_KEY = "console_link:"


def _key(token: str) -> str:
    return _KEY + hashlib.sha256(token.encode()).hexdigest()


async def issue(store: Store, clock: Clock) -> str:
    """A new one-time token, valid `LINK_TTL` from now."""
    token = secrets.token_urlsafe(32)
    record = json.dumps({"expires": clock() + LINK_TTL}).encode()
    await store.set(_key(token), record, ttl=LINK_TTL)
    return token


async def redeem(store: Store, clock: Clock, token: str) -> bool:
    """Whether `token` is a link's, unused and unexpired; it is spent either way."""
    if not token or len(token) > 128:
        return False
    raw = await store.take(_key(token))
    if raw is None:
        return False
    try:
        expires = float(json.loads(raw)["expires"])
    except (ValueError, KeyError, TypeError):
        return False
    return clock() <= expires


def link_url(public_url: str, token: str) -> str:
    return f"{public_url}{LINK_PATH}?token={token}"
