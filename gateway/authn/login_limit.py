"""A cap on sign-ins started from one client network.

Every sign-in start stores a login state for ten minutes before anyone has proved who they are.
Without a cap one client could fill the store, and a store that is full or down locks everybody
out. Starts are counted per client address (per /64 for IPv6, which one host often holds whole)
in one-minute windows, one store round trip each; the cap is high enough for an office signing
in from behind one NAT address. A silent sign-in with a global session starts nothing and is not
counted. Loopback and unknown (Unix socket) peers are not counted: they are a local proxy that
is not in `trusted_proxies`, whose one address every user would share (a cap on it would lock
them all out), or local tooling and tests.
"""

from __future__ import annotations

from gateway.authz.policy import IPAddress
from gateway.errors import RateLimitedError
from gateway.state.store import Clock, Store
from gateway.web.clientinfo import client_network

STARTS_PER_MINUTE = 300
_WINDOW = 60  # seconds
_KEY = "loginlimit:"


async def count_start(store: Store, address: IPAddress | None, clock: Clock) -> None:
    """Count one sign-in start from `address`; RateLimitedError (429) past the minute's cap."""
    network = client_network(address)
    if network is None:
        return
    now = clock()
    window = int(now // _WINDOW)
    starts = await store.count(f"{_KEY}{network}:{window}", ttl=_WINDOW)
    if starts > STARTS_PER_MINUTE:
        raise RateLimitedError(
            "Too many sign-ins were started from your network in the last minute. "
            "Wait a minute, then try again.",
            retry_after=max(1, int((window + 1) * _WINDOW - now)),
        )
