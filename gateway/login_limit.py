"""A cap on sign-ins started from one client network.

Every sign-in start stores a login state for ten minutes before anyone has proved who they are.
Without a cap one client could fill the store, and a store that is full or down locks everybody
out. Starts are counted per client address (per /64 for IPv6, which one host often holds whole)
in one-minute windows, one store round trip each; the cap is high enough for an office signing
in from behind one NAT address. A silent sign-in with a global session starts nothing and is not
counted.
"""

from __future__ import annotations

import ipaddress

from gateway.errors import RateLimitedError
from gateway.policy import IPAddress
from gateway.store import Clock, Store

STARTS_PER_MINUTE = 300
_WINDOW = 60  # seconds
_KEY = "loginlimit:"


def client_network(address: IPAddress | None) -> str:
    """What the starts of `address` are counted under."""
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)


async def count_start(store: Store, address: IPAddress | None, clock: Clock) -> None:
    """Count one sign-in start from `address`; RateLimitedError (429) past the minute's cap."""
    now = clock()
    window = int(now // _WINDOW)
    starts = await store.count(f"{_KEY}{client_network(address)}:{window}", ttl=_WINDOW)
    if starts > STARTS_PER_MINUTE:
        raise RateLimitedError(
            "Too many sign-ins were started from your network in the last minute. "
            "Wait a minute, then try again.",
            retry_after=max(1, int((window + 1) * _WINDOW - now)),
        )
