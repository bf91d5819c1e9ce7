"""A lock held in the store, for a change several gateway instances must not make at once:
`held` waits for it, `leased` tries once (for work that another instance may just as well do)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from gateway.errors import StoreUnavailableError
from gateway.state.store import Store


@contextlib.asynccontextmanager
async def held(
    store: Store, key: str, *, ttl: float, attempts: int, pause: float, busy: str
) -> AsyncIterator[None]:
    """Hold the lock `key` for the block: set-if-absent with a TTL, so a holder that dies
    cannot keep it, tried `attempts` times `pause` seconds apart (StoreUnavailableError `busy`
    after that). Released only by its holder: if it lapsed and another instance took it, that
    one keeps it."""
    holder = secrets.token_bytes(16)
    for _ in range(attempts):
        if await store.set_if_absent(key, holder, ttl=ttl):
            break
        await asyncio.sleep(pause)
    else:
        raise StoreUnavailableError(busy)
    try:
        yield
    finally:
        await store.compare_and_set(key, holder, None)


@contextlib.asynccontextmanager
async def leased(store: Store, key: str, *, ttl: float) -> AsyncIterator[bool]:
    """Try once to hold the lock `key` for the block, which learns whether it does; like
    `held`, it lapses after `ttl` seconds and only its holder releases it."""
    holder = secrets.token_bytes(16)
    taken = await store.set_if_absent(key, holder, ttl=ttl)
    try:
        yield taken
    finally:
        if taken:
            await store.compare_and_set(key, holder, None)
