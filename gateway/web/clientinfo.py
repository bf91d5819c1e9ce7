"""Who is really on the other end of a request: address, forwarded chain and scheme.

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the direct peer is in
`trusted_proxies`; then the client is the right-most address in the chain that is not itself a
trusted proxy. Otherwise the peer is the client, whatever the headers claim. `peer_is_trusted`
is the one test of the direct peer, asked by forward-auth and for the request id too.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from starlette.types import Scope

from gateway.authz.policy import IPAddress
from gateway.config import Network


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str  # the client address as text ("" if unknown)
    address: IPAddress | None  # parsed, for `ip` policy rules
    forwarded_for: str  # X-Forwarded-For to send upstream
    proto: str  # "http" | "https"


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack listener ("::") reports IPv4 clients as ::ffff:a.b.c.d; unwrapped, they
    # match IPv4 `trusted_proxies` and `ip` rules as the same client would on an IPv4 socket.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress | None, trusted: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in trusted)


def peer_is_trusted(scope: Scope, trusted: tuple[Network, ...]) -> bool:
    """Whether the direct peer (never an X-Forwarded-For hop) is one of `trusted_proxies`: the
    one test of whether what a request says about its client and itself may be believed."""
    if not trusted:
        return False
    client = scope.get("client")
    return client is not None and _trusted(_parse(client[0]), trusted)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header from an ASGI scope (`name` lower-case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_info(scope: Scope, trusted: tuple[Network, ...]) -> ClientInfo:
    peer_text = scope["client"][0] if scope.get("client") else ""
    peer = _parse(peer_text)
    proto = str(scope.get("scheme", "http"))
    if not _trusted(peer, trusted):
        return ClientInfo(peer_text, peer, peer_text, proto)
    # RFC 9110 5.3: several header lines are one comma-separated list. A proxy that adds its own
    # line (HAProxy's `option forwardfor`) puts the real hop last; reading only the first line
    # would let the client choose its own address.
    chain = ", ".join(
        value.decode("latin-1") for key, value in scope["headers"] if key == b"x-forwarded-for"
    )
    forwarded_proto = header(scope, b"x-forwarded-proto")
    if forwarded_proto in ("http", "https"):
        proto = forwarded_proto
    if not chain:
        return ClientInfo(peer_text, peer, peer_text, proto)
    client_text, client = peer_text, peer
    for hop in reversed([h.strip() for h in chain.split(",") if h.strip()]):
        client_text, client = hop, _parse(hop)
        if not _trusted(client, trusted):
            break
    return ClientInfo(client_text, client, f"{chain}, {peer_text}", proto)


def client_network(address: IPAddress | None) -> str | None:
    """What a client is counted under by the per-client limits (sign-in starts, SCIM refusals,
    upstream admission): its address, or its /64 for IPv6 (one host holds a whole /64). None for
    a loopback or unknown peer: a local proxy every user shares, or local tooling; not counted."""
    if address is None or address.is_loopback:
        return None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)
