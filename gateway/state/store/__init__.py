"""The store: where sessions, sign-in state, SCIM data, the catalog and the registry live.

One small key-value protocol with TTLs, implemented twice: `RedisStore` (production: shared by
every gateway instance) and `MemoryStore` (`gateway demo` and single-process use). Both pass the
same contract suite (`tests/test_store.py`). Every method of `RedisStore` turns a Redis failure
into `StoreUnavailableError`, so callers fail closed with a 503 instead of a traceback.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Protocol

from gateway.config import SessionReads

Clock = Callable[[], float]


class Store(Protocol):
    """Byte values under string keys, optionally expiring after `ttl` seconds."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store a value; `ttl` in seconds (None: no expiry). Replaces value and expiry."""

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store only if the key does not exist; True when stored."""

    async def take(self, key: str) -> bytes | None:
        """Get and delete atomically (single-use values): two callers never both get it."""

    async def delete(self, *keys: str) -> int:
        """Delete keys; returns how many existed."""

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        """Add a member to a set; the set lives at least `ttl` more seconds (never shortened)."""

    async def set_members(self, key: str) -> builtins.set[str]:
        """Members of a set (empty when absent)."""

    async def remove_from_set(self, key: str, *members: str) -> None:
        """Remove members from a set."""

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically: if the key holds `expected` (None: the key is absent), store `value`
        (None: delete the key) with `ttl`; True when done. Optimistic updates are built on it:
        read, compute, compare-and-set, and read again if another writer came first."""

    async def push_capped(self, key: str, value: bytes, limit: int) -> None:
        """Prepend to a list and keep only its newest `limit` (>= 1) items, atomically; lists
        never expire."""

    async def list_items(self, key: str, limit: int) -> list[bytes]:
        """The newest `limit` items of a list, newest first (empty when absent)."""

    async def count(self, key: str, ttl: float) -> int:
        """Add one to a counter and return its new value, atomically; a counter that did not
        exist starts at one and expires `ttl` seconds later (later counts keep that expiry)."""

    async def ping(self) -> None:
        """Raise StoreUnavailableError if the store cannot be reached."""

    async def close(self) -> None:
        """Release connections."""


def open_store(
    url: str, clock: Clock = time.time, *, session_reads: SessionReads = "pipelined"
) -> Store:
    """The store for a `store` setting: "memory" or a redis:// (rediss://, unix://) URL;
    `session_reads` is the `[gateway]` setting of that name (Redis only)."""
    if url == "memory":
        from gateway.state.store.memory import MemoryStore

        return MemoryStore(clock=clock)
    from gateway.state.store.redis import RedisStore

    return RedisStore.from_url(url, session_reads=session_reads)
