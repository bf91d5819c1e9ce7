"""Who the client is: X-Forwarded-For / -Proto believed only from `trusted_proxies`."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gateway.config import Network
from gateway.web.clientinfo import ClientInfo, client_info, header, peer_is_trusted

TRUSTED: tuple[Network, ...] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("2001:db8:aaaa::/48"),
)


def scope(
    peer: str | None, headers: list[tuple[str, str]] | None = None, scheme: str = "http"
) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "client": (peer, 51234) if peer is not None else None,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers or []],
    }


def info(ip: str, forwarded_for: str, proto: str) -> ClientInfo:
    return ClientInfo(ip, ipaddress.ip_address(ip), forwarded_for, proto)


SPOOFED = [("X-Forwarded-For", "192.0.2.66"), ("X-Forwarded-Proto", "https")]


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("203.0.113.9", TRUSTED),  # a peer outside trusted_proxies
        ("10.0.0.2", ()),  # no trusted proxies configured
        ("2001:db8:bbbb::1", TRUSTED),
    ],
)
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    peer: str, trusted: tuple[Network, ...]
) -> None:
    assert client_info(scope(peer, SPOOFED), trusted) == info(peer, peer, "http")


def test_untrusted_peer_keeps_the_connections_scheme() -> None:
    headers = [("X-Forwarded-Proto", "http")]
    assert client_info(scope("203.0.113.9", headers, "https"), TRUSTED).proto == "https"


def test_forwarded_headers_from_a_trusted_peer_are_believed() -> None:
    got = client_info(scope("10.0.0.2", SPOOFED), TRUSTED)
    assert got == info("192.0.2.66", "192.0.2.66, 10.0.0.2", "https")


def test_trusted_peer_without_forwarded_for_is_the_client() -> None:
    got = client_info(scope("10.0.0.2", [("X-Forwarded-Proto", "https")]), TRUSTED)
    assert got == info("10.0.0.2", "10.0.0.2", "https")


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        # The left part is whatever the client sent; the right-most untrusted hop is the one
        # the first trusted proxy saw.
        ("192.0.2.66, 198.51.100.1, 10.0.0.7", "198.51.100.1"),
        ("192.0.2.66, 198.51.100.1", "198.51.100.1"),
        ("198.51.100.1,10.1.2.3,10.0.0.7", "198.51.100.1"),
        ("2001:db8:cccc::9, 2001:db8:aaaa::5", "2001:db8:cccc::9"),
        # Every hop trusted: the left-most one is as far as we can see.
        ("10.9.9.9, 10.0.0.7", "10.9.9.9"),
    ],
)
def test_client_is_the_right_most_untrusted_hop(chain: str, client: str) -> None:
    got = client_info(scope("10.0.0.2", [("X-Forwarded-For", chain)]), TRUSTED)
    assert (got.ip, got.address) == (client, ipaddress.ip_address(client))


def test_forwarded_for_chain_appends_the_peer() -> None:
    chain = "192.0.2.66, 198.51.100.1"
    got = client_info(scope("10.0.0.2", [("X-Forwarded-For", chain)]), TRUSTED)
    assert got.forwarded_for == "192.0.2.66, 198.51.100.1, 10.0.0.2"


def test_forwarded_for_lines_are_one_list() -> None:
    # A proxy that adds its own X-Forwarded-For line (HAProxy) puts the real client last; the
    # client's own line must not make it whoever it claims to be.
    headers = [("X-Forwarded-For", "192.0.2.66"), ("X-Forwarded-For", "198.51.100.1")]
    got = client_info(scope("10.0.0.2", headers), TRUSTED)
    assert got == info("198.51.100.1", "192.0.2.66, 198.51.100.1, 10.0.0.2", "http")


@pytest.mark.parametrize("value", ["ftp", "HTTPS, http", ""])
def test_unknown_forwarded_proto_keeps_the_connections_scheme(value: str) -> None:
    headers = [("X-Forwarded-Proto", value)]
    assert client_info(scope("10.0.0.2", headers, "https"), TRUSTED).proto == "https"


def test_ipv4_mapped_peer_is_the_ipv4_address() -> None:
    # A dual-stack ("::") listener reports IPv4 peers as ::ffff:a.b.c.d.
    trusted_peer = client_info(scope("::ffff:10.0.0.2", SPOOFED), TRUSTED)
    assert (trusted_peer.ip, trusted_peer.proto) == ("192.0.2.66", "https")
    plain = client_info(scope("::ffff:203.0.113.9", SPOOFED), TRUSTED)
    assert plain.address == ipaddress.ip_address("203.0.113.9")
    assert plain.proto == "http"


def test_no_peer_address() -> None:
    # A unix-socket server gives no client address: unknown, and never a trusted proxy.
    got = client_info(scope(None, SPOOFED), TRUSTED)
    assert (got.ip, got.address, got.proto) == ("", None, "http")


def test_header_reads_one_header_case_insensitively_by_lower_name() -> None:
    headers = [("Host", "wiki.example.com"), ("Accept", "text/html")]
    assert header(scope("203.0.113.9", headers), b"accept") == "text/html"
    assert header(scope("203.0.113.9", headers), b"cookie") is None


@pytest.mark.parametrize(
    ("peer", "trusted", "expected"),
    [
        ("10.0.0.2", TRUSTED, True),
        ("2001:db8:aaaa::5", TRUSTED, True),
        ("::ffff:10.0.0.2", TRUSTED, True),  # a dual-stack listener's IPv4 peer
        ("203.0.113.9", TRUSTED, False),
        ("10.0.0.2", (), False),  # no trusted proxies configured
        (None, TRUSTED, False),  # a unix socket: no peer address
        ("not-an-address", TRUSTED, False),
    ],
)
def test_only_a_direct_peer_in_trusted_proxies_is_trusted(
    peer: str | None, trusted: tuple[Network, ...], expected: bool
) -> None:
    assert peer_is_trusted(scope(peer), trusted) is expected


def test_a_forwarded_chain_naming_a_trusted_proxy_does_not_make_the_peer_one() -> None:
    assert not peer_is_trusted(scope("203.0.113.9", [("X-Forwarded-For", "10.0.0.2")]), TRUSTED)
