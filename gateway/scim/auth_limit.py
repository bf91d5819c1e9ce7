"""A cap on refused SCIM requests from one client network (SPEC 6).

A request with a missing or wrong secret, or for an identity provider that does not exist or
has SCIM off, is counted per client network (per /64 for IPv6, as sign-in starts are:
`clientinfo.client_network`) in one-minute windows, one store round trip each. Past
`FAILURES_PER_MINUTE` such a request is answered 429 with Retry-After instead of 401 or 404.
Only refusals are counted and a request is refused only after its secret has been checked, so
a correct secret is never limited: Okta keeps provisioning from an address that others share.
Loopback and unknown (Unix socket) peers are not counted, as in `login_limit`.
The cap keeps refusals from flushing the provisioning log and costs a guesser little time,
not its chance: a request over the cap still has its secret checked first (so Okta is never
locked out). What stands in a guesser's way is the secret itself: a generated one has 256
random bits (a pinned one is the operator's to make as strong).
"""

from __future__ import annotations

from gateway.authz.policy import IPAddress
from gateway.errors import RateLimitedError
from gateway.state.store import Clock, Store
from gateway.web.clientinfo import client_network

# One a second on average. Okta's real traffic carries the right secret and is never counted; an
# Okta org left with a stale secret fails either way, and past this gets a 429 whose integer
# Retry-After it honours (OKTA.md), so it backs off instead of hammering.
FAILURES_PER_MINUTE = 60
_WINDOW = 60  # seconds
_KEY = "scim_auth_limit:"


async def count_failure(
    store: Store, address: IPAddress | None, clock: Clock
) -> RateLimitedError | None:
    """Count one refused request from `address`; the 429 to answer instead once it is past
    the minute's cap, else None."""
    network = client_network(address)
    if network is None:
        return None
    now = clock()
    window = int(now // _WINDOW)
    failures = await store.count(f"{_KEY}{network}:{window}", ttl=_WINDOW)
    if failures <= FAILURES_PER_MINUTE:
        return None
    return RateLimitedError(
        "Too many SCIM requests with a wrong secret or for an unknown identity provider came "
        "from your network in the last minute.",
        retry_after=max(1, int((window + 1) * _WINDOW - now)),
    )
