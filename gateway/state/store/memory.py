"""`MemoryStore`: the store in a dict, for `gateway demo` and single-process use.

Expiry times come from the injected clock, so tests move time instead of sleeping. An expired
entry is dropped when it is next read, and a sweep every so many writes drops the ones nobody
reads again, so memory stays proportional to the live data. No method awaits between reading
and changing the dict: on one event loop each call is atomic, which is what makes `take` and
`set_if_absent` safe under concurrent requests.
"""

from __future__ import annotations

import builtins
import time

from gateway.state.store import Clock

# Sweep after as many writes as there were entries after the last sweep (at least this many):
# amortised O(1) per write, and never much more than twice the live entries are held.
_SWEEP_MIN_WRITES = 1024

# A value, a set of members or a list (newest first), and its expiry time on the clock (None:
# never). Spelled `builtins.set` because the `set` method shadows the builtin inside the class.
_Data = bytes | builtins.set[str] | list[bytes]
_Entry = tuple[_Data, float | None]


class MemoryStore:
    """The `Store` protocol in process memory. Values and sets share one key space, as in Redis."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._writes_until_sweep = _SWEEP_MIN_WRITES

    async def get(self, key: str) -> bytes | None:
        return self._value(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._write(key, value, self._expiry(ttl))

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._write(key, value, self._expiry(ttl))
        return True

    async def take(self, key: str) -> bytes | None:
        value = self._value(key)
        if value is not None:
            del self._entries[key]
        return value

    async def delete(self, *keys: str) -> int:
        deleted = 0
        for key in keys:
            if self._live(key) is not None:
                del self._entries[key]
                deleted += 1
        return deleted

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        expires_at = self._clock() + ttl
        entry = self._live(key)
        if entry is None:
            self._write(key, {member}, expires_at)
            return
        members = self._members(key, entry[0])
        members.add(member)
        current = entry[1]
        # Only ever lengthen the set's life (and one without expiry keeps none).
        if current is not None and current < expires_at:
            self._entries[key] = (members, expires_at)

    async def set_members(self, key: str) -> builtins.set[str]:
        entry = self._live(key)
        if entry is None:
            return builtins.set()
        return builtins.set(self._members(key, entry[0]))

    async def remove_from_set(self, key: str, *members: str) -> None:
        entry = self._live(key)
        if entry is None:
            return
        current = self._members(key, entry[0])
        current.difference_update(members)
        if not current:
            # An empty set does not exist, as in Redis.
            del self._entries[key]

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None = None
    ) -> bool:
        if self._value(key) != expected:
            return False
        if value is None:
            self._entries.pop(key, None)
        else:
            self._write(key, value, self._expiry(ttl))
        return True

    async def push_capped(self, key: str, value: bytes, limit: int) -> None:
        if limit < 1:
            raise ValueError("a capped list keeps at least one item")
        entry = self._live(key)
        items = [] if entry is None else self._items(key, entry[0])
        items.insert(0, value)
        del items[limit:]
        self._write(key, items, None)

    async def list_items(self, key: str, limit: int) -> list[bytes]:
        entry = self._live(key)
        if entry is None or limit <= 0:
            return []
        return self._items(key, entry[0])[:limit]

    async def count(self, key: str, ttl: float) -> int:
        entry = self._live(key)
        if entry is None:
            self._write(key, b"1", self._expiry(ttl))
            return 1
        total = int(self._value(key) or b"0") + 1
        self._entries[key] = (str(total).encode(), entry[1])
        return total

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _live(self, key: str) -> _Entry | None:
        """The entry under `key`, dropping it first if it has expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at = entry[1]
        if expires_at is not None and expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _value(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        value = entry[0]
        if not isinstance(value, bytes):
            raise TypeError(f"store key {key!r} does not hold a value")
        return value

    @staticmethod
    def _members(key: str, value: _Data) -> builtins.set[str]:
        if not isinstance(value, builtins.set):
            raise TypeError(f"store key {key!r} does not hold a set")
        return value

    @staticmethod
    def _items(key: str, value: _Data) -> list[bytes]:
        if not isinstance(value, list):
            raise TypeError(f"store key {key!r} does not hold a list")
        return value

    def _write(self, key: str, value: _Data, expires_at: float | None) -> None:
        self._entries[key] = (value, expires_at)
        self._writes_until_sweep -= 1
        if self._writes_until_sweep <= 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        expired = [
            key
            for key, (_, expires_at) in self._entries.items()
            if expires_at is not None and expires_at <= now
        ]
        for key in expired:
            del self._entries[key]
        self._writes_until_sweep = max(_SWEEP_MIN_WRITES, len(self._entries))
